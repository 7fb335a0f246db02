//! The revisioned key-value store: redb backend + in-memory key index (etcd's `kvstore`).
//!
//! One writer at a time (the apply task) runs a [`WriteTxn`] under the state's write lock and
//! commits it before readers can see the new revision; readers take the read lock only long
//! enough to resolve revisions and open a backend snapshot.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use rustcd_api::etcdserverpb::{RangeRequest, RangeResponse};
use rustcd_api::mvccpb::{Event, KeyValue};

use crate::error::{Error, Result};
use crate::key_index::TreeIndex;
use crate::range::{self, ReadState};
use crate::revision::Revision;
use crate::txn::WriteTxn;

/// Every revision of every key: revision key -> encoded `mvccpb.KeyValue`.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Store and server metadata: consistent index, compaction, membership, leases.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_CONSISTENT_INDEX: &str = "consistent_index";
const META_COMPACT_REV: &str = "finished_compact_rev";

/// A read transaction and the database file it reads, kept open until the transaction ends
/// (dropped in this order).
pub(crate) struct Read {
    tx: redb::ReadTransaction,
    _db: std::sync::Arc<Database>,
}

impl std::ops::Deref for Read {
    type Target = redb::ReadTransaction;
    fn deref(&self) -> &redb::ReadTransaction {
        &self.tx
    }
}

/// The store's view of itself, guarded by one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub index: TreeIndex,
    pub current_rev: i64,
    pub compact_rev: i64,
    pub consistent_index: u64,
    /// The hashes taken as the last compactions ran, newest last (etcd keeps them in memory
    /// for the leader's compaction hash check, and answers HashKV at their revisions with them).
    pub compaction_hashes: std::collections::VecDeque<KeyValueHash>,
}

/// The hash of the store at `revision` as it stood under compaction `compact_revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValueHash {
    pub hash: u32,
    pub compact_revision: i64,
    pub revision: i64,
}

/// How many compaction hashes are kept (etcd's `hashStorageMaxSize`).
pub(crate) const COMPACTION_HASHES_KEPT: usize = 10;

/// crc32c over every stored row up to `rev`, in key order: equal stores give equal hashes.
pub(crate) fn hash_rows(table: &impl crate::range::RevTable, rev: i64) -> Result<u32> {
    let hi = Revision::new(rev + 1, 0).lower_key();
    let mut h = crate::crc32c::Crc32c::new();
    // etcd's hashByRev: the bucket's name, then each revision's key and value as etcd's bbolt
    // `key` bucket holds them (the values are etcd's already), so that rustcd and etcd members
    // holding the same revisions give the same hash.
    h.update(rustcd_schema::etcd::bucket::KEY);
    for item in table.range(..hi.as_slice())? {
        let (k, v) = item?;
        let (r, tombstone) =
            Revision::from_key(k.value()).ok_or_else(|| Error::Corrupt("malformed revision key".into()))?;
        h.update(&rustcd_schema::etcd::rev_key(r.main, r.sub, tombstone));
        h.update(v.value());
    }
    Ok(h.finish())
}

impl State {
    pub(crate) fn read_state(&self) -> ReadState<'_> {
        ReadState { index: &self.index, current_rev: self.current_rev, compact_rev: self.compact_rev }
    }
}

/// The key-value store. Cheap to share behind an `Arc`.
pub struct KvStore {
    /// Written only to defragment (redb's compaction wants the database to itself).
    db: RwLock<std::sync::Arc<Database>>,
    pub(crate) path: PathBuf,
    state: RwLock<State>,
    /// Bytes of the file in use and when they were measured ([`KvStore::db_size`]); `None`
    /// until first measured, and again after a defrag or a restore from a snapshot.
    pub(crate) in_use: Mutex<Option<crate::size::InUse>>,
    /// The file's size after the last commit (what etcd's quota compares with, read on every
    /// growing request: kept here rather than asked of the file system each time).
    pub(crate) file_len: std::sync::atomic::AtomicU64,
    /// See [`KvStore::defrag_guard`].
    defrag: Mutex<()>,
}

/// Outcome of a committed write batch.
pub struct Committed<R> {
    pub value: R,
    /// Every change of the batch in revision order, each with its previous value.
    pub events: Vec<Event>,
    /// Store revision after the batch.
    pub revision: i64,
}

fn u64_meta(v: Option<redb::AccessGuard<'_, &'static [u8]>>) -> Option<u64> {
    let v = v?;
    Some(u64::from_be_bytes(v.value().try_into().ok()?))
}

