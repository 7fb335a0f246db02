//! The Election service (etcd's `v3election`): Campaign, Proclaim, Leader and Resign are calls
//! of the server's typed API ([`crate::etcdserver::v3::lock`]); Observe streams each new leader
//! from a task that takes the request's caller along.

use std::pin::Pin;
use std::sync::Arc;

use rustcd_api::v3electionpb::election_server::Election;
use rustcd_api::v3electionpb::*;
use rustcd_mvcc::KeyRange;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::concurrency as cc;
use crate::etcdserver::server::EtcdServer;

pub struct ElectionService(pub Arc<EtcdServer>);

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        Ok(Response::new(self.0.campaign(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        Ok(Response::new(self.0.proclaim(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        Ok(Response::new(self.0.election_leader(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        // The stream's reads are its caller's: the task serving them takes the caller along.
        let caller = api::caller::of(&req);
        let prefix = cc::prefix_of(&req.into_inner().name);
        let s = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut last: Option<(bytes::Bytes, i64)> = None;
            loop {
                let (kv, rev) = match cc::first_key(&s, &caller, &prefix).await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if let Some(kv) = kv {
                    let seen = (kv.key.clone(), kv.mod_revision);
                    if last.as_ref() != Some(&seen) {
                        last = Some(seen);
                        let resp = LeaderResponse { header: s.header(rev), kv: Some(kv) };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                // Wait for any change under the prefix, then look again.
                let mut w =
                    cc::WatchGuard::new(&s, KeyRange::new(&prefix, &rustcd_gocompat::prefix_end(&prefix)), rev + 1);
                tokio::select! {
                    ev = w.rx.recv() => if ev.is_none() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        Ok(Response::new(self.0.resign(&api::caller::of(&req), req.into_inner()).await?))
    }
}
