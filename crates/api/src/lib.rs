//! rustcd-api: the etcd v3 wire types and gRPC service traits, generated from `proto/`.
//!
//! Owns nothing but generated code and a few constants every crate needs (the etcd API
//! version rustcd speaks). No logic lives here; behaviour belongs to the crates that use it.

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `authpb` package.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's `etcdserverpb` package: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's `v3lockpb` package.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// etcd's `v3electionpb` package.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// rustcd's own records: raft proposals and stored leases and members.
pub mod rustcdpb {
    tonic::include_proto!("rustcdpb");
}

/// OpenTelemetry's OTLP trace export (`--experimental-enable-distributed-tracing`).
pub mod otlp {
    tonic::include_proto!("opentelemetry.proto.collector.trace.v1");
}

/// The etcd server version rustcd reports to clients (`Status`, `/version`, `etcd --version`).
/// Clients gate features on it: Kubernetes reads consistently from its watch cache only from
/// 3.5.13 on. docs/compatibility.md says which of 3.5.13's changes rustcd is checked against.
pub const ETCD_VERSION: &str = "3.5.13";
/// The etcd cluster version rustcd reports.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";
/// rustcd's own version.
pub const RUSTCD_VERSION: &str = env!("CARGO_PKG_VERSION");
