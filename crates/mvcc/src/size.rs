//! How big the backend is: the file's size after each commit (what etcd's quota compares with)
//! and the part of it in use (for Status and `/metrics`), measured now and then rather than on
//! every question.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::KvStore;

/// How old the measured bytes in use may be before a durable sync measures them again. redb
/// counts them by walking every page of the database under its one write transaction (46 ms
/// for 273 MB in a release build, 4 s in a debug one), and applies wait meanwhile: so the walk
/// also waits [`IN_USE_COST_FACTOR`] times its own last duration, keeping it under 1% of the
/// writer's time on any database size.
const IN_USE_MAX_AGE: Duration = Duration::from_secs(10);
const IN_USE_COST_FACTOR: u32 = 100;

/// The bytes of the backend file in use, as last measured.
#[derive(Clone, Copy)]
pub(crate) struct InUse {
    bytes: i64,
    at: Instant,
    /// How long the measurement took.
    cost: Duration,
}

impl InUse {
    pub(crate) fn stale(&self) -> bool {
        self.at.elapsed() >= IN_USE_MAX_AGE.max(self.cost * IN_USE_COST_FACTOR)
    }
}

impl KvStore {
    /// Forces everything committed so far onto disk.
    pub fn sync(&self) -> Result<()> {
        let tx = self.db().begin_write()?;
        if self.in_use_cache().is_none_or(|m| m.stale()) {
            self.measure_in_use(&tx);
        }
        tx.commit()?;
        Ok(())
    }

    fn in_use_cache(&self) -> Option<InUse> {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Measures the bytes in use (a walk of every page) within `tx`, and keeps the figure.
    fn measure_in_use(&self, tx: &redb::WriteTransaction) -> Option<i64> {
        let started = Instant::now();
        let s = tx.stats().ok()?;
        let bytes = s.allocated_pages() as i64 * s.page_size() as i64;
        let m = InUse { bytes, at: Instant::now(), cost: started.elapsed() };
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
        Some(bytes)
    }

    /// The backend file's size in bytes after the last commit, defrag or restore (what etcd's
    /// quota compares with), without measuring the part in use.
    pub fn file_size(&self) -> u64 {
        self.file_len.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn note_file_len(&self) {
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        self.file_len.store(len, std::sync::atomic::Ordering::Relaxed);
    }

    /// File size and the part of it in use, in bytes. The part in use is the figure the last
    /// durable sync measured (see [`IN_USE_MAX_AGE`] for how old it may be), so asking
    /// costs nothing; only when it was never measured (or a defrag or restore dropped it) is it measured
    /// here, with a write transaction.
    pub fn db_size(&self) -> (i64, i64) {
        let total = std::fs::metadata(&self.path).map(|m| m.len() as i64).unwrap_or(0);
        let in_use = match self.in_use_cache() {
            Some(m) => Some(m.bytes),
            None => self.db().begin_write().ok().and_then(|tx| {
                let used = self.measure_in_use(&tx);
                tx.abort().ok()?;
                used
            }),
        };
        (total, in_use.unwrap_or(total).min(total))
    }

    /// Forgets what was measured of the old file after the file was rewritten.
    pub(crate) fn after_rewrite(&self) {
        self.forget_in_use();
        self.note_file_len();
    }

    /// Drops the measured bytes in use (the file was replaced or rewritten).
    pub(crate) fn forget_in_use(&self) {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use crate::KvStore;
    use crate::store::tests::put_many;

    #[test]
    fn bytes_in_use_are_measured_by_a_sync_not_by_asking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open(dir.path().join("db")).expect("open");
        put_many(&store, 0, 300);
        store.sync().expect("sync");
        let (total, used) = store.db_size();
        assert!(used > 300 * 1024 && used <= total, "in use {used} of {total}");
        // More writes without a sync: asking again gives the measured figure, no page walk.
        put_many(&store, 300, 300);
        assert_eq!(store.db_size().1, used);
        // A defrag drops the figure: the next question measures the rewritten file.
        store.defragment().expect("defragment");
        let (total, after) = store.db_size();
        assert!(after > 600 * 1024 && after <= total, "in use after defrag {after} of {total}");
    }
}
