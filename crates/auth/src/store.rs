//! The auth store: etcd's `authStore`. Users, roles, the enabled flag and the auth revision are
//! kept in the backend's meta table (`auth/users/<name>`, `auth/roles/<name>`, `auth/enabled`,
//! `auth/revision`) and mirrored in memory for the permission checks every request makes. Each
//! change bumps the revision, as etcd's `commitRevision` does; a request checked at an older
//! revision is refused at apply with `revision of auth store is old`.

use std::collections::BTreeMap;
use std::sync::RwLock;

use prost::Message;
use rustcd_api::authpb::permission::Type;
use rustcd_api::authpb::{Permission, Role, User, UserAddOptions};
use rustcd_api::etcdserverpb::*;
use rustcd_api::rustcdpb::auth_request::Op;
use rustcd_mvcc::{KvStore, WriteTxn};

use crate::token::{TokenOptions, Tokens};
use crate::{AuthError, AuthInfo, ROOT, perm};

/// Where the backend keeps the auth state (`rustcd_schema::meta`; read also by snapshots in
/// etcd's format).
use rustcd_schema::meta::{
    AUTH_ENABLED as ENABLED, AUTH_REVISION as REVISION, AUTH_ROLES as ROLES, AUTH_USERS as USERS,
};

#[derive(Debug, Default, Clone)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

/// What an applied auth request answers (headers are the server's to fill).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthResponse {
    Enable(AuthEnableResponse),
    Disable(AuthDisableResponse),
    Status(AuthStatusResponse),
    Authenticate(AuthenticateResponse),
    UserAdd(AuthUserAddResponse),
    UserDelete(AuthUserDeleteResponse),
    UserChangePassword(AuthUserChangePasswordResponse),
    UserGrantRole(AuthUserGrantRoleResponse),
    UserGet(AuthUserGetResponse),
    UserRevokeRole(AuthUserRevokeRoleResponse),
    UserList(AuthUserListResponse),
    RoleAdd(AuthRoleAddResponse),
    RoleGrantPermission(AuthRoleGrantPermissionResponse),
    RoleGet(AuthRoleGetResponse),
    RoleRevokePermission(AuthRoleRevokePermissionResponse),
    RoleDelete(AuthRoleDeleteResponse),
    RoleList(AuthRoleListResponse),
}

pub struct AuthStore {
    state: RwLock<State>,
    tokens: Tokens,
    bcrypt_cost: u32,
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

fn backend(e: impl std::fmt::Display) -> AuthError {
    AuthError::Backend(e.to_string())
}

impl AuthStore {
    /// The store as the backend holds it, handing out tokens as `tokens` says.
    pub fn open(store: &KvStore, tokens: TokenOptions, bcrypt_cost: u32) -> Result<AuthStore, AuthError> {
        let a = AuthStore { state: RwLock::default(), tokens: Tokens::new(tokens), bcrypt_cost };
        a.reload(store)?;
        Ok(a)
    }

    /// Reads the state again from the backend (after a snapshot replaced it).
    pub fn reload(&self, store: &KvStore) -> Result<(), AuthError> {
        let mut st = State::default();
        for (k, v) in store.meta_prefix("auth/").map_err(backend)? {
            if k == ENABLED {
                st.enabled = v == [1];
            } else if k == REVISION {
                st.revision = v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
            } else if let Some(name) = k.strip_prefix(USERS) {
                let u = User::decode(v.as_slice()).map_err(backend)?;
                st.users.insert(name.to_string(), u);
            } else if let Some(name) = k.strip_prefix(ROLES) {
                let r = Role::decode(v.as_slice()).map_err(backend)?;
                st.roles.insert(name.to_string(), r);
            }
        }
        if !st.enabled {
            self.tokens.clear();
        }
        *self.write() = st;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_enabled(&self) -> bool {
        self.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    /// etcd's bcrypt hash of a password, at `--bcrypt-cost` (done before proposing, as etcd
    /// does, so that the raft log never holds a password).
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let h = bcrypt::hash(password, self.bcrypt_cost).map_err(|e| AuthError::Backend(e.to_string()))?;
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD.encode(h))
    }

