//! The raft log on disk: raft-engine behind raft-rs's `Storage` trait.
//!
//! Holds entries, the hard state, the conf state and the truncation point (index and term of
//! the last entry compacted away). Every `append` that the raft task marks `sync` is fsynced
//! before it returns: that is what makes an entry acknowledged.

use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};

use crate::error::{Error, Result};
use crate::io::LogStorage;

/// raft-engine's view of a raft-rs entry.
#[derive(Clone)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// The one raft group rustcd keeps in the engine.
const GROUP: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_TRUNCATED: &[u8] = b"truncated";

/// Takes a snapshot of the state machine: its data and the raft index it reflects. Runs on a
/// thread of its own, never on the raft thread.
pub type SnapshotSource = Arc<dyn Fn() -> std::result::Result<(Vec<u8>, u64), String> + Send + Sync>;

/// A snapshot for a peer, made off the raft thread: raft asks ([`raft::Storage::snapshot`]),
/// is told "temporarily unavailable" while a thread builds it, and gets it when it asks again
/// (raft asks on the peer's next heartbeat response).
#[derive(Default)]
enum SnapshotJob {
    #[default]
    Idle,
    Building,
    Built(std::result::Result<(Vec<u8>, u64), String>),
}

/// Most bytes of entries [`LogStore`] keeps in memory after writing them: enough for the entries
/// between their write and their apply under load (8 MiB cost ~12 MiB of RSS for no gain).
const CACHE_BYTES: usize = 1 << 20;

/// The persistent raft log.
pub struct LogStore {
    snapshot_source: Option<SnapshotSource>,
    snapshot_job: Arc<std::sync::Mutex<SnapshotJob>>,
    engine: Arc<Engine>,
    /// etcd's `--unsafe-no-fsync`: appends are written but never forced to disk.
    no_fsync: bool,
    /// The newest entries written, contiguous up to the last index: raft reads most entries
    /// back right after writing them (to apply them, to send them to a follower), and
    /// raft-engine would read each from its file (a pread, a checksum, a decode).
    cache: std::collections::VecDeque<Entry>,
    cache_bytes: usize,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last compacted entry (0, 0 when nothing was compacted).
    truncated: (u64, u64),
}

impl LogStore {
    /// etcd's `--unsafe-no-fsync`: a crash of the machine may lose acknowledged writes.
    pub fn without_fsync(mut self) -> Self {
        self.no_fsync = true;
        self
    }

    /// Opens the log in `dir`, recovering from its files: a write a crash cut short is dropped,
    /// any other damage refuses to open.
    pub fn open(dir: &Path) -> Result<Self> {
        let cfg = Config {
            dir: dir.to_string_lossy().into_owned(),
            target_file_size: ReadableSize::mb(64),
            purge_threshold: ReadableSize::mb(256),
            recovery_mode: raft_engine::RecoveryMode::TolerateTailCorruption,
            ..Default::default()
        };
        // raft-engine drops a broken tail silently; judge what it dropped (see `tail`).
        let tails = crate::tail::Tails::read(dir)?;
        let engine = match recover(cfg) {
            Ok(engine) => engine?,
            Err(why) => {
                tails.restore()?;
                return Err(Error::Corrupt(format!(
                    "raft-engine could not recover {}: {why}. Refusing to start \
                     (restore this member from a snapshot or remove and re-add it)",
                    dir.display()
                )));
            }
        };
        if let Err(e) = tails.check_dropped().and_then(|()| verify_entries(&engine)) {
            drop(engine);
            tails.restore()?;
            return Err(e);
        }
        let engine = Arc::new(engine);
        let hard_state = engine.get_message::<HardState>(GROUP, KEY_HARD_STATE)?.unwrap_or_default();
        let conf_state = engine.get_message::<ConfState>(GROUP, KEY_CONF_STATE)?.unwrap_or_default();
        let truncated = match engine.get(GROUP, KEY_TRUNCATED) {
            Some(v) if v.len() == 16 => {
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                a.copy_from_slice(&v[..8]);
                b.copy_from_slice(&v[8..]);
                (u64::from_be_bytes(a), u64::from_be_bytes(b))
            }
            Some(_) => return Err(Error::Corrupt("truncation record".into())),
            None => (0, 0),
        };
        Ok(LogStore {
            no_fsync: false,
            snapshot_source: None,
            snapshot_job: Default::default(),
            engine,
            cache: Default::default(),
            cache_bytes: 0,
            hard_state,
            conf_state,
            truncated,
        })
    }

