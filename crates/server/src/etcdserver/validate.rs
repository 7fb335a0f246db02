//! Request validation before anything is proposed, with etcd's rules and errors
//! (etcd's `api/v3rpc/key.go`): keys present, txn size, no duplicate keys in a txn branch.

use std::collections::HashSet;

use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rustcd_mvcc::KeyRange;

use crate::error::ServerError;

pub fn range(r: &RangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

pub fn put(p: &PutRequest) -> Result<(), ServerError> {
    if p.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(ServerError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(ServerError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(d: &DeleteRangeRequest) -> Result<(), ServerError> {
    if d.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

pub fn txn(t: &TxnRequest, max_ops: usize) -> Result<(), ServerError> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(ServerError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(ServerError::EmptyKey);
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        op_(op, max_ops)?;
    }
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

fn op_(op: &RequestOp, max_ops: usize) -> Result<(), ServerError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(p)) => put(p),
        Some(Request::RequestDeleteRange(d)) => delete_range(d),
        Some(Request::RequestTxn(t)) => txn(t, max_ops),
        None => Err(ServerError::EmptyRequestOp),
    }
}

/// etcd's `checkIntervals`: within a branch (nested txns included) no key may be put twice,
/// nor put and deleted; keys put in a nested txn's success and failure branches may repeat.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<KeyRange>), ServerError> {
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[KeyRange], k: &[u8]| dels.iter().any(|d| d.contains(k));
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(ServerError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(ServerError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        let k = p.key.to_vec();
        if puts.contains(&k) || deleted(&dels, &k) {
            return Err(ServerError::DuplicateKey);
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest { key: k.as_bytes().to_vec().into(), ..Default::default() })),
        }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec().into(),
                range_end: end.as_bytes().to_vec().into(),
                prev_kv: false,
            })),
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let t = |ops: Vec<RequestOp>| txn(&TxnRequest { compare: vec![], success: ops, failure: vec![] }, 128);
        assert!(t(vec![put_op("a"), put_op("b")]).is_ok());
        assert_eq!(
            t(vec![put_op("a"), put_op("a")]).unwrap_err().to_string(),
            "etcdserver: duplicate key given in txn request"
        );
        assert!(t(vec![put_op("b"), del_op("a", "c")]).is_err());
        assert!(t(vec![put_op("c"), del_op("a", "c")]).is_ok());
        let nested = RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success: vec![put_op("x")],
                failure: vec![put_op("x")],
            })),
        };
        assert!(t(vec![nested.clone()]).is_ok());
        assert!(t(vec![nested, put_op("x")]).is_err());
        let many = (0..129).map(|i| put_op(&i.to_string())).collect();
        assert_eq!(t(many).unwrap_err().to_string(), "etcdserver: too many operations in txn request");
    }
}
