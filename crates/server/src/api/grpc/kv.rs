//! The KV service: each RPC is one call of the server's typed API ([`crate::etcdserver::v3`]).

use std::sync::Arc;

use rustcd_api::etcdserverpb::kv_server::Kv;
use rustcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::server::EtcdServer;

pub struct KvService(pub Arc<EtcdServer>);

type RangeStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(self.0.range(&api::caller::of(&req), req.into_inner()).await?))
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(&self, req: Request<RangeRequest>) -> Result<Response<RangeStream>, Status> {
        // Two chunks in flight at most: the stream holds no more of the range than that.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        self.0.range_stream(&api::caller::of(&req), req.into_inner(), tx).await?;
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(self.0.put(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        Ok(Response::new(self.0.delete_range(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Ok(Response::new(self.0.txn(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(self.0.compact(&api::caller::of(&req), req.into_inner()).await?))
    }
}
