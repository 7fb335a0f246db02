//! Writing the backend as etcd's bbolt database, from one consistent view while writes go on.

use std::collections::BTreeMap;
use std::io::{Seek, Write};

use prost::Message;
use rustcd_api::etcdserverpb::AlarmMember;
use rustcd_api::rustcdpb::StoredMembers;
use rustcd_bbolt::Writer;
use rustcd_mvcc::{KvStore, Revision};

use rustcd_schema::etcd::{bucket, meta_key};
use rustcd_schema::meta;

use crate::{BackupError, etcd_rev_key};

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    /// Bytes of the database (without the sha256 a snapshot file adds).
    pub size: u64,
    pub revision: i64,
    pub consistent_index: u64,
}

type Buckets = BTreeMap<&'static [u8], BTreeMap<Vec<u8>, Vec<u8>>>;

/// Writes the store, as of now, as etcd's database to `out` (an empty file).
pub fn export<W: Write + Seek>(store: &KvStore, out: W) -> Result<(W, Exported), BackupError> {
    let view = store.row_view()?;
    let mut w = Writer::new(out)?;
    w.bucket(bucket::KEY)?;
    view.kv_rows(|rev, tombstone, value| -> Result<(), BackupError> {
        w.put(&etcd_rev_key(rev, tombstone), value)?;
        Ok(())
    })?;
    let mut small: Buckets = bucket::ALL[1..].iter().map(|b| (*b, BTreeMap::new())).collect();
    let mut put = |b: &'static [u8], k: Vec<u8>, v: Vec<u8>| {
        small.entry(b).or_default().insert(k, v);
    };
    put(bucket::META, meta_key::CONSISTENT_INDEX.to_vec(), view.consistent_index.to_be_bytes().to_vec());
    if view.compact_rev > 0 {
        let rev = etcd_rev_key(Revision::new(view.compact_rev, 0), false);
        put(bucket::META, meta_key::FINISHED_COMPACT.to_vec(), rev.clone());
        put(bucket::META, meta_key::SCHEDULED_COMPACT.to_vec(), rev);
    }
    put(bucket::CLUSTER, meta_key::CLUSTER_VERSION.to_vec(), rustcd_api::ETCD_CLUSTER_VERSION.as_bytes().to_vec());
    view.meta_rows(|k, v| -> Result<(), BackupError> {
        meta_row(k, v, &mut put);
        Ok(())
    })?;
    for (name, pairs) in &small {
        w.bucket(name)?;
        for (k, v) in pairs {
            w.put(k, v)?;
        }
    }
    let (out, size) = w.finish()?;
    Ok((out, Exported { size, revision: view.current_rev, consistent_index: view.consistent_index }))
}

/// Places one of rustcd's meta records in etcd's buckets (records etcd has no place for, such
/// as rustcd's own bookkeeping, stay behind).
fn meta_row(k: &str, v: &[u8], put: &mut impl FnMut(&'static [u8], Vec<u8>, Vec<u8>)) {
    if let Some(id) = meta::parse_lease_key(k) {
        put(bucket::LEASE, id.to_be_bytes().to_vec(), v.to_vec());
    } else if let Some((alarm, member_id)) = meta::parse_alarm_key(k) {
        put(bucket::ALARM, AlarmMember { member_id, alarm }.encode_to_vec(), Vec::new());
    } else if k == meta::AUTH_ENABLED {
        put(bucket::AUTH, meta_key::AUTH_ENABLED.to_vec(), v.to_vec());
    } else if k == meta::AUTH_REVISION {
        put(bucket::AUTH, meta_key::AUTH_REVISION.to_vec(), v.to_vec());
    } else if let Some(name) = k.strip_prefix(meta::AUTH_USERS) {
        put(bucket::AUTH_USERS, name.as_bytes().to_vec(), v.to_vec());
    } else if let Some(name) = k.strip_prefix(meta::AUTH_ROLES) {
        put(bucket::AUTH_ROLES, name.as_bytes().to_vec(), v.to_vec());
    } else if k == meta::MEMBERS {
        let Ok(m) = StoredMembers::decode(v) else {
            tracing::warn!("the stored membership is unreadable; the snapshot has no members");
            return;
        };
        for member in &m.members {
            put(bucket::MEMBERS, format!("{:x}", member.id).into_bytes(), member_json(member).into_bytes());
        }
        for id in &m.removed {
            put(bucket::MEMBERS_REMOVED, format!("{id:x}").into_bytes(), b"removed".to_vec());
        }
    }
}

/// A member as etcd stores it: Go's JSON of its `membership.Member`.
fn member_json(m: &rustcd_api::rustcdpb::StoredMember) -> String {
    rustcd_schema::member::MemberJson {
        id: m.id,
        peer_urls: m.peer_urls.clone(),
        is_learner: m.is_learner,
        name: m.name.clone(),
        client_urls: m.client_urls.clone(),
    }
    .to_json()
}
