//! rustcd-peer: the peer transport, etcd's peer protocol (`rafthttp`) on the peer URLs, so
//! that rustcd members talk to each other and to etcd's members alike.
//!
//! Layout: [`transport`] (read first) sends raft messages to every other member and steps
//! theirs into raft; [`rafthttp`] holds the protocol: the stream encodings, the endpoints a
//! member answers on its peer URLs (streams, pipeline, snapshots, the member list, HashKV,
//! probing, the version, the downgrade state) and the requests it makes; [`etcd_wire`] translates raft-rs's
//! messages to etcd's `raftpb` and back.
//!
//! Owns the peer protocol only. Must not touch raft state: it carries messages between the
//! raft cores of members (it implements `rustcd_raft::Transport`), and asks the member, through
//! the functions in [`rafthttp::server::PeerServices`], for the little it answers itself.

pub mod etcd_wire;
mod metrics;
pub mod rafthttp;
pub mod transport;

pub use rafthttp::Local;
pub use rafthttp::server::{DowngradeFn, HashKvFn, MembersFn, PeerServices, RemovedFn, VersionFn};
pub use transport::PeerTransport;
