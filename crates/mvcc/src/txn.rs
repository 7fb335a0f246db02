//! Write transactions: Put, DeleteRange, Txn and Compact as etcd applies them.
//!
//! Each top-level operation is one store revision; the changes inside it take sub revisions.
//! Reads inside a txn see the txn's own earlier writes.

use std::collections::HashSet;

use prost::Message;
use redb::Table;
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::response_op::Response;
use rustcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use rustcd_api::mvccpb::{Event, KeyValue};

use crate::error::{Error, Result};
use crate::key_index::TreeIndex;
use crate::key_range::KeyRange;
use crate::range::{self, ReadState, RevTable};
use crate::revision::Revision;
use crate::store::{KeyValueHash, KvStore, State};

/// One batch of writes, open on the backend; see [`KvStore::write`].
pub struct WriteTxn<'a, 't> {
    st: &'a mut State,
    kv: &'a mut Table<'t, &'static [u8], &'static [u8]>,
    meta: &'a mut Table<'t, &'static str, &'static [u8]>,
    lease_exists: &'a dyn Fn(i64) -> bool,
    events: Vec<Event>,
    /// Changes made in the current top-level operation (its next sub revision).
    sub: i64,
    consistent_index: Option<u64>,
    error: Option<Error>,
}

impl<'a, 't> WriteTxn<'a, 't> {
    pub(crate) fn new(
        st: &'a mut State,
        kv: &'a mut Table<'t, &'static [u8], &'static [u8]>,
        meta: &'a mut Table<'t, &'static str, &'static [u8]>,
        lease_exists: &'a dyn Fn(i64) -> bool,
    ) -> Self {
        WriteTxn { st, kv, meta, lease_exists, events: Vec::new(), sub: 0, consistent_index: None, error: None }
    }

