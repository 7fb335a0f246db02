//! Load workloads (etcd's `tools/benchmark` counterparts): `--clients` clients sharing
//! `--conns` connections, `--total` requests handed out in turn, at most `--rate` a second,
//! each timed; the servers' CPU time and memory read around the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rustcd_cluster::Cluster;
use tonic::transport::Channel;

use crate::conn::{Token, with_token};
use crate::report::{Report, error_text};
use crate::{k8s, proc, stm};

/// What a workload sends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Workload {
    #[default]
    Put,
    /// Ranges (`--consistency`): of the keys the run writes first, or of the key/range given.
    Range,
    /// Txns of this many puts of distinct keys each (etcd's `txn-put`).
    TxnPut(usize),
    /// Txns of one range (this percentage of them) or one put (etcd's `txn-mixed`).
    TxnMixed(usize),
    /// Keep-alives, each client renewing a lease of its own over its own stream (etcd's
    /// `lease-keepalive`).
    LeaseKeepalive,
    /// Software transactional memory (etcd's `stm`): reads, then writes under compares.
    Stm(stm::Config),
    /// A Kubernetes API server's traffic (see [`k8s`]).
    K8s(k8s::Config),
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
    /// Keys in order (`--sequential-keys`) rather than spread over the key space.
    pub sequential_keys: bool,
    /// Requests a second at most; 0 is no limit (`--rate`).
    pub rate: u64,
    /// Serializable reads (`--consistency s`).
    pub serializable: bool,
    /// The key and range end reads ask for (`range key [end]`); none reads the keys the run
    /// writes first.
    pub read_range: Option<(Vec<u8>, Vec<u8>)>,
    /// The limit of a read of `read_range`.
    pub limit: i64,
    /// Every connection to the leader (`--target-leader`).
    pub target_leader: bool,
    /// An auth token every request carries (`compare --auth`).
    pub token: Option<String>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            workload: Workload::Put,
            clients: 1,
            conns: 1,
            total: 10_000,
            key_size: 8,
            val_size: 256,
            key_space: 100_000,
            sequential_keys: false,
            rate: 0,
            serializable: false,
            read_range: None,
            limit: 0,
            target_leader: false,
            token: None,
        }
    }
}

/// A decimal key of `size` bytes.
pub fn key(i: usize, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0size$}").into_bytes();
    k.truncate(size.max(1));
    k
}

