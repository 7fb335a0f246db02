//! Txns that only read (compares and ranges, nested txns of the same kind), served from one
//! read snapshot of the backend at one revision, without the write lock: etcd's read-only txn
//! path. Their semantics are the write path's ([`crate::txn`]): the same compare and range code.

use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::response_op::Response;
use rustcd_api::etcdserverpb::{RequestOp, ResponseOp, TxnRequest, TxnResponse};

use crate::error::{Error, Result};
use crate::range::{self, ReadState, RevTable};
use crate::store::{KV, KvStore};
use crate::txn::{WriteTxn, compares_hold, set_header};

/// True when a txn has no writes in either branch, at any depth.
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) => true,
        Some(Request::RequestTxn(inner)) => is_read_only(inner),
        _ => false,
    })
}

impl KvStore {
    /// Serves a txn that [`is_read_only`] at the latest committed revision; it commits nothing.
    pub fn read_only_txn(&self, t: &TxnRequest) -> Result<TxnResponse> {
        if !is_read_only(t) {
            return Err(Error::Backend("a txn with writes on the read path".into()));
        }
        let (st, tx) = self.read_view()?;
        let table = tx.open_table(KV)?;
        let rs = st.read_state();
        let (succeeded, responses) = exec(&rs, &table, t)?;
        crate::metrics::txn(responses.len());
        Ok(TxnResponse { header: WriteTxn::header(rs.current_rev), succeeded, responses })
    }
}

/// Checks every read revision of the chosen branch first (as the write path does), then reads.
fn exec(st: &ReadState, table: &impl RevTable, t: &TxnRequest) -> Result<(bool, Vec<ResponseOp>)> {
    let succeeded = compares_hold(st.index, st.current_rev, table, &t.compare)?;
    let ops = if succeeded { &t.success } else { &t.failure };
    check(st, table, ops)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range::range(st, table, r)?)),
            Some(Request::RequestTxn(inner)) => {
                let (succeeded, responses) = exec(st, table, inner)?;
                Some(Response::ResponseTxn(TxnResponse { header: None, succeeded, responses }))
            }
            _ => None,
        };
        let mut r = ResponseOp { response };
        set_header(&mut r, st.current_rev);
        out.push(r);
    }
    Ok((succeeded, out))
}

fn check(st: &ReadState, table: &impl RevTable, ops: &[RequestOp]) -> Result<()> {
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                range::read_rev(st, r.revision)?;
            }
            Some(Request::RequestTxn(t)) => {
                let ok = compares_hold(st.index, st.current_rev, table, &t.compare)?;
                check(st, table, if ok { &t.success } else { &t.failure })?;
            }
            _ => {}
        }
    }
    Ok(())
}
