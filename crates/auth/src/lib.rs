//! rustcd-auth: etcd's authentication and role-based access control (its `auth` package).
//!
//! Owns the users, roles and permissions, the auth-enabled flag and the auth revision (kept in
//! the backend's meta table and mirrored in memory), the checks of a request's permissions, the
//! password hashes (bcrypt, as etcd stores them) and the tokens a member hands out (simple
//! tokens, held in memory, and JWTs). Every change arrives through raft: [`AuthStore::apply`]
//! runs inside the apply thread's backend transaction, so every member holds the same state.
//!
//! It must not touch raft, the network or gRPC: the server asks it questions and turns its
//! [`AuthError`]s into etcd's gRPC errors.

mod jwt;
mod perm;
mod store;
mod token;

pub use jwt::JwtOptions;
pub use store::{AuthResponse, AuthStore};
pub use token::{TokenOptions, parse_token_options};

/// Who sent a request, as a token or a client certificate names them: the user and the auth
/// revision the name was checked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// etcd's auth errors, with etcd's texts (the server gives each etcd's gRPC code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// A setting or key file that cannot be used (`--auth-token`), said at start-up.
    #[error("auth: invalid auth options: {0}")]
    InvalidOptions(String),
    /// The backend failed under a change.
    #[error("etcdserver: {0}")]
    Backend(String),
}

/// The root user and role: the only ones that may manage auth, and always allowed everything.
pub const ROOT: &str = "root";