/// splitmix64: the run's "random" numbers, the same sequence for both servers.
pub fn mix(n: usize) -> usize {
    let mut z = (n as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as usize
}

/// The key the `n`th write of a run goes to.
fn write_key(n: usize, p: &Params) -> Vec<u8> {
    let space = p.key_space.max(1);
    let i = if p.sequential_keys { n % space } else { mix(n) % space };
    key(i, p.key_size)
}

/// Runs the workload against a cluster the harness started (every member's endpoint, every
/// member's CPU and RSS); a failure to connect ends the process with its reason.
pub async fn run(c: &Cluster, p: &Params) -> Report {
    let pids: Vec<u32> = c.members.iter().filter_map(|m| m.pid()).collect();
    run_on(&c.endpoints(), &pids, p).await.unwrap_or_else(|e| crate::fail(e))
}

/// What one client holds: its connection and what its workload keeps between requests.
pub struct ClientCtx {
    pub kv: KvClient<Channel>,
    pub token: Token,
    keep_alive: Option<KeepAlive>,
    k8s: Option<k8s::ClientState>,
}

impl ClientCtx {
    async fn open(channel: Channel, p: &Params, token: &Token) -> Result<ClientCtx, String> {
        let keep_alive = match p.workload {
            Workload::LeaseKeepalive => Some(KeepAlive::open(&channel, token).await?),
            _ => None,
        };
        let k8s = match p.workload {
            Workload::K8s(_) => Some(k8s::ClientState::open(&channel, token).await?),
            _ => None,
        };
        let kv = KvClient::new(channel).max_decoding_message_size(usize::MAX);
        Ok(ClientCtx { kv, token: token.clone(), keep_alive, k8s })
    }
}

/// Runs the workload against `endpoints`; `pids` are the server processes whose CPU time and
/// RSS are read (none for a remote cluster).
pub async fn run_on(endpoints: &[String], pids: &[u32], p: &Params) -> Result<Report, String> {
    let token: Token = match &p.token {
        Some(t) => Some(t.parse().map_err(|_| "the token is not a valid header value".to_string())?),
        None => None,
    };
    let channels = crate::conn::connect(endpoints, p.conns, p.target_leader).await?;
    if matches!(p.workload, Workload::Range | Workload::TxnMixed(_)) && p.read_range.is_none() {
        preload(&channels[0], p, &token).await;
    }
    // Kept until the run ends: the Kubernetes mix's watches.
    let _k8s = match p.workload {
        Workload::K8s(cfg) => Some(k8s::setup(&channels[0], cfg, p.val_size, &token).await?),
        _ => None,
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let ready = Arc::new(tokio::sync::Barrier::new(p.clients + 1));
    let bar = crate::report::bar(p.total);
    // Clients set up (a lease each, for some workloads) at most 100 at a time, before the timed
    // run: 10,000 grants at once starve the members of heartbeats and cost them their leader.
    let opening = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::new();
    for i in 0..p.clients {
        let channel = channels[i % channels.len()].clone();
        let (next, start, ready, bar, p, token, opening) =
            (next.clone(), start.clone(), ready.clone(), bar.clone(), p.clone(), token.clone(), opening.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            let permit = opening.acquire_owned().await;
            let ctx = ClientCtx::open(channel, &p, &token).await;
            drop(permit);
            ready.wait().await;
            let mut ctx = match ctx {
                Ok(c) => c,
                Err(e) => {
                    errors.insert(e, 1);
                    return (lat, errors);
                }
            };
            let value: Bytes = vec![b'v'; p.val_size].into();
            let interval = (p.rate > 0).then(|| Duration::from_secs_f64(1.0 / p.rate as f64));
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= p.total {
                    return (lat, errors);
                }
                if let (Some(every), Some(t0)) = (interval, start.get()) {
                    tokio::time::sleep_until((*t0 + every * n as u32).into()).await;
                }
                let t = Instant::now();
                match one(&mut ctx, n, &p, &value).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64()),
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
                bar.inc(1);
            }
        }));
    }
    let (cpu0, _) = proc::usage(pids);
    let _ = start.set(Instant::now());
    ready.wait().await;
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    bar.finish_and_clear();
    let mut report = Report::new(lat, errors, started.elapsed());
    let (cpu1, rss) = proc::usage(pids);
    report.cpu_us_per_req = (cpu1 - cpu0) * 1e6 / p.total.max(1) as f64;
    report.rss_mib = proc::mib(rss);
    Ok(report)
}

/// The keys reads of a run without a given range ask for.
async fn preload(channel: &Channel, p: &Params, token: &Token) {
    let mut kv = KvClient::new(channel.clone());
    for i in 0..p.key_space.min(1000) {
        let put =
            PutRequest { key: key(i, p.key_size).into(), value: vec![b'v'; p.val_size].into(), ..Default::default() };
        let _ = kv.put(with_token(put, token)).await;
    }
}

/// The read of the `n`th request.
fn read(n: usize, p: &Params) -> RangeRequest {
    match &p.read_range {
        Some((k, end)) => RangeRequest {
            key: k.clone().into(),
            range_end: end.clone().into(),
            limit: p.limit,
            serializable: p.serializable,
            ..Default::default()
        },
        None => RangeRequest {
            key: key(n % p.key_space.clamp(1, 1000), p.key_size).into(),
            serializable: p.serializable,
            ..Default::default()
        },
    }
}

