//! The proxy's side of the cluster: the balanced channel to its members (kept in step with the
//! member list with `--endpoints-auto-sync-interval`), the proxy's registration under
//! `--resolver-prefix`, and the Cluster service, whose member list names proxies rather than
//! members when `--advertise-client-url` is set, as etcd's proxy does.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::cluster_server::Cluster;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::channel::Change;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

use crate::Flags;
use crate::forward::{request, unary};

/// clientv3's TLS for the proxy's connections to the cluster (`--cacert`, `--cert`, `--key`):
/// `None` when none is given.
fn upstream_tls(f: &Flags) -> Result<Option<ClientTlsConfig>, String> {
    if f.cacert.is_empty() && f.cert.is_empty() && f.key.is_empty() {
        return Ok(None);
    }
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("open {p}: {e}"));
    let mut tls = ClientTlsConfig::new();
    // Without --cacert, the system's CAs, as Go's TLS does.
    let ca = if f.cacert.is_empty() { rustcd_tls::SYSTEM_CAS } else { f.cacert.as_str() };
    tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    match (f.cert.is_empty(), f.key.is_empty()) {
        (true, true) => {}
        (false, false) => {
            // etcd refuses a client certificate with a common name: with CN auth on, every
            // request through the proxy would act as that user.
            let pem = read(&f.cert)?;
            if rustcd_tls::first_cert_common_name(&pem).is_some_and(|cn| !cn.is_empty()) {
                return Err("cert has non empty Common Name".into());
            }
            tls = tls.identity(Identity::from_pem(pem, read(&f.key)?));
        }
        _ => return Err("--cert and --key must be given together".into()),
    }
    Ok(Some(tls))
}

fn endpoint(f: &Flags, e: &str) -> Result<Endpoint, String> {
    let tls = upstream_tls(f)?;
    let default = if tls.is_some() { "https" } else { "http" };
    let url = if e.contains("://") { e.to_string() } else { format!("{default}://{e}") };
    if rustcd_tls::connect::is_secure(&url) && tls.is_none() {
        return Err(format!(
            "endpoint {e}: an https endpoint needs --cacert (and --cert/--key for client certificates)"
        ));
    }
    let mut ep = Endpoint::from_shared(url).map_err(|err| format!("invalid endpoint {e:?}: {err}"))?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls).map_err(|err| format!("TLS to {e}: {err}"))?;
    }
    ep = ep.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true);
    if !f.dial_keepalive_time.is_zero() {
        ep = ep
            .http2_keep_alive_interval(f.dial_keepalive_time)
            .keep_alive_timeout(f.dial_keepalive_timeout)
            .keep_alive_while_idle(f.permit_without_stream);
    }
    Ok(ep)
}

/// The channel to the cluster, balanced over the endpoints (or those `--discovery-srv` finds);
/// with an auto-sync interval, the members' client URLs replace them at each interval.
pub fn upstream(f: &Flags) -> Result<Channel, String> {
    let mut endpoints = f.endpoints.clone();
    if !f.discovery_srv.is_empty() {
        let found = rustcd_client::srv::get_client("etcd-client", &f.discovery_srv, &f.discovery_srv_name)?;
        tracing::info!(srv_server = %f.discovery_srv, endpoints = ?found, "discovered cluster from SRV");
        if !found.is_empty() {
            endpoints = found;
        }
    }
    if endpoints.is_empty() {
        return Err("no endpoints to proxy to".into());
    }
    if f.insecure_skip_tls_verify {
        return unverified(f, endpoints);
    }
    let (ch, tx) = Channel::balance_channel::<String>(64);
    for e in &endpoints {
        tx.try_send(Change::Insert(e.clone(), endpoint(f, e)?)).map_err(|e| e.to_string())?;
    }
    tracing::info!(endpoints = ?endpoints, "proxying to the cluster");
    if !f.auto_sync.is_zero() {
        tokio::spawn(sync_endpoints(f.clone(), ch.clone(), tx, endpoints.into_iter().collect()));
    }
    Ok(ch)
}

