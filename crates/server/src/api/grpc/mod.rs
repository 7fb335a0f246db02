//! gRPC services, one file each: every etcd v3 service is registered (KV, Watch, Lease,
//! Cluster, Maintenance, Auth, Lock, Election); RPCs not built yet answer `Unimplemented`.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod entry;
pub mod kv;
pub mod kv_range;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod size_limit;
pub mod unary;
pub mod watch;
