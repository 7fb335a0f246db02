//! rustcd-raft: the replicated log (etcd's `raft.go` loop and WAL).
//!
//! Owns the raft-rs `RawNode` and the handling of its `Ready` ([`core::RaftCore`], driven
//! through the small traits of [`io`]: log storage, transport, apply), the thread that runs it
//! with real time ([`node::RaftNode`]) and the raft log on disk ([`log_store::LogStore`],
//! raft-engine). It knows nothing of keys, values, gRPC or the network: it orders opaque
//! proposals and hands committed entries, in order, to whoever applies them. The peer
//! transport over gRPC is `rustcd-peer`'s.

pub mod core;
pub mod error;
pub mod io;
pub mod log_store;
pub mod node;
mod slog_bridge;
mod tail;
pub mod types;

pub use core::{RaftCore, refuse};
pub use error::{Error, Result};
pub use io::{ApplySink, LogStorage, Transport};
pub use log_store::bootstrap_log;
pub use node::{RaftNode, RaftSender};
pub use raft::ReadState;
pub use raft::eraftpb;
pub use types::{Input, NodeConfig, NodeStatus, Output, UPDATE_NODE_CONTEXT};