    /// etcd's `CheckPassword`: the auth revision the password was checked at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = {
            let st = self.read();
            if !st.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let u = st.users.get(name).ok_or(AuthError::AuthFailed)?;
            if u.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(AuthError::AuthFailed);
            }
            (u.password.clone(), st.revision)
        };
        let ok = std::str::from_utf8(&hash).ok().and_then(|h| bcrypt::verify(password, h).ok()).unwrap_or(false);
        if !ok {
            tracing::info!(user_name = %name, "invalid password");
            return Err(AuthError::AuthFailed);
        }
        Ok(revision)
    }

    /// A fresh simple-token prefix (16 random letters), chosen by the member that proposes an
    /// Authenticate.
    pub fn token_prefix(&self) -> String {
        crate::token::random_prefix()
    }

    /// Who a token names. `Ok(None)` when auth is off; a token that names no one (expired,
    /// made before a restart, signed by another key) is `InvalidAuthToken`.
    pub fn info_from_token(&self, token: &str) -> Result<Option<AuthInfo>, AuthError> {
        let revision = {
            let st = self.read();
            if !st.enabled {
                return Ok(None);
            }
            st.revision
        };
        match self.tokens.info(token, revision) {
            Some(i) => Ok(Some(i)),
            None => {
                tracing::warn!(token = %crate::token::fingerprint(token), "invalid auth token");
                Err(AuthError::InvalidAuthToken)
            }
        }
    }

    /// A client certificate's common name as the user (etcd's `AuthInfoFromTLS`).
    pub fn info_from_common_name(&self, cn: &str) -> Option<AuthInfo> {
        let st = self.read();
        st.enabled.then(|| AuthInfo { username: cn.to_string(), revision: st.revision })
    }

    /// The raft index a simple token was made at, which a member must have applied before it
    /// can know the token (`None` for other tokens).
    pub fn token_index(token: &str) -> Option<u64> {
        crate::token::simple_index(token)
    }

    /// etcd's `IsAdminPermitted`: only root may manage auth and membership.
    pub fn is_admin_permitted(&self, who: Option<&AuthInfo>) -> Result<(), AuthError> {
        let st = self.read();
        if !st.enabled {
            return Ok(());
        }
        let who = who.filter(|w| !w.username.is_empty()).ok_or(AuthError::UserEmpty)?;
        let u = st.users.get(&who.username).ok_or(AuthError::UserNotFound)?;
        if !has_root_role(u) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's `isOpPermitted`.
    fn is_op_permitted(&self, who: Option<&AuthInfo>, key: &[u8], end: &[u8], want: Type) -> Result<(), AuthError> {
        let st = self.read();
        if !st.enabled {
            return Ok(());
        }
        let who = match who {
            Some(w) if w.revision != 0 => w,
            _ => return Err(AuthError::UserEmpty),
        };
        if who.revision < st.revision {
            tracing::warn!(
                current_node_auth_revision = st.revision,
                request_auth_revision = who.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(AuthError::AuthOldRevision);
        }
        let Some(u) = st.users.get(&who.username) else {
            tracing::error!(user_name = %who.username, "cannot find a user for permission check");
            return Err(AuthError::PermissionDenied);
        };
        if has_root_role(u) {
            return Ok(());
        }
        let perms = u.roles.iter().filter_map(|r| st.roles.get(r)).flat_map(|r| r.key_permission.iter());
        if perm::covers(perms, want, key, end) { Ok(()) } else { Err(AuthError::PermissionDenied) }
    }

    pub fn is_range_permitted(&self, who: Option<&AuthInfo>, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
        self.is_op_permitted(who, key, end, Type::Read)
    }

    pub fn is_put_permitted(&self, who: Option<&AuthInfo>, key: &[u8]) -> Result<(), AuthError> {
        self.is_op_permitted(who, key, &[], Type::Write)
    }

    pub fn is_delete_permitted(&self, who: Option<&AuthInfo>, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
        self.is_op_permitted(who, key, end, Type::Write)
    }

    fn commit_revision(st: &mut State, w: &mut WriteTxn) {
        st.revision += 1;
        w.put_meta(REVISION, &st.revision.to_be_bytes());
    }

    fn put_user(w: &mut WriteTxn, st: &mut State, name: &str, u: User) {
        w.put_meta(&format!("{USERS}{name}"), &u.encode_to_vec());
        st.users.insert(name.to_string(), u);
    }

    fn put_role(w: &mut WriteTxn, st: &mut State, name: &str, r: Role) {
        w.put_meta(&format!("{ROLES}{name}"), &r.encode_to_vec());
        st.roles.insert(name.to_string(), r);
    }

    /// Applies one auth request from the raft log, sent by `who`; `index` is its entry's.
    pub fn apply(
        &self,
        w: &mut WriteTxn,
        op: Op,
        who: Option<&AuthInfo>,
        index: u64,
    ) -> Result<AuthResponse, AuthError> {
        match &op {
            // A user may read itself, and the roles it has.
            Op::UserGet(r) => {
                if let Err(e) = self.is_admin_permitted(who)
                    && who.is_none_or(|w| w.username != r.name)
                {
                    return Err(e);
                }
            }
            Op::RoleGet(r) => {
                let own = who.is_some_and(|w| {
                    self.read().users.get(&w.username).is_some_and(|u| u.roles.iter().any(|x| x == &r.role))
                });
                if !own {
                    self.is_admin_permitted(who)?;
                }
            }
            Op::Authenticate(_) => {}
            _ => self.is_admin_permitted(who)?,
        }
        let mut guard = self.write();
        let st = &mut *guard;
        Ok(match op {
            Op::Enable(_) => {
                if st.enabled {
                    tracing::info!("authentication is already enabled; ignored auth enable request");
                } else {
                    let root = st.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                    if !has_root_role(root) {
                        return Err(AuthError::RootRoleNotExist);
                    }
                    w.put_meta(ENABLED, &[1]);
                    st.enabled = true;
                    tracing::info!("enabled authentication");
                }
                AuthResponse::Enable(Default::default())
            }
            Op::Disable(_) => {
                if st.enabled {
                    w.put_meta(ENABLED, &[0]);
                    Self::commit_revision(st, w);
                    st.enabled = false;
                    self.tokens.clear();
                    tracing::info!("disabled authentication");
                }
                AuthResponse::Disable(Default::default())
            }
            Op::Status(_) => AuthResponse::Status(AuthStatusResponse {
                header: None,
                enabled: st.enabled,
                auth_revision: st.revision,
            }),
            Op::Authenticate(a) => {
                if !st.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                let u = st.users.get(&a.name).ok_or(AuthError::AuthFailed)?;
                if u.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(AuthError::AuthFailed);
                }
                let token = self.tokens.assign(&a.name, st.revision, &a.simple_token, index)?;
                tracing::debug!(user_name = %a.name, token_fingerprint = %crate::token::fingerprint(&token), "authenticated a user");
                AuthResponse::Authenticate(AuthenticateResponse { header: None, token })
            }
            Op::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if st.users.contains_key(&r.name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let options = r.options.unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password {
                    Vec::new()
                } else {
                    self.request_password(&r.password, &r.hashed_password)?
                };
                let u = User {
                    name: r.name.clone().into_bytes().into(),
                    password: password.into(),
                    roles: vec![],
                    options: Some(options),
                };
                Self::put_user(w, st, &r.name, u);
                Self::commit_revision(st, w);
                tracing::info!(user_name = %r.name, "added a user");
                AuthResponse::UserAdd(Default::default())
            }
            Op::UserDelete(r) => {
                if st.enabled && r.name == ROOT {
                    tracing::error!(user_name = %r.name, "cannot delete 'root' user");
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let u = st.users.remove(&r.name).ok_or(AuthError::UserNotFound)?;
                w.remove_meta(&format!("{USERS}{}", r.name));
                Self::commit_revision(st, w);
                self.tokens.invalidate_user(&r.name);
                tracing::info!(user_name = %r.name, user_roles = ?u.roles, "deleted a user");
                AuthResponse::UserDelete(Default::default())
            }
            Op::UserChangePassword(r) => {
                let mut u = st.users.get(&r.name).cloned().ok_or(AuthError::UserNotFound)?;
                if !u.options.as_ref().is_some_and(|o| o.no_password) {
                    u.password = self.request_password(&r.password, &r.hashed_password)?.into();
                }
                Self::put_user(w, st, &r.name, u.clone());
                Self::commit_revision(st, w);
                self.tokens.invalidate_user(&r.name);
                tracing::info!(user_name = %r.name, user_roles = ?u.roles, "changed a password of a user");
                AuthResponse::UserChangePassword(Default::default())
            }
            Op::UserGrantRole(r) => {
                let mut u = st.users.get(&r.user).cloned().ok_or(AuthError::UserNotFound)?;
                if r.role != ROOT && !st.roles.contains_key(&r.role) {
                    return Err(AuthError::RoleNotFound);
                }
                if u.roles.contains(&r.role) {
                    tracing::warn!(user_name = %r.user, duplicate_role_name = %r.role, "ignored grant role request to a user");
                    return Ok(AuthResponse::UserGrantRole(Default::default()));
                }
                u.roles.push(r.role.clone());
                u.roles.sort();
                Self::put_user(w, st, &r.user, u.clone());
                Self::commit_revision(st, w);
                tracing::info!(user_name = %r.user, user_roles = ?u.roles, added_role_name = %r.role, "granted a role to a user");
                AuthResponse::UserGrantRole(Default::default())
            }
            Op::UserGet(r) => {
                let u = st.users.get(&r.name).ok_or(AuthError::UserNotFound)?;
                AuthResponse::UserGet(AuthUserGetResponse { header: None, roles: u.roles.clone() })
            }
            Op::UserRevokeRole(r) => {
                if st.enabled && r.name == ROOT && r.role == ROOT {
                    tracing::error!(user_name = %r.name, role_name = %r.role, "'root' user cannot revoke 'root' role");
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let mut u = st.users.get(&r.name).cloned().ok_or(AuthError::UserNotFound)?;
                let before = u.roles.len();
                u.roles.retain(|x| x != &r.role);
                if u.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
                Self::put_user(w, st, &r.name, u.clone());
                Self::commit_revision(st, w);
                tracing::info!(user_name = %r.name, new_user_roles = ?u.roles, revoked_role_name = %r.role, "revoked a role from a user");
                AuthResponse::UserRevokeRole(Default::default())
            }
            Op::UserList(_) => {
                AuthResponse::UserList(AuthUserListResponse { header: None, users: st.users.keys().cloned().collect() })
            }
            Op::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if st.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                Self::put_role(
                    w,
                    st,
                    &r.name,
                    Role { name: r.name.clone().into_bytes().into(), key_permission: vec![] },
                );
                Self::commit_revision(st, w);
                tracing::info!(role_name = %r.name, "created a role");
                AuthResponse::RoleAdd(Default::default())
            }
            Op::RoleGrantPermission(r) => {
                let p = r.perm.ok_or(AuthError::PermissionNotGiven)?;
                if !perm::valid_range(&p.key, &p.range_end) {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let mut role = st.roles.get(&r.name).cloned().ok_or(AuthError::RoleNotFound)?;
                match role.key_permission.iter_mut().find(|x| x.key == p.key && x.range_end == p.range_end) {
                    Some(existing) => existing.perm_type = p.perm_type,
                    None => {
                        role.key_permission.push(Permission {
                            perm_type: p.perm_type,
                            key: p.key.clone(),
                            range_end: p.range_end.clone(),
                        });
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                Self::put_role(w, st, &r.name, role);
                Self::commit_revision(st, w);
                let kind = Type::try_from(p.perm_type).map_or("UNKNOWN", |t| t.as_str_name());
                tracing::info!(user_name = %r.name, permission_name = kind, "granted/updated a permission to a user");
                AuthResponse::RoleGrantPermission(Default::default())
            }
            Op::RoleGet(r) => {
                let role = st.roles.get(&r.role).ok_or(AuthError::RoleNotFound)?;
                AuthResponse::RoleGet(AuthRoleGetResponse { header: None, perm: role.key_permission.clone() })
            }
            Op::RoleRevokePermission(r) => {
                let mut role = st.roles.get(&r.role).cloned().ok_or(AuthError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission.retain(|p| !(p.key == r.key && p.range_end == r.range_end));
                if role.key_permission.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                Self::put_role(w, st, &r.role, role);
                Self::commit_revision(st, w);
                tracing::info!(role_name = %r.role, "revoked a permission on range");
                AuthResponse::RoleRevokePermission(Default::default())
            }
            Op::RoleDelete(r) => {
                if st.enabled && r.role == ROOT {
                    tracing::error!(role_name = %r.role, "cannot delete 'root' role");
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if st.roles.remove(&r.role).is_none() {
                    return Err(AuthError::RoleNotFound);
                }
                w.remove_meta(&format!("{ROLES}{}", r.role));
                let holders: Vec<(String, User)> = st
                    .users
                    .iter()
                    .filter(|(_, u)| u.roles.contains(&r.role))
                    .map(|(n, u)| (n.clone(), u.clone()))
                    .collect();
                for (name, mut u) in holders {
                    u.roles.retain(|x| x != &r.role);
                    Self::put_user(w, st, &name, u);
                }
                Self::commit_revision(st, w);
                tracing::info!(role_name = %r.role, "deleted a role");
                AuthResponse::RoleDelete(Default::default())
            }
            Op::RoleList(_) => {
                AuthResponse::RoleList(AuthRoleListResponse { header: None, roles: st.roles.keys().cloned().collect() })
            }
        })
    }
}

/// The stored form of a password: etcd keeps the bcrypt hash, proposed base64-encoded.
impl AuthStore {
    /// The hash a user add or password change stores: the one the proposer made (etcd 3.5), or,
    /// for a request that carries the password itself (etcd 3.4 proposes it so, and rustcd does
    /// while the cluster runs at 3.4), one made here, as etcd 3.4 makes it at apply.
    fn request_password(&self, password: &str, hashed_b64: &str) -> Result<Vec<u8>, AuthError> {
        if hashed_b64.is_empty() && !password.is_empty() {
            return bcrypt::hash(password, self.bcrypt_cost)
                .map(String::into_bytes)
                .map_err(|e| AuthError::Backend(e.to_string()));
        }
        stored_password(hashed_b64)
    }
}

fn stored_password(hashed_b64: &str) -> Result<Vec<u8>, AuthError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(hashed_b64).map_err(|_| AuthError::AuthFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustcd_api::etcdserverpb::InternalAuthenticateRequest;

    fn apply(a: &AuthStore, store: &KvStore, op: Op, who: Option<&AuthInfo>) -> Result<AuthResponse, AuthError> {
        let mut out = None;
        store
            .write(false, &|_| false, |w| {
                out = Some(a.apply(w, op, who, 7));
                Ok::<(), rustcd_mvcc::Error>(())
            })
            .expect("write");
        out.expect("applied")
    }

    fn user_add(a: &AuthStore, name: &str, password: &str) -> Op {
        Op::UserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: a.hash_password(password).expect("hash"),
            ..Default::default()
        })
    }

    #[test]
    fn etcds_rules_for_enabling_and_managing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        let a = AuthStore::open(&store, TokenOptions::default(), 4).expect("auth");
        assert_eq!(apply(&a, &store, Op::Enable(Default::default()), None), Err(AuthError::RootUserNotExist));
        apply(&a, &store, user_add(&a, "root", "pw"), None).expect("root");
        assert_eq!(apply(&a, &store, Op::Enable(Default::default()), None), Err(AuthError::RootRoleNotExist));
        let grant = |user: &str, role: &str| {
            Op::UserGrantRole(AuthUserGrantRoleRequest { user: user.into(), role: role.into() })
        };
        assert_eq!(apply(&a, &store, grant("root", "reader"), None), Err(AuthError::RoleNotFound));
        apply(&a, &store, grant("root", ROOT), None).expect("root role");
        apply(&a, &store, Op::Enable(Default::default()), None).expect("enable");
        assert!(a.is_enabled());
        // Now only root manages, and root cannot be deleted.
        assert_eq!(apply(&a, &store, user_add(&a, "u", "p"), None), Err(AuthError::UserEmpty));
        let rev = a.check_password("root", "pw").expect("password");
        assert_eq!(a.check_password("root", "nope"), Err(AuthError::AuthFailed));
        let root = AuthInfo { username: ROOT.into(), revision: rev };
        apply(&a, &store, user_add(&a, "u", "p"), Some(&root)).expect("user");
        let del_root = Op::UserDelete(AuthUserDeleteRequest { name: ROOT.into() });
        assert_eq!(apply(&a, &store, del_root, Some(&root)), Err(AuthError::InvalidAuthMgmt));
        // A token made at apply names its user; a change of auth makes older checks stale.
        let auth = Op::Authenticate(InternalAuthenticateRequest {
            name: "u".into(),
            password: String::new(),
            simple_token: "abcdefghijklmnop".into(),
        });
        let Ok(AuthResponse::Authenticate(t)) = apply(&a, &store, auth, None) else { panic!("authenticate") };
        assert_eq!(t.token, "abcdefghijklmnop.7");
        let u = a.info_from_token(&t.token).expect("valid").expect("enabled");
        assert_eq!(u.username, "u");
        assert_eq!(a.is_put_permitted(Some(&u), b"k"), Err(AuthError::PermissionDenied));
        let stale = AuthInfo { username: "u".into(), revision: u.revision - 1 };
        assert_eq!(a.is_put_permitted(Some(&stale), b"k"), Err(AuthError::AuthOldRevision));
        assert_eq!(a.is_put_permitted(None, b"k"), Err(AuthError::UserEmpty));
        // The state survives a reopen.
        let again = AuthStore::open(&store, TokenOptions::default(), 4).expect("reopen");
        assert!(again.is_enabled() && again.revision() == a.revision());
        assert_eq!(
            again.info_from_token(&t.token),
            Err(AuthError::InvalidAuthToken),
            "simple tokens die with the member"
        );
    }
}