impl Drop for KvStore {
    fn drop(&mut self) {
        tracing::info!(path = %self.path.display(), "backend closed");
    }
}

/// redb's page cache. redb's default (1 GiB) keeps every page it ever wrote or read in the
/// process; past this, pages are read back through the OS page cache.
pub(crate) const CACHE_BYTES: usize = 8 << 20;

impl KvStore {
    /// Opens (or creates) the backend file and rebuilds the key index from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // A defrag that a crash cut short left its unfinished copy: the backend is the old file.
        let _ = std::fs::remove_file(crate::defrag::temp_path(&path));
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(&path)?;
        let tx = db.begin_write()?;
        tx.open_table(KV)?;
        tx.open_table(META)?;
        tx.commit()?;
        let state = Self::load_state(&db)?;
        let store = KvStore {
            db: RwLock::new(std::sync::Arc::new(db)),
            path,
            state: RwLock::new(state),
            in_use: Mutex::new(None),
            file_len: Default::default(),
            defrag: Mutex::new(()),
        };
        store.note_file_len();
        Ok(store)
    }

    fn load_state(db: &Database) -> Result<State> {
        let tx = db.begin_read()?;
        let meta = tx.open_table(META)?;
        let consistent_index = u64_meta(meta.get(META_CONSISTENT_INDEX)?).unwrap_or(0);
        let compact_rev = u64_meta(meta.get(META_COMPACT_REV)?).map(|v| v as i64).unwrap_or(-1);
        let kv = tx.open_table(KV)?;
        let mut revs = Vec::new();
        let mut current_rev = 1;
        for item in kv.iter()? {
            let (k, v) = item?;
            let (rev, tombstone) =
                Revision::from_key(k.value()).ok_or_else(|| Error::Corrupt("malformed revision key".into()))?;
            let stored = KeyValue::decode(v.value()).map_err(|e| Error::Corrupt(e.to_string()))?;
            revs.push((stored.key.to_vec(), rev, stored.version, tombstone));
            current_rev = rev.main;
        }
        let index = TreeIndex::rebuild(revs);
        current_rev = current_rev.max(compact_rev);
        Ok(State { index, current_rev, compact_rev, consistent_index, compaction_hashes: Default::default() })
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The database, for beginning a transaction (the guard may go once it has begun).
    pub(crate) fn db(&self) -> RwLockReadGuard<'_, std::sync::Arc<Database>> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a defrag for its whole copy, and by whatever replaces the store's rows (a
    /// restore, a load): a defrag never copies a store being replaced under it.
    pub(crate) fn defrag_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.defrag.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The state's write lock: writes wait while it is held.
    pub(crate) fn write_lock_for_swap(&self) -> RwLockWriteGuard<'_, State> {
        self.write_lock()
    }

    /// A read transaction, keeping the file it reads open (a defrag may put another in its
    /// place meanwhile).
    pub(crate) fn begin_read(&self) -> Result<Read> {
        let db = self.db().clone();
        let tx = db.begin_read()?;
        Ok(Read { tx, _db: db })
    }

    /// The database handle itself, to replace it with a rewritten file.
    pub(crate) fn db_for_swap(&self) -> RwLockWriteGuard<'_, std::sync::Arc<Database>> {
        self.db.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a Range at the latest committed state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let (st, tx) = self.read_view()?;
        let table = tx.open_table(KV)?;
        range::range(&st.read_state(), &table, req)
    }

    /// The key index (read-locked: writes wait) and a backend snapshot at the same revision.
    /// The snapshot is opened while the lock is held: it then holds every revision the index
    /// names, and a later compaction cannot take them away.
    pub(crate) fn read_view(&self) -> Result<(RwLockReadGuard<'_, State>, Read)> {
        let st = self.read_lock();
        let tx = self.begin_read()?;
        Ok((st, tx))
    }

    pub fn current_rev(&self) -> i64 {
        self.read_lock().current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.read_lock().compact_rev
    }

    /// Index of the last raft entry applied to this store.
    pub fn consistent_index(&self) -> u64 {
        self.read_lock().consistent_index
    }

    /// Number of live keys.
    pub fn key_count(&self) -> usize {
        self.read_lock().index.live_len()
    }

    /// Runs one batch of writes as a single backend transaction and commits it.
    ///
    /// `durable` forces the commit to disk; otherwise it becomes durable with a later durable
    /// commit (the raft log holds what a crash would lose, and the consistent index says where
    /// to replay from). `lease_exists` answers whether a lease id is granted.
    pub fn write<R>(
        &self,
        durable: bool,
        lease_exists: &dyn Fn(i64) -> bool,
        f: impl FnOnce(&mut WriteTxn) -> R,
    ) -> Result<Committed<R>> {
        let mut st = self.write_lock();
        let mut tx = self.db().begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)?;
        }
        let (value, events, consistent_index) = {
            let mut kv = tx.open_table(KV)?;
            let mut meta = tx.open_table(META)?;
            let mut w = WriteTxn::new(&mut st, &mut kv, &mut meta, lease_exists);
            let value = f(&mut w);
            let (events, ci) = w.finish()?;
            (value, events, ci)
        };
        let started = std::time::Instant::now();
        tx.commit()?;
        crate::metrics::commit(started.elapsed());
        self.note_file_len();
        if let Some(ci) = consistent_index {
            st.consistent_index = ci;
        }
        Ok(Committed { value, events, revision: st.current_rev })
    }

    /// A read snapshot of the backend and the consistent index it holds.
    pub(crate) fn read_txn_with_index(&self) -> Result<(Read, u64)> {
        let st = self.read_lock();
        let tx = self.begin_read()?;
        Ok((tx, st.consistent_index))
    }

    /// Replaces the whole store with a snapshot's contents (see [`KvStore::snapshot`]); the
    /// new state is durable when this returns.
    pub fn restore(&self, data: &[u8]) -> Result<()> {
        let started = std::time::Instant::now();
        let restored = self.restore_records(data);
        let took = rustcd_metrics::secs(started.elapsed());
        rustcd_metrics::get().snap.db_save_total_duration_seconds.observe(took);
        restored
    }

    fn restore_records(&self, data: &[u8]) -> Result<()> {
        let records = crate::snapshot::parse(data)?;
        let _no_defrag = self.defrag_guard();
        let mut st = self.write_lock();
        let tx = self.db().begin_write()?;
        self.forget_in_use();
        tx.delete_table(KV)?;
        tx.delete_table(META)?;
        {
            let mut kv = tx.open_table(KV)?;
            let mut meta = tx.open_table(META)?;
            for r in &records {
                if r.table == crate::snapshot::SNAP_TABLE_KV {
                    kv.insert(r.key, r.value)?;
                } else {
                    let k = std::str::from_utf8(r.key).map_err(|e| Error::Corrupt(e.to_string()))?;
                    meta.insert(k, r.value)?;
                }
            }
        }
        tx.commit()?;
        self.note_file_len();
        *st = Self::load_state(&self.db())?;
        Ok(())
    }

    /// Reads the store's state back from the backend, after its rows were replaced.
    pub(crate) fn reload(&self) -> Result<()> {
        let mut st = self.write_lock();
        self.after_rewrite();
        *st = Self::load_state(&self.db())?;
        Ok(())
    }

    /// Changes with revisions in `[from, to]`, in order, at most `limit` whole revisions, and
    /// the revision they reach (`to`, or less when the limit cut them). No `prev_kv` is set.
    pub fn history(&self, from: i64, to: i64, limit: usize) -> Result<(Vec<Event>, i64)> {
        let st = self.read_lock();
        if from < st.compact_rev {
            return Err(Error::Compacted);
        }
        let tx = self.begin_read()?;
        let table = tx.open_table(KV)?;
        drop(st);
        let lo = Revision::new(from, 0).lower_key();
        let hi = Revision::new(to + 1, 0).lower_key();
        let mut events = Vec::new();
        let mut revs_seen = 0usize;
        let mut last_main = 0;
        for item in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = item?;
            let Some((rev, tombstone)) = Revision::from_key(k.value()) else {
                continue;
            };
            if rev.main != last_main {
                if revs_seen == limit {
                    return Ok((events, last_main));
                }
                revs_seen += 1;
                last_main = rev.main;
            }
            let kv = KeyValue::decode(v.value()).map_err(|e| Error::Corrupt(e.to_string()))?;
            let r#type = if tombstone { 1 } else { 0 };
            events.push(Event { r#type, kv: Some(kv), prev_kv: None });
        }
        Ok((events, to))
    }

    /// The value of `key` as of revision `rev`, if any and still stored.
    pub fn get_at(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let st = self.read_lock();
        if rev <= st.compact_rev {
            return Ok(None);
        }
        let Some(at) = st.index.get(key, rev) else {
            return Ok(None);
        };
        let tx = self.begin_read()?;
        let table = tx.open_table(KV)?;
        drop(st);
        Ok(Some(range::load(&table, at.modified)?))
    }

    /// Reads a metadata record.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Metadata records whose key starts with `prefix`, in key order.
    pub fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META)?;
        let mut out = Vec::new();
        for item in meta.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The hash of every stored revision up to `rev` (for HashKV): equal stores give equal
    /// hashes. Returns (hash, compact revision, revision). A revision a recent compaction ran at
    /// is answered with the hash taken then, as etcd answers it.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let st = self.read_lock();
        if let Some(h) = st.compaction_hashes.iter().find(|h| rev > 0 && h.revision == rev) {
            return Ok((h.hash, h.compact_revision, h.revision));
        }
        let rev = if rev <= 0 { st.current_rev } else { rev };
        if rev > st.current_rev {
            return Err(Error::FutureRev);
        }
        if rev < st.compact_rev {
            return Err(Error::Compacted);
        }
        let compact_rev = st.compact_rev;
        let tx = self.begin_read()?;
        let table = tx.open_table(KV)?;
        drop(st);
        let started = std::time::Instant::now();
        let hash = hash_rows(&table, rev)?;
        rustcd_metrics::get().mvcc.hash_rev_duration_seconds.observe(rustcd_metrics::secs(started.elapsed()));
        Ok((hash, compact_rev.max(0), rev))
    }

    /// The hashes the last compactions took, newest first.
    pub fn compaction_hashes(&self) -> Vec<KeyValueHash> {
        self.read_lock().compaction_hashes.iter().rev().copied().collect()
    }

    pub(crate) fn encode_u64(v: u64) -> [u8; 8] {
        v.to_be_bytes()
    }

    pub(crate) const META_CONSISTENT_INDEX: &'static str = META_CONSISTENT_INDEX;
    pub(crate) const META_COMPACT_REV: &'static str = META_COMPACT_REV;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest};

    /// Puts keys `k{from}`.. `k{from + n - 1}` with 1 KiB values.
    pub(crate) fn put_many(store: &KvStore, from: usize, n: usize) {
        let no_leases = |_: i64| false;
        for i in from..from + n {
            let req = PutRequest {
                key: format!("k{i:05}").into_bytes().into(),
                value: vec![b'v'; 1024].into(),
                ..Default::default()
            };
            store.write(false, &no_leases, |w| w.put(&req).map(|_| ())).expect("put");
        }
    }

    /// Defragmenting after deleting and compacting most data shrinks the file and keeps what is
    /// left, at the same revision.
    #[test]
    fn defragment_shrinks_the_file_and_keeps_the_data() {
        let dir = tempfile::tempdir().expect("dir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        let no_leases = |_: i64| false;
        put_many(&store, 0, 3000);
        let del =
            DeleteRangeRequest { key: b"k0".to_vec().into(), range_end: b"k2".to_vec().into(), ..Default::default() };
        store.write(false, &no_leases, |w| w.delete_range(&del).map(|_| ())).expect("delete");
        let rev = store.current_rev();
        store.write(false, &no_leases, |w| w.compact(rev).map(|_| ())).expect("compact");
        // One more write: hashed at a revision no compaction ran at, the hash is the store's
        // own (at a compaction's revision HashKV answers with the hash that compaction kept,
        // which lives in memory only, as etcd's).
        put_many(&store, 5000, 1);
        let rev = store.current_rev();
        store.sync().expect("sync");
        let before = store.db_size().0;
        let hash = store.hash_kv(rev).expect("hash");
        store.defragment().expect("defragment");
        let after = store.db_size().0;
        assert!(after < before / 2, "the file shrank: {before} -> {after} bytes");
        assert_eq!(store.current_rev(), rev);
        assert_eq!(store.hash_kv(rev).expect("hash after"), hash);
        drop(store);
        let reopened = KvStore::open(dir.path().join("db")).expect("reopen");
        assert_eq!(reopened.hash_kv(rev).expect("hash after reopen"), hash);
    }

    /// Each operation of a write txn reports the revision as the txn saw it after that
    /// operation, as etcd 3.4 reports it (measured with the real etcd: `get b; put x; get a;
    /// put y; del nothing` after two puts gives 3, 4, 4, 4, 4; `del nothing; del b` gives 4, 5).
    #[test]
    fn txn_inner_headers_carry_etcds_revisions() {
        use rustcd_api::etcdserverpb::request_op::Request as Op;
        use rustcd_api::etcdserverpb::response_op::Response as R;
        use rustcd_api::etcdserverpb::{RangeRequest, RequestOp, TxnRequest};
        let dir = tempfile::tempdir().expect("dir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        let no_leases = |_: i64| false;
        put_many(&store, 0, 2); // revisions 2 and 3
        let get = |k: &str| RequestOp {
            request: Some(Op::RequestRange(RangeRequest { key: k.as_bytes().to_vec().into(), ..Default::default() })),
        };
        let put = |k: &str| RequestOp {
            request: Some(Op::RequestPut(PutRequest { key: k.as_bytes().to_vec().into(), ..Default::default() })),
        };
        let del = |k: &str| RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec().into(),
                ..Default::default()
            })),
        };
        let nested = RequestOp {
            request: Some(Op::RequestTxn(TxnRequest { success: vec![get("k00000")], ..Default::default() })),
        };
        let revisions = |ops: Vec<RequestOp>| {
            let t = TxnRequest { success: ops, ..Default::default() };
            let r = store.write(false, &no_leases, |w| w.txn(&t)).expect("txn").value.expect("applied");
            let inner: Vec<i64> = r
                .responses
                .iter()
                .map(|op| match &op.response {
                    Some(R::ResponseRange(x)) => x.header.as_ref().map_or(-1, |h| h.revision),
                    Some(R::ResponsePut(x)) => x.header.as_ref().map_or(-1, |h| h.revision),
                    Some(R::ResponseDeleteRange(x)) => x.header.as_ref().map_or(-1, |h| h.revision),
                    Some(R::ResponseTxn(x)) => x.header.as_ref().map_or(-1, |h| h.revision),
                    None => -1,
                })
                .collect();
            (r.header.map_or(-1, |h| h.revision), inner)
        };
        assert_eq!(
            revisions(vec![get("k00001"), put("x"), get("k00000"), put("y"), del("nothing")]),
            (4, vec![3, 4, 4, 4, 4])
        );
        assert_eq!(revisions(vec![del("nothing"), del("k00001")]), (5, vec![4, 5]));
        assert_eq!(revisions(vec![get("x"), nested]), (5, vec![5, 0]));
    }

    /// Each compaction keeps a hash of the rows it ran over (etcd's compaction hash): members
    /// that applied the same writes keep the same hashes, a member whose data differs keeps
    /// another; HashKV at a compaction's revision answers with the kept hash, under the
    /// compaction before it; only the last 10 are kept.
    #[test]
    fn compactions_keep_their_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |name: &str| KvStore::open(dir.path().join(name)).expect("open");
        let (a, b, c) = (open("a"), open("b"), open("c"));
        let no_leases = |_: i64| false;
        for round in 0..12 {
            for s in [&a, &b, &c] {
                put_many(s, 0, 5);
            }
            if round == 11 {
                // c's data differs from a's and b's at the same revision.
                let other = PutRequest {
                    key: b"k00000".to_vec().into(),
                    value: b"other".to_vec().into(),
                    ..Default::default()
                };
                c.write(false, &no_leases, |w| w.put(&other).map(|_| ())).expect("put");
                for s in [&a, &b] {
                    put_many(s, 0, 1);
                }
            }
            let rev = a.current_rev();
            for s in [&a, &b, &c] {
                assert_eq!(s.current_rev(), rev);
                s.write(false, &no_leases, |w| w.compact(rev).map(|_| ())).expect("compact");
            }
        }
        let (ka, kb, kc) = (a.compaction_hashes(), b.compaction_hashes(), c.compaction_hashes());
        assert_eq!(ka.len(), COMPACTION_HASHES_KEPT);
        assert_eq!(ka, kb, "the same writes, the same hashes");
        assert_ne!(ka[0].hash, kc[0].hash, "other data, another hash");
        assert_eq!(ka[1..], kc[1..], "the rounds before agree");
        let newest = ka[0];
        assert_eq!(newest.compact_revision, ka[1].revision);
        assert_eq!(a.hash_kv(newest.revision).expect("kept"), (newest.hash, newest.compact_revision, newest.revision));
        // The oldest ones are forgotten: at their revisions the store is compacted.
        assert!(matches!(a.hash_kv(ka[COMPACTION_HASHES_KEPT - 1].revision - 6), Err(Error::Compacted)));
    }
}
