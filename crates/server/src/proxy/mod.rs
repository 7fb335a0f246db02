//! The proxies the `etcd` binary also runs, etcd's `proxy`: the L4 [`gateway`] (`etcd gateway
//! start`) and the v2 [`v2proxy`]. They reach members over the network only: nothing here may
//! touch [`crate::etcdserver`]. (`etcd grpc-proxy start` is rustcd-grpcproxy's.)

pub mod gateway;
pub mod v2proxy;