    /// Ends the batch; a backend failure seen by any operation fails the whole batch.
    pub(crate) fn finish(self) -> Result<(Vec<Event>, Option<u64>)> {
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.events, self.consistent_index)),
        }
    }

    /// Records the raft index (and term) of the entry this batch applies up to.
    pub fn set_consistent_index(&mut self, index: u64) {
        let v = KvStore::encode_u64(index);
        let r = self.meta.insert(KvStore::META_CONSISTENT_INDEX, v.as_slice()).map(|_| ());
        self.note(r.map_err(Error::from));
        self.consistent_index = Some(index);
    }

    /// Writes a metadata record in the same backend transaction.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) {
        let r = self.meta.insert(key, value).map(|_| ());
        self.note(r.map_err(Error::from));
    }

    pub fn remove_meta(&mut self, key: &str) {
        let r = self.meta.remove(key).map(|_| ());
        self.note(r.map_err(Error::from));
    }

    pub fn current_rev(&self) -> i64 {
        self.st.current_rev
    }

    /// Every change made so far in this batch, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Revision the current operation's reads see: its own changes included.
    fn read_rev(&self) -> i64 {
        self.st.current_rev + if self.sub > 0 { 1 } else { 0 }
    }

    fn end_op(&mut self) -> i64 {
        if self.sub > 0 {
            self.st.current_rev += 1;
            self.sub = 0;
        }
        self.st.current_rev
    }

    pub(crate) fn header(rev: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: rev, ..Default::default() })
    }

    /// Keeps the first backend error; later calls in the batch see it via `finish`.
    fn note<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
                None
            }
        }
    }

    fn load(&self, rev: Revision) -> Result<KeyValue> {
        range::load(&*self.kv, rev)
    }

    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.st.index.get(key, self.read_rev()) {
            Some(at) => Ok(Some(self.load(at.modified)?)),
            None => Ok(None),
        }
    }

    fn check_put(&self, p: &PutRequest) -> Result<()> {
        if (p.ignore_value || p.ignore_lease) && self.st.index.get(&p.key, self.read_rev()).is_none() {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && !(self.lease_exists)(p.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    fn put_inner(&mut self, p: &PutRequest) -> Result<PutResponse> {
        let main = self.st.current_rev + 1;
        let rev = Revision::new(main, self.sub);
        let prev = self.current(&p.key)?;
        let (create_revision, version) = match &prev {
            Some(kv) => (kv.create_revision, kv.version + 1),
            None => (main, 1),
        };
        let value = match (&prev, p.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => p.lease,
        };
        let kv = KeyValue { key: p.key.clone(), create_revision, mod_revision: main, version, value, lease };
        crate::metrics::put(kv.key.len() + kv.value.len());
        self.kv.insert(rev.to_key(false).as_slice(), kv.encode_to_vec().as_slice())?;
        self.st.index.put(&p.key, rev, version);
        self.sub += 1;
        let prev_kv = if p.prev_kv { prev.clone() } else { None };
        self.events.push(Event { r#type: 0, kv: Some(kv), prev_kv: prev });
        Ok(PutResponse { header: None, prev_kv })
    }

    fn delete_inner(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        crate::metrics::delete();
        let krange = KeyRange::new(&d.key, &d.range_end);
        let mut keys = Vec::new();
        self.st.index.visit(&krange, self.read_rev(), |k, at| {
            keys.push((k.to_vec(), at.modified));
            true
        });
        let main = self.st.current_rev + 1;
        let mut prev_kvs = Vec::new();
        for (key, modified) in &keys {
            let prev = self.load(*modified)?;
            let rev = Revision::new(main, self.sub);
            let tomb = KeyValue { key: key.clone().into(), mod_revision: main, ..Default::default() };
            self.kv.insert(rev.to_key(true).as_slice(), tomb.encode_to_vec().as_slice())?;
            self.st.index.tombstone(key, rev);
            self.sub += 1;
            if d.prev_kv {
                prev_kvs.push(prev.clone());
            }
            self.events.push(Event { r#type: 1, kv: Some(tomb), prev_kv: Some(prev) });
        }
        Ok(DeleteRangeResponse { header: None, deleted: keys.len() as i64, prev_kvs })
    }

    fn range_inner(&self, r: &RangeRequest) -> Result<RangeResponse> {
        let st = ReadState { index: &self.st.index, current_rev: self.read_rev(), compact_rev: self.st.compact_rev };
        range::range(&st, &*self.kv, r)
    }

    /// Applies a Put as one revision.
    pub fn put(&mut self, p: &PutRequest) -> std::result::Result<PutResponse, Error> {
        self.check_put(p)?;
        let r = self.put_inner(p);
        let rev = self.end_op();
        let mut resp = self.note(r).ok_or_else(|| Error::Backend("write failed".into()))?;
        resp.header = Self::header(rev);
        Ok(resp)
    }

    /// Applies a DeleteRange as one revision (none when nothing matched).
    pub fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let r = self.delete_inner(d);
        let rev = self.end_op();
        let mut resp = self.note(r).ok_or_else(|| Error::Backend("write failed".into()))?;
        resp.header = Self::header(rev);
        Ok(resp)
    }

    /// Applies a Txn as one revision: compares, then the chosen branch's operations in order.
    pub fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse> {
        let succeeded = self.compares_hold(&t.compare)?;
        let ops = if succeeded { &t.success } else { &t.failure };
        self.check_ops(ops)?;
        crate::metrics::txn(ops.len());
        let r = self.exec_ops(ops);
        let rev = self.end_op();
        let responses = self.note(r).ok_or_else(|| Error::Backend("write failed".into()))?;
        Ok(TxnResponse { header: Self::header(rev), succeeded, responses })
    }

    /// etcd checks a branch before running any of it: lease and key existence, read revisions.
    fn check_ops(&self, ops: &[RequestOp]) -> Result<()> {
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(p)) => self.check_put(p)?,
                Some(Request::RequestRange(r)) => {
                    let st = ReadState {
                        index: &self.st.index,
                        current_rev: self.st.current_rev,
                        compact_rev: self.st.compact_rev,
                    };
                    range::read_rev(&st, r.revision)?;
                }
                Some(Request::RequestTxn(t)) => {
                    let ok = self.compares_hold(&t.compare)?;
                    self.check_ops(if ok { &t.success } else { &t.failure })?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a branch's operations in order. Each response's header carries the revision as
    /// the transaction saw it right after that operation, as etcd's: the revision before the
    /// transaction until it first changes something, the new revision from then on. A nested
    /// transaction's own header is empty, as etcd leaves it.
    fn exec_ops(&mut self, ops: &[RequestOp]) -> Result<Vec<ResponseOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let mut r = ResponseOp {
                response: match &op.request {
                    Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range_inner(r)?)),
                    Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put_inner(p)?)),
                    Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(self.delete_inner(d)?)),
                    Some(Request::RequestTxn(t)) => {
                        let succeeded = self.compares_hold(&t.compare)?;
                        let responses = self.exec_ops(if succeeded { &t.success } else { &t.failure })?;
                        let header = Some(ResponseHeader::default());
                        out.push(ResponseOp {
                            response: Some(Response::ResponseTxn(TxnResponse { header, succeeded, responses })),
                        });
                        continue;
                    }
                    None => None,
                },
            };
            set_header(&mut r, self.read_rev());
            out.push(r);
        }
        Ok(out)
    }

    fn compares_hold(&self, cmps: &[Compare]) -> Result<bool> {
        compares_hold(&self.st.index, self.read_rev(), &*self.kv, cmps)
    }

    /// Compacts the store at `rev`: older revisions no read can reach are deleted from disk.
    pub fn compact(&mut self, rev: i64) -> Result<i64> {
        if rev <= self.st.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.st.current_rev {
            return Err(Error::FutureRev);
        }
        // The hash of every row the compaction visits (what it drops and what it keeps), taken
        // in the same pass, so that the leader's compaction hash check can compare members at
        // this revision later. The rows' hashes are summed: the visiting order does not matter.
        let started = std::time::Instant::now();
        let keep: HashSet<Revision> = self.st.index.compact(rev);
        let m = &rustcd_metrics::get().mvcc;
        m.index_compaction_pause_duration_milliseconds.observe(rustcd_metrics::millis(started.elapsed()));
        let hi = Revision::new(rev + 1, 0).lower_key();
        let mut hash = 0u32;
        let mut dropped = 0u64;
        let r = self.kv.retain_in(..hi.as_slice(), |k, v| {
            let mut h = crate::crc32c::Crc32c::new();
            h.update(k);
            h.update(v);
            hash = hash.wrapping_add(h.finish());
            let kept = Revision::from_key(k).is_none_or(|(r, _)| keep.contains(&r));
            dropped += u64::from(!kept);
            kept
        });
        m.db_compaction_keys_total.inc_by(dropped);
        m.db_compaction_total_duration_milliseconds.observe(rustcd_metrics::millis(started.elapsed()));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        m.db_compaction_last.set(now as i64);
        if self.note(r.map_err(Error::from)).is_some() {
            let hashes = &mut self.st.compaction_hashes;
            hashes.push_back(KeyValueHash { hash, compact_revision: self.st.compact_rev.max(0), revision: rev });
            if hashes.len() > crate::store::COMPACTION_HASHES_KEPT {
                hashes.pop_front();
            }
        }
        self.st.compact_rev = rev;
        let v = KvStore::encode_u64(rev as u64);
        let r = self.meta.insert(KvStore::META_COMPACT_REV, v.as_slice()).map(|_| ());
        self.note(r.map_err(Error::from));
        Ok(self.st.current_rev)
    }

    /// A read inside the batch (for requests that must see the batch's writes).
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        self.range_inner(r)
    }

    /// The latest value of `key`, if live.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.current(key)
    }
}

