//! A Range whose answer is never built whole: the keys it returns are chosen under the index
//! lock (as [`KvStore::range`] chooses them) with a backend snapshot at that moment, and their
//! stored records are then read a few at a time. The stored record of a revision *is* the
//! `KeyValue` message, so an answer can be written from the backend straight into the reply,
//! and a 1 GiB range costs the server a chunk of memory rather than the range several times.

use prost::Message;
use prost::bytes::Bytes;
use redb::ReadOnlyTable;
use rustcd_api::etcdserverpb::RangeRequest;
use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::mvccpb::KeyValue;

use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::range::read_rev;
use crate::revision::Revision;
use crate::store::{KV, KvStore, Read};

/// The keys a Range returns, and the snapshot to read their records from.
pub struct RangePlan {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Keeps the database file the snapshot reads open across a defrag.
    _read: Read,
    revs: Vec<Revision>,
    keys_only: bool,
    /// The store's revision when the plan was made (the answer's header revision).
    pub current_rev: i64,
    /// Keys in the range past the limit.
    pub more: bool,
    /// Keys in the range (etcd's `count`: all of them, not only those returned).
    pub count: i64,
}

/// Whether a request can be planned: key order, no revision filters, not count-only (those
/// go through [`KvStore::range`]).
pub fn plannable(r: &RangeRequest) -> bool {
    // Any other target sorts, even without an order (ascending, as etcd).
    let key_order = r.sort_target == SortTarget::Key as i32
        && (r.sort_order == SortOrder::None as i32 || r.sort_order == SortOrder::Ascend as i32);
    key_order && !r.count_only && !crate::range::has_revision_filters(r)
}

impl KvStore {
    /// Plans a Range that [`plannable`] accepts: the same keys, count and `more` as
    /// [`KvStore::range`] answers, at the same revision.
    pub fn plan_range(&self, r: &RangeRequest) -> Result<RangePlan> {
        crate::metrics::range();
        let (st, read) = self.read_view()?;
        let rs = st.read_state();
        let rev = read_rev(&rs, r.revision)?;
        let limit = if r.limit > 0 { r.limit as usize } else { usize::MAX };
        let (mut count, mut revs) = (0i64, Vec::new());
        rs.index.visit(&KeyRange::new(&r.key, &r.range_end), rev, |_, at| {
            count += 1;
            if revs.len() < limit {
                revs.push(at.modified);
            }
            true
        });
        let current_rev = rs.current_rev;
        drop(st);
        let table = read.open_table(KV)?;
        let more = r.limit > 0 && count > r.limit;
        Ok(RangePlan { table, _read: read, revs, keys_only: r.keys_only, current_rev, more, count })
    }
}

impl RangePlan {
    /// Keys the answer returns.
    pub fn len(&self) -> usize {
        self.revs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// The `i`th returned key's `KeyValue`, encoded (its value left out for keys-only).
    pub fn entry(&self, i: usize) -> Result<Bytes> {
        self.with_record(i, |stored| match self.keys_only {
            false => Ok(Bytes::copy_from_slice(stored)),
            true => Ok(without_value(stored)?.encode_to_vec().into()),
        })
    }

    /// The length of [`RangePlan::entry`], without copying it.
    pub fn entry_len(&self, i: usize) -> Result<usize> {
        self.with_record(i, |stored| match self.keys_only {
            false => Ok(stored.len()),
            true => Ok(without_value(stored)?.encoded_len()),
        })
    }

    fn with_record<T>(&self, i: usize, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        let rev = self.revs.get(i).ok_or_else(|| Error::Backend(format!("range entry {i} out of bounds")))?;
        let guard = self
            .table
            .get(rev.to_key(false).as_slice())?
            .ok_or_else(|| Error::Corrupt(format!("revision {rev:?} is indexed but not stored")))?;
        f(guard.value())
    }
}

fn without_value(stored: &[u8]) -> Result<KeyValue> {
    let mut kv = KeyValue::decode(stored).map_err(|e| Error::Corrupt(e.to_string()))?;
    kv.value = Bytes::new();
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustcd_api::etcdserverpb::PutRequest;

    fn store_with(puts: &[(&str, &str)]) -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().expect("dir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        for (k, v) in puts {
            let req = PutRequest {
                key: k.as_bytes().to_vec().into(),
                value: v.as_bytes().to_vec().into(),
                ..Default::default()
            };
            store.write(false, &|_| false, |w| w.put(&req).map(|_| ())).expect("put");
        }
        (dir, store)
    }

    /// The planned entries are the range's kvs, with the same count and `more`, for limits,
    /// keys-only and a past revision.
    #[test]
    fn a_plan_is_the_range() {
        let (_dir, store) = store_with(&[("a", "1"), ("b", "2"), ("c", "3"), ("b", "22"), ("d", "4")]);
        let all = |limit, keys_only, revision| RangeRequest {
            key: b"a".to_vec().into(),
            range_end: b"z".to_vec().into(),
            limit,
            keys_only,
            revision,
            ..Default::default()
        };
        for r in [all(0, false, 0), all(2, false, 0), all(0, true, 0), all(1, true, 3), all(0, false, 3)] {
            let want = store.range(&r).expect("range");
            let plan = store.plan_range(&r).expect("plan");
            let got: Vec<KeyValue> =
                (0..plan.len()).map(|i| KeyValue::decode(plan.entry(i).expect("entry")).expect("decode")).collect();
            let lens: Vec<usize> = (0..plan.len()).map(|i| plan.entry_len(i).expect("len")).collect();
            assert_eq!(lens, got.iter().map(|kv| kv.encoded_len()).collect::<Vec<_>>());
            assert_eq!(got, want.kvs, "{r:?}");
            assert_eq!((plan.more, plan.count), (want.more, want.count), "{r:?}");
            assert_eq!(plan.current_rev, want.header.map_or(0, |h| h.revision));
        }
        assert!(plannable(&all(0, false, 0)));
        assert!(!plannable(&RangeRequest { count_only: true, ..all(0, false, 0) }));
        assert!(!plannable(&RangeRequest { sort_order: SortOrder::Descend as i32, ..all(0, false, 0) }));
        assert!(!plannable(&RangeRequest { max_mod_revision: 2, ..all(0, false, 0) }));
        assert!(!plannable(&RangeRequest { sort_target: SortTarget::Version as i32, ..all(0, false, 0) }));
        assert!(plannable(&RangeRequest { sort_order: SortOrder::Ascend as i32, ..all(0, false, 0) }));
    }
}
