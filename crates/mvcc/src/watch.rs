//! The watcher hub (etcd's `watchableStore`): synced watchers get each commit's events as it
//! happens; a watcher that starts in the past or falls behind is *unsynced* and catches up from
//! the backend's history, so a slow watcher never holds up a write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rustcd_api::mvccpb::Event;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::key_range::KeyRange;
use crate::store::KvStore;

/// Identifies a watcher in the hub.
pub type WatcherKey = u64;

/// What the hub delivers to a watch stream.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub key: WatcherKey,
    pub watch_id: i64,
    pub events: Vec<Event>,
    /// Non-zero: the watcher's start was compacted away; it has been removed.
    pub compact_revision: i64,
    /// Store revision the batch brings the watcher to.
    pub revision: i64,
    /// A progress notification (no events): every event up to `revision` for the stream's
    /// watchers was queued before it.
    pub progress: bool,
}

/// What a client asked to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub range: KeyRange,
    pub start_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub watch_id: i64,
}

struct Watcher {
    spec: WatchSpec,
    next_rev: i64,
    synced: bool,
    tx: mpsc::Sender<WatchEvent>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if kv.mod_revision < self.next_rev || !self.spec.range.contains(&kv.key) {
            return false;
        }
        let is_put = ev.r#type == 0;
        !(is_put && self.spec.no_put || !is_put && self.spec.no_delete)
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| {
                let mut e = e.clone();
                if !self.spec.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    watchers: HashMap<WatcherKey, Watcher>,
    next_key: WatcherKey,
    /// The revision through which every synced watcher's events have been queued.
    notified: i64,
}

/// All watchers of one member.
pub struct WatchHub {
    store: Arc<KvStore>,
    inner: Mutex<Inner>,
}

/// Revisions read from history per catch-up round and watcher.
const CATCH_UP_REVS: usize = 1000;

impl WatchHub {
    pub fn new(store: Arc<KvStore>) -> Self {
        let notified = store.current_rev();
        WatchHub { store, inner: Mutex::new(Inner { notified, ..Default::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a watcher whose batches go to `tx`; returns its key and the current revision.
    pub fn watch(&self, spec: WatchSpec, tx: mpsc::Sender<WatchEvent>) -> (WatcherKey, i64) {
        let mut inner = self.lock();
        let current = self.store.current_rev();
        let (next_rev, synced) = if spec.start_rev <= 0 || spec.start_rev > current {
            (spec.start_rev.max(current + 1), true)
        } else {
            (spec.start_rev, false)
        };
        inner.next_key += 1;
        let key = inner.next_key;
        inner.watchers.insert(key, Watcher { spec, next_rev, synced, tx });
        (key, current)
    }

    pub fn cancel(&self, key: WatcherKey) -> bool {
        self.lock().watchers.remove(&key).is_some()
    }

    /// Moves every watcher to the unsynced set (after the store was replaced by a snapshot,
    /// events were not delivered one by one): each catches up from the new backend.
    pub fn resync_all(&self) {
        let mut inner = self.lock();
        inner.notified = self.store.current_rev();
        for w in inner.watchers.values_mut() {
            w.synced = false;
        }
    }

    /// Queues a progress notification on `tx` (a stream's channel) when every one of the
    /// stream's watchers `keys` is synced, so that it follows every event up to the revision it
    /// names; false when one is still catching up or the stream's buffer is full (ask again
    /// later). As etcd (since 3.4.25/3.5.8), a notification never runs ahead of the events.
    pub fn progress(&self, keys: &[WatcherKey], watch_id: i64, tx: &mpsc::Sender<WatchEvent>) -> bool {
        let inner = self.lock();
        // Not while a watcher catches up, nor before the store reaches a watcher's start
        // revision (etcd 3.5.22: a watch on a future revision gets no notification before it).
        let waiting = |w: &Watcher| !w.synced || inner.notified < w.spec.start_rev;
        if keys.iter().any(|k| inner.watchers.get(k).is_some_and(waiting)) {
            return false;
        }
        let ev = WatchEvent {
            key: 0,
            watch_id,
            events: vec![],
            compact_revision: 0,
            revision: inner.notified,
            progress: true,
        };
        !matches!(tx.try_send(ev), Err(mpsc::error::TrySendError::Full(_)))
    }

    /// Number of watchers.
    pub fn watchers(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Number of watchers not yet caught up.
    pub fn unsynced(&self) -> usize {
        self.lock().watchers.values().filter(|w| !w.synced).count()
    }

    /// Delivers a commit's events (all at revisions up to `rev`) to synced watchers. A watcher
    /// whose stream is full becomes unsynced and later catches up from the backend.
    pub fn notify(&self, events: &[Event], rev: i64) {
        if events.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.notified = inner.notified.max(rev);
        for (key, w) in inner.watchers.iter_mut() {
            if !w.synced {
                continue;
            }
            let mut mine = w.select(events);
            // never an event before the watcher's next revision (a watch on a future revision)
            let from = w.next_rev;
            mine.retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= from));
            let Some(first) = mine.first().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision) else {
                w.next_rev = w.next_rev.max(rev + 1);
                continue;
            };
            let batch = WatchEvent {
                key: *key,
                watch_id: w.spec.watch_id,
                events: mine,
                compact_revision: 0,
                revision: rev,
                progress: false,
            };
            match w.tx.try_send(batch) {
                Ok(()) => w.next_rev = rev + 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.synced = false;
                    w.next_rev = first;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => w.synced = false,
            }
        }
        inner.watchers.retain(|_, w| !w.tx.is_closed());
    }

    /// One catch-up round for every unsynced watcher; returns how many are still behind.
    pub fn sync_round(&self) -> usize {
        let pending: Vec<(WatcherKey, WatchSpec, i64)> = {
            let inner = self.lock();
            inner
                .watchers
                .iter()
                .filter(|(_, w)| !w.synced && w.tx.capacity() > 0)
                .map(|(k, w)| (*k, w.spec.clone(), w.next_rev))
                .collect()
        };
        for (key, spec, from) in pending {
            self.catch_up(key, &spec, from);
        }
        self.unsynced()
    }

    fn catch_up(&self, key: WatcherKey, spec: &WatchSpec, from: i64) {
        let to = self.store.current_rev();
        let (history, reached) = match self.store.history(from, to, CATCH_UP_REVS) {
            Ok(h) => h,
            Err(Error::Compacted) => {
                let mut inner = self.lock();
                if let Some(w) = inner.watchers.remove(&key) {
                    let ev = WatchEvent {
                        key,
                        watch_id: spec.watch_id,
                        events: vec![],
                        compact_revision: self.store.compact_rev(),
                        revision: to,
                        progress: false,
                    };
                    let _ = w.tx.try_send(ev);
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch catch-up read failed");
                return;
            }
        };
        let mut inner = self.lock();
        let current = self.store.current_rev();
        let Some(w) = inner.watchers.get_mut(&key) else {
            return;
        };
        if w.synced || w.next_rev != from {
            return;
        }
        let mut mine = w.select(&history);
        if spec.prev_kv {
            for e in &mut mine {
                if let Some(kv) = &e.kv {
                    e.prev_kv = self.store.get_at(&kv.key, kv.mod_revision - 1).ok().flatten();
                }
            }
        }
        if !mine.is_empty() {
            let batch = WatchEvent {
                key,
                watch_id: w.spec.watch_id,
                events: mine,
                compact_revision: 0,
                revision: reached,
                progress: false,
            };
            if w.tx.try_send(batch).is_err() {
                return;
            }
        }
        w.next_rev = reached + 1;
        // Synced only when nothing was committed since `reached`: later commits notify it.
        w.synced = reached >= current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustcd_api::etcdserverpb::PutRequest;

    fn put(store: &KvStore, hub: &WatchHub, key: &[u8]) {
        let no_leases = |_: i64| false;
        let req = PutRequest { key: key.to_vec().into(), value: b"v".to_vec().into(), ..Default::default() };
        let c = store.write(false, &no_leases, |w| w.put(&req).map(|_| ())).expect("write");
        hub.notify(&c.events, c.revision);
    }

    /// A watch on key `a` from `start_rev`, with no filters.
    fn watch_a(start_rev: i64, watch_id: i64) -> WatchSpec {
        WatchSpec {
            range: KeyRange::new(b"a", b""),
            start_rev,
            no_put: false,
            no_delete: false,
            prev_kv: false,
            watch_id,
        }
    }

    /// A progress notification follows every event up to its revision, and waits while a
    /// watcher is still catching up (etcd's fix for notifications running ahead of events).
    #[test]
    fn progress_never_runs_ahead_of_events() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(KvStore::open(dir.path().join("db")).expect("store"));
        let hub = WatchHub::new(store.clone());
        put(&store, &hub, b"a");
        put(&store, &hub, b"a");
        let (tx, mut rx) = mpsc::channel(16);
        // From revision 2: behind, so no notification until it has caught up.
        let (behind, _) = hub.watch(watch_a(2, 0), tx.clone());
        assert!(!hub.progress(&[behind], -1, &tx), "refused while catching up");
        hub.sync_round();
        assert!(hub.progress(&[behind], -1, &tx));
        let caught_up = rx.try_recv().expect("catch-up events");
        assert_eq!(caught_up.events.len(), 2);
        let mark = rx.try_recv().expect("notification");
        assert!(mark.progress && mark.revision == 3 && mark.events.is_empty());
        // Synced: a new event is queued before the next notification names its revision.
        put(&store, &hub, b"a");
        assert!(hub.progress(&[behind], -1, &tx));
        assert_eq!(rx.try_recv().expect("event").events.len(), 1);
        assert_eq!(rx.try_recv().expect("notification").revision, 4);
    }

    /// A watcher still catching up when a compaction removes the revisions it has yet to read
    /// is told so (canceled with the compact revision), never moved past them silently: every
    /// event it does get is contiguous from its start (etcd 3.5.13's fix for events lost after
    /// a compaction).
    #[test]
    fn a_compaction_never_makes_a_catching_up_watcher_skip_events() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(KvStore::open(dir.path().join("db")).expect("store"));
        let hub = WatchHub::new(store.clone());
        for _ in 0..1500 {
            put(&store, &hub, b"a"); // revisions 2..=1501
        }
        let (tx, mut rx) = mpsc::channel(1024);
        let spec = watch_a(2, 7);
        hub.watch(spec, tx);
        hub.sync_round(); // one catch-up round: the first CATCH_UP_REVS revisions
        let no_leases = |_: i64| false;
        store.write(false, &no_leases, |w| w.compact(1400)).expect("compact").value.expect("compacted");
        for _ in 0..3 {
            hub.sync_round();
        }
        let mut next = 2;
        let mut compacted = None;
        while let Ok(ev) = rx.try_recv() {
            if ev.compact_revision > 0 {
                compacted = Some(ev.compact_revision);
                break;
            }
            for e in &ev.events {
                let rev = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                assert_eq!(rev, next, "events are contiguous from the start revision");
                next += 1;
            }
        }
        assert!(next > 2, "the first round's events arrived");
        assert_eq!(compacted, Some(1400), "the watcher is told its next revision ({next}) was compacted");
    }

    /// A watch on a future revision gets neither events nor progress notifications from
    /// before that revision (etcd 3.5.22).
    #[test]
    fn a_watch_on_a_future_revision_sees_nothing_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(KvStore::open(dir.path().join("db")).expect("store"));
        let hub = WatchHub::new(store.clone());
        put(&store, &hub, b"a"); // revision 2
        let (tx, mut rx) = mpsc::channel(16);
        let spec = watch_a(5, 1);
        let (key, _) = hub.watch(spec, tx.clone());
        put(&store, &hub, b"a"); // 3
        put(&store, &hub, b"a"); // 4
        assert!(!hub.progress(&[key], 1, &tx), "no notification before revision 5");
        assert!(rx.try_recv().is_err(), "no event before revision 5");
        put(&store, &hub, b"a"); // 5
        let ev = rx.try_recv().expect("the event at revision 5");
        assert_eq!(ev.events.iter().map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision)).collect::<Vec<_>>(), [5]);
        assert!(hub.progress(&[key], 1, &tx));
    }

