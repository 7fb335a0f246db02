//! The proxy's cache of serializable range responses (etcd's `grpcproxy/cache`): keyed by the
//! whole request, at most [`MAX_ENTRIES`] kept (the least recently used goes first). A write
//! through the proxy drops every cached response whose key range it touches; a compaction
//! through it makes older revisions answer `compacted` from here.

use std::collections::HashMap;

use rustcd_api::etcdserverpb::{RangeRequest, RangeResponse};

/// etcd's `DefaultMaxEntries`.
pub const MAX_ENTRIES: usize = 2048;

/// What a lookup found.
#[derive(Debug, PartialEq)]
pub enum Cached {
    Hit(RangeResponse),
    /// The request asks for a revision the proxy saw compacted.
    Compacted,
    Miss,
}

/// A key range as half-open bounds: `end` `None` is "to the end of the keyspace".
#[derive(Clone, Debug)]
struct Span {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Span {
    /// etcd's key/range_end pair: an empty end is the key alone, `\0` every key from it.
    fn of(key: &[u8], range_end: &[u8]) -> Span {
        let end = match range_end {
            [] => Some([key, &[0]].concat()),
            [0] => None,
            e => Some(e.to_vec()),
        };
        Span { start: key.to_vec(), end }
    }

    fn overlaps(&self, o: &Span) -> bool {
        let before = |start: &[u8], end: &Option<Vec<u8>>| end.as_ref().is_none_or(|e| start < e.as_slice());
        before(&self.start, &o.end) && before(&o.start, &self.end)
    }
}

struct Entry {
    resp: RangeResponse,
    /// The range this entry answers, when a write can change it (requests at a fixed revision
    /// never change).
    span: Option<Span>,
    used: u64,
}

#[derive(Default)]
pub struct Cache {
    entries: HashMap<Vec<u8>, Entry>,
    compacted: i64,
    clock: u64,
}

/// The cache key: the request in its wire form, with `serializable` set (a linearizable
/// read's answer is kept for later serializable ones).
fn key_of(r: &RangeRequest) -> Vec<u8> {
    use prost::Message;
    let mut r = r.clone();
    r.serializable = true;
    r.encode_to_vec()
}

impl Cache {
    pub fn get(&mut self, r: &RangeRequest) -> Cached {
        let key = key_of(r);
        if r.revision > 0 && r.revision < self.compacted {
            self.entries.remove(&key);
            return Cached::Compacted;
        }
        self.clock += 1;
        match self.entries.get_mut(&key) {
            Some(e) => {
                e.used = self.clock;
                Cached::Hit(e.resp.clone())
            }
            None => Cached::Miss,
        }
    }

    pub fn add(&mut self, r: &RangeRequest, resp: &RangeResponse) {
        if r.revision != 0 && r.revision < self.compacted {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.clock += 1;
        let span = (r.revision == 0).then(|| Span::of(&r.key, &r.range_end));
        self.entries.insert(key_of(r), Entry { resp: resp.clone(), span, used: self.clock });
    }

    /// A write to `key`..`range_end` went through: drop what it may have changed.
    pub fn invalidate(&mut self, key: &[u8], range_end: &[u8]) {
        let written = Span::of(key, range_end);
        self.entries.retain(|_, e| e.span.as_ref().is_none_or(|s| !s.overlaps(&written)));
    }

    pub fn compact(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, end: &str, revision: i64) -> RangeRequest {
        RangeRequest {
            key: key.as_bytes().to_vec().into(),
            range_end: end.as_bytes().to_vec().into(),
            revision,
            ..Default::default()
        }
    }

    fn resp(count: i64) -> RangeResponse {
        RangeResponse { count, ..Default::default() }
    }

    #[test]
    fn writes_drop_exactly_the_ranges_they_touch() {
        let mut c = Cache::default();
        c.add(&range("a", "", 0), &resp(1));
        c.add(&range("b", "d", 0), &resp(2));
        c.add(&range("x", "\0", 0), &resp(3));
        c.add(&range("c", "", 7), &resp(4));
        c.invalidate(b"c", b"");
        assert_eq!(c.get(&range("a", "", 0)), Cached::Hit(resp(1)), "a point elsewhere stays");
        assert_eq!(c.get(&range("b", "d", 0)), Cached::Miss, "the range holding c goes");
        assert_eq!(c.get(&range("c", "", 7)), Cached::Hit(resp(4)), "a read at a fixed revision stays");
        c.invalidate(b"zz", b"");
        assert_eq!(c.get(&range("x", "\0", 0)), Cached::Miss, "from-key ranges reach every later key");
        c.invalidate(b"", b"\0");
        assert!(c.get(&range("a", "", 0)) == Cached::Miss, "a delete of everything drops all");
    }

    #[test]
    fn compaction_answers_older_revisions_and_size_is_bounded() {
        let mut c = Cache::default();
        c.add(&range("k", "", 5), &resp(1));
        c.compact(6);
        assert_eq!(c.get(&range("k", "", 5)), Cached::Compacted);
        for i in 0..MAX_ENTRIES + 10 {
            c.add(&range(&format!("k{i}"), "", 0), &resp(i as i64));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert_eq!(c.get(&range("k0", "", 0)), Cached::Miss, "the least recently used went first");
    }
}