    pub fn set_snapshot_source(&mut self, f: SnapshotSource) {
        self.snapshot_source = Some(f);
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Keeps newly written entries (replacing a conflicting tail) in the cache, within its size.
    fn cache_appended(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        while self.cache.back().is_some_and(|e| e.index >= first) {
            self.pop_cached(false);
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != first) {
            self.clear_cache();
        }
        for e in entries {
            self.cache_bytes += entry_size(e);
            self.cache.push_back(e.clone());
        }
        while self.cache_bytes > CACHE_BYTES && self.cache.len() > 1 {
            self.pop_cached(true);
        }
    }

    fn pop_cached(&mut self, front: bool) {
        let e = if front { self.cache.pop_front() } else { self.cache.pop_back() };
        self.cache_bytes -= e.map_or(0, |e| entry_size(&e));
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// The cached entry at `idx`, if the cache holds it.
    fn cached(&self, idx: u64) -> Option<&Entry> {
        let first = self.cache.front()?.index;
        self.cache.get(usize::try_from(idx.checked_sub(first)?).ok()?)
    }

    fn first_index_inner(&self) -> u64 {
        self.engine.first_index(GROUP).unwrap_or(self.truncated.0 + 1).max(self.truncated.0 + 1)
    }

    fn last_index_inner(&self) -> u64 {
        self.engine.last_index(GROUP).unwrap_or(self.truncated.0).max(self.truncated.0)
    }

    fn term_inner(&self, idx: u64) -> Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        match self.engine.get_entry::<EntryExt>(GROUP, idx)? {
            Some(e) => Ok(e.term),
            None => Err(Error::Corrupt(format!("raft log entry {idx} missing"))),
        }
    }
}

/// A synced write of the raft log slower than this is logged (etcd's `warnSyncDuration`).
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_secs(1);

static RECOVERING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True while raft-engine recovers a log. It panics on some damaged logs (e.g. "memtable has a
/// hole"); such a panic is caught and becomes an error, so a process-wide panic hook that
/// aborts must let it unwind meanwhile.
pub fn recovering() -> bool {
    RECOVERING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Opens the engine; a panic inside it comes back as its message.
/// Says so before and after: a damaged log can still make raft-engine abort the process (a huge
/// allocation from a broken length, see fuzz/README.md), and then this is the last line.
fn recover(cfg: Config) -> std::result::Result<raft_engine::Result<Engine>, String> {
    let dir = cfg.dir.clone();
    tracing::info!(dir = %dir, "recovering the raft log");
    let started = std::time::Instant::now();
    RECOVERING.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Engine::open(cfg)));
    RECOVERING.store(false, std::sync::atomic::Ordering::SeqCst);
    if let Ok(Ok(engine)) = &r {
        let (first, last) = (engine.first_index(GROUP), engine.last_index(GROUP));
        tracing::info!(dir = %dir, ?first, ?last, took = ?started.elapsed(), "raft log recovered");
    }
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Reads every entry in the log once, so that their checksums are checked now (raft-engine
/// checks an entry's only when it is read) and a damaged one stops the member at start, as
/// etcd's reading of its whole WAL does, instead of failing raft later.
fn verify_entries(engine: &Engine) -> Result<()> {
    let (Some(first), Some(last)) = (engine.first_index(GROUP), engine.last_index(GROUP)) else {
        return Ok(());
    };
    let mut buf = Vec::new();
    let mut next = first;
    while next <= last {
        buf.clear();
        engine.fetch_entries_to::<EntryExt>(GROUP, next, last + 1, Some(4 << 20), &mut buf).map_err(|e| {
            Error::Corrupt(format!(
                "entries from index {next} on are corrupt ({e}). Refusing to start \
                 (restore this member from a snapshot or remove and re-add it)"
            ))
        })?;
        match buf.last() {
            Some(e) if e.index >= next => next = e.index + 1,
            _ => return Err(Error::Corrupt(format!("entry {next} is missing. Refusing to start"))),
        }
    }
    Ok(())
}

impl LogStorage for LogStore {
    /// Persists new entries (replacing any conflicting tail) and hard state in one write.
    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>, sync: bool) -> Result<()> {
        let mut batch = LogBatch::default();
        if !entries.is_empty() {
            batch.add_entries::<EntryExt>(GROUP, entries)?;
        }
        if let Some(hs) = hs {
            batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), hs)?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let written = self.engine.write(&mut batch, sync && !self.no_fsync)?;
        let took = started.elapsed();
        let disk = &rustcd_metrics::get().disk;
        disk.wal_write_bytes_total.add(written as i64);
        if sync {
            // The log's write and its fsync are one call here; etcd times the fsync alone.
            disk.wal_fsync_duration_seconds.observe(rustcd_metrics::secs(took));
        }
        if sync && took > SLOW_SYNC {
            // etcd's WAL warning, with its words.
            tracing::warn!(took = ?took, expected_duration = "1s", "slow fdatasync");
        }
        if let Some(hs) = hs {
            self.hard_state = hs.clone();
        }
        self.cache_appended(entries);
        Ok(())
    }

    /// Replaces the whole log with a snapshot's position: every entry goes, the snapshot's
    /// index and term become the truncation point, its configuration the conf state.
    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        let mut v = meta.index.to_be_bytes().to_vec();
        v.extend_from_slice(&meta.term.to_be_bytes());
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, raft_engine::Command::Clean);
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)?;
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), meta.get_conf_state())?;
        batch.put(GROUP, KEY_TRUNCATED.to_vec(), v)?;
        self.engine.write(&mut batch, true)?;
        self.clear_cache();
        self.hard_state = hs;
        self.conf_state = meta.get_conf_state().clone();
        self.truncated = (meta.index, meta.term);
        Ok(())
    }

    /// Records a new commit index.
    fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.append(&[], Some(&hs), false)
    }

    fn set_conf_state(&mut self, cs: ConfState) -> Result<()> {
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &cs)?;
        self.engine.write(&mut batch, true)?;
        self.conf_state = cs;
        Ok(())
    }

    /// Drops entries up to and including `index`, which must be applied and durable elsewhere.
    fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.truncated.0 || index > self.last_index_inner() {
            return Ok(());
        }
        let term = self.term_inner(index)?;
        let mut v = index.to_be_bytes().to_vec();
        v.extend_from_slice(&term.to_be_bytes());
        let mut batch = LogBatch::default();
        batch.put(GROUP, KEY_TRUNCATED.to_vec(), v)?;
        self.engine.write(&mut batch, true)?;
        self.truncated = (index, term);
        while self.cache.front().is_some_and(|e| e.index <= index) {
            self.pop_cached(true);
        }
        self.engine.compact_to(GROUP, index + 1);
        self.engine.purge_expired_files()?;
        Ok(())
    }

    /// True when nothing was ever written: the member is new.
    fn is_empty(&self) -> bool {
        self.conf_state.voters.is_empty() && self.conf_state.learners.is_empty() && self.hard_state.term == 0
    }
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_inner() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        let len = (high - low) as usize;
        if self.cached(low).is_some() && self.cached(high - 1).is_some() {
            let from = (low - self.cache[0].index) as usize;
            let mut out: Vec<Entry> = self.cache.range(from..from + len).cloned().collect();
            raft::util::limit_size(&mut out, max_size);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(len);
        let max = max_size.map(|m| m as usize);
        self.engine.fetch_entries_to::<EntryExt>(GROUP, low, high, max, &mut out).map_err(storage_err)?;
        if out.is_empty() && high > low {
            out.truncate(0);
            // raft-engine returns at least one entry when any exist; none means a gap.
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index_inner() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.term_inner(idx).map_err(storage_err)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_inner())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_inner())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(source) = &self.snapshot_source else {
            return Err(unavailable());
        };
        let mut job = self.snapshot_job.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::take(&mut *job) {
            SnapshotJob::Building => {
                *job = SnapshotJob::Building;
                Err(unavailable())
            }
            SnapshotJob::Built(Ok((data, index))) if index >= request_index => {
                let term = self.term_inner(index).map_err(storage_err)?;
                let mut snap = Snapshot::default();
                snap.set_data(data.into());
                let meta = snap.mut_metadata();
                meta.index = index;
                meta.term = term;
                meta.set_conf_state(self.conf_state.clone());
                tracing::info!(to = %format!("{to:x}"), index, term, bytes = snap.get_data().len(), "snapshot taken for a peer");
                Ok(snap)
            }
            SnapshotJob::Built(Err(e)) => {
                tracing::warn!(error = %e, "making a snapshot for a peer failed; will try again");
                Err(unavailable())
            }
            // Nothing built yet, or one older than raft needs now: build one.
            SnapshotJob::Idle | SnapshotJob::Built(Ok(_)) => {
                *job = SnapshotJob::Building;
                let (source, slot) = (source.clone(), self.snapshot_job.clone());
                let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
                    let built = source();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = SnapshotJob::Built(built);
                });
                if let Err(e) = spawned {
                    *job = SnapshotJob::Idle;
                    tracing::warn!(error = %e, "cannot start a thread to make a snapshot");
                }
                Err(unavailable())
            }
        }
    }
}

