//! etcd's HTTP proxy (`--proxy=on|readonly`, and `--discovery-fallback=proxy` when the
//! discovered cluster is full): a process that is not a member forwards the HTTP requests it
//! gets on its client URLs (`/version`, `/health`, `/metrics`, the JSON gateway...) to the
//! cluster's members, trying each in turn and holding a failed one out for
//! `--proxy-failure-wait`. `readonly` answers anything but GET with 501, as etcd does. The
//! cluster's peer URLs come from `--initial-cluster` (or the discovery URL) on first start and
//! are kept in `<data-dir>/proxy/cluster`; the members' client URLs are asked of the peers and
//! refreshed every `--proxy-refresh-interval`. Like etcd's, this proxy speaks HTTP/1 only: gRPC
//! clients want `etcd grpc-proxy start` or `etcd gateway start`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::config::Config;

/// The proxy's state: the cluster's peer URLs and the client URLs it forwards to.
struct Proxy {
    readonly: bool,
    peers: Mutex<Vec<String>>,
    endpoints: Mutex<Vec<Endpoint>>,
    failure_wait: Duration,
    dial_timeout: Duration,
    /// How long a forwarded request may take (`--proxy-read-timeout`; 0: no limit).
    read_timeout: Option<Duration>,
    tls: Option<Arc<rustcd_tls::ClientConfig>>,
    cluster_file: PathBuf,
}

struct Endpoint {
    url: String,
    failed_until: Option<Instant>,
}

/// The cluster file etcd writes: `{"PeerURLs":[...]}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClusterFile {
    #[serde(rename = "PeerURLs")]
    peer_urls: Vec<String>,
}

/// Runs the proxy until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), String> {
    let cluster_file = cfg.data_dir.join("proxy").join("cluster");
    let peers = peer_urls(&cfg, &cluster_file).await?;
    let listen: Vec<String> = cfg.listen_client_urls.iter().map(|u| u.to_string()).collect();
    let peer_listen: Vec<String> = Vec::new();
    let tls = crate::config::tls::member_tls(&cfg.raw.tls, &cfg.data_dir, &listen, &peer_listen)
        .map_err(|e| e.to_string())?;
    let proxy = Arc::new(Proxy {
        readonly: cfg.raw.proxy == "readonly",
        peers: Mutex::new(peers),
        endpoints: Mutex::new(Vec::new()),
        failure_wait: cfg.raw.proxy_failure_wait,
        dial_timeout: cfg.raw.proxy_dial_timeout,
        read_timeout: Some(cfg.raw.proxy_read_timeout).filter(|d| !d.is_zero()),
        tls: tls.peer_dial.clone(),
        cluster_file,
    });
    proxy.refresh().await;
    tokio::spawn(refresh_loop(Arc::downgrade(&proxy), cfg.raw.proxy_refresh_interval));
    let router = axum::Router::new().fallback(forward).with_state(proxy);
    let mut opts = crate::embed::listen::ServeOpts::from_settings(&cfg.raw);
    opts.tls = tls.client_server.clone();
    crate::embed::listen::serve_on(&cfg.listen_client_urls, router, "proxy listening for client requests", &opts)
        .await
        .map_err(|e| e.to_string())?;
    crate::wait_for_signal().await;
    Ok(())
}

/// The peer URLs: the cluster file's when there is one, else the discovery URL's cluster or
/// `--initial-cluster`'s (then written to the file).
async fn peer_urls(cfg: &Config, file: &Path) -> Result<Vec<String>, String> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let c: ClusterFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        tracing::info!(path = %file.display(), peer_urls = ?c.peer_urls, "proxy using peer URLS from cluster file");
        return Ok(c.peer_urls);
    }
    let members = if cfg.raw.discovery.is_empty() {
        cfg.initial_cluster.clone()
    } else {
        let c = crate::embed::discovery_v2::get_cluster(&cfg.raw.discovery, &cfg.raw.discovery_proxy)
            .await
            .map_err(|e| e.to_string())?;
        crate::config::parse_initial_cluster(&c).map_err(|e| e.to_string())?
    };
    let urls: Vec<String> = members.into_iter().flat_map(|m| m.peer_urls).collect();
    save(file, &urls)?;
    Ok(urls)
}

fn save(file: &Path, urls: &[String]) -> Result<(), String> {
    let text = serde_json::to_string(&ClusterFile { peer_urls: urls.to_vec() }).map_err(|e| e.to_string())?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("{}: {e}", file.display()))
}

