//! The Lock service (etcd's `v3lock`): each RPC is one call of the server's typed API
//! ([`crate::etcdserver::v3::lock`]), for the request's caller.

use std::sync::Arc;

use rustcd_api::v3lockpb::lock_server::Lock;
use rustcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::server::EtcdServer;

pub struct LockService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        Ok(Response::new(self.0.lock(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        Ok(Response::new(self.0.unlock(&api::caller::of(&req), req.into_inner()).await?))
    }
}
