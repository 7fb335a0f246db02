//! The Cluster service: each RPC calls the server's membership API
//! ([`crate::etcdserver::v3::cluster`]).

use std::sync::Arc;

use rustcd_api::etcdserverpb::cluster_server::Cluster;
use rustcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::server::EtcdServer;

pub struct ClusterService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Ok(Response::new(self.0.member_add(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Ok(Response::new(self.0.member_remove(&api::caller::of(&req), req.into_inner().id).await?))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Ok(Response::new(self.0.member_update(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(self.0.member_list(req.into_inner().linearizable).await?))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Ok(Response::new(self.0.member_promote(&api::caller::of(&req), req.into_inner().id).await?))
    }
}
