//! etcd grpc-proxy start: the L7 proxy in front of a cluster.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod grpc_proxy;
