//! The Lease service. Grant and revoke go through raft; keep-alive and time-to-live are
//! answered by the leader (the primary lessor), and a follower forwards them to it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::lease_server::Lease;
use rustcd_api::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api;
use crate::error::ServerError;
use crate::etcdserver::lease;
use crate::etcdserver::server::EtcdServer;

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
            let mut forward: Option<Forward> = None;
            while let Some(Ok(r)) = incoming.next().await {
                let resp = svc.keep_alive(r.id, &mut forward).await;
                if tx.send(resp).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    async fn leader_client(&self) -> Result<LeaseClient<tonic::transport::Channel>, Status> {
        Ok(LeaseClient::new(self.0.leader_channel().await?))
    }

    /// Renews on the primary, or asks the leader to over `forward` (opened on first use, and
    /// again when the leader changed or the stream broke).
    async fn keep_alive(&self, id: i64, forward: &mut Option<Forward>) -> Result<LeaseKeepAliveResponse, Status> {
        let renewed = {
            let mut l = lease::lock_as_leader(&self.0);
            l.is_primary().then(|| l.renew(id, Instant::now()))
        };
        match renewed {
            Some(Ok(ttl)) => return Ok(LeaseKeepAliveResponse { header: self.0.current_header(), id, ttl }),
            // etcd answers an unknown lease with TTL 0.
            Some(Err(_)) => return Ok(LeaseKeepAliveResponse { header: self.0.current_header(), id, ttl: 0 }),
            None => {}
        }
        let leader = self.0.leader();
        if forward.as_ref().is_none_or(|f| f.leader != leader) {
            *forward = Some(Forward::open(self, leader).await?);
        }
        let Some(f) = forward.as_mut() else { return Err(ServerError::NoLeader.into()) };
        let answer = f.renew(id).await;
        if answer.is_err() {
            *forward = None;
        }
        answer
    }
}

/// A follower's keep-alive stream to the leader, carrying one client stream's renewals.
struct Forward {
    leader: u64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

impl Forward {
    async fn open(svc: &LeaseService, leader: u64) -> Result<Forward, Status> {
        let mut client = svc.leader_client().await?;
        let (tx, rx) = mpsc::channel(1);
        // The leader is a rustcd member: it answers the call's headers at once.
        let rx = client.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Forward { leader, tx, rx })
    }

    async fn renew(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        self.tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Status::from(ServerError::NoLeader))?;
        self.rx.message().await?.ok_or_else(|| Status::from(ServerError::NoLeader))
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
