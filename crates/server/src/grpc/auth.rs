//! The Auth service. Authentication is not built yet: the status says it is disabled, as a
//! fresh etcd's does, `Authenticate` answers etcd's "not enabled" error, and the user and role
//! RPCs answer `Unimplemented`.

use std::sync::Arc;

use rustcd_api::etcdserverpb::auth_server::Auth;
use rustcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct AuthService(pub Arc<EtcdServer>);

fn not_built() -> Status {
    Status::unimplemented("auth is not implemented yet")
}

/// The whole impl is made by one macro so that `async_trait` sees every method.
macro_rules! auth_impl {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            async fn auth_status(
                &self,
                _req: Request<AuthStatusRequest>,
            ) -> Result<Response<AuthStatusResponse>, Status> {
                Ok(Response::new(AuthStatusResponse { header: self.0.current_header(), enabled: false, auth_revision: 0 }))
            }

            async fn authenticate(
                &self,
                _req: Request<AuthenticateRequest>,
            ) -> Result<Response<AuthenticateResponse>, Status> {
                Err(crate::error::ServerError::AuthNotEnabled.into())
            }

            $(
                async fn $name(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(not_built())
                }
            )*
        }
    };
}

auth_impl! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse;
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
