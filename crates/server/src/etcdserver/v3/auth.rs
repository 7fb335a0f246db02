//! The Auth API (etcd's `AuthServer` behind its handlers): every request goes through raft, as
//! in etcd, and is answered by the auth store at apply (see `rustcd_auth`). Passwords are
//! hashed here, before proposing, so the raft log holds only bcrypt hashes; `authenticate`
//! checks the password here and proposes only the token's prefix, then asks again if auth
//! changed meanwhile.

use crate::etcdserver::request::Op as Internal;
use rustcd_api::etcdserverpb::*;
use rustcd_api::rustcdpb::auth_request::Op;
use rustcd_auth::AuthResponse;

use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::blocking;

/// Calls `$then!` with every auth request that is proposed as it comes (all but Authenticate),
/// as `method(Request) -> Response = AuthOp;`: the one list the typed API here and the gRPC
/// service ([`crate::api::grpc::auth`]) are both made from.
macro_rules! with_auth_requests {
    ($then:ident) => {
        $then! {
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
    };
}
pub(crate) use with_auth_requests;

/// One typed method per auth request: it proposes the request as an auth op and answers with
/// the member's header.
macro_rules! auth_requests {
    ($($name:ident($req:ty) -> $resp:ty = $op:ident;)*) => {
        impl EtcdServer {
            $(
                pub async fn $name(&self, caller: &Caller, r: $req) -> Result<$resp, ServerError> {
                    match self.propose_auth(caller, Op::$op(r)).await? {
                        AuthResponse::$op(mut resp) => {
                            resp.header = self.current_header();
                            Ok(resp)
                        }
                        _ => Err(ServerError::UnexpectedApply),
                    }
                }
            )*
        }
    };
}

with_auth_requests!(auth_requests);

impl EtcdServer {
    /// etcd's `Authenticate`: the password checked here (bcrypt, off the async workers), then a
    /// token made through raft; asked again when the auth store changed meanwhile.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        r: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, ServerError> {
        let auth = self.auth().clone();
        loop {
            let (checker, name, password) = (auth.clone(), r.name.clone(), r.password.clone());
            let revision = match blocking(move || checker.check_password(&name, &password)).await? {
                Ok(rev) => rev,
                Err(e) => {
                    if e != rustcd_auth::AuthError::AuthNotEnabled {
                        tracing::warn!(user = %r.name, error = %e, "invalid authentication was requested");
                    }
                    return Err(ServerError::from(e));
                }
            };
            let op = Op::Authenticate(InternalAuthenticateRequest {
                name: r.name.clone(),
                password: String::new(),
                simple_token: auth.token_prefix(),
            });
            let resp = self.propose_auth(caller, op).await?;
            if revision == auth.revision() {
                return match resp {
                    AuthResponse::Authenticate(mut a) => {
                        a.header = self.current_header();
                        Ok(a)
                    }
                    _ => Err(ServerError::UnexpectedApply),
                };
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    /// Proposes an auth op, its password (UserAdd, UserChangePassword) replaced by its hash first
    /// (etcd 3.5's way; a cluster at 3.4 gets the password, which every member hashes as etcd
    /// 3.4 does). A cluster at 3.4 has no AuthStatus through raft (its etcd members could not
    /// apply it): the answer is this member's.
    async fn propose_auth(&self, caller: &Caller, op: Op) -> Result<AuthResponse, ServerError> {
        let at_3_5 = self.cluster_version_at_least(3, 5);
        if !at_3_5 && let Op::Status(_) = op {
            self.check_admin(caller)?;
            let auth = self.auth();
            return Ok(AuthResponse::Status(AuthStatusResponse {
                header: None,
                enabled: auth.is_enabled(),
                auth_revision: auth.revision(),
            }));
        }
        let op = match op {
            op @ (Op::UserAdd(_) | Op::UserChangePassword(_)) if !at_3_5 => op,
            Op::UserAdd(mut r) => {
                if !r.options.is_some_and(|o| o.no_password) && r.hashed_password.is_empty() {
                    r.hashed_password = self.hash_password(&r.password).await?;
                }
                r.password.clear();
                Op::UserAdd(r)
            }
            Op::UserChangePassword(mut r) => {
                if r.hashed_password.is_empty() {
                    r.hashed_password = self.hash_password(&r.password).await?;
                }
                r.password.clear();
                Op::UserChangePassword(r)
            }
            other => other,
        };
        expect_applied!(self.propose(caller, Internal::Auth(op)).await?, Auth)
    }

    async fn hash_password(&self, password: &str) -> Result<String, ServerError> {
        let (auth, password) = (self.auth().clone(), password.to_string());
        blocking(move || auth.hash_password(&password)).await?.map_err(ServerError::from)
    }
}
