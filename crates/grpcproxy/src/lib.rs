//! rustcd-grpcproxy: `etcd grpc-proxy start`, etcd's stateless L7 proxy. It serves the whole
//! etcd v3 gRPC API on `--listen-addr` and sends each call to the cluster at `--endpoints`
//! (balanced over them), so that many clients cost the cluster few connections: client watches
//! on the same range share one cluster watch ([`watch`]), serializable ranges are answered from
//! a cache that writes through the proxy keep current ([`kv`], [`cache`]), and every other
//! service is passed through with the client's auth token ([`forward`]). `/metrics` and
//! `/health` are served beside gRPC, as etcd's proxy serves them.
//!
//! Owns: the proxy's flags, its services and its cache. Must not touch: any server internals;
//! it sees the cluster only as gRPC endpoints (the `etcd` binary only parses, logs and serves).

pub mod cache;
pub mod cluster;
pub mod forward;
pub mod kv;
pub mod leasing;
pub mod namespace;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use rustcd_api::etcdserverpb::auth_client::AuthClient;
use rustcd_api::etcdserverpb::auth_server::AuthServer;
use rustcd_api::etcdserverpb::cluster_server::ClusterServer;
use rustcd_api::etcdserverpb::kv_server::KvServer;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::lease_server::LeaseServer;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use rustcd_api::etcdserverpb::watch_server::WatchServer;
use rustcd_api::v3electionpb::election_client::ElectionClient;
use rustcd_api::v3electionpb::election_server::ElectionServer;
use rustcd_api::v3lockpb::lock_client::LockClient;
use rustcd_api::v3lockpb::lock_server::LockServer;
use tonic::transport::Channel;

/// `etcd grpc-proxy start`'s flags, with etcd's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    pub listen_addr: String,
    pub endpoints: Vec<String>,
    pub discovery_srv: String,
    pub discovery_srv_name: String,
    pub insecure_discovery: bool,
    pub metrics_addr: String,
    pub advertise_client_url: String,
    pub data_dir: String,
    pub max_send_bytes: usize,
    pub max_recv_bytes: usize,
    pub dial_keepalive_time: Duration,
    pub dial_keepalive_timeout: Duration,
    pub permit_without_stream: bool,
    pub grpc_keepalive_min_time: Duration,
    pub grpc_keepalive_interval: Duration,
    pub grpc_keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub debug: bool,
    /// `--namespace`: the prefix every key the proxy's clients use gets.
    pub namespace: String,
    /// `--endpoints-auto-sync-interval` (zero: never).
    pub auto_sync: Duration,
    /// `--resolver-prefix` and `--resolver-ttl`: where the proxy registers itself.
    pub resolver_prefix: String,
    pub resolver_ttl: i64,
    /// `--experimental-serializable-ordering`.
    pub ordering: bool,
    /// TLS to the cluster: `--cacert`, `--cert`, `--key`.
    pub cacert: String,
    pub cert: String,
    pub key: String,
    /// `--insecure-skip-tls-verify`: the cluster's certificates go unchecked (tests only).
    pub insecure_skip_tls_verify: bool,
    /// `--experimental-leasing-prefix` (empty: no leasing).
    pub leasing_prefix: String,
    /// The client-facing listener's TLS: `--cert-file`, `--key-file`, `--trusted-ca-file`,
    /// `--client-crl-file`, `--listen-cipher-suites`.
    pub listen_tls: rustcd_tls::TlsInfo,
    /// `--auto-tls` and `--self-signed-cert-validity`.
    pub auto_tls: bool,
    pub cert_validity: u32,
    /// Settings accepted with a warning: what they asked for, why it has no effect.
    pub notes: Vec<String>,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            listen_addr: "127.0.0.1:23790".into(),
            endpoints: vec!["127.0.0.1:2379".into()],
            discovery_srv: String::new(),
            discovery_srv_name: String::new(),
            insecure_discovery: false,
            metrics_addr: String::new(),
            advertise_client_url: "127.0.0.1:23790".into(),
            data_dir: "default.proxy".into(),
            max_send_bytes: 1536 * 1024,
            max_recv_bytes: i32::MAX as usize,
            dial_keepalive_time: Duration::ZERO,
            dial_keepalive_timeout: Duration::from_secs(20),
            permit_without_stream: false,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(7200),
            grpc_keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: u32::MAX,
            debug: false,
            namespace: String::new(),
            auto_sync: Duration::ZERO,
            resolver_prefix: String::new(),
            resolver_ttl: 0,
            ordering: false,
            leasing_prefix: String::new(),
            cacert: String::new(),
            cert: String::new(),
            key: String::new(),
            insecure_skip_tls_verify: false,
            listen_tls: rustcd_tls::TlsInfo::default(),
            auto_tls: false,
            cert_validity: 1,
            notes: Vec::new(),
        }
    }
}

