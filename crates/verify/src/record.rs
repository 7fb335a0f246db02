//! Recording a history from a live cluster: clients that run a random mix of operations on a
//! few keys under one prefix (put, get, delete, compare-and-swap, put on a lease, lease revoke),
//! each call and answer stamped, and watchers on the prefix that resume after every broken
//! stream. It speaks only the etcd v3 API over gRPC; it never starts, stops or signals a server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request as Op1;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use tonic::transport::Channel;

use crate::linearizability::{Action, Op};
use crate::watch_check::{Seen, WatchLog};

/// The operations recorded so far, shared by the clients.
pub type History = Arc<Mutex<Vec<Op>>>;
/// What one watcher has received so far.
pub type Watched = Arc<Mutex<WatchLog>>;

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Every key is `<prefix>k<i>`; the watchers watch the prefix.
    pub prefix: String,
    pub keys: usize,
    /// A request without an answer by then is recorded as unanswered.
    pub op_timeout: Duration,
    /// The most operations a client starts per second (0: no limit).
    pub rate: f64,
    /// TTL of the leases clients attach keys to (long enough to outlive the run).
    pub lease_ttl: i64,
}

impl Workload {
    pub fn key(&self, i: usize) -> String {
        format!("{}k{i}", self.prefix)
    }
}

/// A channel to `endpoint` (`host:port`) that connects on first use and reconnects after a
/// member comes back.
pub fn lazy_channel(endpoint: &str) -> Result<Channel, String> {
    let e = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).map_err(|e| e.to_string())?;
    Ok(e.connect_timeout(Duration::from_secs(1)).connect_lazy())
}

/// A client's state between operations.
struct Client {
    id: usize,
    kv: KvClient<Channel>,
    leases: LeaseClient<Channel>,
    w: Arc<Workload>,
    start: Instant,
    /// Leases this client attached to a key and has not revoked yet, with that key.
    attached: Vec<(i64, String)>,
    /// The value this client last saw for each key (what its compare-and-swaps expect).
    last_seen: HashMap<String, Option<String>>,
    seed: u64,
    seq: u64,
}

impl Client {
    fn stamp(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn value(&mut self) -> String {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq)
    }

    async fn put(&mut self, key: &str, value: &str, lease: i64) -> Option<u64> {
        let req = PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            lease,
            ..Default::default()
        };
        let ok = matches!(tokio::time::timeout(self.w.op_timeout, self.kv.put(req)).await, Ok(Ok(_)));
        ok.then(|| self.stamp())
    }

    /// A read; None when it failed (a failed read changed nothing and showed nothing).
    async fn get(&mut self, key: &str) -> Option<Action> {
        let req = RangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() };
        let r = tokio::time::timeout(self.w.op_timeout, self.kv.range(req)).await.ok()?.ok()?;
        let seen = r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        self.last_seen.insert(key.to_string(), seen.clone());
        Some(Action::Get(seen))
    }

    /// Compare-and-swap from the value this client last saw for the key.
    async fn cas(&mut self, key: &str) -> (Action, Option<u64>) {
        let expect = self.last_seen.get(key).cloned().flatten();
        let new = self.value();
        let k = key.as_bytes().to_vec();
        let compare = match &expect {
            Some(v) => Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: k.clone().into(),
                target_union: Some(TargetUnion::Value(v.clone().into_bytes().into())),
                ..Default::default()
            },
            None => Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: k.clone().into(),
                target_union: Some(TargetUnion::CreateRevision(0)),
                ..Default::default()
            },
        };
        let put = PutRequest { key: k.into(), value: new.clone().into_bytes().into(), ..Default::default() };
        let req = TxnRequest {
            compare: vec![compare],
            success: vec![RequestOp { request: Some(Op1::RequestPut(put)) }],
            failure: vec![],
        };
        match tokio::time::timeout(self.w.op_timeout, self.kv.txn(req)).await {
            Ok(Ok(r)) => {
                let succeeded = r.into_inner().succeeded;
                if succeeded {
                    self.last_seen.insert(key.to_string(), Some(new.clone()));
                }
                (Action::Cas { expect, new, succeeded: Some(succeeded) }, Some(self.stamp()))
            }
            _ => (Action::Cas { expect, new, succeeded: None }, None),
        }
    }

    async fn delete(&mut self, key: &str) -> (Action, Option<u64>) {
        let req = DeleteRangeRequest { key: key.as_bytes().to_vec().into(), ..Default::default() };
        match tokio::time::timeout(self.w.op_timeout, self.kv.delete_range(req)).await {
            Ok(Ok(r)) => (Action::Delete(Some(r.into_inner().deleted > 0)), Some(self.stamp())),
            _ => (Action::Delete(None), None),
        }
    }

    /// A put attached to a fresh lease; None when no lease could be granted.
    async fn put_on_lease(&mut self, key: &str) -> Option<Op> {
        let grant = LeaseGrantRequest { ttl: self.w.lease_ttl, id: 0 };
        let lease = tokio::time::timeout(self.w.op_timeout, self.leases.lease_grant(grant)).await.ok()?.ok()?;
        let lease = lease.into_inner().id;
        let value = self.value();
        let call = self.stamp();
        let ret = self.put(key, &value, lease).await;
        self.attached.push((lease, key.to_string()));
        Some(Op { client: self.id, key: key.to_string(), action: Action::PutLease(value, lease), call, ret })
    }

    async fn revoke(&mut self, lease: i64) -> Option<u64> {
        let req = LeaseRevokeRequest { id: lease };
        let ok = matches!(tokio::time::timeout(self.w.op_timeout, self.leases.lease_revoke(req)).await, Ok(Ok(_)));
        ok.then(|| self.stamp())
    }

    /// One random operation, recorded; None when it left nothing to record.
    async fn step(&mut self) -> Option<Op> {
        let r = self.random();
        let choice = (r >> 8) % 24;
        let revoking = choice >= 22 && !self.attached.is_empty();
        let key = if revoking { self.attached[0].1.clone() } else { self.w.key((r % self.w.keys as u64) as usize) };
        let call = self.stamp();
        let (action, ret) = if revoking {
            let (lease, _) = self.attached.remove(0);
            (Action::Revoke(lease), self.revoke(lease).await)
        } else if choice < 9 {
            let value = self.value();
            let ret = self.put(&key, &value, 0).await;
            (Action::Put(value), ret)
        } else if choice < 16 {
            let action = self.get(&key).await?;
            (action, Some(self.stamp()))
        } else if choice < 18 {
            self.cas(&key).await
        } else if choice >= 20 {
            return self.put_on_lease(&key).await;
        } else {
            self.delete(&key).await
        };
        Some(Op { client: self.id, key, action, call, ret })
    }
}