    /// A watch opened at the compaction revision itself is not canceled as compacted (only
    /// revisions before it are gone), as in etcd. A delete made at that very revision is not
    /// delivered: its tombstone goes with the compaction, as in etcd up to 3.5.15 (3.5.16 keeps
    /// it; rustcd reports 3.5.13).
    #[test]
    fn a_watch_at_the_compaction_revision_is_not_canceled() {
        use rustcd_api::etcdserverpb::DeleteRangeRequest;
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(KvStore::open(dir.path().join("db")).expect("store"));
        let hub = WatchHub::new(store.clone());
        put(&store, &hub, b"a"); // 2
        let no_leases = |_: i64| false;
        let del = DeleteRangeRequest { key: b"a".to_vec().into(), ..Default::default() };
        let c = store.write(false, &no_leases, |w| w.delete_range(&del).map(|_| ())).expect("delete");
        hub.notify(&c.events, c.revision); // 3
        store.write(false, &no_leases, |w| w.compact(3)).expect("compact").value.expect("compacted");
        let (tx, mut rx) = mpsc::channel(16);
        let spec = watch_a(3, 1);
        let (key, _) = hub.watch(spec, tx);
        hub.sync_round();
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Empty)), "neither canceled nor an event");
        put(&store, &hub, b"a"); // 4: the watcher is live
        let ev = rx.try_recv().expect("the put at revision 4");
        assert_eq!(ev.events.len(), 1);
        assert!(hub.cancel(key));
    }
}
