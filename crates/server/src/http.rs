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

/// A request that came over TLS (put on each request of a TLS connection by the listener).
#[derive(Clone, Copy, Debug)]
pub struct Secure;

/// `--cors` and `--host-whitelist` (`*` allows every origin / host).
#[derive(Clone, Debug)]
pub struct Access {
    pub cors: Vec<String>,
    pub hosts: Vec<String>,
}

impl Access {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.cors.is_empty() || self.cors.iter().any(|o| o == "*" || o == origin)
    }
    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h == "*" || h == host)
    }
}

/// The client port's HTTP endpoints behind etcd's access controller.
pub fn client_routes(s: Arc<EtcdServer>, access: Access) -> Router {
    routes(s).layer(axum::middleware::from_fn_with_state(Arc::new(access), access_control))
}

/// etcd's `accessController`: over plain HTTP a request must name an allowed host (its defence
/// against DNS rebinding, CVE-2018-5702, answered 421); allowed origins get CORS headers; an
/// OPTIONS request is answered at once.
async fn access_control(
    State(a): State<Arc<Access>>,
    req: axum::http::Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.extensions().get::<Secure>().is_none() {
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = hostname(&host);
        if !a.host_allowed(&host) {
            tracing::warn!(host = %host, "rejecting HTTP request to prevent DNS rebinding attacks");
            let body = format!(
                "\netcd received your request, but the Host header was unrecognized.\n\nTo fix this, choose one of the following options:\n- Enable TLS, then any HTTPS request will be allowed.\n- Add the hostname you want to use to the whitelist in settings.\n  - e.g. etcd --host-whitelist {host:?}\n\nThis requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n\n"
            );
            return (StatusCode::MISDIRECTED_REQUEST, body).into_response();
        }
    }
    let origin = if a.origin_allowed("*") {
        Some("*".to_string())
    } else {
        req.headers().get("origin").and_then(|o| o.to_str().ok()).filter(|o| a.origin_allowed(o)).map(str::to_string)
    };
    let preflight = req.method() == axum::http::Method::OPTIONS;
    let mut resp = if preflight { StatusCode::OK.into_response() } else { next.run(req).await };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        let value = |v: &str| axum::http::HeaderValue::from_str(v).unwrap_or(axum::http::HeaderValue::from_static("*"));
        h.append("access-control-allow-methods", value("POST, GET, OPTIONS, PUT, DELETE"));
        h.append("access-control-allow-origin", value(&origin));
        h.append("access-control-allow-headers", value("accept, content-type, authorization"));
    }
    resp
}

/// Go's `GetHostname`: the host of `host:port` (brackets of an IPv6 address dropped), or the
/// whole value when it has no port.
fn hostname(hostport: &str) -> String {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match hostport.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => hostport.to_string(),
    }
}

pub fn routes(s: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(s)
}

/// etcd's `/health`: healthy when a leader exists and a linearizable read completes.
async fn health(State(s): State<Arc<EtcdServer>>, uri: axum::http::Uri) -> (StatusCode, String) {
    // etcd's /health: an active alarm not named in `?exclude=` makes the member unhealthy.
    let query = uri.query().unwrap_or("");
    let excluded: Vec<&str> = query.split('&').filter_map(|kv| kv.strip_prefix("exclude=")).collect();
    let serializable = query.split('&').any(|kv| kv == "serializable=true");
    let alarm = s
        .alarms()
        .get(rustcd_api::etcdserverpb::AlarmType::None)
        .into_iter()
        .filter_map(|a| rustcd_api::etcdserverpb::AlarmType::try_from(a.alarm).ok())
        .find(|t| !excluded.contains(&t.as_str_name()));
    let reason = if let Some(t) = alarm {
        tracing::warn!(alarm = t.as_str_name(), "serving /health false; Alarm is activated");
        Some(match t {
            rustcd_api::etcdserverpb::AlarmType::Nospace => "ALARM NOSPACE",
            rustcd_api::etcdserverpb::AlarmType::Corrupt => "ALARM CORRUPT",
            _ => "ALARM UNKNOWN",
        })
    } else if s.leader() == 0 {
        Some("RAFT NO LEADER")
    } else if serializable {
        None
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

#[cfg(test)]
mod access_tests {
    use super::*;

    #[test]
    fn hosts_as_go_reads_them() {
        assert_eq!(hostname("example.com:2379"), "example.com");
        assert_eq!(hostname("example.com"), "example.com");
        assert_eq!(hostname("[::1]:2379"), "::1");
        assert_eq!(hostname("127.0.0.1:2379"), "127.0.0.1");
        let a = Access { cors: vec!["https://app".into()], hosts: vec!["localhost".into()] };
        assert!(a.host_allowed("localhost") && !a.host_allowed("evil.example"));
        assert!(a.origin_allowed("https://app") && !a.origin_allowed("https://evil"));
    }
}
