//! The Lock service (etcd's `v3lock`): a lock is a key `name/<lease>` on the caller's lease;
//! the holder is the oldest such key; Lock returns once every older key is gone.

use std::sync::Arc;

use rustcd_api::v3lockpb::lock_server::Lock;
use rustcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::concurrency as cc;
use crate::etcdserver::server::EtcdServer;

pub struct LockService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = &api::caller::of(&req);
        let r = req.into_inner();
        let s = &self.0;
        let (prefix, key) = cc::holder_key(&r.name, r.lease);
        let (my_rev, _, _) = cc::create_key(s, caller, &key, b"", r.lease).await?;
        cc::wait_turn(s, caller, &prefix, &key, my_rev).await?;
        Ok(Response::new(LockResponse { header: s.current_header(), key: key.into() }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let caller = api::caller::of(&req);
        let key = req.into_inner().key;
        let d = rustcd_api::etcdserverpb::DeleteRangeRequest { key, ..Default::default() };
        let op = rustcd_api::rustcdpb::internal_request::Request::DeleteRange(d);
        let resp = crate::etcdserver::apply::expect_applied!(self.0.propose(&caller, op).await?, DeleteRange)?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok(Response::new(UnlockResponse { header: self.0.header(rev) }))
    }
}
