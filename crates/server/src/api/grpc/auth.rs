//! The Auth service (etcd's `AuthServer`): every request goes through raft, as in etcd, and is
//! answered by the auth store at apply (see `rustcd_auth`). Passwords are hashed here, before
//! proposing, so the raft log holds only bcrypt hashes; Authenticate checks the password here
//! and proposes only the token's prefix, then asks again if auth changed meanwhile.

use std::sync::Arc;

use rustcd_api::etcdserverpb::auth_server::Auth;
use rustcd_api::etcdserverpb::*;
use rustcd_api::rustcdpb::auth_request::Op;
use rustcd_api::rustcdpb::internal_request::Request as Internal;
use rustcd_api::rustcdpb::{AuthRequest, InternalAuthenticateRequest};
use rustcd_auth::AuthResponse;
use tonic::{Request, Response, Status};

use crate::api;
use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

pub struct AuthService(pub Arc<EtcdServer>);

impl AuthService {
    /// Proposes `op`, its password (UserAdd, UserChangePassword) replaced by its hash first.
    async fn propose(&self, caller: &Caller, op: Op) -> Result<AuthResponse, ServerError> {
        let op = match op {
            Op::UserAdd(mut r) => {
                if !r.options.is_some_and(|o| o.no_password) && r.hashed_password.is_empty() {
                    r.hashed_password = self.hash(&r.password).await?;
                }
                r.password.clear();
                Op::UserAdd(r)
            }
            Op::UserChangePassword(mut r) => {
                if r.hashed_password.is_empty() {
                    r.hashed_password = self.hash(&r.password).await?;
                }
                r.password.clear();
                Op::UserChangePassword(r)
            }
            other => other,
        };
        expect_applied!(self.0.propose(caller, Internal::Auth(AuthRequest { op: Some(op) })).await?, Auth)
    }
}

/// The whole impl is made by one macro so that `async_trait` sees every method: each listed
/// one proposes its request as an auth op and answers with the member's header.
macro_rules! auth_impl {
    ($($name:ident($req:ty) -> $resp:ty = $op:ident;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $(
                async fn $name(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    match self.propose(&api::caller::of(&req), Op::$op(req.into_inner())).await? {
                        AuthResponse::$op(mut r) => {
                            r.header = self.0.current_header();
                            Ok(Response::new(r))
                        }
                        _ => Err(ServerError::UnexpectedApply.into()),
                    }
                }
            )*

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let caller = api::caller::of(&req);
        let r = req.into_inner();
        let auth = self.0.auth().clone();
        loop {
            let (auth2, name, password) = (auth.clone(), r.name.clone(), r.password.clone());
            // bcrypt is slow on purpose: off the async workers.
            let checked = crate::etcdserver::v3::blocking(move || auth2.check_password(&name, &password)).await?;
            let revision = match checked {
                Ok(rev) => rev,
                Err(e) => {
                    if e != rustcd_auth::AuthError::AuthNotEnabled {
                        tracing::warn!(user = %r.name, error = %e, "invalid authentication was requested");
                    }
                    return Err(ServerError::from(e).into());
                }
            };
            let op = Op::Authenticate(InternalAuthenticateRequest { name: r.name.clone(), simple_token: auth.token_prefix() });
            let resp = self.propose(&caller, op).await?;
            if revision == auth.revision() {
                return match resp {
                    AuthResponse::Authenticate(mut a) => {
                        a.header = self.0.current_header();
                        Ok(Response::new(a))
                    }
                    _ => Err(ServerError::UnexpectedApply.into()),
                };
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }
        }
    };
}

auth_impl! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse = Enable;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse = Disable;
    auth_status(AuthStatusRequest) -> AuthStatusResponse = Status;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse = UserAdd;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse = UserChangePassword;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse = UserGet;
    user_list(AuthUserListRequest) -> AuthUserListResponse = UserList;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse = UserDelete;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse = UserGrantRole;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse = UserRevokeRole;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse = RoleAdd;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse = RoleGet;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse = RoleList;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse = RoleDelete;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse = RoleGrantPermission;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse = RoleRevokePermission;
}

impl AuthService {
    async fn hash(&self, password: &str) -> Result<String, ServerError> {
        let (auth, password) = (self.0.auth().clone(), password.to_string());
        crate::etcdserver::v3::blocking(move || auth.hash_password(&password)).await?.map_err(ServerError::from)
    }
}
