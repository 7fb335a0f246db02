//! The Election service (etcd's `v3election`): candidates are keys `name/<lease>`; the leader
//! is the oldest; Observe streams each new leader.

use std::pin::Pin;
use std::sync::Arc;

use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{RequestOp, TxnRequest};
use rustcd_api::v3electionpb::election_server::Election;
use rustcd_api::v3electionpb::*;
use rustcd_mvcc::KeyRange;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::concurrency as cc;
use crate::etcdserver::server::EtcdServer;

pub struct ElectionService(pub Arc<EtcdServer>);

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

/// Puts `value` on the leader's key if it still leads (same create revision).
async fn proclaim(s: &EtcdServer, caller: &Caller, l: &LeaderKey, value: &[u8]) -> Result<i64, ServerError> {
    let put = PutRequest { key: l.key.clone(), value: value.to_vec().into(), ignore_lease: true, ..Default::default() };
    let t = TxnRequest {
        compare: vec![cc::create_rev_is(&l.key, l.rev)],
        success: vec![RequestOp { request: Some(ReqOp::RequestPut(put)) }],
        failure: vec![],
    };
    let resp = cc::txn(s, caller, t).await?;
    if !resp.succeeded {
        return Err(ServerError::ElectionNotLeader);
    }
    Ok(resp.header.map(|h| h.revision).unwrap_or(0))
}

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let caller = &api::caller::of(&req);
        let r = req.into_inner();
        let s = &self.0;
        let (prefix, key) = cc::holder_key(&r.name, r.lease);
        let (my_rev, kv, _) = cc::create_key(s, caller, &key, &r.value, r.lease).await?;
        let leader = LeaderKey { name: r.name.clone(), key: key.clone().into(), rev: my_rev, lease: r.lease };
        if kv.value != r.value {
            proclaim(s, caller, &leader, &r.value).await?;
        }
        cc::wait_turn(s, caller, &prefix, &key, my_rev).await?;
        Ok(Response::new(CampaignResponse { header: s.current_header(), leader: Some(leader) }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let caller = api::caller::of(&req);
        let r = req.into_inner();
        let leader = r.leader.ok_or(ServerError::ElectionMissingLeaderKey)?;
        let rev = proclaim(&self.0, &caller, &leader, &r.value).await?;
        Ok(Response::new(ProclaimResponse { header: self.0.header(rev) }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let caller = api::caller::of(&req);
        let (kv, rev) = cc::first_key(&self.0, &caller, &cc::prefix_of(&req.into_inner().name)).await?;
        let kv = kv.ok_or(ServerError::ElectionNoLeader)?;
        Ok(Response::new(LeaderResponse { header: self.0.header(rev), kv: Some(kv) }))
    }

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        // The stream's reads are its caller's: the task serving them takes the caller along.
        let caller = api::caller::of(&req);
        let prefix = cc::prefix_of(&req.into_inner().name);
        let s = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut last: Option<(bytes::Bytes, i64)> = None;
            loop {
                let (kv, rev) = match cc::first_key(&s, &caller, &prefix).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if let Some(kv) = kv {
                    let seen = (kv.key.clone(), kv.mod_revision);
                    if last.as_ref() != Some(&seen) {
                        last = Some(seen);
                        let resp = LeaderResponse { header: s.header(rev), kv: Some(kv) };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                // Wait for any change under the prefix, then look again.
                let mut w =
                    cc::WatchGuard::new(&s, KeyRange::new(&prefix, &rustcd_gocompat::prefix_end(&prefix)), rev + 1);
                tokio::select! {
                    ev = w.rx.recv() => if ev.is_none() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let caller = api::caller::of(&req);
        let leader = req.into_inner().leader.ok_or(ServerError::ElectionMissingLeaderKey)?;
        let resp = cc::delete_if_created_at(&self.0, &caller, &leader.key, leader.rev).await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(Response::new(ResignResponse { header: self.0.header(rev) }))
    }
}