/// `--insecure-skip-tls-verify` (for tests only, as etcd warns): the cluster's certificates go
/// unchecked. tonic's TLS always checks them, so these connections are made by rustcd's own
/// connector, one connection at a time: each (re)connection takes the next endpoint that
/// answers, so the proxy fails over between members rather than balancing requests.
fn unverified(f: &Flags, endpoints: Vec<String>) -> Result<Channel, String> {
    tracing::warn!(
        "--insecure-skip-tls-verify was given, this grpc proxy process skips authentication of etcd server TLS certificates. This option should be enabled only for testing purposes."
    );
    let info = rustcd_tls::TlsInfo {
        cert_file: f.cert.clone(),
        key_file: f.key.clone(),
        insecure_skip_verify: true,
        ..Default::default()
    };
    let tls = info.client_config().map_err(|e| e.to_string())?;
    let connector = Failover { endpoints: std::sync::Arc::new(endpoints), next: Default::default(), tls };
    let ep = Endpoint::from_static("http://grpc-proxy-upstream").connect_timeout(Duration::from_secs(5));
    Ok(ep.connect_with_connector_lazy(connector))
}

/// Connects to the first of the endpoints, from the one after the last used, that answers.
#[derive(Clone)]
struct Failover {
    endpoints: std::sync::Arc<Vec<String>>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tls: std::sync::Arc<rustcd_tls::ClientConfig>,
}

