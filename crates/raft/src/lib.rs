//! rustcd-raft: the replicated log (etcd's `raft.go` loop and WAL).
//!
//! Owns the raft-rs `RawNode` (on its own thread, see [`node::RaftNode`]) and the raft log on
//! disk ([`log_store::LogStore`], raft-engine) and the peer transport ([`transport`]). It knows nothing of keys, values or gRPC: it
//! orders opaque proposals and hands committed entries, in order, to whoever applies them.

pub mod error;
pub mod log_store;
pub mod node;
mod slog_bridge;
mod tail;
pub mod transport;

pub use error::{Error, Result};
pub use node::{Input, NodeConfig, NodeStatus, Output, RaftNode};
pub use raft::ReadState;
pub use raft::eraftpb;
pub use transport::{MembersFn, PeerService, PeerTransport};
