//! The Lease service: each RPC is a call of the server's typed lease API
//! ([`crate::etcdserver::v3::lease`]); a keep-alive stream's requests are answered in order.

use std::pin::Pin;
use std::sync::Arc;

use rustcd_api::etcdserverpb::lease_server::Lease;
use rustcd_api::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::lease::KeepAlives;

pub struct LeaseService(pub Arc<EtcdServer>);

pub type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    /// One keep-alive stream: each request in `incoming` (a gRPC stream, or the JSON gateway's
    /// decoded body) renews its lease and is answered in order; the answers end with the requests.
    pub fn keep_alive_stream<S>(&self, mut incoming: S) -> KeepAliveStream
    where
        S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(16);
        let svc = LeaseService(self.0.clone());
        tokio::spawn(async move {
            // On a follower, one stream to the leader serves this client's stream throughout.
            let mut session = KeepAlives::default();
            while let Some(Ok(r)) = incoming.next().await {
                let resp = svc.0.lease_keep_alive(r.id, &mut session).await.map_err(Status::from);
                if tx.send(resp).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(self.0.lease_grant(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(self.0.lease_revoke(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive_stream(req.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(self.0.lease_time_to_live(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.0.lease_leases().await?))
    }
}
