//! Membership changes (etcd's `AddMember`, `RemoveMember`, `UpdateMember`, `PromoteMember`):
//! etcd's safety checks, then a configuration change through raft; the answer is the member
//! list after it.

use std::time::{SystemTime, UNIX_EPOCH};

use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use rustcd_api::rustcdpb::StoredMember;
use rustcd_raft::eraftpb::{ConfChange, ConfChangeType};

use crate::config::url::Url;
use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::membership::{member_json, promote_context, to_api};
use crate::etcdserver::server::EtcdServer;

/// Votes needed among `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Most learners a cluster may have (etcd's limit).
const MAX_LEARNERS: usize = 1;

/// The outcome of a promotion asked of this member.
enum Promotion {
    Done(MemberPromoteResponse),
    /// This member does not lead: the leader must be asked (etcd forwards it there).
    AskLeader,
}

impl EtcdServer {
    /// Adds a member (a voter, or a learner) after etcd's checks, through raft.
    pub async fn member_add(&self, caller: &Caller, r: MemberAddRequest) -> Result<MemberAddResponse, ServerError> {
        self.check_admin(caller)?;
        for u in &r.peer_ur_ls {
            Url::parse(u).map_err(|e| ServerError::InvalidPeerUrl(format!("{u:?}: {e}")))?;
        }
        let existing = self.membership().stored();
        if existing.iter().any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(ServerError::PeerUrlExist);
        }
        if r.is_learner {
            if existing.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(ServerError::TooManyLearners);
            }
        } else {
            // Adding a voter must leave enough started voters for the larger quorum; a lone
            // started member may take a second one (etcd's case of restoring a cluster).
            let (started, voters) = self.started_voters(None);
            self.check_strict(started >= quorum(voters + 1) || (started == 1 && voters == 1))?;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let id = rustcd_schema::ids::member_id(&r.peer_ur_ls, &now.to_string());
        if existing.iter().any(|m| m.id == id) || self.membership().is_removed(id) {
            return Err(ServerError::MemberExist);
        }
        let member = StoredMember {
            id,
            name: String::new(),
            peer_urls: r.peer_ur_ls.clone(),
            client_urls: vec![],
            is_learner: r.is_learner,
        };
        let cc = ConfChange {
            change_type: if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode },
            node_id: id,
            context: member_json(&member).to_json().into_bytes().into(),
            ..Default::default()
        };
        let members = expect_applied!(self.propose_conf_change(cc).await?, Members)?;
        Ok(MemberAddResponse { header: self.current_header(), member: Some(to_api(&member)), members })
    }

    /// Removes a member, keeping a quorum of started voters (with `--strict-reconfig-check`).
    pub async fn member_remove(&self, caller: &Caller, id: u64) -> Result<MemberRemoveResponse, ServerError> {
        self.check_admin(caller)?;
        let Some(m) = self.membership().get(id) else { return Err(ServerError::MemberNotFound) };
        if !m.is_learner {
            // What remains must still have a quorum of started voters.
            let (started, voters) = self.started_voters(Some(id));
            self.check_strict(started >= quorum(voters))?;
        }
        let cc = ConfChange { change_type: ConfChangeType::RemoveNode, node_id: id, ..Default::default() };
        let members = expect_applied!(self.propose_conf_change(cc).await?, Members)?;
        Ok(MemberRemoveResponse { header: self.current_header(), members })
    }

    /// Changes a member's peer URLs, through raft.
    pub async fn member_update(
        &self,
        caller: &Caller,
        r: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, ServerError> {
        self.check_admin(caller)?;
        if self.membership().get(r.id).is_none() {
            return Err(ServerError::MemberNotFound);
        }
        for u in &r.peer_ur_ls {
            Url::parse(u).map_err(|e| ServerError::InvalidPeerUrl(format!("{u:?}: {e}")))?;
        }
        let others = self.membership().stored();
        if others.iter().filter(|m| m.id != r.id).any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(ServerError::PeerUrlExist);
        }
        let members = expect_applied!(self.propose_update_node(r.id, r.peer_ur_ls).await?, Members)?;
        Ok(MemberUpdateResponse { header: self.current_header(), members })
    }

    /// The members, after a ReadIndex round when `linearizable`.
    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse, ServerError> {
        if linearizable {
            self.linearizable_barrier().await?;
        }
        Ok(MemberListResponse { header: self.current_header(), members: self.membership().list() })
    }

    /// Promotes a learner that has caught up (90% of the leader's log, etcd's rule). Only the
    /// leader knows how far a learner is: elsewhere the answer is to ask the leader.
    pub async fn member_promote(&self, caller: &Caller, id: u64) -> Result<MemberPromoteResponse, ServerError> {
        match self.promote_here(caller, id).await? {
            Promotion::Done(resp) => {
                // Done here: this member is the leader that promoted it.
                rustcd_metrics::get().server.learner_promote_successes.inc();
                Ok(resp)
            }
            Promotion::AskLeader => {
                let mut leader = ClusterClient::new(self.leader_channel().await?);
                let forwarded = leader.member_promote(caller.forward(MemberPromoteRequest { id })).await;
                forwarded.map(tonic::Response::into_inner).map_err(ServerError::from)
            }
        }
    }

    async fn promote_here(&self, caller: &Caller, id: u64) -> Result<Promotion, ServerError> {
        self.check_admin(caller)?;
        let Some(m) = self.membership().get(id) else { return Err(ServerError::MemberNotFound) };
        if !m.is_learner {
            return Err(ServerError::MemberNotLearner);
        }
        let Some((commit, matched)) = self.leader_progress().await? else {
            return Ok(Promotion::AskLeader);
        };
        let learner_match = matched.iter().find(|(pid, _)| *pid == id).map(|(_, m)| *m).unwrap_or(0);
        if (learner_match as f64) < commit as f64 * 0.9 {
            return Err(ServerError::LearnerNotReady);
        }
        let cc = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: id,
            context: promote_context(id, m.peer_urls.clone()).into_bytes().into(),
            ..Default::default()
        };
        let members = expect_applied!(self.propose_conf_change(cc).await?, Members)?;
        Ok(Promotion::Done(MemberPromoteResponse { header: self.current_header(), members }))
    }

    /// Members that published their attributes (etcd's "started" members) and all voters,
    /// leaving out `except`.
    fn started_voters(&self, except: Option<u64>) -> (usize, usize) {
        let all = self.membership().stored();
        let voters: Vec<&StoredMember> = all.iter().filter(|m| !m.is_learner && Some(m.id) != except).collect();
        (voters.iter().filter(|m| !m.name.is_empty()).count(), voters.len())
    }

    /// With `--strict-reconfig-check`, a change that would leave too few started voters fails.
    fn check_strict(&self, ok: bool) -> Result<(), ServerError> {
        if self.config().raw.strict_reconfig_check && !ok { Err(ServerError::NotEnoughStartedMembers) } else { Ok(()) }
    }
}
