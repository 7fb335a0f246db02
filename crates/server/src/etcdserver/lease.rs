//! Leases on the server side: applying grant/revoke/checkpoint entries to the lessor and the
//! key space, restoring the lessor from the backend, and the leader's expiry loop that
//! revokes expired leases through raft.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::etcdserver::request::Op;
use prost::Message;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{
    DeleteRangeRequest, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, RangeRequest, RequestOp, TxnRequest,
};
use rustcd_api::rustcdpb::StoredLease;
use rustcd_lease::Lessor;
use rustcd_mvcc::{KvStore, WriteTxn};

use crate::error::ServerError;
use crate::etcdserver::apply::Applied;
use crate::etcdserver::server::EtcdServer;

pub type SharedLessor = Arc<Mutex<Lessor>>;

pub fn lock(l: &SharedLessor) -> MutexGuard<'_, Lessor> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lessor, made primary first when this member leads but the expiry loop has not yet
/// noticed: a request right after an election must not be forwarded to the leader, itself.
pub fn lock_as_leader(s: &EtcdServer) -> MutexGuard<'_, Lessor> {
    let mut l = lock(s.lessor());
    if s.leader() == s.member_id() {
        follow_leadership(&mut l, s, true, Instant::now());
    }
    l
}

/// Makes the lessor primary with the leadership (every lease extended by an election
/// timeout, as etcd does) and secondary without it.
fn follow_leadership(l: &mut Lessor, s: &EtcdServer, leader: bool, now: Instant) {
    match (leader, l.is_primary()) {
        (true, false) => l.promote(Duration::from_millis(s.config().raw.election_timeout), now),
        (false, true) => l.demote(),
        _ => {}
    }
}

/// Where the backend keeps a lease (`rustcd_schema::meta`).
fn meta_key(id: i64) -> String {
    rustcd_schema::meta::lease_key(id)
}

/// etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds (rounded up).
pub fn min_ttl(election_timeout_ms: u64) -> i64 {
    (election_timeout_ms * 3).div_ceil(2000) as i64
}

/// Rebuilds the lessor from the backend: stored leases, then the keys attached to them.
pub fn restore(store: &KvStore, lessor: &SharedLessor) -> Result<(), rustcd_mvcc::Error> {
    let mut l = lock(lessor);
    l.clear();
    for (_, v) in store.meta_prefix(rustcd_schema::meta::LEASE_PREFIX)? {
        if let Ok(s) = StoredLease::decode(v.as_slice()) {
            l.restore(s.id, s.ttl, s.remaining_ttl);
        }
    }
    // Attaching keys needs a scan of every key: skipped when no lease exists (a restart's
    // largest cost otherwise, measured with callgrind on 300k keys).
    if l.ids().is_empty() {
        return Ok(());
    }
    let all = store.range(&RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() })?;
    for kv in all.kvs.iter().filter(|kv| kv.lease != 0) {
        l.attach(kv.lease, &kv.key);
    }
    Ok(())
}

fn save(w: &mut WriteTxn, id: i64, ttl: i64, remaining_ttl: i64) {
    w.put_meta(&meta_key(id), &StoredLease { id, ttl, remaining_ttl }.encode_to_vec());
}

pub fn apply_grant(w: &mut WriteTxn, lessor: &SharedLessor, r: &LeaseGrantRequest) -> Result<Applied, ServerError> {
    let ttl = lock(lessor).grant(r.id, r.ttl, Instant::now()).map_err(ServerError::from)?;
    save(w, r.id, ttl, 0);
    Ok(Applied::LeaseGrant(LeaseGrantResponse { header: None, id: r.id, ttl, error: String::new() }))
}

/// Revokes a lease: its keys are deleted in one revision, as etcd does.
pub fn apply_revoke(w: &mut WriteTxn, lessor: &SharedLessor, r: &LeaseRevokeRequest) -> Result<Applied, ServerError> {
    let keys = lock(lessor).revoke(r.id).map_err(ServerError::from)?;
    if !keys.is_empty() {
        let success = keys
            .into_iter()
            .map(|k| RequestOp {
                request: Some(ReqOp::RequestDeleteRange(DeleteRangeRequest { key: k.into(), ..Default::default() })),
            })
            .collect();
        w.txn(&TxnRequest { compare: vec![], success, failure: vec![] }).map_err(ServerError::from)?;
    }
    w.remove_meta(&meta_key(r.id));
    Ok(Applied::LeaseRevoke(LeaseRevokeResponse { header: Some(Default::default()) }))
}

pub fn apply_checkpoint(
    w: &mut WriteTxn,
    lessor: &SharedLessor,
    r: &LeaseCheckpointRequest,
) -> Result<Applied, ServerError> {
    let mut l = lock(lessor);
    for c in &r.checkpoints {
        l.checkpoint(c.id, c.remaining_ttl);
        if let Some(lease) = l.get(c.id) {
            save(w, c.id, lease.ttl, c.remaining_ttl);
        }
    }
    Ok(Applied::LeaseCheckpoint)
}

/// etcd's `ensureLeadership`: a ReadIndex round confirms, with a quorum, that this member still
/// leads.
async fn ensure_leadership(s: &EtcdServer) -> bool {
    let confirmed = tokio::time::timeout(Duration::from_secs(5), s.linearizable_barrier()).await;
    matches!(confirmed, Ok(Ok(()))) && s.leader() == s.member_id()
}

/// How often the primary checkpoints remaining TTLs through raft (etcd's default: 5 min).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
/// Most leases revoked per round of the expiry loop.
const REVOKES_PER_ROUND: usize = 64;

/// The leader's lease loop: becomes the primary lessor with the leadership (extending every
/// lease by an election timeout), revokes expired leases through raft, checkpoints TTLs.
pub async fn expiry_loop(s: Arc<EtcdServer>) {
    let mut in_flight: HashMap<i64, Instant> = HashMap::new();
    let mut last_checkpoint = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let leader = s.leader() == s.member_id();
        let now = Instant::now();
        let expired = {
            let mut l = lock(s.lessor());
            follow_leadership(&mut l, &s, leader, now);
            if !leader {
                continue;
            }
            l.expired(now, REVOKES_PER_ROUND)
        };
        in_flight.retain(|_, t| now.duration_since(*t) < Duration::from_secs(5));
        if !expired.is_empty() && !ensure_leadership(&s).await {
            // A deposed leader's clock must not revoke leases the new leader has extended
            // (etcd 3.5.13's fix): only a leader confirmed by a quorum revokes.
            tracing::warn!(count = expired.len(), "ignored expired leases: this member is no longer the leader");
            continue;
        }
        for id in expired {
            if in_flight.insert(id, now).is_some() {
                continue;
            }
            let s = s.clone();
            tokio::spawn(async move {
                match s.propose_as_root(Op::LeaseRevoke(LeaseRevokeRequest { id })).await {
                    Ok(_) => rustcd_metrics::get().server.lease_expired_total.inc(),
                    Err(e) => tracing::debug!(lease = id, error = %e, "revoking an expired lease failed; will retry"),
                }
            });
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
            last_checkpoint = Instant::now();
            let cps = lock(s.lessor()).checkpoints(Instant::now());
            if !cps.is_empty() {
                let checkpoints = cps
                    .into_iter()
                    .map(|(id, remaining_ttl)| rustcd_api::etcdserverpb::LeaseCheckpoint { id, remaining_ttl })
                    .collect();
                let _ = s.propose_internal(Op::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints })).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn min_ttl_is_one_and_a_half_election_timeouts() {
        assert_eq!(super::min_ttl(1000), 2);
        assert_eq!(super::min_ttl(5000), 8);
    }
}
