//! The lessor's renewals and questions (etcd's `LeaseKeepAlive`, `LeaseTimeToLive` and
//! `LeaseLeases`): answered by the leader, whose lessor is the primary; a follower asks the
//! leader.

use std::time::Instant;

use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::lease;
use crate::etcdserver::server::EtcdServer;

/// One client keep-alive stream's state: on a follower, the stream to the leader that carries
/// its renewals (opened on first use, and again when the leader changed or the stream broke).
#[derive(Default)]
pub struct KeepAlives {
    forward: Option<Forward>,
}

/// A follower's keep-alive stream to the leader.
struct Forward {
    leader: u64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl Forward {
    async fn open(s: &EtcdServer, leader: u64) -> Result<Forward, ServerError> {
        let mut client = LeaseClient::new(s.leader_channel().await?);
        let (tx, rx) = mpsc::channel(1);
        // The leader is a rustcd member: it answers the call's headers at once.
        let rx = client.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Forward { leader, tx, rx })
    }

    async fn renew(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, ServerError> {
        self.tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| ServerError::NoLeader)?;
        self.rx.message().await?.ok_or(ServerError::NoLeader)
    }
}

impl EtcdServer {
    /// Renews lease `id` on the primary lessor, or asks the leader over the session's stream.
    /// An unknown lease is answered with TTL 0, as in etcd.
    pub async fn lease_keep_alive(
        &self,
        id: i64,
        session: &mut KeepAlives,
    ) -> Result<LeaseKeepAliveResponse, ServerError> {
        let renewed = {
            let mut l = lease::lock_as_leader(self);
            l.is_primary().then(|| l.renew(id, Instant::now()))
        };
        match renewed {
            Some(Ok(ttl)) => return Ok(LeaseKeepAliveResponse { header: self.current_header(), id, ttl }),
            Some(Err(_)) => return Ok(LeaseKeepAliveResponse { header: self.current_header(), id, ttl: 0 }),
            None => {}
        }
        let leader = self.leader();
        if session.forward.as_ref().is_none_or(|f| f.leader != leader) {
            session.forward = Some(Forward::open(self, leader).await?);
        }
        let Some(f) = session.forward.as_mut() else { return Err(ServerError::NoLeader) };
        let answer = f.renew(id).await;
        if answer.is_err() {
            session.forward = None;
        }
        answer
    }

    /// A lease's remaining and granted TTL (and its keys when asked): from the primary lessor,
    /// here on the leader, or from the leader. An unknown lease has TTL -1, as in etcd.
    pub async fn lease_time_to_live(
        &self,
        caller: &Caller,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        self.check_time_to_live(caller, &r)?;
        let local = {
            let l = lease::lock_as_leader(self);
            l.is_primary().then(|| {
                l.get(r.id).map(|lease| LeaseTimeToLiveResponse {
                    header: None,
                    id: r.id,
                    ttl: lease.remaining(Instant::now()),
                    granted_ttl: lease.ttl,
                    keys: if r.keys { lease.keys.iter().map(|k| k.clone().into()).collect() } else { vec![] },
                })
            })
        };
        let mut resp = match local {
            Some(Some(resp)) => resp,
            Some(None) => LeaseTimeToLiveResponse { id: r.id, ttl: -1, ..Default::default() },
            None => {
                let mut leader = LeaseClient::new(self.leader_channel().await?);
                let forwarded = leader.lease_time_to_live(caller.forward(r)).await;
                return forwarded.map(tonic::Response::into_inner).map_err(ServerError::from);
            }
        };
        resp.header = self.current_header();
        Ok(resp)
    }

    /// Every lease's ID, after a linearizable read barrier.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, ServerError> {
        self.linearizable_barrier().await?;
        let leases = lease::lock(self.lessor()).ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(LeaseLeasesResponse { header: self.current_header(), leases })
    }

    /// etcd's `checkLeaseTimeToLive`: with auth on, only a named caller asks, and asking for a
    /// lease's keys needs read permission on each of them (root needs none).
    fn check_time_to_live(&self, caller: &Caller, r: &LeaseTimeToLiveRequest) -> Result<(), ServerError> {
        let auth = self.auth();
        if !auth.is_enabled() {
            return Ok(());
        }
        let who = caller.who()?.ok_or(ServerError::UserEmpty)?;
        if !r.keys || auth.is_admin_permitted(Some(who)).is_ok() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> =
            lease::lock(self.lessor()).get(r.id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default();
        for k in keys {
            auth.is_range_permitted(Some(who), &k, &[]).map_err(|_| ServerError::PermissionDenied)?;
        }
        Ok(())
    }
}
