//! The in-memory key index: for every key, its generations of revisions (etcd's `keyIndex`).
//!
//! A generation runs from a key's creation to its deletion (tombstone). The index maps a key
//! and a read revision to the revision whose value is visible then; values live in the backend.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::key_range::KeyRange;
use crate::revision::Revision;

#[derive(Clone, Debug, Default)]
struct Generation {
    /// Version of the key at the last revision of this generation.
    ver: i64,
    created: Revision,
    revs: Vec<Revision>,
}

/// What the index knows of a key at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

/// Pushes onto a vector that starts with room for one: most keys have one generation of a few
/// revisions, and a `Vec`'s first growth makes room for four (a third of the index's memory).
fn push_small<T>(v: &mut Vec<T>, x: T) {
    if v.capacity() == 0 {
        v.reserve_exact(1);
    }
    v.push(x);
}

#[derive(Clone, Debug, Default)]
struct KeyIndex {
    generations: Vec<Generation>,
}

impl KeyIndex {
    fn put(&mut self, rev: Revision, version: i64) {
        if self.generations.is_empty() {
            push_small(&mut self.generations, Generation::default());
        }
        let Some(g) = self.generations.last_mut() else {
            return;
        };
        if g.revs.is_empty() {
            g.created = rev;
        }
        push_small(&mut g.revs, rev);
        g.ver = version;
    }

    /// Applies one stored revision during a rebuild.
    fn replay(&mut self, rev: Revision, version: i64, tombstone: bool) {
        if tombstone {
            self.tombstone(rev);
        } else {
            self.put(rev, version);
        }
    }

    /// Records a deletion; false when the key is not live.
    fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last() {
            Some(g) if !g.revs.is_empty() => {}
            _ => return false,
        }
        if let Some(g) = self.generations.last_mut() {
            push_small(&mut g.revs, rev);
            g.ver += 1;
        }
        push_small(&mut self.generations, Generation::default());
        true
    }

    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && tomb.main <= rev {
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    fn get(&self, rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(rev)?;
        let n = g.revs.iter().rposition(|r| r.main <= rev)?;
        Some(KeyAt { modified: g.revs[n], created: g.created, version: g.ver - (g.revs.len() - n - 1) as i64 })
    }

    /// Drops what a compaction at `at` makes unreachable; records kept revisions in `keep`.
    fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) {
        let mut gen_idx = 0;
        while gen_idx + 1 < self.generations.len() {
            match self.generations[gen_idx].revs.last() {
                Some(tomb) if tomb.main > at => break,
                _ => gen_idx += 1,
            }
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if let Some(idx) = g.revs.iter().rposition(|r| r.main <= at) {
            keep.insert(g.revs[idx]);
            g.revs.drain(..idx);
            if g.revs.len() == 1 && gen_idx != last {
                keep.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// The key exists now (its last generation is not ended by a tombstone).
    fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }
}

/// The index of all keys (etcd's `treeIndex`).
#[derive(Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// Keys that exist now (etcd's `etcd_debugging_mvcc_keys_total`).
    live: usize,
}

/// One stored revision as a restart reads it: key, revision, version, tombstone.
pub type StoredRev = (Vec<u8>, Revision, i64, bool);

/// The positions of `revs` (given in revision order) sorted by key, each key's revisions in
/// their order. Sorts compact (key prefix, position) pairs so that most comparisons never touch
/// the keys themselves: a restart sorts every stored revision (a stable sort of the records by
/// key was most of a restart's instructions).
fn key_order(revs: &[StoredRev]) -> Vec<usize> {
    let prefix = |k: &[u8]| {
        let mut p = [0u8; 8];
        let n = k.len().min(8);
        p[..n].copy_from_slice(&k[..n]);
        u64::from_be_bytes(p)
    };
    let mut order: Vec<(u64, usize)> = revs.iter().enumerate().map(|(i, r)| (prefix(&r.0), i)).collect();
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| revs[a.1].0.cmp(&revs[b.1].0)).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, i)| i).collect()
}

impl TreeIndex {
    /// Builds the index from every stored revision, given in revision order: grouped by key
    /// (each key's revisions kept in order) and bulk-built in key order, which spares a
    /// restart one tree search per revision.
    pub fn rebuild(mut revs: Vec<StoredRev>) -> TreeIndex {
        let order = key_order(&revs);
        let mut keys: Vec<(Vec<u8>, KeyIndex)> = Vec::new();
        for i in order {
            let (key, rev, version, tombstone) = &mut revs[i];
            let key = std::mem::take(key);
            match keys.last_mut() {
                Some((last, ki)) if *last == key => ki.replay(*rev, *version, *tombstone),
                _ => {
                    let mut ki = KeyIndex::default();
                    ki.replay(*rev, *version, *tombstone);
                    keys.push((key, ki));
                }
            }
        }
        // A key whose only revisions are tombstones (history compacted) has no entry.
        let keys: BTreeMap<_, _> = keys.into_iter().filter(|(_, ki)| !ki.generations.is_empty()).collect();
        let live = keys.values().filter(|ki| ki.is_live()).count();
        TreeIndex { keys, live }
    }

