//! A Kubernetes API server's traffic to etcd, as one workload: objects of a few resource types
//! under `/registry/<type>/`, a watch on each type's prefix (the API server's watch cache),
//! and a mix of requests: paged lists at one revision (`limit` and a continue key, as a list
//! of 500 per page does), gets, compare-and-swap updates on `mod_revision` (the API server's
//! `GuaranteedUpdate`: a txn that puts when the object is unchanged and reads it otherwise),
//! and events created on a lease shared by a client's events.

use std::collections::HashMap;

use bytes::Bytes;
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{
    Compare, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use rustcd_gocompat::prefix_end;
use tonic::transport::Channel;

use crate::conn::{Token, with_token};
use crate::load::mix;
use crate::report::error_text;

const TYPES: [&str; 4] = ["pods", "configmaps", "secrets", "services"];

/// Percent of requests (out of 100) of each kind, in this order: list, get, update, event.
const MIX: [usize; 4] = [2, 48, 35, 15];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Objects over all types.
    pub objects: usize,
    /// Objects per page of a list (Kubernetes asks for 500).
    pub page: i64,
}

fn object_key(i: usize) -> Vec<u8> {
    format!("/registry/{}/default/object-{:07}", TYPES[i % TYPES.len()], i / TYPES.len()).into_bytes()
}

/// The run's objects and watches; the watches end when this is dropped.
pub struct Shared {
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

/// Writes every object, then opens a watch on each type's prefix and on the events'.
pub async fn setup(channel: &Channel, cfg: Config, val_size: usize, token: &Token) -> Result<Shared, String> {
    let mut kv = KvClient::new(channel.clone());
    let value: Bytes = vec![b'o'; val_size].into();
    let all: Vec<usize> = (0..cfg.objects).collect();
    for chunk in all.chunks(100) {
        let success = chunk
            .iter()
            .map(|i| {
                let put = PutRequest { key: object_key(*i).into(), value: value.clone(), ..Default::default() };
                RequestOp { request: Some(ReqOp::RequestPut(put)) }
            })
            .collect();
        let t = TxnRequest { compare: vec![], success, failure: vec![] };
        kv.txn(with_token(t, token)).await.map_err(|s| error_text(&s))?;
    }
    let mut watchers = Vec::new();
    let prefixes = TYPES.iter().map(|t| format!("/registry/{t}/")).chain(["/registry/events/".to_string()]);
    for prefix in prefixes {
        let create = WatchCreateRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: prefix_end(prefix.as_bytes()).into(),
            ..Default::default()
        };
        let first = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let (tx, mut answers) = crate::watch::open_stream(channel, token, first, 1).await?;
        watchers.push(tokio::spawn(async move {
            let _keep_open = tx;
            while let Ok(Some(_events)) = answers.message().await {}
        }));
    }
    Ok(Shared { watchers })
}

/// One client's view: the `mod_revision` it last saw of each object, and its events' lease.
pub struct ClientState {
    mods: HashMap<Vec<u8>, i64>,
    lease: i64,
}

impl ClientState {
    pub async fn open(channel: &Channel, token: &Token) -> Result<ClientState, String> {
        let mut lease = LeaseClient::new(channel.clone());
        let granted = lease.lease_grant(with_token(LeaseGrantRequest { ttl: 3600, id: 0 }, token)).await;
        Ok(ClientState { mods: HashMap::new(), lease: granted.map_err(|s| error_text(&s))?.into_inner().id })
    }
}

/// The `n`th request of the mix.
pub async fn one(
    kv: &mut KvClient<Channel>,
    st: &mut ClientState,
    token: &Token,
    n: usize,
    cfg: Config,
    value: &Bytes,
) -> Result<(), String> {
    let obj = object_key(mix(n) % cfg.objects.max(1));
    let pick = n % 100;
    if pick < MIX[0] {
        return list(kv, token, TYPES[n % TYPES.len()], cfg.page).await;
    }
    if pick < MIX[0] + MIX[1] {
        let r = RangeRequest { key: obj.clone().into(), ..Default::default() };
        let resp = kv.range(with_token(r, token)).await.map_err(|s| error_text(&s))?.into_inner();
        if let Some(kv) = resp.kvs.first() {
            st.mods.insert(obj, kv.mod_revision);
        }
        return Ok(());
    }
    if pick < MIX[0] + MIX[1] + MIX[2] {
        let seen = st.mods.get(&obj).copied().unwrap_or(0);
        let unchanged = Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: obj.clone().into(),
            target_union: Some(TargetUnion::ModRevision(seen)),
            range_end: Default::default(),
        };
        let put = PutRequest { key: obj.clone().into(), value: value.clone(), ..Default::default() };
        let get = RangeRequest { key: obj.clone().into(), ..Default::default() };
        let t = TxnRequest {
            compare: vec![unchanged],
            success: vec![RequestOp { request: Some(ReqOp::RequestPut(put)) }],
            failure: vec![RequestOp { request: Some(ReqOp::RequestRange(get)) }],
        };
        let resp = kv.txn(with_token(t, token)).await.map_err(|s| error_text(&s))?.into_inner();
        let now = if resp.succeeded {
            resp.header.map(|h| h.revision)
        } else {
            resp.responses.iter().find_map(|r| match &r.response {
                Some(RespOp::ResponseRange(rr)) => rr.kvs.first().map(|kv| kv.mod_revision),
                _ => None,
            })
        };
        st.mods.insert(obj, now.unwrap_or(0));
        return Ok(());
    }
    let event = format!("/registry/events/default/event-{n:09}");
    let put =
        PutRequest { key: event.into_bytes().into(), value: value.clone(), lease: st.lease, ..Default::default() };
    kv.put(with_token(put, token)).await.map(drop).map_err(|s| error_text(&s))
}

/// Every object of a type, a page at a time, every page at the first page's revision.
async fn list(kv: &mut KvClient<Channel>, token: &Token, kind: &str, page: i64) -> Result<(), String> {
    let prefix = format!("/registry/{kind}/").into_bytes();
    let end = prefix_end(&prefix);
    let (mut from, mut rev) = (prefix, 0);
    loop {
        let r = RangeRequest {
            key: from.clone().into(),
            range_end: end.clone().into(),
            limit: page,
            revision: rev,
            ..Default::default()
        };
        let resp = kv.range(with_token(r, token)).await.map_err(|s| error_text(&s))?.into_inner();
        if rev == 0 {
            rev = resp.header.map_or(0, |h| h.revision);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                from = last.key.to_vec();
                from.push(0);
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_spread_over_the_types_and_the_mix_adds_up() {
        assert_eq!(object_key(0), b"/registry/pods/default/object-0000000");
        assert_eq!(object_key(5), b"/registry/configmaps/default/object-0000001");
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0");
        assert_eq!(MIX.iter().sum::<usize>(), 100);
    }
}
