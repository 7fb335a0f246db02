//! gRPC services, one file each. Services not built yet (Lease, Auth, Lock, Election) are not
//! registered: the router answers their calls with `Unimplemented`.

pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod size_limit;
pub mod watch;
