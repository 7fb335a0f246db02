//! Defragmentation without stopping writes (etcd's defrag holds every write for as long as it
//! copies the file: etcd issue 9222). The live rows are copied into a new file from read
//! views while writes go on; then passes copy what was written meanwhile, each shorter than the
//! one before; only the last, small one runs with writes held, followed by the swap of the
//! files. A compaction that ran during the copy is replayed on the copy; a restore waits for
//! the defrag to end (both hold [`KvStore::defrag_guard`]).

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::error::{Error, Result};
use crate::revision::Revision;
use crate::store::{CACHE_BYTES, KV, KvStore, META};

/// Rows per write transaction of the copy (bounds its memory).
const ROWS_PER_COMMIT: usize = 5_000;
/// A catch-up pass that copied fewer rows than this is the last one run with writes going on.
const SMALL_PASS: u64 = 2_000;
/// At most this many passes with writes going on.
const MAX_PASSES: usize = 8;

/// Where a defrag writes the new file before it takes the backend's place.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".defrag");
    PathBuf::from(p)
}

impl KvStore {
    /// Rewrites the backend file without its free pages (etcd's defrag) while writes go on;
    /// writes wait only for the last rows written during the copy and for the swap of files.
    /// `before_swap` runs with the new file complete, just before it takes the old one's place.
    pub fn defragment_with(&self, before_swap: &dyn Fn()) -> Result<()> {
        let _one = self.defrag_guard();
        let tmp = temp_path(self.path());
        let _ = std::fs::remove_file(&tmp);
        let started = std::time::Instant::now();
        let disk = &rustcd_metrics::get().disk;
        disk.defrag_inflight.set(1);
        let result = self.copy_and_swap(&tmp, before_swap);
        disk.defrag_inflight.set(0);
        disk.backend_defrag_duration_seconds.observe(rustcd_metrics::secs(started.elapsed()));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let (passes, held) = result?;
        tracing::info!(took = ?started.elapsed(), passes, writes_held = ?held, "defragmented the backend");
        Ok(())
    }

    /// Rewrites the backend file without its free pages.
    pub fn defragment(&self) -> Result<()> {
        self.defragment_with(&|| {})
    }

    /// Copies, catches up, swaps; returns the passes run and how long writes were held.
    fn copy_and_swap(&self, tmp: &Path, before_swap: &dyn Fn()) -> Result<(usize, std::time::Duration)> {
        let dst = Database::builder().set_cache_size(CACHE_BYTES).create(tmp)?;
        let (mut at, mut compacted) = (None, -1);
        let mut passes = 0;
        while passes < MAX_PASSES {
            let (st, src) = self.read_view()?;
            let (rev, compact_rev) = (st.current_rev, st.compact_rev);
            drop(st);
            passes += 1;
            let rows = catch_up(&src, &dst, at, &mut compacted, compact_rev)?;
            at = Some(rev);
            if rows < SMALL_PASS {
                break;
            }
        }
        // What the passes wrote goes to disk now, while writes go on: the commit made with
        // writes held then syncs only the last rows.
        let mut tx = dst.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        // The last rows with writes held, then the swap.
        let st = self.write_lock_for_swap();
        let held = std::time::Instant::now();
        let mut db = self.db_for_swap();
        let src = db.begin_read()?;
        let last_rows = catch_up(&src, &dst, at, &mut compacted, st.compact_rev)?;
        let caught_up = held.elapsed();
        let tx = dst.begin_write()?;
        tx.delete_table(META)?;
        {
            let mut meta = tx.open_table(META)?;
            for item in src.open_table(META)?.iter()? {
                let (k, v) = item?;
                meta.insert(k.value(), v.value())?;
            }
            tx.open_table(KV)?;
        }
        tx.commit()?;
        let committed = held.elapsed();
        drop(src);
        drop(dst);
        before_swap();
        std::fs::rename(tmp, self.path())?;
        if let Some(dir) = self.path().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        let new = Database::builder().set_cache_size(CACHE_BYTES).create(self.path())?;
        // Readers still on the old file keep it open (and their view) until they end.
        let old = std::mem::replace(&mut *db, std::sync::Arc::new(new));
        drop(db);
        self.after_rewrite();
        drop(st);
        let held = held.elapsed();
        tracing::debug!(last_rows, caught_up = ?caught_up, committed = ?committed, swapped = ?held, "defrag: writes held");
        // Closing the old file (redb writes its allocator state) need not hold writes.
        drop(old);
        Ok((passes, held))
    }
}