/// Flags that need what rustcd does not have yet: set to anything but their default, they
/// refuse to start with this reason.
const NOT_YET: [(&str, &str); 0] = [];

/// Flags with no effect in rustcd, and why.
const NO_EFFECT: [(&str, &str); 2] = [
    ("enable-pprof", "rustcd has no Go runtime to profile"),
    ("grpc-keepalive-min-time", "the proxy accepts client pings at any interval"),
];

fn duration(name: &str, v: &str) -> Result<Duration, String> {
    rustcd_gocompat::parse_std_duration(v).map_err(|e| format!("invalid argument {v:?} for \"--{name}\" flag: {e}"))
}

fn boolean(name: &str, v: &str) -> Result<bool, String> {
    rustcd_gocompat::parse_bool(v).map_err(|e| format!("invalid argument {v:?} for \"--{name}\" flag: {e}"))
}

const BOOLS: [&str; 7] = [
    "insecure-discovery",
    "permit-without-stream",
    "enable-pprof",
    "insecure-skip-tls-verify",
    "auto-tls",
    "experimental-serializable-ordering",
    "debug",
];

/// Reads `grpc-proxy [flags] start [flags]` (cobra takes flags on both sides of `start`).
pub fn parse(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut started = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "start" {
            started = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unknown command {arg:?} for \"etcd grpc-proxy\""));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None if BOOLS.contains(&body) => (body, "true".to_string()),
            None => {
                let v = args.get(i).ok_or_else(|| format!("flag needs an argument: --{body}"))?;
                i += 1;
                (body, v.clone())
            }
        };
        set(&mut f, name, &value)?;
    }
    if !started {
        return Err("etcd grpc-proxy needs a subcommand: start".into());
    }
    if !f.resolver_prefix.is_empty() && f.resolver_ttl < 1 {
        return Err("invalid resolver-ttl: it must be at least 1 with --resolver-prefix".into());
    }
    if !f.discovery_srv.is_empty() && !f.insecure_discovery {
        return Err("--discovery-srv without --insecure-discovery checks endpoints over TLS: not supported yet by rustcd's grpc-proxy (issue 13)".into());
    }
    Ok(f)
}

