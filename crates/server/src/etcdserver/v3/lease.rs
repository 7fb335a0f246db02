//! The lessor's questions (etcd's `LeaseTimeToLive` and `LeaseLeases`): answered by the leader,
//! whose lessor is the primary; a follower asks the leader.

use std::time::Instant;

use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::{LeaseLeasesResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};

use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::lease;
use crate::etcdserver::server::EtcdServer;

impl EtcdServer {
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
                return leader.lease_time_to_live(r).await.map(tonic::Response::into_inner).map_err(ServerError::from);
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
