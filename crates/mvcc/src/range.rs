//! Range reads: etcd's Range semantics (limit and `more`, count, revision filters, sorting,
//! keys-only) over the key index and a backend table, shared by read views and write txns.

use prost::Message;
use redb::ReadableTable;
use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use rustcd_api::mvccpb::KeyValue;

use crate::error::{Error, Result};
use crate::key_index::TreeIndex;
use crate::key_range::KeyRange;
use crate::revision::Revision;

/// The backend's revision table, readable from a read view or a write txn alike.
pub(crate) trait RevTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> RevTable for T {}

/// Reads the stored key-value at a revision.
pub(crate) fn load(table: &impl RevTable, rev: Revision) -> Result<KeyValue> {
    let guard = table
        .get(rev.to_key(false).as_slice())?
        .ok_or_else(|| Error::Corrupt(format!("revision {rev:?} is indexed but not stored")))?;
    KeyValue::decode(guard.value()).map_err(|e| Error::Corrupt(e.to_string()))
}

/// What the store knows when a read starts.
pub(crate) struct ReadState<'a> {
    pub index: &'a TreeIndex,
    pub current_rev: i64,
    pub compact_rev: i64,
}

/// The visible revision for a read at `requested` (0 = current), or etcd's error.
pub(crate) fn read_rev(st: &ReadState, requested: i64) -> Result<i64> {
    if requested > st.current_rev {
        return Err(Error::FutureRev);
    }
    let rev = if requested <= 0 { st.current_rev } else { requested };
    if rev < st.compact_rev {
        return Err(Error::Compacted);
    }
    Ok(rev)
}

/// Whether a Range keeps only some revisions (etcd's `HasRevisionFilters`: min/max mod or
/// create revision).
pub fn has_revision_filters(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0
}

/// Serves one Range request; the header's revision is the store's current revision.
pub(crate) fn range(st: &ReadState, table: &impl RevTable, r: &RangeRequest) -> Result<RangeResponse> {
    crate::metrics::range();
    let rev = read_rev(st, r.revision)?;
    let krange = KeyRange::new(&r.key, &r.range_end);
    let header = Some(ResponseHeader { revision: st.current_rev, ..Default::default() });
    let mut count = 0i64;
    if r.count_only {
        st.index.visit(&krange, rev, |_, _| {
            count += 1;
            true
        });
        return Ok(RangeResponse { header, kvs: vec![], more: false, count });
    }
    let filtered = r.sort_order != SortOrder::None as i32 || has_revision_filters(r);
    // Fetch one extra to learn `more`; with filters or sorting fetch all and cut afterwards.
    let fetch = if filtered || r.limit <= 0 { usize::MAX } else { r.limit as usize + 1 };
    let mut revs = Vec::new();
    st.index.visit(&krange, rev, |_, at| {
        count += 1;
        if revs.len() < fetch {
            revs.push(at.modified);
        }
        true
    });
    let mut kvs = Vec::with_capacity(revs.len());
    for rv in revs {
        kvs.push(load(table, rv)?);
    }
    let keep = |kv: &KeyValue| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    };
    kvs.retain(keep);
    sort(&mut kvs, r);
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse { header, kvs, more, count })
}

fn sort(kvs: &mut [KeyValue], r: &RangeRequest) {
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    // The index yields keys ascending: sort only when that is not already the answer.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order == SortOrder::None {
        return;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend {
        kvs.sort_by(|a, b| cmp(b, a));
    } else {
        kvs.sort_by(cmp);
    }
}
