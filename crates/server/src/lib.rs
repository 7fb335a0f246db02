//! rustcd-server: etcd's server (`etcdserver`, `embed`, `etcdmain`): configuration, the
//! propose-and-wait path, the apply thread, linearizable reads, the gRPC services and the
//! HTTP endpoints, and start-up. It must not reach into the raft log or the backend files
//! directly: those belong to rustcd-raft and rustcd-mvcc. Read [`start`] first, then
//! [`server::EtcdServer`] and [`apply::Applier`].

pub mod api;
pub mod config;
pub mod embed;
pub mod error;
pub mod etcdserver;
pub mod proxy;
pub mod shutdown;

pub use embed::start::{GRPC_OVERHEAD_BYTES, Running, start, wait_for_signal};
