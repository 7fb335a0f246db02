//! The backend quota (`--quota-backend-bytes`, etcd's `backendQuota`): a request that would grow
//! the backend file past the quota is refused with `etcdserver: mvcc: database space exceeded`
//! and raises the NOSPACE alarm cluster-wide (through raft), after which the alarm layer refuses
//! every growing request until an operator compacts, defragments and disarms. A request's cost
//! is etcd's: a put's key and value plus 256 bytes of overhead, a txn's larger branch, a lease
//! grant 64 bytes. The check runs where etcd runs it: before proposing (the client's answer),
//! and again at apply (the write is applied, its sender told the space is exceeded).

use std::sync::Arc;

use crate::etcdserver::request::Op;
use rustcd_api::etcdserverpb::request_op::Request as TxnOp;
use rustcd_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use rustcd_mvcc::{KvStore, WriteTxn};

use crate::error::ServerError;
use crate::etcdserver::apply::{Applied, ApplyRequest, Origin};

/// etcd's `DefaultQuotaBytes`: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd's `MaxQuotaBytes`: 8 GiB, past which it warns.
pub const MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;

const KV_OVERHEAD: u64 = 256;
const LEASE_OVERHEAD: u64 = 64;

/// The quota in bytes from `--quota-backend-bytes` (`None`: no quota), logged as etcd logs it.
pub fn from_flag(bytes: i64) -> Option<u64> {
    let human = |b: i64| rustcd_gocompat::human_bytes(b.max(0) as u64);
    match bytes {
        b if b < 0 => {
            tracing::warn!(quota_name = "v3-applier", "disabled backend quota");
            None
        }
        0 => {
            tracing::info!(
                quota_name = "v3-applier", quota_size_bytes = DEFAULT_QUOTA_BYTES,
                quota_size = %human(DEFAULT_QUOTA_BYTES), "enabled backend quota with default value"
            );
            Some(DEFAULT_QUOTA_BYTES as u64)
        }
        b => {
            if b > MAX_QUOTA_BYTES {
                tracing::warn!(
                    quota_name = "v3-applier", quota_size_bytes = b, quota_size = %human(b),
                    quota_maximum_size_bytes = MAX_QUOTA_BYTES, quota_maximum_size = %human(MAX_QUOTA_BYTES),
                    "quota exceeds the maximum value"
                );
            }
            tracing::info!(quota_name = "v3-applier", quota_size_bytes = b, quota_size = %human(b), "enabled backend quota");
            Some(b as u64)
        }
    }
}

fn put_cost(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

fn ops_cost(ops: &[RequestOp]) -> u64 {
    ops.iter()
        .map(|o| match &o.request {
            Some(TxnOp::RequestPut(p)) => put_cost(p),
            Some(TxnOp::RequestTxn(t)) => txn_cost(t),
            _ => 0,
        })
        .sum()
}

/// etcd's `costTxn`: the larger of the two branches.
pub fn txn_cost(t: &TxnRequest) -> u64 {
    ops_cost(&t.success).max(ops_cost(&t.failure))
}

/// What a request may add to the backend (0: it cannot grow it).
pub fn cost(op: &Op) -> u64 {
    match op {
        Op::Put(p) => put_cost(p),
        Op::Txn(t) => txn_cost(t),
        Op::LeaseGrant(_) => LEASE_OVERHEAD,
        _ => 0,
    }
}

/// etcd's `Available`: the backend file plus the request stays under the quota.
pub fn available(store: &KvStore, quota: Option<u64>, cost: u64) -> bool {
    let Some(quota) = quota else { return true };
    cost == 0 || store.file_size().saturating_add(cost) < quota
}

/// The apply layer: a growing request that finds the backend over quota is still applied (as
/// etcd's quotaApplierV3 applies it) but answered `database space exceeded`.
pub struct QuotaGate {
    pub store: Arc<KvStore>,
    pub quota: Option<u64>,
    pub inner: Box<dyn ApplyRequest>,
}

impl ApplyRequest for QuotaGate {
    fn apply(&self, w: &mut WriteTxn, op: Op, origin: &Origin) -> Result<Applied, ServerError> {
        let ok = available(&self.store, self.quota, cost(&op));
        let r = self.inner.apply(w, op, origin)?;
        if ok { Ok(r) } else { Err(ServerError::NoSpace) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_etcds() {
        let put = |k: &str, v: usize| PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: vec![0; v].into(),
            ..Default::default()
        };
        assert_eq!(cost(&Op::Put(put("k", 10))), 256 + 1 + 10);
        let op = |p| RequestOp { request: Some(TxnOp::RequestPut(p)) };
        let t = TxnRequest {
            compare: vec![],
            success: vec![op(put("a", 1)), op(put("b", 1))],
            failure: vec![op(put("c", 100))],
        };
        assert_eq!(txn_cost(&t), 2 * (256 + 1 + 1), "the larger branch");
        assert_eq!(cost(&Op::LeaseGrant(Default::default())), 64);
        assert_eq!(cost(&Op::DeleteRange(Default::default())), 0);
        assert_eq!(from_flag(-1), None);
        assert_eq!(from_flag(0), Some(DEFAULT_QUOTA_BYTES as u64));
    }
}
