//! The Cluster service: MemberList from the bootstrap configuration; membership changes
//! answer `Unimplemented` until the cluster issue builds them.

use std::sync::Arc;

use rustcd_api::etcdserverpb::cluster_server::Cluster;
use rustcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented("member add is not implemented yet"))
    }

    async fn member_remove(
        &self,
        _req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented(
            "member remove is not implemented yet",
        ))
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "member update is not implemented yet",
        ))
    }

    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let rev = self.0.store.current_rev();
        Ok(Response::new(MemberListResponse {
            header: self.0.header(rev),
            members: self.0.membership.list(),
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented(
            "member promote is not implemented yet",
        ))
    }
}
