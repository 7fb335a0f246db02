//! The server core, etcd's `etcdserver`: propose-and-wait ([`server::EtcdServer`]), the apply
//! thread and its stack ([`apply`], with the [`auth`], [`alarm`] and [`quota`] gates), the
//! membership, leases, the compactor, the corruption checks, and the typed v3 API ([`v3`]) that
//! every front end calls.
//!
//! It owns the state a member agrees on through raft. It must not know how requests arrive
//! (gRPC, HTTP and the listeners are [`crate::api`]'s and [`crate::embed`]'s) and imports from
//! neither; it looks down to [`crate::config`] and [`crate::error`] only.

pub mod alarm;
pub mod apply;
pub mod auth;
pub mod compactor;
pub mod concurrency;
pub mod corrupt;
pub mod lease;
pub mod membership;
pub mod quota;
pub mod request;
pub mod server;
pub mod v3;
pub mod validate;
pub mod version;
pub mod wait;
