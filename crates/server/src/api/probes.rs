//! etcd 3.5's health endpoints: `/health` (JSON, with `?exclude=` and `?serializable=true`),
//! `/livez` and `/readyz` (plain text checks, each also at its own sub-path, `?verbose` and
//! `?exclude=`), and Go's `404 page not found` for every other path, so that a probe pointed at a
//! path etcd does not serve fails as it would against etcd.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustcd_api::etcdserverpb::{AlarmType, RangeRequest};
use serde_json::json;

use crate::etcdserver::server::EtcdServer;

/// How long a read check waits for the cluster (a linearizable read needs a leader's answer).
const READ_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// etcd's checks, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }

    async fn run(self, s: &EtcdServer) -> Result<(), String> {
        match self {
            Check::DataCorruption => match active_alarms(s).contains(&AlarmType::Corrupt) {
                true => Err("alarm activated: CORRUPT".into()),
                false => Ok(()),
            },
            Check::SerializableRead => {
                let req =
                    RangeRequest { key: b"health".to_vec().into(), keys_only: true, limit: 1, ..Default::default() };
                s.store().range(&req).map(|_| ()).map_err(|e| e.to_string())
            }
            Check::LinearizableRead => match tokio::time::timeout(READ_CHECK_TIMEOUT, s.linearizable_barrier()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("etcdserver: request timed out".into()),
            },
        }
    }
}

const LIVEZ: &[Check] = &[Check::SerializableRead];
const READYZ: &[Check] = &[Check::DataCorruption, Check::SerializableRead, Check::LinearizableRead];

/// The probe routes.
pub fn routes(r: axum::Router<Arc<EtcdServer>>) -> axum::Router<Arc<EtcdServer>> {
    let mut r = r
        .route("/health", axum::routing::any(health))
        .route("/livez", axum::routing::any(|s, req| checks(s, req, LIVEZ)))
        .route("/readyz", axum::routing::any(|s, req| checks(s, req, READYZ)));
    for (root, list) in [("/livez", LIVEZ), ("/readyz", READYZ)] {
        for c in list {
            let one = std::slice::from_ref(c);
            r = r.route(&format!("{root}/{}", c.name()), axum::routing::any(move |s, req| checks(s, req, one)));
        }
    }
    r
}

/// Go's `http.NotFound`.
pub async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n".into())
}

/// Go's `http.Error`-style plain text answer.
fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn method_not_allowed() -> Response {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n".into());
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

/// The values of query parameter `key`.
fn query_values<'a>(req: &'a Request<Body>, key: &str) -> Vec<&'a str> {
    let q = req.uri().query().unwrap_or("");
    q.split('&').filter_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v)).collect()
}

fn has_query(req: &Request<Body>, key: &str) -> bool {
    req.uri().query().unwrap_or("").split('&').any(|kv| kv.split('=').next() == Some(key))
}

fn active_alarms(s: &EtcdServer) -> Vec<AlarmType> {
    s.alarms().get(AlarmType::None).into_iter().filter_map(|a| AlarmType::try_from(a.alarm).ok()).collect()
}

/// `/livez`, `/readyz` and their sub-paths: each check's line, 503 with all of them when one
/// fails, `ok` otherwise (with the lines under `?verbose`).
async fn checks(State(s): State<Arc<EtcdServer>>, req: Request<Body>, list: &'static [Check]) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    let excluded = query_values(&req, "exclude");
    let unknown: Vec<&&str> = excluded.iter().filter(|e| !list.iter().any(|c| c.name() == **e)).collect();
    if !unknown.is_empty() {
        tracing::warn!(missing_health_checks = ?unknown, "some health checks cannot be excluded");
    }
    let mut failed = false;
    let mut lines = String::new();
    for c in list.iter().filter(|c| !excluded.contains(&c.name())) {
        match c.run(&s).await {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", c.name())),
            Err(e) => {
                failed = true;
                lines.push_str(&format!("[-]{} failed: {e}\n", c.name()));
            }
        }
    }
    if failed {
        tracing::error!(path = %req.uri().path(), reason = %lines, status_code = 503, "Health check error");
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{lines}\n"));
    }
    let verbose = if has_query(&req, "verbose") { lines } else { String::new() };
    text(StatusCode::OK, format!("{verbose}ok\n"))
}

/// etcd's `/health`: healthy when no alarm (but those in `?exclude=`) is active, a leader exists
/// and a linearizable read completes (a serializable one under `?serializable=true`).
async fn health(State(s): State<Arc<EtcdServer>>, req: Request<Body>) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    let excluded = query_values(&req, "exclude");
    let serializable = query_values(&req, "serializable").contains(&"true");
    let alarm = active_alarms(&s).into_iter().find(|t| !excluded.contains(&t.as_str_name()));
    let reason = if let Some(t) = alarm {
        tracing::warn!(alarm = t.as_str_name(), "serving /health false; Alarm is activated");
        Some(match t {
            AlarmType::Nospace => "ALARM NOSPACE",
            AlarmType::Corrupt => "ALARM CORRUPT",
            _ => "ALARM UNKNOWN",
        })
    } else if s.leader() == 0 {
        Some("RAFT NO LEADER")
    } else if serializable {
        None
    } else {
        match Check::LinearizableRead.run(&s).await {
            Ok(()) => None,
            Err(_) => Some("QGET ERROR"),
        }
    };
    let m = &rustcd_metrics::get().server;
    if reason.is_none() {
        m.health_success.inc()
    } else {
        m.health_failures.inc()
    }
    let (status, body) = match reason {
        None => (StatusCode::OK, json!({"health": "true", "reason": ""})),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, json!({"health": "false", "reason": r})),
    };
    (status, body.to_string()).into_response()
}
