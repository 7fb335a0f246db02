//! Errors. [`ServerError`] is etcd's table of client-visible errors (its `rpctypes`): every
//! server method fails with one, and this module alone turns one into a gRPC `Status` with
//! etcd's code and exact text. [`StartError`] is what stops the server at start-up, printed
//! by the binary as one line.

use tonic::{Code, Status};

/// Failures that stop the server (bad configuration, unusable data dir, bind failure).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("data dir: {0}")]
    DataDir(String),
    #[error("backend: {0}")]
    Backend(#[from] rustcd_mvcc::Error),
    #[error("raft: {0}")]
    Raft(#[from] rustcd_raft::Error),
    #[error("listen on {0}: {1}")]
    Listen(String, std::io::Error),
    /// The discovered cluster is full and `--discovery-fallback=proxy`: the binary runs the
    /// HTTP proxy instead, as etcd does.
    #[error("discovery: cluster is full")]
    FallBackToProxy,
}

macro_rules! errors {
    ($($name:ident => $code:ident, $msg:literal;)*) => {
        /// etcd's client-visible errors, each with etcd's text (its gRPC code is in [`code`]).
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        pub enum ServerError {
            $(#[error($msg)] $name,)*
            /// A peer URL that does not parse (`MemberAdd`, `MemberUpdate`).
            #[error("etcdserver: invalid peer URL {0}")]
            InvalidPeerUrl(String),
            /// A failure of the backend or of the server itself, with its reason.
            #[error("etcdserver: {0}")]
            Internal(String),
            /// The leader's error for a request this member forwarded to it, passed on as it
            /// came: its gRPC code and text.
            #[error("{1}")]
            Forwarded(i32, String),
        }

        /// The gRPC code etcd answers `e` with.
        pub fn code(e: &ServerError) -> Code {
            match e {
                $(ServerError::$name => Code::$code,)*
                ServerError::InvalidPeerUrl(_) => Code::InvalidArgument,
                ServerError::Internal(_) => Code::Internal,
                ServerError::Forwarded(c, _) => Code::from_i32(*c),
            }
        }
    };
}

errors! {
        EmptyKey => InvalidArgument, "etcdserver: key is not provided";
        KeyNotFound => InvalidArgument, "etcdserver: key not found";
        ValueProvided => InvalidArgument, "etcdserver: value is provided";
        LeaseProvided => InvalidArgument, "etcdserver: lease is provided";
        TooManyOps => InvalidArgument, "etcdserver: too many operations in txn request";
        DuplicateKey => InvalidArgument, "etcdserver: duplicate key given in txn request";
        Compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted";
        FutureRev => OutOfRange, "etcdserver: mvcc: required revision is a future revision";
        NoSpace => ResourceExhausted, "etcdserver: mvcc: database space exceeded";
        Corrupt => DataLoss, "etcdserver: corrupt cluster";
        LeaseNotFound => NotFound, "etcdserver: requested lease not found";
        RequestTooLarge => InvalidArgument, "etcdserver: request is too large";
        NoLeader => Unavailable, "etcdserver: no leader";
        Timeout => Unavailable, "etcdserver: request timed out";
        Stopped => Unavailable, "etcdserver: server stopped";
        MemberNotFound => NotFound, "etcdserver: member not found";
        NotCapable => Unavailable, "etcdserver: not capable";
        LeaderChanged => Unavailable, "etcdserver: leader changed";
        LeaseExist => FailedPrecondition, "etcdserver: lease already exists";
        LeaseTtlTooLarge => OutOfRange, "etcdserver: too large lease TTL";
        PeerUrlExist => FailedPrecondition, "etcdserver: Peer URLs already exists";
        MemberExist => FailedPrecondition, "etcdserver: member ID already exist";
        Unhealthy => Unavailable, "etcdserver: unhealthy cluster";
        NotEnoughStartedMembers => FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members";
        MemberNotLearner => FailedPrecondition, "etcdserver: can only promote a learner member";
        LearnerNotReady => FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader";
        TooManyLearners => FailedPrecondition, "etcdserver: too many learner members in cluster";
        NotLeader => FailedPrecondition, "etcdserver: not leader";
        BadLeaderTransferee => FailedPrecondition, "etcdserver: bad leader transferee";
        LeaderTransferTimeout => Unavailable, "etcdserver: request timed out, leader transfer took too long";
        ElectionNotLeader => Unknown, "election: not leader";
        ElectionMissingLeaderKey => Unknown, "\"leader\" field must be provided";
        ElectionNoLeader => Unknown, "election: no leader";
        SessionExpired => Unknown, "concurrency: session expired";
        UnexpectedApply => Internal, "etcdserver: unexpected apply result";
        EmptyRequestOp => InvalidArgument, "etcdserver: request op is empty";
        AuthNotEnabled => FailedPrecondition, "etcdserver: authentication is not enabled";
        RootUserNotExist => FailedPrecondition, "etcdserver: root user does not exist";
        RootRoleNotExist => FailedPrecondition, "etcdserver: root user does not have root role";
        UserAlreadyExist => FailedPrecondition, "etcdserver: user name already exists";
        UserEmpty => InvalidArgument, "etcdserver: user name is empty";
        UserNotFound => FailedPrecondition, "etcdserver: user name not found";
        RoleAlreadyExist => FailedPrecondition, "etcdserver: role name already exists";
        RoleNotFound => FailedPrecondition, "etcdserver: role name not found";
        RoleEmpty => InvalidArgument, "etcdserver: role name is empty";
        AuthFailed => InvalidArgument, "etcdserver: authentication failed, invalid user ID or password";
        PermissionNotGiven => InvalidArgument, "etcdserver: permission not given";
        PermissionDenied => PermissionDenied, "etcdserver: permission denied";
        RoleNotGranted => FailedPrecondition, "etcdserver: role is not granted to the user";
        PermissionNotGranted => FailedPrecondition, "etcdserver: permission is not granted to the role";
        InvalidAuthToken => Unauthenticated, "etcdserver: invalid auth token";
        DowngradeNotImplemented => Unimplemented, "downgrade is not implemented yet";
        InvalidAuthMgmt => InvalidArgument, "etcdserver: invalid auth management";
        AuthOldRevision => InvalidArgument, "etcdserver: revision of auth store is old";
}

/// An auth error as etcd's client error.
impl From<rustcd_auth::AuthError> for ServerError {
    fn from(e: rustcd_auth::AuthError) -> ServerError {
        use rustcd_auth::AuthError as E;
        match e {
            E::RootUserNotExist => ServerError::RootUserNotExist,
            E::RootRoleNotExist => ServerError::RootRoleNotExist,
            E::UserAlreadyExist => ServerError::UserAlreadyExist,
            E::UserEmpty => ServerError::UserEmpty,
            E::UserNotFound => ServerError::UserNotFound,
            E::RoleAlreadyExist => ServerError::RoleAlreadyExist,
            E::RoleNotFound => ServerError::RoleNotFound,
            E::RoleEmpty => ServerError::RoleEmpty,
            E::AuthFailed => ServerError::AuthFailed,
            E::PermissionNotGiven => ServerError::PermissionNotGiven,
            E::PermissionDenied => ServerError::PermissionDenied,
            E::RoleNotGranted => ServerError::RoleNotGranted,
            E::PermissionNotGranted => ServerError::PermissionNotGranted,
            E::AuthNotEnabled => ServerError::AuthNotEnabled,
            E::InvalidAuthToken => ServerError::InvalidAuthToken,
            E::InvalidAuthMgmt => ServerError::InvalidAuthMgmt,
            E::AuthOldRevision => ServerError::AuthOldRevision,
            E::InvalidOptions(m) | E::Backend(m) => ServerError::Internal(m),
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(code(&e), e.to_string())
    }
}

/// The leader's answer to a forwarded request, unchanged.
impl From<Status> for ServerError {
    fn from(s: Status) -> ServerError {
        ServerError::Forwarded(s.code() as i32, s.message().to_string())
    }
}

/// A store error as etcd's client error.
impl From<rustcd_mvcc::Error> for ServerError {
    fn from(e: rustcd_mvcc::Error) -> ServerError {
        use rustcd_mvcc::Error as E;
        match e {
            E::Compacted => ServerError::Compacted,
            E::FutureRev => ServerError::FutureRev,
            E::KeyNotFound => ServerError::KeyNotFound,
            E::LeaseNotFound => ServerError::LeaseNotFound,
            other => {
                tracing::error!(error = %other, "backend failure");
                ServerError::Internal(other.to_string())
            }
        }
    }
}

/// A lessor error as etcd's client error.
impl From<rustcd_lease::LeaseError> for ServerError {
    fn from(e: rustcd_lease::LeaseError) -> ServerError {
        use rustcd_lease::LeaseError as E;
        match e {
            E::NotFound => ServerError::LeaseNotFound,
            E::Exists => ServerError::LeaseExist,
            E::TtlTooLarge => ServerError::LeaseTtlTooLarge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_etcds_code_and_text() {
        let s = Status::from(ServerError::EmptyKey);
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        let s = Status::from(ServerError::from(rustcd_mvcc::Error::Compacted));
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
        );
        let s = Status::from(ServerError::SessionExpired);
        assert_eq!((s.code(), s.message()), (Code::Unknown, "concurrency: session expired"));
    }
}
