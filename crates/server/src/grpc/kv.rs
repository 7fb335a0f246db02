//! The KV service: validate, then read locally (serializable) or after a ReadIndex round
//! (linearizable), or propose through raft and wait for the apply result.

use std::sync::Arc;

use rustcd_api::etcdserverpb::kv_server::Kv;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use rustcd_api::rustcdpb::internal_request::Request as Op;
use tonic::{Request, Response, Status};

use crate::apply::Applied;
use crate::error::rpc;
use crate::server::EtcdServer;
use crate::validate;

pub struct KvService(pub Arc<EtcdServer>);

fn unexpected() -> Status {
    Status::internal("etcdserver: unexpected apply result")
}

/// A txn with only reads needs no proposal (etcd serves it from the read path).
fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(ReqOp::RequestRange(_)) => true,
        Some(ReqOp::RequestTxn(inner)) => is_read_only(inner),
        _ => false,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        validate::range(&r)?;
        if !r.serializable {
            self.0.linearizable_barrier().await?;
        }
        let mut resp = self.0.store.range(&r).map_err(rpc::from_mvcc)?;
        resp.header = self.0.header(resp.header.map(|h| h.revision).unwrap_or(0));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = req.into_inner();
        validate::put(&p)?;
        #[cfg(feature = "failpoints")]
        if crate::failpoints::returns("ack-before-commit") {
            let s = self.0.clone();
            let rev = s.store.current_rev();
            tokio::spawn(async move { s.propose(Op::Put(p)).await });
            return Ok(Response::new(PutResponse { header: self.0.header(rev + 1), ..Default::default() }));
        }
        match self.0.propose(Op::Put(p)).await? {
            Applied::Put(mut resp) => {
                resp.header = self.0.header(resp.header.map(|h| h.revision).unwrap_or(0));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = req.into_inner();
        validate::delete_range(&d)?;
        match self.0.propose(Op::DeleteRange(d)).await? {
            Applied::DeleteRange(mut resp) => {
                resp.header = self.0.header(resp.header.map(|h| h.revision).unwrap_or(0));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let t = req.into_inner();
        validate::txn(&t, self.0.cfg.raw.max_txn_ops)?;
        let applied = if is_read_only(&t) {
            self.0.linearizable_barrier().await?;
            let no_leases = |_: i64| false;
            // A read-only txn runs in a write batch that changes nothing, so that it sees one
            // consistent revision; it commits no revision.
            let c = self.0.store.write(false, &no_leases, |w| w.txn(&t)).map_err(rpc::from_mvcc)?;
            Applied::Txn(c.value.map_err(rpc::from_mvcc)?)
        } else {
            self.0.propose(Op::Txn(t)).await?
        };
        match applied {
            Applied::Txn(mut resp) => {
                resp.header = self.0.header(resp.header.map(|h| h.revision).unwrap_or(0));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        match self.0.propose(Op::Compaction(req.into_inner())).await? {
            Applied::Compaction(mut resp) => {
                resp.header = self.0.header(resp.header.map(|h| h.revision).unwrap_or(0));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }
}
