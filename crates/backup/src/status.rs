//! `snapshot status`: etcd's integrity check and summary of a snapshot file.

use rustcd_bbolt::Reader;
use rustcd_mvcc::crc32c::Crc32c;

use rustcd_schema::etcd::bucket;

use crate::{BackupError, parse_etcd_rev_key};

/// etcd's `snapshot.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// crc32c over every bucket name and every key and value, in order.
    pub hash: u32,
    /// The newest revision.
    pub revision: i64,
    /// Pairs in all buckets.
    pub total_key: u64,
    /// The database's size in bytes.
    pub total_size: u64,
}

/// Checks the database at `path` (bbolt's consistency check) and sums it up as etcd does.
pub fn status(path: &std::path::Path) -> Result<SnapshotStatus, BackupError> {
    let db = Reader::open(path)?;
    db.check()
        .map_err(|e| BackupError::Invalid(format!("snapshot file integrity check failed. 1 errors found.\n{e}")))?;
    let mut st = SnapshotStatus { hash: 0, revision: 0, total_key: 0, total_size: db.size() };
    let mut h = Crc32c::new();
    for name in db.buckets()? {
        h.update(&name);
        let is_key = name == bucket::KEY;
        db.for_each(&name, |k, v| -> Result<(), BackupError> {
            h.update(k);
            h.update(v);
            if is_key {
                st.revision = parse_etcd_rev_key(k).map_or(st.revision, |(r, _)| r.main);
            }
            st.total_key += 1;
            Ok(())
        })?;
    }
    st.hash = h.finish();
    Ok(st)
}
