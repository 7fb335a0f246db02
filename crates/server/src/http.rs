//! Plain HTTP endpoints served beside gRPC on the client port: `/health`, `/version` and
//! `/metrics` (a few of etcd's Prometheus metrics, enough for `etcdctl check datascale`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::server::EtcdServer;

pub fn routes(s: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(s)
}

/// etcd's `/health`: healthy when a leader exists and a linearizable read completes.
async fn health(State(s): State<Arc<EtcdServer>>) -> (StatusCode, String) {
    let reason = if s.leader() == 0 {
        Some("RAFT NO LEADER")
    } else {
        match tokio::time::timeout(Duration::from_secs(1), s.linearizable_barrier()).await {
            Ok(Ok(())) => None,
            _ => Some("QGET ERROR"),
        }
    };
    match reason {
        None => (StatusCode::OK, json!({"health": "true", "reason": ""}).to_string()),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, json!({"health": "false", "reason": r}).to_string()),
    }
}

async fn version() -> String {
    json!({"etcdserver": rustcd_api::ETCD_VERSION, "etcdcluster": rustcd_api::ETCD_CLUSTER_VERSION}).to_string()
}

/// Resident set size of this process in bytes, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Prometheus text of the metrics rustcd keeps so far, under etcd's names.
async fn metrics(State(s): State<Arc<EtcdServer>>) -> String {
    let (db_size, db_in_use) = s.store().db_size();
    let leader = s.leader();
    let me = s.member_id();
    let gauges = [
        (
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size as f64,
        ),
        (
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            db_in_use as f64,
        ),
        (
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            f64::from(u8::from(leader != 0)),
        ),
        (
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            f64::from(u8::from(leader == me)),
        ),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", resident_bytes() as f64),
    ];
    gauges.iter().map(|(name, help, v)| format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n")).collect()
}