/// The `n`th request of a run.
async fn one(c: &mut ClientCtx, n: usize, p: &Params, value: &Bytes) -> Result<(), String> {
    let put = |key: Vec<u8>| PutRequest { key: key.into(), value: value.clone(), ..Default::default() };
    let txn = |success: Vec<RequestOp>| TxnRequest { compare: vec![], success, failure: vec![] };
    let token = &c.token;
    let done = match p.workload {
        Workload::Put => c.kv.put(with_token(put(write_key(n, p)), token)).await.map(drop),
        Workload::TxnPut(ops) => {
            let success = (0..ops)
                .map(|i| RequestOp { request: Some(ReqOp::RequestPut(put(write_key(n * ops + i, p)))) })
                .collect();
            c.kv.txn(with_token(txn(success), token)).await.map(drop)
        }
        Workload::TxnMixed(read_pct) => {
            let op = if n % 100 < read_pct {
                ReqOp::RequestRange(read(n, p))
            } else {
                ReqOp::RequestPut(put(write_key(n, p)))
            };
            c.kv.txn(with_token(txn(vec![RequestOp { request: Some(op) }]), token)).await.map(drop)
        }
        Workload::Range => c.kv.range(with_token(read(n, p), token)).await.map(drop),
        Workload::LeaseKeepalive => match &mut c.keep_alive {
            Some(ka) => return ka.renew().await,
            None => return Err("no lease".into()),
        },
        Workload::Stm(cfg) => return stm::one(&mut c.kv, token, n, cfg, p.val_size).await,
        Workload::K8s(cfg) => match &mut c.k8s {
            Some(st) => return k8s::one(&mut c.kv, st, token, n, cfg, value).await,
            None => return Err("no client state".into()),
        },
    };
    done.map_err(|s| error_text(&s))
}

/// One client's lease and its keep-alive stream.
struct KeepAlive {
    id: i64,
    tx: tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl KeepAlive {
    async fn open(channel: &Channel, token: &Token) -> Result<KeepAlive, String> {
        let mut lease = LeaseClient::new(channel.clone());
        let granted = lease.lease_grant(with_token(LeaseGrantRequest { ttl: 100, id: 0 }, token)).await;
        let id = granted.map_err(|s| error_text(&s))?.into_inner().id;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // The first request goes in before the call: a Go server sends the stream's headers
        // with its first answer, which the call waits for.
        tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| "keep-alive stream closed".to_string())?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut rx = lease.lease_keep_alive(with_token(stream, token)).await.map_err(|s| error_text(&s))?.into_inner();
        rx.message().await.map_err(|s| error_text(&s))?;
        Ok(KeepAlive { id, tx, rx })
    }

    async fn renew(&mut self) -> Result<(), String> {
        if self.tx.send(LeaseKeepAliveRequest { id: self.id }).await.is_err() {
            return Err("keep-alive stream closed".into());
        }
        match self.rx.message().await {
            Ok(Some(r)) if r.ttl > 0 => Ok(()),
            Ok(Some(_)) => Err("lease expired".into()),
            Ok(None) => Err("keep-alive stream closed".into()),
            Err(s) => Err(error_text(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sequential_or_spread_over_the_key_space() {
        let p = Params { key_space: 10, sequential_keys: true, ..Params::default() };
        let seq: Vec<Vec<u8>> = (0..12).map(|n| write_key(n, &p)).collect();
        assert_eq!(seq[0], b"00000000");
        assert_eq!(seq[3], b"00000003");
        assert_eq!(seq[11], b"00000001");
        let p = Params { key_space: 1000, ..Params::default() };
        let spread: std::collections::BTreeSet<Vec<u8>> = (0..1000).map(|n| write_key(n, &p)).collect();
        // Random keys collide sometimes, but cover most of the space and stay inside it.
        assert!(spread.len() > 550 && spread.iter().all(|k| k.as_slice() < b"00001000".as_slice()), "{}", spread.len());
        assert_eq!(key(7, 3), b"007");
    }
}
