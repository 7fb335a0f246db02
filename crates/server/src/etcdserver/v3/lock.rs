//! Locks and elections (etcd's `v3lock` and `v3election` servers): a holder is a key
//! `name/<lease in hex>` on the caller's lease, the oldest key under `name/` holds the lock or
//! leads; built from the blocks of [`crate::etcdserver::concurrency`], for the caller. The
//! leader's stream (`Observe`) is the gRPC service's, on the same blocks.

use std::sync::Arc;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use rustcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use rustcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::concurrency as cc;
use crate::etcdserver::server::EtcdServer;

impl EtcdServer {
    /// Takes the lock `name` for the caller's lease: returns once every older holder is gone.
    pub async fn lock(self: &Arc<Self>, caller: &Caller, r: LockRequest) -> Result<LockResponse, ServerError> {
        let (prefix, key) = cc::holder_key(&r.name, r.lease);
        let (my_rev, _, _) = cc::create_key(self, caller, &key, b"", r.lease).await?;
        cc::wait_turn(self, caller, &prefix, &key, my_rev).await?;
        Ok(LockResponse { header: self.current_header(), key: key.into() })
    }

    /// Gives up a lock: deletes its key.
    pub async fn unlock(&self, caller: &Caller, r: UnlockRequest) -> Result<UnlockResponse, ServerError> {
        let d = DeleteRangeRequest { key: r.key, ..Default::default() };
        let resp = expect_applied!(self.propose(caller, Op::DeleteRange(d)).await?, DeleteRange)?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(UnlockResponse { header: self.header(rev) })
    }

    /// Campaigns in election `name` with `value`: returns once the caller leads.
    pub async fn campaign(
        self: &Arc<Self>,
        caller: &Caller,
        r: CampaignRequest,
    ) -> Result<CampaignResponse, ServerError> {
        let (prefix, key) = cc::holder_key(&r.name, r.lease);
        let (my_rev, kv, _) = cc::create_key(self, caller, &key, &r.value, r.lease).await?;
        let leader = LeaderKey { name: r.name.clone(), key: key.clone().into(), rev: my_rev, lease: r.lease };
        if kv.value != r.value {
            self.put_if_leading(caller, &leader, &r.value).await?;
        }
        cc::wait_turn(self, caller, &prefix, &key, my_rev).await?;
        Ok(CampaignResponse { header: self.current_header(), leader: Some(leader) })
    }

    /// A new value for the election, from its leader.
    pub async fn proclaim(&self, caller: &Caller, r: ProclaimRequest) -> Result<ProclaimResponse, ServerError> {
        let leader = r.leader.ok_or(ServerError::ElectionMissingLeaderKey)?;
        let rev = self.put_if_leading(caller, &leader, &r.value).await?;
        Ok(ProclaimResponse { header: self.header(rev) })
    }

    /// The election's leader now.
    pub async fn election_leader(&self, caller: &Caller, r: LeaderRequest) -> Result<LeaderResponse, ServerError> {
        let (kv, rev) = cc::first_key(self, caller, &cc::prefix_of(&r.name)).await?;
        let kv = kv.ok_or(ServerError::ElectionNoLeader)?;
        Ok(LeaderResponse { header: self.header(rev), kv: Some(kv) })
    }

    /// The leader steps down: its key goes, if it still holds it.
    pub async fn resign(&self, caller: &Caller, r: ResignRequest) -> Result<ResignResponse, ServerError> {
        let leader = r.leader.ok_or(ServerError::ElectionMissingLeaderKey)?;
        let resp = cc::delete_if_created_at(self, caller, &leader.key, leader.rev).await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(ResignResponse { header: self.header(rev) })
    }

    /// Puts `value` on the leader's key if it still leads (same create revision).
    async fn put_if_leading(&self, caller: &Caller, l: &LeaderKey, value: &[u8]) -> Result<i64, ServerError> {
        let put =
            PutRequest { key: l.key.clone(), value: value.to_vec().into(), ignore_lease: true, ..Default::default() };
        let t = TxnRequest {
            compare: vec![cc::create_rev_is(&l.key, l.rev)],
            success: vec![RequestOp { request: Some(ReqOp::RequestPut(put)) }],
            failure: vec![],
        };
        let resp = cc::txn(self, caller, t).await?;
        if !resp.succeeded {
            return Err(ServerError::ElectionNotLeader);
        }
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }
}