/// Encodes an entry's bytes length; used to keep batches bounded.
pub fn entry_size(e: &Entry) -> usize {
    e.compute_size() as usize
}

/// Writes the initial log of a member restored from a snapshot (etcd's `snapshot restore`): the
/// same committed AddNode entries a new cluster starts with, in the log at `dir`, which must be
/// empty. Started on it, the member applies nothing from them (its backend already holds the
/// membership, at the consistent index of the last entry).
pub fn bootstrap_log(dir: &std::path::Path, members: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut store = LogStore::open(dir)?;
    if !store.is_empty() {
        return Err(Error::Corrupt(format!("{}: the raft log is not empty", dir.display())));
    }
    crate::core::bootstrap(&mut store, members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8].into(), ..Default::default() }
    }

    /// Every byte of a batch in the middle of the log, flipped: the log refuses to open (it
    /// does not drop the batch and the acknowledged entries after it), and the file is left
    /// as it was.
    #[test]
    fn any_flipped_byte_mid_log_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            for i in 1..=40 {
                let hs = HardState { term: 1, commit: i, ..Default::default() };
                s.append(&[entry(i, 1)], Some(&hs), true).unwrap();
            }
        }
        let file = crate::tail::Tails::read(dir.path()).unwrap().paths().next().unwrap().to_path_buf();
        let original = std::fs::read(&file).unwrap();
        let end = original.iter().rposition(|b| *b != 0).unwrap() + 1;
        // 40 batches: from the middle on, a stretch longer than two of them.
        let batch = end / 40;
        for at in end / 2..end / 2 + 2 * batch {
            let mut flipped = original.clone();
            flipped[at] ^= 0x04;
            std::fs::write(&file, &flipped).unwrap();
            match LogStore::open(dir.path()) {
                Ok(_) => panic!("a flipped byte at offset {at} of {end} went unnoticed"),
                Err(e) => assert!(e.to_string().contains("Refusing to start"), "at {at}: {e}"),
            }
            assert_eq!(std::fs::read(&file).unwrap(), flipped, "at {at}: the file is left as it was");
        }
        std::fs::write(&file, &original).unwrap();
        let s = LogStore::open(dir.path()).unwrap();
        assert_eq!(s.last_index().unwrap(), 40);
    }

    /// A log on which raft-engine's recovery panics ("memtable 1 has a hole"; found by the
    /// raft_log_open fuzz target): an error that says so, not a crash.
    #[test]
    fn a_log_raft_engine_panics_on_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/hole.raftlog")).unwrap();
        std::fs::write(dir.path().join("0000000000000001.raftlog"), &bytes).unwrap();
        let err = LogStore::open(dir.path()).err().expect("a damaged log does not open").to_string();
        assert!(err.contains("has a hole") && err.contains("Refusing to start"), "{err}");
        assert!(!recovering());
    }

    /// Entries read back right after they are written come from the cache, and say what the
    /// engine says: across a conflicting tail, a size limit, compaction and a snapshot.
    #[test]
    fn cached_entries_match_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LogStore::open(dir.path()).unwrap();
        let all = |s: &LogStore| {
            let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
            s.entries(first, last + 1, None, GetEntriesContext::empty(false)).unwrap()
        };
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)], None, true).unwrap();
        s.append(&[entry(3, 2), entry(4, 2)], None, true).unwrap();
        assert_eq!(s.cache.len(), 4);
        assert_eq!(all(&s).iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), [(1, 1), (2, 1), (3, 2), (4, 2)]);
        assert_eq!(s.term(3).unwrap(), 2);
        let one = entry_size(&entry(1, 1)) as u64;
        assert_eq!(s.entries(1, 5, Some(one), GetEntriesContext::empty(false)).unwrap().len(), 1);
        s.compact(2).unwrap();
        assert_eq!(s.cache.front().map(|e| e.index), Some(3));
        assert!(s.entries(2, 4, None, GetEntriesContext::empty(false)).is_err());
        let cached = all(&s);
        s.clear_cache();
        assert_eq!(cached, all(&s), "the engine holds what the cache served");
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1];
        s.append(&[entry(5, 2)], None, true).unwrap();
        s.apply_snapshot(&snap).unwrap();
        assert!(s.cache.is_empty());
        s.append(&[entry(11, 3)], None, true).unwrap();
        assert_eq!(all(&s).iter().map(|e| e.index).collect::<Vec<_>>(), [11]);
    }

    #[test]
    fn append_reopen_compact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            assert!(s.is_empty());
            let hs = HardState { term: 2, commit: 3, ..Default::default() };
            s.append(&[entry(1, 1), entry(2, 1), entry(3, 2)], Some(&hs), true).unwrap();
            // A conflicting tail replaces what follows it.
            s.append(&[entry(3, 3), entry(4, 3)], None, true).unwrap();
        }
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(s.hard_state().term, 2);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 4));
        assert_eq!(s.term(3).unwrap(), 3);
        s.compact(2).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(s.entries(2, 4, None, GetEntriesContext::empty(false)).is_err());
        let got = s.entries(3, 5, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| e.term).collect::<Vec<_>>(), vec![3, 3]);
    }
}
