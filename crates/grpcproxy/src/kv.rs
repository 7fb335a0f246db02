//! The KV service of the proxy (etcd's `grpcproxy/kv.go`): serializable ranges are answered
//! from the [`Cache`] when they can be; everything else goes to the cluster, and what comes
//! back updates the cache (a range's answer is kept, a write drops what it touched).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::kv_server::Kv;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::cache::{Cache, Cached};
use crate::forward;
use crate::leasing::{self, Leasing};
use crate::namespace::Namespace;

pub struct KvProxy {
    upstream: KvClient<Channel>,
    ns: Namespace,
    cache: Mutex<Cache>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// `--experimental-serializable-ordering`: the highest revision answered so far.
    ordering: Option<AtomicI64>,
    /// `--experimental-leasing-prefix`: writes go through etcd's leasing protocol.
    leasing: Option<Leasing>,
}

/// How often a serializable read older than one already answered is asked again.
const ORDERING_ATTEMPTS: usize = 5;

/// etcd's `ErrGRPCCompacted`.
fn compacted() -> Status {
    Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
}

impl KvProxy {
    pub fn new(ch: Channel, ns: Namespace, ordering: bool, leasing_prefix: &str) -> KvProxy {
        let leasing = (!leasing_prefix.is_empty()).then(|| Leasing::new(leasing_prefix, ns.clone(), ch.clone()));
        let upstream = KvClient::new(ch).max_decoding_message_size(usize::MAX);
        let (hits, misses, ordering) = (AtomicU64::new(0), AtomicU64::new(0), ordering.then(|| AtomicI64::new(0)));
        KvProxy { upstream, ns, cache: Mutex::default(), hits, misses, ordering, leasing }
    }

    /// Drops what a write to `[key, end)` (in the client's key space) makes stale.
    fn invalidate(&self, key: &[u8], end: &[u8]) {
        let (k, e) = self.ns.interval(key, end);
        self.cache().invalidate(&k, &e);
    }

    /// A range from the cluster. With ordering, one older than a revision already answered is
    /// asked again (the balancer takes the members in turn), and refused as clientv3's
    /// ordering KV refuses it when no member has caught up.
    async fn upstream_range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let Some(seen) = &self.ordering else {
            return self.upstream.clone().range(forward::request(req)).await;
        };
        let (md, _, r) = req.into_parts();
        for _ in 0..ORDERING_ATTEMPTS {
            let resp = self.upstream.clone().range(forward::passed_on(&md, r.clone())).await?;
            let rev = resp.get_ref().header.as_ref().map_or(0, |h| h.revision);
            if rev >= seen.fetch_max(rev, Ordering::Relaxed) {
                return Ok(resp);
            }
        }
        Err(Status::unknown(
            "etcdclient: no cluster members have a revision higher than the previously received revision",
        ))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries in the cache, for `/metrics`.
    pub fn cache_len(&self) -> usize {
        self.cache().len()
    }

    /// Serializable ranges answered from the cache, and those that were not, so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// What a txn's branch did, as the cache sees it.
    fn txn_to_cache(&self, reqs: &[RequestOp], resps: &[ResponseOp]) {
        let mut c = self.cache();
        for (req, resp) in reqs.iter().zip(resps) {
            match (&req.request, &resp.response) {
                (Some(ReqOp::RequestPut(p)), Some(RespOp::ResponsePut(_))) => c.invalidate(&p.key, &[]),
                (Some(ReqOp::RequestDeleteRange(d)), Some(RespOp::ResponseDeleteRange(_))) => {
                    c.invalidate(&d.key, &d.range_end)
                }
                (Some(ReqOp::RequestRange(r)), Some(RespOp::ResponseRange(rr))) => c.add(r, rr),
                // A nested txn: its keys are unknown from here; drop everything it could touch.
                (Some(ReqOp::RequestTxn(_)), _) => c.invalidate(&[], &[0]),
                _ => {}
            }
        }
    }
}

type RangeStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvProxy {
    type RangeStreamStream = RangeStream;

    /// Forwarded chunk by chunk (no cache: a streamed range is one too large to keep).
    async fn range_stream(&self, mut req: Request<RangeRequest>) -> Result<Response<RangeStream>, Status> {
        use tokio_stream::StreamExt;
        self.ns.range(req.get_mut())?;
        let chunks = self.upstream.clone().range_stream(forward::request(req)).await?.into_inner();
        let ns = self.ns.clone();
        Ok(Response::new(Box::pin(chunks.map(move |chunk| {
            chunk.map(|mut c| {
                if let Some(r) = c.range_response.as_mut() {
                    ns.range_resp(r);
                }
                c
            })
        }))))
    }

    async fn range(&self, mut req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.ns.range(req.get_mut())?;
        let r = req.get_ref();
        if r.serializable {
            let found = self.cache().get(r);
            let counter = if found == Cached::Miss { &self.misses } else { &self.hits };
            counter.fetch_add(1, Ordering::Relaxed);
            match found {
                Cached::Hit(mut resp) => {
                    self.ns.range_resp(&mut resp);
                    return Ok(Response::new(resp));
                }
                Cached::Compacted => return Err(compacted()),
                Cached::Miss => {}
            }
        }
        let r = r.clone();
        let mut resp = self.upstream_range(req).await?;
        self.cache().add(&r, resp.get_ref());
        self.ns.range_resp(resp.get_mut());
        Ok(resp)
    }

    async fn put(&self, mut req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        if let Some(l) = &self.leasing {
            let (md, p) = leasing::parts(req);
            self.invalidate(&p.key, &[]);
            return Ok(Response::new(l.put(&md, p).await?));
        }
        self.ns.put(req.get_mut())?;
        self.cache().invalidate(&req.get_ref().key, &[]);
        let mut resp = self.upstream.clone().put(forward::request(req)).await?;
        self.ns.put_resp(resp.get_mut());
        Ok(resp)
    }

    async fn delete_range(
        &self,
        mut req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        if let Some(l) = &self.leasing {
            let (md, d) = leasing::parts(req);
            self.invalidate(&d.key, &d.range_end);
            return Ok(Response::new(l.delete(&md, d).await?));
        }
        self.ns.delete(req.get_mut())?;
        self.cache().invalidate(&req.get_ref().key, &req.get_ref().range_end);
        let mut resp = self.upstream.clone().delete_range(forward::request(req)).await?;
        self.ns.delete_resp(resp.get_mut());
        Ok(resp)
    }

    async fn txn(&self, mut req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        if let Some(l) = &self.leasing {
            let (md, t) = leasing::parts(req);
            let mut written = Vec::new();
            leasing::writes(&t.success, &mut written);
            leasing::writes(&t.failure, &mut written);
            for (k, e) in &written {
                self.invalidate(k, e);
            }
            return Ok(Response::new(l.txn(&md, t).await?));
        }
        self.ns.txn(req.get_mut())?;
        let t = req.get_ref().clone();
        let mut resp = self.upstream.clone().txn(forward::request(req)).await?;
        // The txn may have claimed an outdated compared key; drop those too.
        for c in &t.compare {
            self.cache().invalidate(&c.key, &c.range_end);
        }
        let r = resp.get_ref();
        if let (Some(seen), Some(h)) = (&self.ordering, &r.header) {
            seen.fetch_max(h.revision, Ordering::Relaxed);
        }
        self.txn_to_cache(if r.succeeded { &t.success } else { &t.failure }, &r.responses);
        self.ns.txn_resp(resp.get_mut());
        Ok(resp)
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let rev = req.get_ref().revision;
        let resp = self.upstream.clone().compact(forward::request(req)).await?;
        self.cache().compact(rev);
        Ok(resp)
    }
}