async fn refresh_loop(proxy: std::sync::Weak<Proxy>, every: Duration) {
    loop {
        tokio::time::sleep(every.max(Duration::from_millis(100))).await;
        let Some(p) = proxy.upgrade() else { return };
        p.refresh().await;
    }
}

impl Proxy {
    /// Asks the peers for the member list: its client URLs become the endpoints, its peer
    /// URLs the cluster file's.
    async fn refresh(&self) {
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        for url in &peers {
            let asked =
                rustcd_peer::rafthttp::client::members(std::slice::from_ref(url), self.tls.as_ref(), self.dial_timeout);
            let Ok((_, members)) = asked.await else { continue };
            let clients: Vec<String> = members.iter().flat_map(|m| m.client_urls.clone()).collect();
            let new_peers: Vec<String> = members.iter().flat_map(|m| m.peer_urls.clone()).collect();
            if clients.is_empty() {
                continue;
            }
            if let Ok(mut eps) = self.endpoints.lock() {
                let old: Vec<&String> = eps.iter().map(|e| &e.url).collect();
                if old != clients.iter().collect::<Vec<_>>() {
                    tracing::info!(endpoints = ?clients, "proxy endpoints updated");
                    *eps = clients.into_iter().map(|url| Endpoint { url, failed_until: None }).collect();
                }
            }
            if new_peers != peers {
                if let Err(e) = save(&self.cluster_file, &new_peers) {
                    tracing::warn!(error = %e, "cannot update the proxy's cluster file");
                }
                if let Ok(mut p) = self.peers.lock() {
                    *p = new_peers;
                }
            }
            return;
        }
        tracing::warn!(peer_urls = ?peers, "proxy could not fetch the member list from any peer");
    }

    /// The endpoints not held out after a failure.
    fn available(&self) -> Vec<String> {
        let now = Instant::now();
        let Ok(eps) = self.endpoints.lock() else { return Vec::new() };
        eps.iter().filter(|e| e.failed_until.is_none_or(|t| t <= now)).map(|e| e.url.clone()).collect()
    }

    fn failed(&self, url: &str) {
        if let Ok(mut eps) = self.endpoints.lock() {
            for e in eps.iter_mut().filter(|e| e.url == url) {
                e.failed_until = Some(Instant::now() + self.failure_wait);
            }
        }
        tracing::warn!(endpoint = %url, "proxy marked an endpoint unavailable");
    }

    /// One attempt at `base` (a member's client URL).
    async fn send(
        &self,
        base: &str,
        parts: &axum::http::request::Parts,
        body: bytes::Bytes,
    ) -> Result<Response<Body>, String> {
        let io =
            rustcd_tls::connect::open(base, self.tls.clone(), self.dial_timeout).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder().method(parts.method.clone()).uri(path);
        for (k, v) in parts.headers.iter().filter(|(k, _)| !is_hop_by_hop(k.as_str())) {
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Full::new(body)).map_err(|e| e.to_string())?;
        let call = sender.send_request(req);
        let resp = match self.read_timeout {
            Some(t) => tokio::time::timeout(t, call).await.map_err(|_| "timed out".to_string())?,
            None => call.await,
        }
        .map_err(|e| e.to_string())?;
        let (mut parts, incoming) = resp.into_parts();
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
        Ok(Response::from_parts(parts, Body::new(incoming)))
    }
}

/// Headers that belong to one connection, not to the request (RFC 7230 6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{text}\n")));
    *r.status_mut() = status;
    r
}

/// etcd's reverse proxy: every available endpoint in turn until one answers.
async fn forward(State(p): State<Arc<Proxy>>, req: Request<Body>) -> Response<Body> {
    if p.readonly && req.method() != axum::http::Method::GET {
        return plain(StatusCode::NOT_IMPLEMENTED, "");
    }
    let (parts, body) = req.into_parts();
    // The body is read once so that it can be sent again to the next endpoint.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return plain(StatusCode::BAD_REQUEST, "proxy: failed to read request body");
    };
    let endpoints = p.available();
    if endpoints.is_empty() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "proxy: zero endpoints currently available");
    }
    for ep in &endpoints {
        match p.send(ep, &parts, body.clone()).await {
            Ok(r) => return r,
            Err(e) => {
                tracing::warn!(endpoint = %ep, error = %e, "failed to direct request to endpoint");
                p.failed(ep);
            }
        }
    }
    plain(StatusCode::BAD_GATEWAY, &format!("proxy: unable to get response from {} endpoint(s)", endpoints.len()))
}
