//! Plain HTTP endpoints served beside gRPC on the client port: `/health` and `/version`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::server::EtcdServer;

pub fn routes(s: Arc<EtcdServer>) -> Router {
    Router::new().route("/health", get(health)).route("/version", get(version)).with_state(s)
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