/// Client `id`: random operations through `channel` until `stop`, each recorded in `history`
/// with its call and answer times (nanoseconds since `start`). Leases it leaves attached are
/// added to `leftover` for the caller to revoke.
pub async fn client(
    id: usize,
    channel: Channel,
    w: Arc<Workload>,
    start: Instant,
    history: History,
    stop: Arc<AtomicBool>,
    leftover: Arc<Mutex<Vec<i64>>>,
) {
    let mut c = Client {
        id,
        kv: KvClient::new(channel.clone()),
        leases: LeaseClient::new(channel),
        w: w.clone(),
        start,
        attached: Vec::new(),
        last_seen: HashMap::new(),
        seed: 0x2545_f491_4f6c_dd1du64 ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9),
        seq: 0,
    };
    let pace = (w.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / w.rate));
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let Some(op) = c.step().await else {
            // A failed read (or lease grant): nothing to record; a moment before the next.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let answered = op.ret.is_some();
        history.lock().unwrap_or_else(|p| p.into_inner()).push(op);
        if !answered {
            // Give a failing member a moment instead of spinning on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(p) = pace {
            tokio::time::sleep(p.saturating_sub(began.elapsed())).await;
        }
    }
    leftover.lock().unwrap_or_else(|p| p.into_inner()).extend(c.attached.iter().map(|(l, _)| *l));
}

/// A watcher on `prefix` from revision `from` with `prev_kv`, asking for a progress
/// notification every 200 ms; whenever its stream breaks it resumes after the last event or
/// bookmark it saw (a bookmark promises nothing older is still to come). Runs until aborted.
pub async fn watcher(channel: Channel, prefix: String, from: i64, seen: Watched) {
    let mut next_rev = from;
    loop {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchCreateRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: rustcd_gocompat::prefix_end(prefix.as_bytes()).into(),
            start_revision: next_rev,
            prev_kv: true,
            ..Default::default()
        };
        let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let count = seen.events.len();
            seen.streams.push((count, next_rev));
        }
        let ask = tx.clone();
        let asking = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let progress = RequestUnion::ProgressRequest(Default::default());
                if ask.send(WatchRequest { request_union: Some(progress) }).await.is_err() {
                    return;
                }
            }
        });
        let stream = WatchClient::new(channel.clone()).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
        if let Ok(stream) = stream {
            let mut stream = stream.into_inner();
            while let Ok(Some(r)) = stream.message().await {
                if r.canceled {
                    break;
                }
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if r.watch_id == -1 && r.events.is_empty() {
                    let rev = r.header.map_or(0, |h| h.revision);
                    let count = seen.events.len();
                    seen.bookmarks.push((count, rev));
                    next_rev = next_rev.max(rev + 1);
                    continue;
                }
                for e in r.events {
                    let kv = e.kv.unwrap_or_default();
                    next_rev = kv.mod_revision + 1;
                    seen.events.push(Seen {
                        rev: kv.mod_revision,
                        key: String::from_utf8_lossy(&kv.key).into_owned(),
                        put: e.r#type == 0,
                        value: String::from_utf8_lossy(&kv.value).into_owned(),
                        prev: e.prev_kv.map(|p| String::from_utf8_lossy(&p.value).into_owned()),
                        created: kv.create_revision == kv.mod_revision && kv.version == 1,
                    });
                }
            }
        }
        asking.abort();
        drop(tx);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every key of the workload through `channel` once, recorded as `client`: the reads
/// that close a history (what each key holds at the end).
pub async fn final_reads(
    channel: Channel,
    w: &Workload,
    client: usize,
    start: Instant,
) -> Result<Vec<Op>, tonic::Status> {
    let mut kv = KvClient::new(channel);
    let mut ops = Vec::new();
    for k in 0..w.keys {
        let call = start.elapsed().as_nanos() as u64;
        let req = RangeRequest { key: w.key(k).into_bytes().into(), ..Default::default() };
        let r = kv.range(req).await?.into_inner();
        let seen = r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        let ret = start.elapsed().as_nanos() as u64;
        ops.push(Op { client, key: w.key(k), action: Action::Get(seen), call, ret: Some(ret) });
    }
    Ok(ops)
}
