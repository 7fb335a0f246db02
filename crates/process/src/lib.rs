//! rustcd-process: what every rustcd binary (`etcd`, `etcdctl`, `etcdutl`) sets up in its
//! process before it does its work: logging as etcd logs, zap's JSON lines on stderr or files
//! with lumberjack's rotation ([`logging`], [`log_rotate`]), and the failpoints `FAILPOINTS`
//! names in test builds ([`failpoints`]).
//!
//! It knows no flag, request or store: callers pass the settings in.

pub mod failpoints;
pub mod log_rotate;
pub mod logging;
