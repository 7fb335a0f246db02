//! Server-side building blocks of etcd's locks and elections (its `concurrency` package run
//! inside the server, as `v3lock` and `v3election` do): a key per holder under a prefix,
//! ordered by create revision, and waiting until every older key is gone.

use std::sync::Arc;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use rustcd_api::mvccpb::KeyValue;
use rustcd_mvcc::KeyRange;
use rustcd_mvcc::watch::{WatchSpec, WatcherKey};
use tokio::sync::mpsc;

use rustcd_gocompat::prefix_end;

use crate::error::ServerError;
use crate::etcdserver::apply::expect_applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

pub async fn txn(s: &EtcdServer, caller: &Caller, t: TxnRequest) -> Result<TxnResponse, ServerError> {
    expect_applied!(s.propose(caller, Op::Txn(t)).await?, Txn)
}

/// A linearizable read, as the caller's Range.
pub async fn range(s: &EtcdServer, caller: &Caller, r: RangeRequest) -> Result<RangeResponse, ServerError> {
    s.range(caller, r).await
}

fn op(r: ReqOp) -> RequestOp {
    RequestOp { request: Some(r) }
}

pub fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec().into(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        range_end: Default::default(),
    }
}

/// Creates `key` with `value` on `lease` unless it exists; returns its create revision, the
/// value it holds, and the revision of the txn.
pub async fn create_key(
    s: &EtcdServer,
    caller: &Caller,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(i64, KeyValue, i64), ServerError> {
    let put = PutRequest { key: key.to_vec().into(), value: value.to_vec().into(), lease, ..Default::default() };
    let get = RangeRequest { key: key.to_vec().into(), ..Default::default() };
    let t = TxnRequest {
        compare: vec![create_rev_is(key, 0)],
        success: vec![op(ReqOp::RequestPut(put)), op(ReqOp::RequestRange(get.clone()))],
        failure: vec![op(ReqOp::RequestRange(get))],
    };
    let resp = txn(s, caller, t).await?;
    let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let kv = resp
        .responses
        .iter()
        .find_map(|r| match &r.response {
            Some(RespOp::ResponseRange(rr)) => rr.kvs.first().cloned(),
            _ => None,
        })
        .ok_or_else(|| ServerError::Internal("key vanished while being created".into()))?;
    Ok((kv.create_revision, kv, rev))
}

/// Deletes `key` if it still has create revision `rev`.
pub async fn delete_if_created_at(
    s: &EtcdServer,
    caller: &Caller,
    key: &[u8],
    rev: i64,
) -> Result<TxnResponse, ServerError> {
    let del = DeleteRangeRequest { key: key.to_vec().into(), ..Default::default() };
    txn(
        s,
        caller,
        TxnRequest {
            compare: vec![create_rev_is(key, rev)],
            success: vec![op(ReqOp::RequestDeleteRange(del))],
            failure: vec![],
        },
    )
    .await
}

/// The oldest key under `prefix` (the lock holder or election leader).
pub async fn first_key(s: &EtcdServer, caller: &Caller, prefix: &[u8]) -> Result<(Option<KeyValue>, i64), ServerError> {
    let r = RangeRequest {
        key: prefix.to_vec().into(),
        range_end: prefix_end(prefix).into(),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    };
    let resp = range(s, caller, r).await?;
    let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    Ok((resp.kvs.into_iter().next(), rev))
}

/// A hub watcher that is cancelled when dropped (also when the client goes away).
pub struct WatchGuard {
    s: Arc<EtcdServer>,
    key: WatcherKey,
    pub rx: mpsc::Receiver<rustcd_mvcc::watch::WatchEvent>,
}

impl WatchGuard {
    pub fn new(s: &Arc<EtcdServer>, range: KeyRange, start_rev: i64) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let spec = WatchSpec { range, start_rev, no_put: false, no_delete: false, prev_kv: false, watch_id: 0 };
        let (key, _) = s.hub().watch(spec, tx);
        WatchGuard { s: s.clone(), key, rx }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.s.hub().cancel(self.key);
    }
}

/// etcd's `waitDeletes`: returns once no key under `prefix` was created before `my_rev`.
pub async fn wait_older_gone(
    s: &Arc<EtcdServer>,
    caller: &Caller,
    prefix: &[u8],
    my_rev: i64,
) -> Result<(), ServerError> {
    loop {
        let r = RangeRequest {
            key: prefix.to_vec().into(),
            range_end: prefix_end(prefix).into(),
            max_create_revision: my_rev - 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            ..Default::default()
        };
        let resp = range(s, caller, r).await?;
        let Some(older) = resp.kvs.first() else { return Ok(()) };
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let mut w = WatchGuard::new(s, KeyRange::new(&older.key, &[]), rev + 1);
        loop {
            let ev = w.rx.recv().await.ok_or(ServerError::Stopped)?;
            if ev.compact_revision != 0 || ev.events.iter().any(|e| e.r#type == 1) {
                break;
            }
        }
    }
}

/// The prefix of a lock's or an election's keys: `name/`.
pub fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// A holder's prefix (`name/`) and its key under it (`name/<lease in hex>`), as etcd's lock
/// and election name them.
pub fn holder_key(name: &[u8], lease: i64) -> (Vec<u8>, Vec<u8>) {
    let prefix = prefix_of(name);
    let mut key = prefix.clone();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    (prefix, key)
}

/// Waits for the holder's turn: every older key under `prefix` gone, and `key` (created at
/// `my_rev`) still there, or the session expired meanwhile.
pub async fn wait_turn(
    s: &Arc<EtcdServer>,
    caller: &Caller,
    prefix: &[u8],
    key: &[u8],
    my_rev: i64,
) -> Result<(), ServerError> {
    wait_older_gone(s, caller, prefix, my_rev).await?;
    if still_held(s, caller, key, my_rev).await? { Ok(()) } else { Err(ServerError::SessionExpired) }
}

/// Whether `key` still exists with create revision `rev` (the holder's session is alive).
pub async fn still_held(s: &EtcdServer, caller: &Caller, key: &[u8], rev: i64) -> Result<bool, ServerError> {
    let resp = range(s, caller, RangeRequest { key: key.to_vec().into(), ..Default::default() }).await?;
    Ok(resp.kvs.first().is_some_and(|kv| kv.create_revision == rev))
}
