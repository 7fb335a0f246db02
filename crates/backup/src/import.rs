//! Reading etcd's database into a rustcd backend: every revision, the compaction, leases, auth
//! and alarms. The membership and the consistent index are the restore's to write (a restored
//! member belongs to a new cluster).

use prost::Message;
use rustcd_api::etcdserverpb::AlarmMember;
use rustcd_api::rustcdpb::StoredLease;
use rustcd_bbolt::Reader;
use rustcd_mvcc::Loader;

use rustcd_schema::etcd::{bucket, meta_key};
use rustcd_schema::meta;

use crate::{BackupError, parse_etcd_rev_key};

/// What was read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Imported {
    /// The newest revision in the `key` bucket.
    pub revision: i64,
    /// The revision compacted at (etcd's scheduled compaction, which a start of etcd finishes).
    pub compact_revision: i64,
    pub revisions: u64,
    pub leases: u64,
}

/// Loads the rows of etcd's database into `load`, telling `progress` the bytes read so far and
/// the database's size now and then.
pub fn import(db: &Reader, load: &mut Loader<'_>, progress: &dyn Fn(u64, u64)) -> Result<Imported, BackupError> {
    let mut out = Imported::default();
    db.for_each(bucket::KEY, |k, v| -> Result<(), BackupError> {
        if out.revisions.is_multiple_of(4096) {
            progress(db.bytes_read(), db.size());
        }
        let (rev, tombstone) = parse_etcd_rev_key(k)
            .ok_or_else(|| BackupError::Corrupt(format!("a key bucket entry of {} bytes is no revision", k.len())))?;
        if rev.main < out.revision {
            return Err(BackupError::Corrupt("revisions out of order".into()));
        }
        out.revision = rev.main;
        out.revisions += 1;
        load.kv(rev, tombstone, v)?;
        Ok(())
    })?;
    db.for_each(bucket::META, |k, v| -> Result<(), BackupError> {
        if k == meta_key::FINISHED_COMPACT || k == meta_key::SCHEDULED_COMPACT {
            let (rev, _) = parse_etcd_rev_key(v)
                .ok_or_else(|| BackupError::Corrupt("the compacted revision is no revision".into()))?;
            out.compact_revision = out.compact_revision.max(rev.main);
        }
        Ok(())
    })?;
    if out.compact_revision > 0 {
        load.compact_rev(out.compact_revision)?;
    }
    db.for_each(bucket::LEASE, |_, v| -> Result<(), BackupError> {
        let lease = StoredLease::decode(v).map_err(|e| BackupError::Corrupt(format!("a lease: {e}")))?;
        load.meta(&meta::lease_key(lease.id), v)?;
        out.leases += 1;
        Ok(())
    })?;
    db.for_each(bucket::AUTH, |k, v| -> Result<(), BackupError> {
        if k == meta_key::AUTH_ENABLED {
            load.meta(meta::AUTH_ENABLED, v)?;
        } else if k == meta_key::AUTH_REVISION {
            load.meta(meta::AUTH_REVISION, v)?;
        }
        Ok(())
    })?;
    for (b, prefix) in [(bucket::AUTH_USERS, meta::AUTH_USERS), (bucket::AUTH_ROLES, meta::AUTH_ROLES)] {
        db.for_each(b, |k, v| -> Result<(), BackupError> {
            let name = std::str::from_utf8(k).map_err(|_| BackupError::Corrupt("a user or role name".into()))?;
            load.meta(&format!("{prefix}{name}"), v)?;
            Ok(())
        })?;
    }
    db.for_each(bucket::ALARM, |k, _| -> Result<(), BackupError> {
        let a = AlarmMember::decode(k).map_err(|e| BackupError::Corrupt(format!("an alarm: {e}")))?;
        load.meta(&meta::alarm_key(a.alarm, a.member_id), &[])?;
        Ok(())
    })?;
    progress(db.size(), db.size());
    Ok(out)
}
