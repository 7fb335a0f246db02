//! The services the proxy passes through unchanged: Lease, Cluster, Maintenance, Auth, Lock
//! and Election, each call sent to the cluster with the client's auth token, each stream piped
//! both ways (lease keep-alives, snapshots, election observers).

use std::pin::Pin;

use rustcd_api::etcdserverpb::auth_client::AuthClient;
use rustcd_api::etcdserverpb::auth_server::Auth;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::lease_server::Lease;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::maintenance_server::Maintenance;
use rustcd_api::etcdserverpb::*;
use rustcd_api::v3electionpb::election_client::ElectionClient;
use rustcd_api::v3electionpb::election_server::Election;
use rustcd_api::v3electionpb::*;
use rustcd_api::v3lockpb::lock_client::LockClient;
use rustcd_api::v3lockpb::lock_server::Lock;
use rustcd_api::v3lockpb::*;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Metadata a client's call carries that the cluster must see too: its auth token, and
/// clientv3's "require a leader" mark.
const PASSED_ON: [&str; 2] = ["token", "hasleader"];

/// `message` as a request upstream, with what of the client's metadata `md` the cluster must see.
pub(crate) fn passed_on<U>(md: &tonic::metadata::MetadataMap, message: U) -> Request<U> {
    let mut out = Request::new(message);
    for key in PASSED_ON {
        if let Some(v) = md.get(key) {
            out.metadata_mut().insert(key, v.clone());
        }
    }
    out
}

/// The request to send upstream: the message, with the client's token.
pub fn request<T>(req: Request<T>) -> Request<T> {
    let (md, _, message) = req.into_parts();
    passed_on(&md, message)
}

/// A client stream as the messages to send upstream; it ends at the client's first error.
fn messages<T: Send + 'static>(req: Request<Streaming<T>>) -> Request<impl Stream<Item = T> + Send + 'static> {
    let (md, _, stream) = req.into_parts();
    passed_on(&md, stream.map_while(|m| m.ok()))
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn boxed<T: Send + 'static>(s: Streaming<T>) -> Boxed<T> {
    Box::pin(s)
}

/// Unary methods that only forward (also used by [`crate::cluster`]). They are written as `#[tonic::async_trait]` expands an
/// `async fn` (it cannot see into a macro's output).
macro_rules! unary {
    ($client:tt; $($name:ident($req:ty) -> $resp:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            req: Request<$req>,
        ) -> Pin<Box<dyn std::future::Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let mut client = self.$client.clone();
            Box::pin(async move { client.$name(request(req)).await })
        }
    )*};
}
pub(crate) use unary;

/// The Lease service; a lease's keys are listed without the proxy's namespace.
pub struct LeaseProxy(pub LeaseClient<Channel>, pub crate::namespace::Namespace);

#[tonic::async_trait]
impl Lease for LeaseProxy {
    type LeaseKeepAliveStream = Boxed<LeaseKeepAliveResponse>;
    unary! { 0;
        lease_grant(LeaseGrantRequest) -> LeaseGrantResponse;
        lease_revoke(LeaseRevokeRequest) -> LeaseRevokeResponse;
        lease_leases(LeaseLeasesRequest) -> LeaseLeasesResponse;
    }
    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let mut resp = self.0.clone().lease_time_to_live(request(req)).await?;
        self.1.lease_keys(resp.get_mut());
        Ok(resp)
    }
    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let up = self.0.clone().lease_keep_alive(messages(req)).await?;
        Ok(Response::new(boxed(up.into_inner())))
    }
}

pub struct MaintenanceProxy(pub MaintenanceClient<Channel>);

#[tonic::async_trait]
impl Maintenance for MaintenanceProxy {
    type SnapshotStream = Boxed<SnapshotResponse>;
    unary! { 0;
        alarm(AlarmRequest) -> AlarmResponse;
        status(StatusRequest) -> StatusResponse;
        defragment(DefragmentRequest) -> DefragmentResponse;
        hash(HashRequest) -> HashResponse;
        hash_kv(HashKvRequest) -> HashKvResponse;
        move_leader(MoveLeaderRequest) -> MoveLeaderResponse;
        downgrade(DowngradeRequest) -> DowngradeResponse;
    }
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let up = self.0.clone().snapshot(request(req)).await?;
        Ok(Response::new(boxed(up.into_inner())))
    }
}

pub struct AuthProxy(pub AuthClient<Channel>);

#[tonic::async_trait]
impl Auth for AuthProxy {
    unary! { 0;
        auth_enable(AuthEnableRequest) -> AuthEnableResponse;
        auth_disable(AuthDisableRequest) -> AuthDisableResponse;
        auth_status(AuthStatusRequest) -> AuthStatusResponse;
        authenticate(AuthenticateRequest) -> AuthenticateResponse;
        user_add(AuthUserAddRequest) -> AuthUserAddResponse;
        user_get(AuthUserGetRequest) -> AuthUserGetResponse;
        user_list(AuthUserListRequest) -> AuthUserListResponse;
        user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
        user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
        user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
        user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
        role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
        role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
        role_list(AuthRoleListRequest) -> AuthRoleListResponse;
        role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
        role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
        role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
    }
}

pub struct LockProxy(pub LockClient<Channel>);

#[tonic::async_trait]
impl Lock for LockProxy {
    unary! { 0;
        lock(LockRequest) -> LockResponse;
        unlock(UnlockRequest) -> UnlockResponse;
    }
}

pub struct ElectionProxy(pub ElectionClient<Channel>);

#[tonic::async_trait]
impl Election for ElectionProxy {
    type ObserveStream = Boxed<LeaderResponse>;
    unary! { 0;
        campaign(CampaignRequest) -> CampaignResponse;
        proclaim(ProclaimRequest) -> ProclaimResponse;
        leader(LeaderRequest) -> LeaderResponse;
        resign(ResignRequest) -> ResignResponse;
    }
    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let up = self.0.clone().observe(request(req)).await?;
        Ok(Response::new(boxed(up.into_inner())))
    }
}