/// Copies into `dst` the revisions of `src` after `after` (all of them when `None`), first
/// removing from `dst` what a compaction since the last pass removed from `src`. Returns the
/// rows copied.
fn catch_up(
    src: &redb::ReadTransaction,
    dst: &Database,
    after: Option<i64>,
    compacted: &mut i64,
    compact_rev: i64,
) -> Result<u64> {
    let table = src.open_table(KV)?;
    if after.is_some() && compact_rev > *compacted {
        prune(&table, dst, compact_rev)?;
    }
    *compacted = compact_rev;
    let lo = Revision::new(after.map_or(0, |r| r + 1), 0).lower_key();
    let mut rows = 0u64;
    let mut tx = begin(dst)?;
    for item in table.range(lo.as_slice()..)? {
        let (k, v) = item?;
        tx.open_table(KV)?.insert(k.value(), v.value())?;
        rows += 1;
        if rows.is_multiple_of(ROWS_PER_COMMIT as u64) {
            tx.commit()?;
            tx = begin(dst)?;
        }
    }
    tx.commit()?;
    Ok(rows)
}

/// A write transaction of the copy. Each is made durable: the copy then reaches the disk a few
/// MB at a time, and the raft log's fsyncs never queue behind a flush of the whole file.
fn begin(db: &Database) -> Result<redb::WriteTransaction> {
    db.begin_write().map_err(Error::from)
}

/// Removes from `dst` every revision at or below `compact_rev` that `src` no longer has.
fn prune(src: &impl ReadableTable<&'static [u8], &'static [u8]>, dst: &Database, compact_rev: i64) -> Result<()> {
    let hi = Revision::new(compact_rev + 1, 0).lower_key();
    let mut gone = Vec::new();
    {
        let rtx = dst.begin_read()?;
        let copied = rtx.open_table(KV)?;
        for item in copied.range(..hi.as_slice())? {
            let (k, _) = item?;
            if src.get(k.value())?.is_none() {
                gone.push(k.value().to_vec());
            }
        }
    }
    for chunk in gone.chunks(ROWS_PER_COMMIT) {
        let tx = begin(dst)?;
        {
            let mut t = tx.open_table(KV)?;
            for k in chunk {
                t.remove(k.as_slice())?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::backend(e)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustcd_api::etcdserverpb::PutRequest;

    use crate::KvStore;

    fn put(store: &KvStore, keys: impl Iterator<Item = String>) {
        let none = |_: i64| false;
        store
            .write(false, &none, |w| {
                for k in keys {
                    let req =
                        PutRequest { key: k.into_bytes().into(), value: vec![b'v'; 512].into(), ..Default::default() };
                    w.put(&req).expect("put");
                }
            })
            .expect("write");
    }

    /// A writer puts and compacts on two stores alike while one of them is defragmented: the
    /// defrag waits for none of it, and afterwards (and after reopening) the defragmented store
    /// holds exactly what the other holds. A reader that began before the swap reads on.
    #[test]
    fn writes_and_compactions_go_on_during_a_defrag() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Arc::new(KvStore::open(dir.path().join("a")).expect("open a"));
        let b = Arc::new(KvStore::open(dir.path().join("b")).expect("open b"));
        for s in [&a, &b] {
            for t in 0..150 {
                put(s, (0..100).map(|i| format!("k{:05}", t * 100 + i)));
            }
        }
        let reader = a.row_view().expect("view");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
            std::thread::spawn(move || {
                let none = |_: i64| false;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    for s in [&a, &b] {
                        put(s, (0..10).map(|i| format!("k{:05}", (n * 10 + i) % 15_000)));
                        if n % 20 == 19 {
                            let rev = s.current_rev() - 5;
                            s.write(false, &none, |w| w.compact(rev).map(|_| ())).expect("compact");
                        }
                    }
                    n += 1;
                }
                n
            })
        };
        a.defragment().expect("defragment");
        stop.store(true, Ordering::Relaxed);
        let rounds = writer.join().expect("writer");
        assert!(rounds >= 50, "{rounds}");
        let rev = a.current_rev();
        assert_eq!(rev, b.current_rev());
        assert_eq!(a.hash_kv(rev).expect("hash a"), b.hash_kv(rev).expect("hash b"), "the same rows");
        let mut rows = 0;
        reader
            .kv_rows(|_, _, _| -> crate::Result<()> {
                rows += 1;
                Ok(())
            })
            .expect("a reader from before the swap reads on");
        assert_eq!(rows, 15_000);
        drop(reader);
        let a = Arc::try_unwrap(a).ok().expect("one owner");
        drop(a);
        let a = KvStore::open(dir.path().join("a")).expect("reopen");
        assert_eq!(a.hash_kv(rev).expect("hash after reopen"), b.hash_kv(rev).expect("hash b"));
        assert!(!super::temp_path(&dir.path().join("a")).exists());
    }
}
