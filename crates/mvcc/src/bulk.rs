//! Whole-store copies in and out, row by row: a consistent view of every row (for writing a
//! snapshot while writes go on) and a loader that fills a new store (for restoring one). Both
//! stream: neither holds the store in memory.

use redb::{Durability, ReadableTable};

use crate::error::{Error, Result};
use crate::revision::Revision;
use crate::store::{KV, KvStore, META};

/// Every row of the store as of one moment: later writes do not show, and a compaction meanwhile
/// takes nothing away from it (redb keeps a read transaction's pages).
pub struct RowView {
    tx: crate::store::Read,
    pub consistent_index: u64,
    pub current_rev: i64,
    /// The last compaction's revision; -1 when none ran.
    pub compact_rev: i64,
}

impl KvStore {
    /// A consistent view of every row, and the revisions it stands at.
    pub fn row_view(&self) -> Result<RowView> {
        let (st, tx) = self.read_view()?;
        Ok(RowView {
            tx,
            consistent_index: st.consistent_index,
            current_rev: st.current_rev,
            compact_rev: st.compact_rev,
        })
    }

    /// Replaces the whole store with rows given to the returned [`Loader`]; the store's state
    /// is read back from them by [`Loader::finish`]. Meant for a store nobody else uses yet
    /// (restoring a data dir): writes made meanwhile are lost.
    pub fn loader(&self) -> Result<Loader<'_>> {
        let no_defrag = self.defrag_guard();
        let tx = self.begin_load()?;
        tx.delete_table(KV)?;
        tx.delete_table(META)?;
        // Both tables exist again even if no row of one comes.
        tx.open_table(KV)?;
        tx.open_table(META)?;
        Ok(Loader { store: self, tx: Some(tx), rows: 0, _no_defrag: no_defrag })
    }

    fn begin_load(&self) -> Result<redb::WriteTransaction> {
        let mut tx = self.db().begin_write()?;
        tx.set_durability(Durability::None)?;
        Ok(tx)
    }
}

impl RowView {
    /// Calls `f` with every revision row in revision order: the revision, whether it is a
    /// tombstone, and the encoded `mvccpb.KeyValue`.
    pub fn kv_rows<E: From<Error>>(
        &self,
        mut f: impl FnMut(Revision, bool, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let table = self.tx.open_table(KV).map_err(Error::from)?;
        for item in table.iter().map_err(Error::from)? {
            let (k, v) = item.map_err(Error::from)?;
            let (rev, tombstone) =
                Revision::from_key(k.value()).ok_or_else(|| Error::Corrupt("malformed revision key".into()))?;
            f(rev, tombstone, v.value())?;
        }
        Ok(())
    }

    /// Calls `f` with every metadata record in key order.
    pub fn meta_rows<E: From<Error>>(
        &self,
        mut f: impl FnMut(&str, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let table = self.tx.open_table(META).map_err(Error::from)?;
        for item in table.iter().map_err(Error::from)? {
            let (k, v) = item.map_err(Error::from)?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }
}

/// Rows committed per backend transaction while loading: bounds the memory a load holds.
/// (Small in tests, so that they cross several commits.)
const ROWS_PER_COMMIT: usize = if cfg!(test) { 1000 } else { 20_000 };

/// Fills a store row by row (see [`KvStore::loader`]).
pub struct Loader<'a> {
    store: &'a KvStore,
    tx: Option<redb::WriteTransaction>,
    rows: usize,
    _no_defrag: std::sync::MutexGuard<'a, ()>,
}

impl Loader<'_> {
    fn tx(&mut self) -> Result<&redb::WriteTransaction> {
        if self.rows > 0
            && self.rows.is_multiple_of(ROWS_PER_COMMIT)
            && let Some(tx) = self.tx.take()
        {
            tx.commit()?;
        }
        self.rows += 1;
        if self.tx.is_none() {
            self.tx = Some(self.store.begin_load()?);
        }
        self.tx.as_ref().ok_or_else(|| Error::Backend("loader closed".into()))
    }

    /// A revision row: `value` is an encoded `mvccpb.KeyValue`.
    pub fn kv(&mut self, rev: Revision, tombstone: bool, value: &[u8]) -> Result<()> {
        let key = rev.to_key(tombstone);
        self.tx()?.open_table(KV)?.insert(key.as_slice(), value)?;
        Ok(())
    }

    /// A metadata record (leases, members, auth, alarms, as their owners write them).
    pub fn meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.tx()?.open_table(META)?.insert(key, value)?;
        Ok(())
    }

    pub fn consistent_index(&mut self, index: u64) -> Result<()> {
        self.meta(KvStore::META_CONSISTENT_INDEX, &KvStore::encode_u64(index))
    }

    /// The revision compacted at: older revisions are not served.
    pub fn compact_rev(&mut self, rev: i64) -> Result<()> {
        self.meta(KvStore::META_COMPACT_REV, &KvStore::encode_u64(rev as u64))
    }

    /// Commits the last rows durably and reads the store's state back from them.
    pub fn finish(mut self) -> Result<()> {
        let mut tx = match self.tx.take() {
            Some(tx) => tx,
            None => self.store.begin_load()?,
        };
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        self.store.reload()
    }
}

#[cfg(test)]
mod tests {
    use rustcd_api::etcdserverpb::{PutRequest, RangeRequest};

    use crate::KvStore;

    /// A store copied row by row through a view and a loader serves the same keys at the same
    /// revisions; writes after the view was taken are not in it.
    #[test]
    fn a_view_copied_through_a_loader_is_the_same_store() {
        let dir = tempfile::tempdir().expect("dir");
        let a = KvStore::open(dir.path().join("a")).expect("open");
        let none = |_: i64| false;
        let put = |s: &KvStore, k: String| {
            let req = PutRequest { key: k.into_bytes().into(), value: b"v".to_vec().into(), ..Default::default() };
            s.write(false, &none, |w| w.put(&req).map(|_| ())).expect("put");
        };
        for i in 0..5000 {
            put(&a, format!("k{}", i % 300));
        }
        a.write(false, &none, |w| w.compact(4000).map(|_| ())).expect("compact");
        a.write(false, &none, |w| w.put_meta("lease/1", b"x")).expect("meta");
        let view = a.row_view().expect("view");
        put(&a, "after".into());
        let b = KvStore::open(dir.path().join("b")).expect("open b");
        let mut load = b.loader().expect("loader");
        view.kv_rows(|rev, t, v| load.kv(rev, t, v)).expect("kv rows");
        view.meta_rows(|k, v| load.meta(k, v)).expect("meta rows");
        load.finish().expect("finish");
        assert_eq!((b.current_rev(), b.compact_rev()), (view.current_rev, 4000));
        assert_eq!(b.meta("lease/1").expect("meta"), Some(b"x".to_vec()));
        let all = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() };
        let (ra, rb) = (a.range(&RangeRequest { revision: view.current_rev, ..all.clone() }), b.range(&all));
        assert_eq!(ra.expect("a").kvs, rb.expect("b").kvs);
        assert_eq!(b.hash_kv(0).expect("hash b").0, a.hash_kv(view.current_rev).expect("hash a").0);
        // Loading nothing leaves an empty store that works.
        let c = KvStore::open(dir.path().join("c")).expect("open c");
        c.loader().expect("loader").finish().expect("an empty load");
        assert_eq!((c.current_rev(), c.key_count()), (1, 0));
    }
}
