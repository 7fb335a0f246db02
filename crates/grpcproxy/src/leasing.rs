//! `--experimental-leasing-prefix`: the proxy takes part in etcd's leasing protocol
//! (clientv3's `leasing` KV) as a writer. A leasing client caches a key it read by holding
//! `<prefix><key>` under its session lease; every other leasing client asks it to give the key
//! up before writing (it puts `REVOKE` there and waits for the holder to delete it), and writes
//! only while no one holds it. This proxy writes that way (puts, deletes, ranges of deletes and
//! txns, with etcd's guards), so etcd's leasing proxies beside it never serve a value it
//! changed from their caches. It serves its own reads from the cluster (and its serializable
//! cache) rather than holding leases on keys: a leasing client that never acquires, which the
//! protocol allows.

use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::*;
use rustcd_api::mvccpb::KeyValue;
use rustcd_api::mvccpb::event::EventType;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::forward::passed_on;
use crate::namespace::Namespace;

/// The value a writer puts on a held key to ask its holder to give it up.
const REVOKE: &[u8] = b"REVOKE";

pub struct Leasing {
    prefix: Vec<u8>,
    ns: Namespace,
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
}

fn op(r: ReqOp) -> RequestOp {
    RequestOp { request: Some(r) }
}

fn get(key: Vec<u8>, range_end: Vec<u8>) -> RequestOp {
    op(ReqOp::RequestRange(RangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }))
}

