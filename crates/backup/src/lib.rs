//! rustcd-backup: snapshots in etcd's format (etcd's `snapshot` package, `etcdutl snapshot`),
//! for the server's `Maintenance.Snapshot`, etcdctl and etcdutl alike. It reads and writes the
//! backend (`rustcd-mvcc`) and bbolt files (`rustcd-bbolt`) by the names of `rustcd-schema`;
//! it must not reach a running member, raft or the network.
//!
//! The backend
//! written as the bbolt database etcd keeps for the same data ([`export`]), read back from a
//! file etcd or rustcd wrote ([`import`]), checked ([`status`]), and a new member's data dir
//! made from one ([`restore`]). A snapshot file is that database followed by the sha256 of it.
//!
//! etcd's buckets and rustcd's backend, row for row:
//! - `key`: every revision; etcd's key is `main` (8 bytes, big-endian), `_`, `sub` (8 bytes), and
//!   `t` for a tombstone; the value is the same `mvccpb.KeyValue` in both.
//! - `meta`: `consistent_index` (8 bytes), `finishedCompactRev`/`scheduledCompactRev` (revision keys).
//! - `lease`: the lease ID (8 bytes) to `leasepb.Lease` (rustcd's `StoredLease` is that message).
//! - `auth` (`authEnabled`, `authRevision`), `authUsers`, `authRoles` (`authpb` messages, as here).
//! - `alarm`: an encoded `AlarmMember` with an empty value.
//! - `members`, `members_removed`, `cluster`: the membership as etcd's JSON, and the cluster
//!   version; a restore replaces them with the new cluster's.

pub mod export;
pub mod import;
pub mod restore;
pub mod status;

use rustcd_mvcc::Revision;

/// What can go wrong with a snapshot file. The texts users see are etcd's where etcd has one.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Bbolt(#[from] rustcd_bbolt::Error),
    #[error("{0}")]
    Store(#[from] rustcd_mvcc::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A snapshot whose rows do not mean what etcd's would.
    #[error("snapshot: {0}")]
    Corrupt(String),
    /// A request that cannot be carried out (etcd's wording).
    #[error("{0}")]
    Invalid(String),
}

/// etcd's revision key: `main`, `_`, `sub`, then `t` for a tombstone.
pub fn etcd_rev_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    rustcd_schema::etcd::rev_key(rev.main, rev.sub, tombstone)
}

/// Reads etcd's revision key; `None` for anything else.
pub fn parse_etcd_rev_key(k: &[u8]) -> Option<(Revision, bool)> {
    rustcd_schema::etcd::parse_rev_key(k).map(|(main, sub, t)| (Revision::new(main, sub), t))
}

/// A snapshot file carries the sha256 of the database after it when its length is a multiple
/// of 512 plus 32 (etcd's `hasChecksum`: bbolt files are whole pages).
pub fn has_checksum(len: u64) -> bool {
    len % 512 == 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_are_etcds() {
        let k = etcd_rev_key(Revision::new(0x0102, 3), false);
        assert_eq!(k, [0, 0, 0, 0, 0, 0, 1, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(parse_etcd_rev_key(&k), Some((Revision::new(0x0102, 3), false)));
        let t = etcd_rev_key(Revision::new(9, 0), true);
        assert_eq!(parse_etcd_rev_key(&t), Some((Revision::new(9, 0), true)));
        assert_eq!(parse_etcd_rev_key(&k[..16]), None);
        assert_eq!(parse_etcd_rev_key(&Revision::new(1, 1).to_key(false)), None, "rustcd's own key form");
    }
}
