//! etcd's peer protocol (its `rafthttp`), so that rustcd and etcd members talk to each other:
//! the stream encodings ([`codec`]).

pub mod codec;