fn header_rev(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// The keys and ranges a list of operations may write, nested txns included (etcd's `gatherOps`).
pub fn writes(ops: &[RequestOp], out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for o in ops {
        match &o.request {
            Some(ReqOp::RequestPut(p)) => out.push((p.key.to_vec(), Vec::new())),
            Some(ReqOp::RequestDeleteRange(d)) => out.push((d.key.to_vec(), d.range_end.to_vec())),
            Some(ReqOp::RequestTxn(t)) => {
                writes(&t.success, out);
                writes(&t.failure, out);
            }
            _ => {}
        }
    }
}

impl Leasing {
    pub fn new(prefix: &str, ns: Namespace, ch: Channel) -> Leasing {
        Leasing {
            prefix: prefix.as_bytes().to_vec(),
            ns,
            kv: KvClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
            watch: WatchClient::new(ch),
        }
    }

    fn lease_key(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    /// `create_revision(<prefix>key [.. <prefix>end]) < rev + 1`: no one took the key after `rev`.
    fn not_held_after(&self, key: &[u8], end: &[u8], rev: i64) -> Compare {
        Compare {
            key: self.lease_key(key).into(),
            range_end: if end.is_empty() { Vec::new().into() } else { self.lease_key(end).into() },
            target: CompareTarget::Create as i32,
            result: CompareResult::Less as i32,
            target_union: Some(TargetUnion::CreateRevision(rev + 1)),
        }
    }

    /// A txn in the client's key space, namespaced on its way up and back.
    async fn commit(&self, md: &MetadataMap, mut t: TxnRequest) -> Result<TxnResponse, Status> {
        self.ns.txn(&mut t)?;
        let mut r = self.kv.clone().txn(passed_on(md, t)).await?.into_inner();
        self.ns.txn_resp(&mut r);
        Ok(r)
    }

    /// etcd's `revoke`: `then` when no one holds `key`; else ask the holder to give it up and
    /// wait until it has.
    async fn revoke(&self, md: &MetadataMap, key: &[u8], then: RequestOp) -> Result<TxnResponse, Status> {
        let ask = PutRequest {
            key: self.lease_key(key).into(),
            value: REVOKE.to_vec().into(),
            ignore_lease: true,
            ..Default::default()
        };
        let t = TxnRequest {
            compare: vec![self.not_held_after(key, &[], 0)],
            success: vec![then],
            failure: vec![op(ReqOp::RequestPut(ask))],
        };
        let r = self.commit(md, t).await?;
        if !r.succeeded {
            self.wait_rescind(md, key, header_rev(&r.header)).await?;
        }
        Ok(r)
    }

    /// Waits for `<prefix>key` to be deleted after `rev`.
    async fn wait_rescind(&self, md: &MetadataMap, key: &[u8], rev: i64) -> Result<(), Status> {
        let (watched, _) = self.ns.interval(&self.lease_key(key), &[]);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: watched.into(),
                start_revision: rev + 1,
                ..Default::default()
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.map_err(|_| Status::unavailable("watch closed"))?;
        let mut stream = self
            .watch
            .clone()
            .watch(passed_on(md, tokio_stream::wrappers::ReceiverStream::new(rx)))
            .await?
            .into_inner();
        while let Some(resp) = stream.message().await? {
            if resp.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                return Ok(());
            }
            if resp.canceled {
                return Err(Status::unavailable(resp.cancel_reason));
            }
        }
        drop(tx);
        Err(Status::unavailable("leasing: the watch on a revoked key ended"))
    }

    /// Revokes every held key in `[key, end)`; returns the highest creation revision among the
    /// lease keys found.
    async fn revoke_range(&self, md: &MetadataMap, key: &[u8], end: &[u8]) -> Result<i64, Status> {
        let lend = if end.is_empty() { Vec::new() } else { self.lease_key(end) };
        let t = TxnRequest { success: vec![get(self.lease_key(key), lend)], ..Default::default() };
        let r = self.commit(md, t).await?;
        let kvs = match r.responses.into_iter().next().and_then(|r| r.response) {
            Some(RespOp::ResponseRange(rr)) => rr.kvs,
            _ => Vec::new(),
        };
        self.revoke_lease_kvs(md, &kvs).await
    }

    async fn revoke_lease_kvs(&self, md: &MetadataMap, kvs: &[KeyValue]) -> Result<i64, Status> {
        let mut max = 0;
        for kv in kvs {
            max = max.max(kv.create_revision);
            let key = kv.key.strip_prefix(self.prefix.as_slice()).unwrap_or(&kv.key).to_vec();
            self.revoke(md, &key, get(key.clone(), Vec::new())).await?;
        }
        Ok(max)
    }

    pub async fn put(&self, md: &MetadataMap, p: PutRequest) -> Result<PutResponse, Status> {
        loop {
            let key = p.key.to_vec();
            let r = self.revoke(md, &key, op(ReqOp::RequestPut(p.clone()))).await?;
            if r.succeeded {
                let mut resp = match r.responses.into_iter().next().and_then(|r| r.response) {
                    Some(RespOp::ResponsePut(p)) => p,
                    _ => PutResponse::default(),
                };
                resp.header = r.header;
                return Ok(resp);
            }
        }
    }

    pub async fn delete(&self, md: &MetadataMap, d: DeleteRangeRequest) -> Result<DeleteRangeResponse, Status> {
        loop {
            let r = if d.range_end.is_empty() {
                self.revoke(md, &d.key, op(ReqOp::RequestDeleteRange(d.clone()))).await?
            } else {
                let max = self.revoke_range(md, &d.key, &d.range_end).await?;
                let t = TxnRequest {
                    compare: vec![self.not_held_after(&d.key, &d.range_end, max)],
                    success: vec![op(ReqOp::RequestDeleteRange(d.clone()))],
                    failure: vec![],
                };
                self.commit(md, t).await?
            };
            if r.succeeded {
                let mut resp = match r.responses.into_iter().next().and_then(|r| r.response) {
                    Some(RespOp::ResponseDeleteRange(d)) => d,
                    _ => DeleteRangeResponse::default(),
                };
                resp.header = r.header;
                return Ok(resp);
            }
        }
    }

    /// etcd's `serverTxn`: the client's txn nested inside one that holds only while no key it
    /// may write is held; when one is, the holders are asked to give up and the txn tried again.
    pub async fn txn(&self, md: &MetadataMap, t: TxnRequest) -> Result<TxnResponse, Status> {
        let mut written = Vec::new();
        writes(&t.success, &mut written);
        writes(&t.failure, &mut written);
        let holders: Vec<RequestOp> = written
            .iter()
            .map(|(k, e)| get(self.lease_key(k), if e.is_empty() { Vec::new() } else { self.lease_key(e) }))
            .collect();
        loop {
            let mut guards = Vec::new();
            let mut seen = Vec::new();
            for (key, end) in &written {
                if end.is_empty() {
                    if !seen.contains(key) {
                        guards.push(self.not_held_after(key, &[], 0));
                        seen.push(key.clone());
                    }
                    continue;
                }
                let max_lease = self.revoke_range(md, key, end).await?;
                let last = RangeRequest {
                    key: key.clone().into(),
                    range_end: end.clone().into(),
                    limit: 1,
                    sort_order: SortOrder::Descend as i32,
                    sort_target: SortTarget::Mod as i32,
                    ..Default::default()
                };
                let r = self
                    .commit(md, TxnRequest { success: vec![op(ReqOp::RequestRange(last))], ..Default::default() })
                    .await?;
                let max_mod = match r.responses.into_iter().next().and_then(|r| r.response) {
                    Some(RespOp::ResponseRange(rr)) => rr.kvs.first().map_or(0, |kv| kv.mod_revision),
                    _ => 0,
                };
                guards.push(Compare {
                    key: key.clone().into(),
                    range_end: end.clone().into(),
                    target: CompareTarget::Mod as i32,
                    result: CompareResult::Less as i32,
                    target_union: Some(TargetUnion::ModRevision(max_mod + 1)),
                });
                guards.push(self.not_held_after(key, end, max_lease));
            }
            let outer = TxnRequest {
                compare: guards,
                success: vec![op(ReqOp::RequestTxn(t.clone()))],
                failure: holders.clone(),
            };
            let r = self.commit(md, outer).await?;
            if r.succeeded {
                let mut inner = match r.responses.into_iter().next().and_then(|r| r.response) {
                    Some(RespOp::ResponseTxn(t)) => t,
                    _ => TxnResponse::default(),
                };
                inner.header = r.header;
                return Ok(inner);
            }
            for resp in r.responses {
                if let Some(RespOp::ResponseRange(rr)) = resp.response {
                    self.revoke_lease_kvs(md, &rr.kvs).await?;
                }
            }
        }
    }
}

/// The request a leasing write is made from: its metadata and message.
pub fn parts<T>(req: Request<T>) -> (MetadataMap, T) {
    let (md, _, m) = req.into_parts();
    (md, m)
}
