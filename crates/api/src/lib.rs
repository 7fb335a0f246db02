//! rustcd-api: the etcd v3 wire types and gRPC service traits, generated from `proto/`.
//!
//! Owns nothing but generated code and a few constants every crate needs (the etcd API
//! version rustcd speaks). No logic lives here; behaviour belongs to the crates that use it.

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// etcd's `authpb` package.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// etcd's `etcdserverpb` package: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// etcd's `v3lockpb` package.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// etcd's `v3electionpb` package.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// etcd's raft messages as etcd's peers send them (etcd's `raftpb`, proto2); rustcd-peer
/// translates them to and from raft-rs's.
pub mod raftpb {
    tonic::include_proto!("raftpb");
}

/// etcd 3.5's membership requests through raft (`membershippb`).
pub mod membershippb {
    tonic::include_proto!("membershippb");
    include!(concat!(env!("OUT_DIR"), "/membershippb.serde.rs"));
}

/// rustcd's own records: stored leases and members, auth requests grouped, the peer service.
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
/// The API version of [`ETCD_VERSION`] (`3.5` for `3.5.13`), as etcd's tools print it.
pub fn etcd_api_version() -> String {
    ETCD_VERSION.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}
/// The etcd cluster version rustcd reports.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";
/// rustcd's own version.
pub const RUSTCD_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod json_tests {
    /// The JSON gateway's encoding is etcd's: the .proto's field names, int64 as strings, bytes
    /// as base64, defaults left out (checked against the real etcd's gateway output).
    #[test]
    fn messages_encode_as_etcds_gateway_does() {
        use crate::etcdserverpb::{RangeResponse, ResponseHeader};
        use crate::mvccpb::KeyValue;
        let r = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 14841639068965178418,
                member_id: 10276657743932975437,
                revision: 2,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec().into(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec().into(),
                lease: 0,
            }],
            count: 1,
            more: false,
        };
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(
            text,
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
        let back: RangeResponse = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
        let req: crate::etcdserverpb::PutRequest =
            serde_json::from_str(r#"{"key": "Zm9v", "value": "YmFy"}"#).expect("put");
        assert_eq!(req.key.as_ref(), b"foo");
    }
}