    pub fn put(&mut self, key: &[u8], rev: Revision, version: i64) {
        match self.keys.get_mut(key) {
            Some(ki) => {
                self.live += usize::from(!ki.is_live());
                ki.put(rev, version);
            }
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev, version);
                self.keys.insert(key.to_vec(), ki);
                self.live += 1;
            }
        }
    }

    /// Records a deletion of a live key; false when it is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let deleted = self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev));
        self.live -= usize::from(deleted);
        deleted
    }

    /// Keys that exist now (`len` counts those with only history left too).
    pub fn live_len(&self) -> usize {
        self.live
    }

    pub fn get(&self, key: &[u8], rev: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(rev)
    }

    /// Visits the keys of `range` live at `rev`, in key order, until `f` returns false.
    pub fn visit(&self, range: &KeyRange, rev: i64, mut f: impl FnMut(&[u8], KeyAt) -> bool) {
        if range.is_empty() {
            return;
        }
        if let KeyRange::Single(k) = range {
            if let Some(at) = self.get(k, rev) {
                f(k, at);
            }
            return;
        }
        let (start, end) = range.bounds();
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let iter = self.keys.range::<[u8], _>((Bound::Included(start.as_slice()), upper));
        for (k, ki) in iter {
            if let Some(at) = ki.get(rev)
                && !f(k, at)
            {
                return;
            }
        }
    }

    /// Compacts every key at `at`; returns the revisions at or below `at` that stay readable.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rebuild_matches_revision_by_revision_puts() {
        let r = |main| Revision { main, sub: 0 };
        let revs: Vec<super::StoredRev> = vec![
            (b"b".to_vec(), r(2), 1, false),
            (b"a".to_vec(), r(3), 1, false),
            (b"b".to_vec(), r(4), 2, false),
            (b"gone".to_vec(), r(5), 0, true),
            (b"a".to_vec(), r(6), 0, true),
            (b"a".to_vec(), r(7), 1, false),
        ];
        let mut one_by_one = TreeIndex::default();
        for (k, rev, v, t) in &revs {
            if *t {
                one_by_one.tombstone(k, *rev);
            } else {
                one_by_one.put(k, *rev, *v);
            }
        }
        let rebuilt = TreeIndex::rebuild(revs);
        for key in [&b"a"[..], b"b", b"gone"] {
            for at in 0..9 {
                assert_eq!(rebuilt.get(key, at), one_by_one.get(key, at), "{key:?} at {at}");
            }
        }
        assert_eq!(rebuilt.len(), one_by_one.len());
        // a (deleted, then put again) and b exist; "gone" never did.
        assert_eq!((rebuilt.live_len(), one_by_one.live_len()), (2, 2));
        one_by_one.tombstone(b"b", r(8));
        one_by_one.tombstone(b"b", r(9));
        assert_eq!(one_by_one.live_len(), 1, "a second delete of a deleted key changes nothing");
    }

    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn generations_and_tombstones() {
        let mut t = TreeIndex::default();
        t.put(b"a", r(2), 1);
        t.put(b"a", r(4), 2);
        assert!(t.tombstone(b"a", r(6)));
        t.put(b"a", r(8), 1);
        assert_eq!(t.get(b"a", 1), None);
        assert_eq!(t.get(b"a", 3).map(|k| k.modified), Some(r(2)));
        assert_eq!(t.get(b"a", 5).map(|k| (k.modified, k.version)), Some((r(4), 2)));
        assert_eq!(t.get(b"a", 6), None);
        assert_eq!(t.get(b"a", 7), None);
        let at = t.get(b"a", 9).unwrap();
        assert_eq!((at.modified, at.created, at.version), (r(8), r(8), 1));
        assert!(!t.tombstone(b"b", r(9)));
    }

    #[test]
    fn compaction_keeps_latest_visible() {
        let mut t = TreeIndex::default();
        t.put(b"a", r(2), 1);
        t.put(b"a", r(3), 2);
        t.put(b"b", r(4), 1);
        assert!(t.tombstone(b"b", r(5)));
        let keep = t.compact(4);
        assert!(keep.contains(&r(3)) && keep.contains(&r(4)) && !keep.contains(&r(2)));
        assert_eq!(t.get(b"a", 4).map(|k| k.version), Some(2));
        let keep = t.compact(5);
        assert!(!keep.contains(&r(5)));
        assert_eq!(t.len(), 1);
    }
}