fn set(f: &mut Flags, name: &str, v: &str) -> Result<(), String> {
    let bytes = |v: &str| v.parse::<usize>().map_err(|_| format!("invalid argument {v:?} for \"--{name}\" flag"));
    match name {
        "listen-addr" => f.listen_addr = v.to_string(),
        "endpoints" => f.endpoints = v.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect(),
        "discovery-srv" => f.discovery_srv = v.to_string(),
        "discovery-srv-name" => f.discovery_srv_name = v.to_string(),
        "insecure-discovery" => f.insecure_discovery = boolean(name, v)?,
        "metrics-addr" => f.metrics_addr = v.to_string(),
        "advertise-client-url" => f.advertise_client_url = v.to_string(),
        "data-dir" => f.data_dir = v.to_string(),
        "max-send-bytes" => f.max_send_bytes = bytes(v)?,
        "max-recv-bytes" => f.max_recv_bytes = bytes(v)?,
        "dial-keepalive-time" => f.dial_keepalive_time = duration(name, v)?,
        "dial-keepalive-timeout" => f.dial_keepalive_timeout = duration(name, v)?,
        "permit-without-stream" => f.permit_without_stream = boolean(name, v)?,
        "grpc-keepalive-interval" => f.grpc_keepalive_interval = duration(name, v)?,
        "grpc-keepalive-timeout" => f.grpc_keepalive_timeout = duration(name, v)?,
        "max-concurrent-streams" => {
            f.max_concurrent_streams = v.parse().map_err(|_| format!("invalid argument {v:?} for \"--{name}\" flag"))?
        }
        "debug" => f.debug = boolean(name, v)?,
        "namespace" => f.namespace = v.to_string(),
        "experimental-serializable-ordering" => f.ordering = boolean(name, v)?,
        "experimental-leasing-prefix" => f.leasing_prefix = v.to_string(),
        "cacert" => f.cacert = v.to_string(),
        "cert" => f.cert = v.to_string(),
        "key" => f.key = v.to_string(),
        "insecure-skip-tls-verify" => f.insecure_skip_tls_verify = boolean(name, v)?,
        "cert-file" => f.listen_tls.cert_file = v.to_string(),
        "key-file" => f.listen_tls.key_file = v.to_string(),
        "trusted-ca-file" => f.listen_tls.trusted_ca_file = v.to_string(),
        "client-crl-file" => f.listen_tls.crl_file = v.to_string(),
        "listen-cipher-suites" => {
            f.listen_tls.cipher_suites =
                v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        "auto-tls" => f.auto_tls = boolean(name, v)?,
        "self-signed-cert-validity" => {
            f.cert_validity = v.parse().map_err(|_| format!("invalid argument {v:?} for \"--{name}\" flag"))?
        }
        "endpoints-auto-sync-interval" => f.auto_sync = duration(name, v)?,
        "resolver-prefix" => f.resolver_prefix = v.to_string(),
        "resolver-ttl" => {
            f.resolver_ttl = v.parse().map_err(|_| format!("invalid argument {v:?} for \"--{name}\" flag"))?
        }
        _ => {
            if let Some((_, why)) = NOT_YET.iter().find(|(n, _)| *n == name) {
                if !matches!(v, "" | "false" | "0") {
                    return Err(format!("--{name}={v} is not supported yet by rustcd's grpc-proxy ({why})"));
                }
            } else if let Some((_, why)) = NO_EFFECT.iter().find(|(n, _)| *n == name) {
                f.notes.push(format!("--{name} has no effect in rustcd's grpc-proxy: {why}"));
            } else {
                return Err(format!("unknown flag: --{name}"));
            }
        }
    }
    Ok(())
}

/// The TLS the proxy serves its clients with, if any: `--cert-file`/`--key-file`, or with
/// `--auto-tls` a self-signed pair under `<data-dir>/fixtures/proxy`.
pub fn listen_tls(f: &Flags) -> Result<Option<Arc<rustcd_tls::ServerConfig>>, String> {
    let mut info = f.listen_tls.clone();
    if info.cert_file.is_empty() && info.key_file.is_empty() {
        if !f.auto_tls {
            return Ok(None);
        }
        let dir = std::path::Path::new(&f.data_dir).join("fixtures").join("proxy");
        let made = rustcd_tls::self_cert(&dir, std::slice::from_ref(&f.listen_addr), f.cert_validity, false)
            .map_err(|e| e.to_string())?;
        (info.cert_file, info.key_file) = (made.cert_file, made.key_file);
    }
    info.server_config().map(Some).map_err(|e| e.to_string())
}

/// Connects to the cluster (registering the proxy under `--resolver-prefix`) and returns what
/// to serve on the proxy's listeners. Needs a tokio runtime.
pub fn start(f: &Flags) -> Result<axum::Router, String> {
    let ch = cluster::upstream(f)?;
    if !f.resolver_prefix.is_empty() {
        let (prefix, addr) = (f.resolver_prefix.clone(), f.advertise_client_url.clone());
        tokio::spawn(cluster::register(ch.clone(), prefix, addr, f.resolver_ttl));
    }
    Ok(router(f, ch))
}

/// The proxy's gRPC services and its HTTP endpoints, as one router.
pub fn router(f: &Flags, ch: Channel) -> axum::Router {
    let (send, recv) = (f.max_send_bytes, f.max_recv_bytes);
    let ns = namespace::Namespace::new(&f.namespace);
    let kv = Arc::new(kv::KvProxy::new(ch.clone(), ns.clone(), f.ordering, &f.leasing_prefix));
    let watch = Arc::new(watch::WatchProxy::new(ch.clone(), ns.clone()));
    let routes = tonic::service::Routes::new(KvServer::from_arc(kv.clone()).max_decoding_message_size(recv))
        .add_service(WatchServer::from_arc(watch.clone()).max_decoding_message_size(recv))
        .add_service(LeaseServer::new(forward::LeaseProxy(
            LeaseClient::new(ch.clone()).max_encoding_message_size(send),
            ns,
        )))
        .add_service(ClusterServer::new(cluster::ClusterProxy::new(ch.clone(), f)))
        .add_service(MaintenanceServer::new(forward::MaintenanceProxy(
            MaintenanceClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
        )))
        .add_service(AuthServer::new(forward::AuthProxy(AuthClient::new(ch.clone()))))
        .add_service(LockServer::new(forward::LockProxy(LockClient::new(ch.clone()))))
        .add_service(ElectionServer::new(forward::ElectionProxy(ElectionClient::new(ch.clone()))));
    routes.into_axum_router().merge(http_routes(kv, watch, ch))
}

/// `/metrics` (the proxy's cache and coalescing figures, in etcd's metric names) and `/health`
/// (a serializable read through the cluster).
pub fn http_routes(kv: Arc<kv::KvProxy>, watch: Arc<watch::WatchProxy>, ch: Channel) -> axum::Router {
    use axum::routing::get;
    let metrics = move || {
        let (kv, watch) = (kv.clone(), watch.clone());
        async move {
            let (hits, misses) = kv.cache_stats();
            let (events, watchers, _) = watch.stats();
            format!(
                "# TYPE etcd_grpc_proxy_cache_hits_total gauge\netcd_grpc_proxy_cache_hits_total {hits}\n\
                 # TYPE etcd_grpc_proxy_cache_misses_total gauge\netcd_grpc_proxy_cache_misses_total {misses}\n\
                 # TYPE etcd_grpc_proxy_cache_keys_total gauge\netcd_grpc_proxy_cache_keys_total {}\n\
                 # TYPE etcd_grpc_proxy_events_coalescing_total counter\netcd_grpc_proxy_events_coalescing_total {events}\n\
                 # TYPE etcd_grpc_proxy_watchers_coalescing_total gauge\netcd_grpc_proxy_watchers_coalescing_total {watchers}\n",
                kv.cache_len()
            )
        }
    };
    let health = move || {
        let ch = ch.clone();
        async move {
            let req = rustcd_api::etcdserverpb::RangeRequest {
                key: b"health".to_vec().into(),
                serializable: true,
                count_only: true,
                ..Default::default()
            };
            let mut c = rustcd_api::etcdserverpb::kv_client::KvClient::new(ch);
            match tokio::time::timeout(Duration::from_secs(5), c.range(req)).await {
                Ok(Ok(_)) => (axum::http::StatusCode::OK, "{\"health\":\"true\",\"reason\":\"\"}\n".to_string()),
                Ok(Err(e)) => (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("{{\"health\":\"false\",\"reason\":{:?}}}\n", e.message()),
                ),
                Err(_) => (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "{\"health\":\"false\",\"reason\":\"timeout\"}\n".into(),
                ),
            }
        }
    };
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health.clone()))
        .route("/proxy/health", get(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_as_etcd_takes_them() {
        let f =
            parse(&args("start --endpoints=127.0.0.1:1,127.0.0.1:2 --listen-addr 127.0.0.1:9 --debug --enable-pprof"))
                .expect("flags");
        assert_eq!(f.endpoints, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!((f.listen_addr.as_str(), f.debug), ("127.0.0.1:9", true));
        assert_eq!(f.notes.len(), 1, "pprof is accepted with a warning");
        assert_eq!(
            parse(&args("start --dial-keepalive-time=1m30s")).expect("flags").dial_keepalive_time,
            Duration::from_secs(90)
        );
        for (bad, says) in [
            ("start --resolver-prefix=/p", "invalid resolver-ttl"),
            ("start --bogus=1", "unknown flag: --bogus"),
            ("--endpoints=x", "needs a subcommand: start"),
            ("start --dial-keepalive-time=soon", "invalid argument \"soon\" for \"--dial-keepalive-time\" flag"),
            ("start --discovery-srv=example.com", "without --insecure-discovery"),
        ] {
            let e = parse(&args(bad)).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
