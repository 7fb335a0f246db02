//! Load workloads (etcd's `tools/benchmark` counterparts): many clients over a few
//! connections, each request timed, and the servers' CPU time and memory sampled around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rustcd_cluster::Cluster;

/// What a workload sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Put,
    /// Linearizable single-key reads.
    Range,
    /// Txns of this many puts of distinct keys each (etcd's `txn-put`).
    TxnPut(usize),
    /// Txns of one range (this percentage of them) or one put (etcd's `txn-mixed`).
    TxnMixed(usize),
    /// Keep-alives, each client renewing a lease of its own over its own stream (etcd's
    /// `lease-keepalive`).
    LeaseKeepalive,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub workload: Workload,
    pub clients: usize,
    pub conns: usize,
    pub total: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: usize,
    /// An auth token every request carries (`compare --auth`).
    pub token: Option<String>,
}

/// `m` as a request, with the run's auth token.
fn with_token<T>(m: T, token: &Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.clone());
    }
    r
}

/// One run's figures.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
    /// Server CPU time (user + system, all members) per request, microseconds.
    pub cpu_us_per_req: f64,
    /// Largest member RSS after the run, MiB.
    pub rss_mib: f64,
}

fn key(i: usize, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0size$}").into_bytes();
    k.truncate(size.max(1));
    k
}

/// user + system CPU seconds and RSS bytes of a process, from /proc.
pub fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let rss_pages = f.get(21).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (cpu / ticks, rss_pages * 4096.0)
}

fn usage(pids: &[u32]) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut rss: f64 = 0.0;
    for pid in pids {
        let (c, r) = proc_usage(*pid);
        cpu += c;
        rss = rss.max(r);
    }
    (cpu, rss)
}

/// Runs the workload against a cluster the harness started.
pub async fn run(c: &Cluster, p: &Params) -> Report {
    let pids: Vec<u32> = c.members.iter().filter_map(|m| m.pid()).collect();
    run_on(&c.endpoints(), &pids, p).await
}

/// Runs the workload against `endpoints` (connections spread over them); `pids` are the
/// server processes whose CPU time and RSS are sampled (none for a remote cluster).
pub async fn run_on(endpoints: &[String], pids: &[u32], p: &Params) -> Report {
    let token = p.token.as_ref().and_then(|t| t.parse().ok());
    if matches!(p.workload, Workload::Range | Workload::TxnMixed(_)) {
        // Something to read.
        let mut kv = KvClient::new(rustcd_cluster::channel(&endpoints[0]).await);
        for i in 0..p.key_space.min(1000) {
            let put = PutRequest {
                key: key(i, p.key_size).into(),
                value: vec![b'v'; p.val_size].into(),
                ..Default::default()
            };
            let _ = kv.put(with_token(put, &token)).await;
        }
    }
    let mut channels = Vec::new();
    for i in 0..p.conns {
        channels.push(rustcd_cluster::channel(&endpoints[i % endpoints.len()]).await);
    }
    let (cpu0, _) = usage(pids);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..p.clients {
        let channel = channels[i % channels.len()].clone();
        let mut kv = KvClient::new(channel.clone());
        let (next, p, token) = (next.clone(), p.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let value: bytes::Bytes = vec![b'v'; p.val_size].into();
            let mut keep_alive = match p.workload {
                Workload::LeaseKeepalive => KeepAlive::open(&channel, &token).await,
                _ => None,
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= p.total {
                    return (lat, errors);
                }
                let t = Instant::now();
                let ok = one(&mut kv, keep_alive.as_mut(), n, &p, &value, &token).await;
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu1, rss) = usage(pids);
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Report {
        requests_per_sec: p.total as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors,
        cpu_us_per_req: (cpu1 - cpu0) * 1e6 / p.total as f64,
        rss_mib: rss / (1024.0 * 1024.0),
    }
}

type Token = Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>;

/// The `n`th request of a run: whether it succeeded.
async fn one(
    kv: &mut KvClient<tonic::transport::Channel>,
    keep_alive: Option<&mut KeepAlive>,
    n: usize,
    p: &Params,
    value: &bytes::Bytes,
    token: &Token,
) -> bool {
    let k = key((n * 7919) % p.key_space.max(1), p.key_size);
    // Reads go to the keys `run_on` wrote first.
    let read = || RangeRequest { key: key(n % p.key_space.min(1000), p.key_size).into(), ..Default::default() };
    let put = |key: Vec<u8>| PutRequest { key: key.into(), value: value.clone(), ..Default::default() };
    let txn = |success: Vec<RequestOp>| with_token(TxnRequest { compare: vec![], success, failure: vec![] }, token);
    match p.workload {
        Workload::Put => kv.put(with_token(put(k), token)).await.is_ok(),
        Workload::TxnPut(ops) => {
            let success = (0..ops)
                .map(|i| RequestOp { request: Some(ReqOp::RequestPut(put(key(n * ops + i, p.key_size)))) })
                .collect();
            kv.txn(txn(success)).await.is_ok()
        }
        Workload::TxnMixed(read_pct) => {
            let op = if n % 100 < read_pct { ReqOp::RequestRange(read()) } else { ReqOp::RequestPut(put(k)) };
            kv.txn(txn(vec![RequestOp { request: Some(op) }])).await.is_ok()
        }
        Workload::Range => kv.range(with_token(read(), token)).await.is_ok(),
        Workload::LeaseKeepalive => match keep_alive {
            Some(ka) => ka.renew().await,
            None => false,
        },
    }
}

/// One client's lease and its keep-alive stream.
struct KeepAlive {
    id: i64,
    tx: tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl KeepAlive {
    async fn open(channel: &tonic::transport::Channel, token: &Token) -> Option<KeepAlive> {
        let mut lease = LeaseClient::new(channel.clone());
        let granted = lease.lease_grant(with_token(LeaseGrantRequest { ttl: 60, id: 0 }, token)).await.ok()?;
        let id = granted.into_inner().id;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // The first request goes in before the call: a Go server sends the stream's headers
        // with its first answer, which the call waits for.
        tx.send(LeaseKeepAliveRequest { id }).await.ok()?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut rx = lease.lease_keep_alive(with_token(stream, token)).await.ok()?.into_inner();
        rx.message().await.ok()??;
        Some(KeepAlive { id, tx, rx })
    }

    async fn renew(&mut self) -> bool {
        if self.tx.send(LeaseKeepAliveRequest { id: self.id }).await.is_err() {
            return false;
        }
        matches!(self.rx.message().await, Ok(Some(r)) if r.ttl > 0)
    }
}
