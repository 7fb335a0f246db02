//! Errors. [`rpc`] is etcd's table of client-visible errors (gRPC code + exact text, as in
//! etcd's `rpctypes`); handlers return these and never build status strings inline.
//! [`ServerError`] is what stops the server, printed by the binary as one line.

/// Failures that stop the server (bad configuration, unusable data dir, bind failure).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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
}

/// etcd's client-visible errors.
pub mod rpc {
    use tonic::{Code, Status};

    macro_rules! errors {
        ($($name:ident => $code:ident, $msg:literal;)*) => {$(
            #[allow(non_snake_case)]
            pub fn $name() -> Status {
                Status::new(Code::$code, $msg)
            }
        )*};
    }

    errors! {
        empty_key => InvalidArgument, "etcdserver: key is not provided";
        key_not_found => InvalidArgument, "etcdserver: key not found";
        value_provided => InvalidArgument, "etcdserver: value is provided";
        lease_provided => InvalidArgument, "etcdserver: lease is provided";
        too_many_ops => InvalidArgument, "etcdserver: too many operations in txn request";
        duplicate_key => InvalidArgument, "etcdserver: duplicate key given in txn request";
        compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted";
        future_rev => OutOfRange, "etcdserver: mvcc: required revision is a future revision";
        no_space => ResourceExhausted, "etcdserver: mvcc: database space exceeded";
        lease_not_found => NotFound, "etcdserver: requested lease not found";
        request_too_large => InvalidArgument, "etcdserver: request is too large";
        no_leader => Unavailable, "etcdserver: no leader";
        timeout => Unavailable, "etcdserver: request timed out";
        stopped => Unavailable, "etcdserver: server stopped";
        member_not_found => NotFound, "etcdserver: member not found";
        not_capable => Unavailable, "etcdserver: not capable";
        leader_changed => Unavailable, "etcdserver: leader changed";
        lease_exist => FailedPrecondition, "etcdserver: lease already exists";
        lease_ttl_too_large => OutOfRange, "etcdserver: too large lease TTL";
        peer_url_exist => FailedPrecondition, "etcdserver: Peer URLs already exists";
        member_exist => FailedPrecondition, "etcdserver: member ID already exist";
        unhealthy => Unavailable, "etcdserver: unhealthy cluster";
        member_not_learner => FailedPrecondition, "etcdserver: can only promote a learner member";
        learner_not_ready => FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader";
        too_many_learners => FailedPrecondition, "etcdserver: too many learner members in cluster";
        not_leader => FailedPrecondition, "etcdserver: not leader";
        bad_leader_transferee => FailedPrecondition, "etcdserver: bad leader transferee";
        leader_transfer_timeout => Unavailable, "etcdserver: request timed out, leader transfer took too long";
    }

    /// Maps a store error to etcd's client error.
    pub fn from_mvcc(e: rustcd_mvcc::Error) -> Status {
        use rustcd_mvcc::Error as E;
        match e {
            E::Compacted => compacted(),
            E::FutureRev => future_rev(),
            E::KeyNotFound => key_not_found(),
            E::LeaseNotFound => lease_not_found(),
            other => {
                tracing::error!(error = %other, "backend failure");
                Status::new(Code::Internal, format!("etcdserver: {other}"))
            }
        }
    }
}