/// Whether every compare holds at revision `rev` (all of them: etcd's txn condition).
pub(crate) fn compares_hold(index: &TreeIndex, rev: i64, table: &impl RevTable, cmps: &[Compare]) -> Result<bool> {
    for c in cmps {
        if !compare_holds(index, rev, table, c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// etcd's compare: over a range every key must match; a missing key compares as zero
/// values (version, revisions, lease), but a value compare on a missing key fails.
fn compare_holds(index: &TreeIndex, rev: i64, table: &impl RevTable, c: &Compare) -> Result<bool> {
    let krange = KeyRange::new(&c.key, &c.range_end);
    let mut revs = Vec::new();
    index.visit(&krange, rev, |_, at| {
        revs.push(at.modified);
        true
    });
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if revs.is_empty() {
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_one(c, target, &KeyValue::default()));
    }
    for at in revs {
        if !compare_one(c, target, &range::load(table, at)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sets the header of a response op to `rev`; a nested transaction's header stays empty, as
/// etcd's, and its operations get `rev`.
pub(crate) fn set_header(r: &mut ResponseOp, rev: i64) {
    let h = WriteTxn::header(rev);
    match &mut r.response {
        Some(Response::ResponseRange(x)) => x.header = h,
        Some(Response::ResponsePut(x)) => x.header = h,
        Some(Response::ResponseDeleteRange(x)) => x.header = h,
        Some(Response::ResponseTxn(x)) => {
            x.header = Some(ResponseHeader::default());
            for inner in &mut x.responses {
                set_header(inner, rev);
            }
        }
        None => {}
    }
}

fn compare_one(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match (target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_ref().cmp(v.as_ref()),
        // A compare without a matching value compares against the zero value.
        (CompareTarget::Value, _) => kv.value.as_ref().cmp(&[][..]),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}
