//! rustcd-lease: the lessor (etcd's `lease` package): leases with their TTLs, the keys
//! attached to them, and expiry.
//!
//! Owns lease state only. Every change arrives from applying committed raft entries (grant,
//! revoke, checkpoint, attach/detach by the events of a write); renewals and expiry are decided
//! by the leader, the *primary* lessor, whose expiry deadlines are the only ones that count.
//! It must not touch the key space or raft: revoking a lease returns the keys to delete, and
//! the caller deletes them through raft. Start with [`Lessor`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rustcd_api::mvccpb::Event;

/// Largest TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    #[error("lease not found")]
    NotFound,
    #[error("lease already exists")]
    Exists,
    #[error("too large lease TTL")]
    TtlTooLarge,
}

/// One lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
    /// Remaining TTL at the last checkpoint (0 when never checkpointed).
    pub remaining_ttl: i64,
    /// When it expires; only set on the primary (leader).
    expiry: Option<Instant>,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// Seconds left, rounded up as etcd does; the full TTL where no deadline runs.
    pub fn remaining(&self, now: Instant) -> i64 {
        match self.expiry {
            Some(e) => {
                let left = e.saturating_duration_since(now);
                left.as_secs() as i64 + if left.subsec_nanos() > 0 { 1 } else { 0 }
            }
            None => self.ttl,
        }
    }
}

/// All leases of a member.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: HashMap<i64, Lease>,
    items: HashMap<Vec<u8>, i64>,
    min_ttl: i64,
    primary: bool,
}

impl Lessor {
    /// `min_ttl`: the shortest TTL granted (etcd: 1.5 election timeouts, in seconds).
    pub fn new(min_ttl: i64) -> Self {
        Lessor { min_ttl, ..Default::default() }
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Grants a lease (applied from the log). Returns the TTL actually granted.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> Result<i64, LeaseError> {
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = self.primary.then(|| now + Duration::from_secs(ttl as u64));
        self.leases.insert(id, Lease { id, ttl, remaining_ttl: 0, expiry, keys: BTreeSet::new() });
        let m = &rustcd_metrics::get().lease;
        m.granted_total.inc();
        m.ttl_total.observe(ttl as f64);
        Ok(ttl)
    }

    /// Restores a lease from storage (start-up, snapshot).
    pub fn restore(&mut self, id: i64, ttl: i64, remaining_ttl: i64) {
        self.leases.insert(id, Lease { id, ttl, remaining_ttl, expiry: None, keys: BTreeSet::new() });
    }

    /// Forgets everything (before restoring from a snapshot).
    pub fn clear(&mut self) {
        self.leases.clear();
        self.items.clear();
    }

    /// Removes a lease; returns the keys attached to it, which the caller deletes.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        rustcd_metrics::get().lease.revoked_total.inc();
        for k in &lease.keys {
            self.items.remove(k);
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// Renews a lease on the primary; returns its TTL.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        lease.expiry = Some(now + Duration::from_secs(lease.ttl as u64));
        lease.remaining_ttl = 0;
        rustcd_metrics::get().lease.renewed_total.inc();
        Ok(lease.ttl)
    }

    /// Records a checkpointed remaining TTL (applied from the log).
    pub fn checkpoint(&mut self, id: i64, remaining: i64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.remaining_ttl = remaining;
        }
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Attaches `key` to lease `id` (moving it from any other lease).
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        self.detach(key);
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
            self.items.insert(key.to_vec(), id);
        }
    }

    pub fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.items.remove(key)
            && let Some(l) = self.leases.get_mut(&old)
        {
            l.keys.remove(key);
        }
    }

    /// Follows a write's events: a put attaches its key to its lease (or detaches it), a
    /// delete detaches it.
    pub fn apply_events(&mut self, events: &[Event]) {
        for e in events {
            let Some(kv) = &e.kv else { continue };
            if e.r#type == 0 && kv.lease != 0 {
                self.attach(kv.lease, &kv.key);
            } else {
                self.detach(&kv.key);
            }
        }
    }

    /// Becomes the primary: every lease gets a fresh deadline, its checkpointed remaining TTL
    /// (or full TTL) plus `extend`, so that a leader change never expires a live lease early.
    pub fn promote(&mut self, extend: Duration, now: Instant) {
        self.primary = true;
        for l in self.leases.values_mut() {
            let left = if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl };
            l.expiry = Some(now + Duration::from_secs(left as u64) + extend);
        }
    }

    /// Stops being the primary: deadlines stop running.
    pub fn demote(&mut self) {
        self.primary = false;
        for l in self.leases.values_mut() {
            l.expiry = None;
        }
    }

    /// Leases past their deadline (primary only), oldest first, at most `limit`.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out: Vec<(Instant, i64)> =
            self.leases.values().filter_map(|l| l.expiry.filter(|e| *e <= now).map(|e| (e, l.id))).collect();
        out.sort_unstable();
        out.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// Remaining TTLs worth checkpointing (primary only): (id, remaining seconds).
    pub fn checkpoints(&self, now: Instant) -> Vec<(i64, i64)> {
        self.leases.values().filter(|l| l.expiry.is_some()).map(|l| (l.id, l.remaining(now))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustcd_api::mvccpb::KeyValue;

    fn put(key: &str, lease: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue { key: key.as_bytes().to_vec().into(), lease, ..Default::default() }),
            prev_kv: None,
        }
    }

    #[test]
    fn grant_attach_revoke() {
        let now = Instant::now();
        let mut l = Lessor::new(2);
        assert_eq!(l.grant(7, 1, now), Ok(2), "minimum TTL applies");
        assert_eq!(l.grant(7, 5, now), Err(LeaseError::Exists));
        assert_eq!(l.grant(8, MAX_LEASE_TTL + 1, now), Err(LeaseError::TtlTooLarge));
        l.apply_events(&[put("a", 7), put("b", 7), put("c", 0)]);
        l.apply_events(&[put("b", 0)]);
        assert_eq!(l.revoke(7), Ok(vec![b"a".to_vec()]));
        assert_eq!(l.revoke(7), Err(LeaseError::NotFound));
    }

    #[test]
    fn only_the_primary_expires_and_promotion_extends() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.grant(1, 5, now).unwrap();
        assert!(l.expired(now + Duration::from_secs(60), 10).is_empty(), "followers never expire leases");
        l.checkpoint(1, 3);
        l.promote(Duration::from_secs(1), now);
        assert!(l.expired(now + Duration::from_secs(3), 10).is_empty());
        assert_eq!(l.expired(now + Duration::from_secs(5), 10), vec![1]);
        l.renew(1, now + Duration::from_secs(4)).unwrap();
        assert!(l.expired(now + Duration::from_secs(8), 10).is_empty());
        assert_eq!(l.get(1).unwrap().remaining(now + Duration::from_secs(4)), 5);
    }
}
