//! Random requests against a live member: every field of Range, Put, DeleteRange, Txn (nested,
//! with compares of any target and result, enum values out of range included), Compact, lease
//! and watch requests drawn from a seeded generator. Any answer is fine, errors included; the
//! member must never panic, stop, or stop answering a plain read.

use std::time::Duration;

use rustcd_api::etcdserverpb::compare::TargetUnion;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::*;
use rustcd_testkit::Cluster;

/// A seeded xorshift generator with helpers for request fields.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn flip(&mut self) -> bool {
        self.below(2) == 0
    }
    /// Small, edge-case-heavy integers: 0, ±1, small, huge, extremes.
    fn int(&mut self) -> i64 {
        match self.below(8) {
            0 => 0,
            1 => -1,
            2 => 1,
            3 => self.below(50) as i64,
            4 => i64::MAX,
            5 => i64::MIN,
            6 => -(self.below(1000) as i64),
            _ => self.next() as i64,
        }
    }
    fn bytes(&mut self) -> Vec<u8> {
        match self.below(6) {
            0 => vec![],
            1 => vec![0],
            2 => vec![0xff; 1 + self.below(3) as usize],
            3 => format!("f/{}", self.below(20)).into_bytes(),
            4 => (0..self.below(300)).map(|_| self.next() as u8).collect(),
            _ => format!("k{}", self.below(10)).into_bytes(),
        }
    }
    fn range(&mut self) -> RangeRequest {
        RangeRequest {
            key: self.bytes().into(),
            range_end: self.bytes().into(),
            limit: self.int(),
            revision: self.int(),
            sort_order: self.below(5) as i32 - 1,
            sort_target: self.below(7) as i32 - 1,
            serializable: self.flip(),
            keys_only: self.flip(),
            count_only: self.flip(),
            min_mod_revision: self.int(),
            max_mod_revision: self.int(),
            min_create_revision: self.int(),
            max_create_revision: self.int(),
        }
    }
    fn put(&mut self) -> PutRequest {
        PutRequest {
            key: self.bytes().into(),
            value: self.bytes().into(),
            lease: if self.below(4) == 0 { self.int() } else { 0 },
            prev_kv: self.flip(),
            ignore_value: self.below(4) == 0,
            ignore_lease: self.below(4) == 0,
        }
    }
    fn delete(&mut self) -> DeleteRangeRequest {
        DeleteRangeRequest { key: self.bytes().into(), range_end: self.bytes().into(), prev_kv: self.flip() }
    }
    fn compare(&mut self) -> Compare {
        let target_union = match self.below(6) {
            0 => Some(TargetUnion::Version(self.int())),
            1 => Some(TargetUnion::CreateRevision(self.int())),
            2 => Some(TargetUnion::ModRevision(self.int())),
            3 => Some(TargetUnion::Value(self.bytes().into())),
            4 => Some(TargetUnion::Lease(self.int())),
            _ => None,
        };
        Compare {
            result: self.below(6) as i32 - 1,
            target: self.below(7) as i32 - 1,
            key: self.bytes().into(),
            range_end: self.bytes().into(),
            target_union,
        }
    }
    fn op(&mut self, depth: u32) -> RequestOp {
        let request = match self.below(if depth < 3 { 5 } else { 4 }) {
            0 => Some(Request::RequestRange(self.range())),
            1 => Some(Request::RequestPut(self.put())),
            2 => Some(Request::RequestDeleteRange(self.delete())),
            3 => None,
            _ => Some(Request::RequestTxn(self.txn(depth + 1))),
        };
        RequestOp { request }
    }
    fn txn(&mut self, depth: u32) -> TxnRequest {
        let n = |g: &mut Gen| {
            let most = if g.below(10) == 0 { 200 } else { 4 };
            g.below(most) as usize
        };
        let (c, s, f) = (n(self), n(self), n(self));
        TxnRequest {
            compare: (0..c).map(|_| self.compare()).collect(),
            success: (0..s).map(|_| self.op(depth)).collect(),
            failure: (0..f).map(|_| self.op(depth)).collect(),
        }
    }
    fn watch(&mut self) -> WatchRequest {
        let create = WatchCreateRequest {
            key: self.bytes().into(),
            range_end: self.bytes().into(),
            start_revision: self.int(),
            progress_notify: self.flip(),
            filters: (0..self.below(3)).map(|_| self.below(4) as i32 - 1).collect(),
            prev_kv: self.flip(),
            watch_id: self.int(),
            fragment: self.flip(),
        };
        let request_union = match self.below(4) {
            0 => Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: self.int() })),
            1 => Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            2 => None,
            _ => Some(RequestUnion::CreateRequest(create)),
        };
        WatchRequest { request_union }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_stop_a_member() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let channel = rustcd_testkit::channel(&c.members[0].endpoint()).await;
    let mut kv = KvClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel.clone());
    // RUSTCD_FUZZ_SEED and RUSTCD_FUZZ_OPS widen a run; CI uses the fixed seed.
    let seed = std::env::var("RUSTCD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd_ef01u64);
    let ops: usize = std::env::var("RUSTCD_FUZZ_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut g = Gen(seed | 1);
    let timeout = Duration::from_secs(5);
    let (mut ok, mut errors) = (0, 0);
    for _ in 0..ops {
        let answered = match g.below(8) {
            0 | 1 => tokio::time::timeout(timeout, kv.range(g.range())).await.map(|r| r.is_ok()),
            2 | 3 => tokio::time::timeout(timeout, kv.put(g.put())).await.map(|r| r.is_ok()),
            4 => tokio::time::timeout(timeout, kv.delete_range(g.delete())).await.map(|r| r.is_ok()),
            5 => tokio::time::timeout(timeout, kv.txn(g.txn(0))).await.map(|r| r.is_ok()),
            6 => {
                let req = CompactionRequest { revision: g.int(), physical: g.flip() };
                tokio::time::timeout(timeout, kv.compact(req)).await.map(|r| r.is_ok())
            }
            _ => {
                let req = LeaseGrantRequest { ttl: g.int(), id: if g.flip() { 0 } else { g.int() } };
                let granted = tokio::time::timeout(timeout, leases.lease_grant(req)).await;
                let revoke = LeaseRevokeRequest { id: g.int() };
                let _ = tokio::time::timeout(timeout, leases.lease_revoke(revoke)).await;
                let ttl = LeaseTimeToLiveRequest { id: g.int(), keys: g.flip() };
                let _ = tokio::time::timeout(timeout, leases.lease_time_to_live(ttl)).await;
                granted.map(|r| r.is_ok())
            }
        };
        match answered {
            Ok(true) => ok += 1,
            Ok(false) => errors += 1,
            Err(_) => panic!("a request got no answer in {timeout:?}"),
        }
    }
    // Watch streams with random creates, cancels and progress requests.
    for _ in 0..50 {
        let reqs: Vec<WatchRequest> = (0..1 + g.below(5)).map(|_| g.watch()).collect();
        let mut watch = WatchClient::new(channel.clone());
        if let Ok(Ok(resp)) = tokio::time::timeout(timeout, watch.watch(tokio_stream::iter(reqs))).await {
            let mut stream = resp.into_inner();
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.message()).await;
        }
    }
    eprintln!("fuzz: {ok} requests answered, {errors} refused with an error");
    assert!(ok > 500 && errors > 500, "both outcomes exercised: {ok} ok, {errors} errors");
    // Still serving, and never panicked.
    let r = kv.range(RangeRequest { key: b"k".to_vec().into(), ..Default::default() }).await;
    assert!(r.is_ok(), "the member still answers: {r:?}");
    assert!(c.members[0].is_running(), "the member is still running");
    let log = std::fs::read_to_string(&c.members[0].log).unwrap_or_default();
    assert!(!log.contains("panicked"), "the member panicked:\n{log}");
}
