//! Property tests: the store against a plain in-memory model of etcd's MVCC semantics
//! (revisions, versions, tombstones, txn compares, compaction), also across a reopen.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rustcd_api::mvccpb::KeyValue;

use crate::{Error, KvStore};

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    /// If key's version equals v: put key, else delete other.
    Txn(u8, i64, u8, u8),
    Compact(i64),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..5, proptest::option::of(0u8..6)).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (0u8..5, 0i64..3, 0u8..5, any::<u8>()).prop_map(|(k, v, o, x)| Op::Txn(k, v, o, x)),
        1 => (0i64..40).prop_map(Op::Compact),
    ]
}

/// The model: the full key space after every revision.
struct Model {
    history: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        // Revision 1 is the empty store, as in etcd.
        Model { history: vec![BTreeMap::new(), BTreeMap::new()], compacted: -1 }
    }
    fn rev(&self) -> i64 {
        self.history.len() as i64 - 1
    }
    fn at(&self, rev: i64) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.history[rev as usize]
    }
    fn put(next: &mut BTreeMap<Vec<u8>, KeyValue>, k: Vec<u8>, v: u8, rev: i64) {
        let (create_revision, version) = match next.get(&k) {
            Some(kv) => (kv.create_revision, kv.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: k.clone().into(),
            value: vec![v].into(),
            create_revision,
            mod_revision: rev,
            version,
            lease: 0,
        };
        next.insert(k, kv);
    }
    fn apply(&mut self, op: &Op) {
        let rev = self.rev() + 1;
        let mut next = self.at(self.rev()).clone();
        let changed = match op {
            Op::Put(k, v) => {
                Self::put(&mut next, key(*k), *v, rev);
                true
            }
            Op::Delete(k, end) => {
                let doomed: Vec<_> = next
                    .keys()
                    .filter(|x| match end {
                        None => **x == key(*k),
                        Some(e) => **x >= key(*k) && **x < key(*e),
                    })
                    .cloned()
                    .collect();
                for d in &doomed {
                    next.remove(d);
                }
                !doomed.is_empty()
            }
            Op::Txn(k, v, o, x) => {
                let ver = next.get(&key(*k)).map(|kv| kv.version).unwrap_or(0);
                if ver == *v {
                    Self::put(&mut next, key(*k), *x, rev);
                    true
                } else {
                    next.remove(&key(*o)).is_some()
                }
            }
            Op::Compact(r) => {
                if *r > self.compacted && *r <= self.rev() {
                    self.compacted = *r;
                }
                false
            }
        };
        if changed {
            self.history.push(next);
        }
    }
}

fn run(store: &KvStore, op: &Op) {
    let no_leases = |_: i64| false;
    let r = store.write(false, &no_leases, |w| match op {
        Op::Put(k, v) => {
            w.put(&PutRequest { key: key(*k).into(), value: vec![*v].into(), ..Default::default() }).map(|_| ())
        }
        Op::Delete(k, end) => w
            .delete_range(&DeleteRangeRequest {
                key: key(*k).into(),
                range_end: end.map(key).unwrap_or_default().into(),
                prev_kv: false,
            })
            .map(|_| ()),
        Op::Txn(k, v, o, x) => {
            let cmp = Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: key(*k).into(),
                target_union: Some(TargetUnion::Version(*v)),
                range_end: Default::default(),
            };
            let put = PutRequest { key: key(*k).into(), value: vec![*x].into(), ..Default::default() };
            let del = DeleteRangeRequest { key: key(*o).into(), ..Default::default() };
            w.txn(&TxnRequest {
                compare: vec![cmp],
                success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
                failure: vec![RequestOp { request: Some(Request::RequestDeleteRange(del)) }],
            })
            .map(|_| ())
        }
        Op::Compact(r) => w.compact(*r).map(|_| ()),
    });
    assert!(r.is_ok(), "backend failed: {:?}", r.err());
}

fn check(store: &KvStore, model: &Model) {
    assert_eq!(store.current_rev(), model.rev());
    for rev in 1..=model.rev() {
        let req = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), revision: rev, ..Default::default() };
        match store.range(&req) {
            Err(Error::Compacted) => assert!(rev < model.compacted, "rev {rev} wrongly compacted"),
            Ok(resp) => {
                assert!(rev >= model.compacted, "rev {rev} readable below compaction {}", model.compacted);
                let want: Vec<_> = model.at(rev).values().cloned().collect();
                assert_eq!(resp.kvs, want, "at revision {rev}");
                assert_eq!(resp.count, want.len() as i64);
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let future = RangeRequest { key: key(0).into(), revision: model.rev() + 1, ..Default::default() };
    assert!(matches!(store.range(&future), Err(Error::FutureRev)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut model = Model::new();
        {
            let store = KvStore::open(&path).unwrap();
            for op in &ops {
                run(&store, op);
                model.apply(op);
            }
            check(&store, &model);
            store.sync().unwrap();
        }
        let reopened = KvStore::open(&path).unwrap();
        check(&reopened, &model);
    }
}

#[test]
fn limit_sort_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(dir.path().join("db")).unwrap();
    for (i, k) in ["c", "a", "b"].iter().enumerate() {
        run(&store, &Op::Put(k.as_bytes()[0] - b'a', i as u8));
    }
    let mut req =
        RangeRequest { key: b"a".to_vec().into(), range_end: b"z".to_vec().into(), limit: 2, ..Default::default() };
    let resp = store.range(&req).unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));
    assert_eq!(resp.kvs[0].key.as_ref(), b"a");
    req.sort_target = 3; // MOD
    req.sort_order = 2; // DESCEND
    let resp = store.range(&req).unwrap();
    assert_eq!(resp.kvs.iter().map(|kv| kv.key.to_vec()).collect::<Vec<_>>(), vec![b"b".to_vec(), b"a".to_vec()]);
    req.count_only = true;
    let resp = store.range(&req).unwrap();
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
}
