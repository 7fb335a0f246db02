//! Plain HTTP endpoints served beside gRPC on the client port: the health probes (`probes.rs`),
//! `/version`, `/metrics` (`metrics.rs`), the JSON gateway and the dashboard, behind etcd's
//! access controller; any other path is etcd's 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::etcdserver::server::EtcdServer;

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
    let mut extra = Router::new();
    if s.config().raw.enable_grpc_gateway {
        extra = crate::api::json_gateway::routes(extra);
    }
    if s.config().raw.enable_dashboard {
        extra = crate::api::dashboard::routes(extra);
    }
    let gateway = extra.with_state(s.clone());
    // The access controller wraps the routes as a whole: its rewrite of `/v3beta/` paths comes
    // before routing.
    Router::new()
        .fallback_service(gateway.merge(routes(s)))
        .layer(axum::middleware::from_fn_with_state(Arc::new(access), access_control))
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
    let mut req = req;
    // etcd 3.4's gateway prefix, still redirected by etcd 3.5 "for backward compatibilities".
    if let Some(rest) = req.uri().path().strip_prefix("/v3beta/") {
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        if let Ok(uri) = format!("/v3/{rest}{query}").parse() {
            *req.uri_mut() = uri;
        }
    }
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
    crate::api::probes::routes(Router::new())
        .route("/version", get(version))
        .route("/metrics", get(crate::api::metrics::scrape))
        .fallback(crate::api::probes::not_found)
        .with_state(s)
}

/// etcd's `/version`: this member's version and the cluster's (`not_decided` until set).
async fn version(State(s): State<Arc<EtcdServer>>) -> String {
    let cluster = s.membership().cluster_version().unwrap_or_else(|| "not_decided".into());
    json!({"etcdserver": rustcd_api::ETCD_VERSION, "etcdcluster": cluster}).to_string()
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
