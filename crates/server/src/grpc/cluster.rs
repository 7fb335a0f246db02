//! The Cluster service: member list, add (also as learner), remove, update and promote, with
//! etcd's safety checks; every change goes through raft as a configuration change.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use rustcd_api::etcdserverpb::cluster_server::Cluster;
use rustcd_api::etcdserverpb::*;
use rustcd_api::rustcdpb::StoredMember;
use rustcd_api::rustcdpb::internal_request::Request as Op;
use rustcd_raft::eraftpb::{ConfChange, ConfChangeType};
use tonic::{Request, Response, Status};

use crate::apply::expect_applied;
use crate::error::ServerError;
use crate::membership::to_api;
use crate::server::EtcdServer;
use crate::url::Url;

pub struct ClusterService(pub Arc<EtcdServer>);

/// Votes needed among `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Most learners a cluster may have (etcd's limit).
const MAX_LEARNERS: usize = 1;

impl ClusterService {
    /// Members that published their attributes (etcd's "started" members).
    fn started_voters(&self, except: Option<u64>) -> (usize, usize) {
        let all = self.0.membership().stored();
        let voters: Vec<&StoredMember> = all.iter().filter(|m| !m.is_learner && Some(m.id) != except).collect();
        (voters.iter().filter(|m| !m.name.is_empty()).count(), voters.len())
    }

    async fn forward_promote(&self, id: u64) -> Result<Response<MemberPromoteResponse>, Status> {
        let leader = self.0.leader();
        let urls = self.0.membership().get(leader).map(|m| m.client_urls).unwrap_or_default();
        for url in urls {
            let Ok(ep) = tonic::transport::Endpoint::from_shared(url) else { continue };
            let Ok(ch) = ep.connect_timeout(std::time::Duration::from_secs(1)).connect().await else { continue };
            let mut client = rustcd_api::etcdserverpb::cluster_client::ClusterClient::new(ch);
            return client.member_promote(MemberPromoteRequest { id }).await;
        }
        Err(ServerError::NoLeader.into())
    }

    fn check_strict(&self, ok: bool) -> Result<(), Status> {
        if self.0.config().raw.strict_reconfig_check && !ok { Err(ServerError::Unhealthy.into()) } else { Ok(()) }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        for u in &r.peer_ur_ls {
            Url::parse(u).map_err(|e| Status::invalid_argument(format!("etcdserver: invalid peer URL {u:?}: {e}")))?;
        }
        let existing = self.0.membership().stored();
        if existing.iter().any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(ServerError::PeerUrlExist.into());
        }
        if r.is_learner {
            if existing.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(ServerError::TooManyLearners.into());
            }
        } else {
            // Adding a voter must leave enough started voters for the larger quorum.
            let (started, voters) = self.started_voters(None);
            self.check_strict(started >= quorum(voters + 1))?;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let id = crate::ids::member_id(&r.peer_ur_ls, &now.to_string());
        if existing.iter().any(|m| m.id == id) || self.0.membership().is_removed(id) {
            return Err(ServerError::MemberExist.into());
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
            context: member.encode_to_vec().into(),
            ..Default::default()
        };
        let members = expect_applied!(self.0.propose_conf_change(cc).await?, Members)?;
        Ok(Response::new(MemberAddResponse { header: self.0.current_header(), member: Some(to_api(&member)), members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        let Some(m) = self.0.membership().get(id) else { return Err(ServerError::MemberNotFound.into()) };
        if !m.is_learner {
            // What remains must still have a quorum of started voters.
            let (started, voters) = self.started_voters(Some(id));
            self.check_strict(started >= quorum(voters))?;
        }
        let cc = ConfChange { change_type: ConfChangeType::RemoveNode, node_id: id, ..Default::default() };
        let members = expect_applied!(self.0.propose_conf_change(cc).await?, Members)?;
        Ok(Response::new(MemberRemoveResponse { header: self.0.current_header(), members }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        if self.0.membership().get(r.id).is_none() {
            return Err(ServerError::MemberNotFound.into());
        }
        for u in &r.peer_ur_ls {
            Url::parse(u).map_err(|e| Status::invalid_argument(format!("etcdserver: invalid peer URL {u:?}: {e}")))?;
        }
        let others = self.0.membership().stored();
        if others.iter().filter(|m| m.id != r.id).any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(ServerError::PeerUrlExist.into());
        }
        let members = expect_applied!(self.0.propose(Op::MemberUpdate(r)).await?, Members)?;
        Ok(Response::new(MemberUpdateResponse { header: self.0.current_header(), members }))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.0.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse { header: self.0.current_header(), members: self.0.membership().list() }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        let Some(m) = self.0.membership().get(id) else { return Err(ServerError::MemberNotFound.into()) };
        if !m.is_learner {
            return Err(ServerError::MemberNotLearner.into());
        }
        let Some((commit, matched)) = self.0.leader_progress().await? else {
            // Only the leader knows how far the learner is: etcd forwards promotions to it.
            return self.forward_promote(id).await;
        };
        // etcd's readiness rule: the learner has at least 90% of the leader's committed log.
        let learner_match = matched.iter().find(|(pid, _)| *pid == id).map(|(_, m)| *m).unwrap_or(0);
        if (learner_match as f64) < commit as f64 * 0.9 {
            return Err(ServerError::LearnerNotReady.into());
        }
        let cc = ConfChange { change_type: ConfChangeType::AddNode, node_id: id, ..Default::default() };
        let members = expect_applied!(self.0.propose_conf_change(cc).await?, Members)?;
        Ok(Response::new(MemberPromoteResponse { header: self.0.current_header(), members }))
    }
}