impl tower_service::Service<tonic::codegen::http::Uri> for Failover {
    type Response = hyper_util::rt::TokioIo<rustcd_tls::connect::Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let n = me.endpoints.len();
            let start = me.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut last = std::io::Error::other("no endpoints");
            for i in 0..n {
                let e = &me.endpoints[(start + i) % n];
                let url = if e.contains("://") { e.clone() } else { format!("https://{e}") };
                match rustcd_tls::connect::open(&url, Some(me.tls.clone()), Duration::from_secs(5)).await {
                    Ok(io) => return Ok(io),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}

/// clientv3's endpoint auto-sync: the member list's client URLs become the endpoints.
async fn sync_endpoints(f: Flags, ch: Channel, tx: mpsc::Sender<Change<String, Endpoint>>, mut now: BTreeSet<String>) {
    let mut tick = tokio::time::interval(f.auto_sync);
    loop {
        tick.tick().await;
        let Ok(list) = ClusterClient::new(ch.clone()).member_list(MemberListRequest { linearizable: false }).await
        else {
            continue;
        };
        let urls: BTreeSet<String> = list.into_inner().members.into_iter().flat_map(|m| m.client_ur_ls).collect();
        if urls.is_empty() || urls == now {
            continue;
        }
        for gone in now.difference(&urls) {
            let _ = tx.send(Change::Remove(gone.clone())).await;
        }
        for new in urls.difference(&now) {
            match endpoint(&f, new) {
                Ok(ep) => {
                    let _ = tx.send(Change::Insert(new.clone(), ep)).await;
                }
                Err(e) => tracing::warn!(error = %e, "skipping a member's client URL"),
            }
        }
        tracing::info!(endpoints = ?urls, "synced endpoints from the member list");
        now = urls;
    }
}

/// The value a registration holds: etcd's `naming/endpoints` record, the proxy's name in its
/// metadata (itself JSON, as etcd's `register` writes it).
fn record(addr: &str) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let meta = format!("{{\"name\":{}}}", text(&hostname()));
    format!("{{\"Op\":0,\"Addr\":{},\"Metadata\":{}}}", text(addr), text(&meta))
}

/// A registered proxy from its record: its address and name.
fn member_of(record: &[u8]) -> Option<Member> {
    let v: serde_json::Value = serde_json::from_slice(record).ok()?;
    let addr = v.get("Addr")?.as_str()?.to_string();
    let meta = match v.get("Metadata") {
        Some(serde_json::Value::String(s)) => serde_json::from_str(s).ok(),
        other => other.cloned(),
    };
    let name = meta.as_ref().and_then(|m| m.get("name")?.as_str().map(str::to_string)).unwrap_or_default();
    Some(Member { name, client_ur_ls: vec![addr], ..Default::default() })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// `--resolver-prefix`: the proxy's advertised address under `<prefix>/<address>`, on a lease of
/// `--resolver-ttl` seconds kept alive while the proxy runs (registered again if it is lost).
pub async fn register(ch: Channel, prefix: String, addr: String, ttl: i64) {
    let key = format!("{prefix}/{addr}");
    loop {
        let granted = LeaseClient::new(ch.clone()).lease_grant(LeaseGrantRequest { ttl, id: 0 }).await;
        if let Ok(lease) = granted.map(|r| r.into_inner().id) {
            let put = PutRequest {
                key: key.clone().into_bytes().into(),
                value: record(&addr).into_bytes().into(),
                lease,
                ..Default::default()
            };
            if KvClient::new(ch.clone()).put(put).await.is_ok() {
                tracing::info!(key = %key, "registered the proxy");
                keep_alive(&ch, lease, ttl).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Renews `lease` every third of its TTL until it is gone or the cluster cannot be reached.
async fn keep_alive(ch: &Channel, lease: i64, ttl: i64) {
    let (tx, rx) = mpsc::channel(1);
    let Ok(resp) = LeaseClient::new(ch.clone()).lease_keep_alive(ReceiverStream::new(rx)).await else { return };
    let mut answers = resp.into_inner();
    loop {
        if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
            return;
        }
        match answers.message().await {
            Ok(Some(a)) if a.ttl > 0 => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_secs((ttl as u64 / 3).max(1))).await;
    }
}

/// The Cluster service: member changes pass through; the member list is the cluster's when
/// `--advertise-client-url` is empty, else the proxies registered under `--resolver-prefix`
/// (or this proxy alone: its host name and advertised address).
pub struct ClusterProxy {
    upstream: ClusterClient<Channel>,
    kv: KvClient<Channel>,
    advertise: String,
    prefix: String,
}

impl ClusterProxy {
    pub fn new(ch: Channel, f: &Flags) -> ClusterProxy {
        ClusterProxy {
            upstream: ClusterClient::new(ch.clone()),
            kv: KvClient::new(ch),
            advertise: f.advertise_client_url.clone(),
            prefix: f.resolver_prefix.clone(),
        }
    }

    /// The proxies registered under the prefix, as members.
    async fn registered(&self) -> Result<Vec<Member>, Status> {
        let key = format!("{}/", self.prefix).into_bytes();
        let mut end = key.clone();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let r = self
            .kv
            .clone()
            .range(RangeRequest { key: key.into(), range_end: end.into(), ..Default::default() })
            .await?;
        Ok(r.into_inner().kvs.iter().filter_map(|kv| member_of(&kv.value)).collect())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterProxy {
    unary! { upstream;
        member_add(MemberAddRequest) -> MemberAddResponse;
        member_remove(MemberRemoveRequest) -> MemberRemoveResponse;
        member_update(MemberUpdateRequest) -> MemberUpdateResponse;
        member_promote(MemberPromoteRequest) -> MemberPromoteResponse;
    }
    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if self.advertise.is_empty() {
            return self.upstream.clone().member_list(request(req)).await;
        }
        if !self.prefix.is_empty() {
            let members = self.registered().await?;
            if !members.is_empty() {
                return Ok(Response::new(MemberListResponse { members, ..Default::default() }));
            }
        }
        let me = Member { name: hostname(), client_ur_ls: vec![self.advertise.clone()], ..Default::default() };
        Ok(Response::new(MemberListResponse { members: vec![me], ..Default::default() }))
    }
}
