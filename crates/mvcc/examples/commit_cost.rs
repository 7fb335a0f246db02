//! What one applied put costs the backend: `cargo run --release -p rustcd-mvcc --example
//! commit_cost` times N single-put write batches (each a non-durable redb commit, as the apply
//! thread makes one per batch) and prints the median.
use rustcd_api::etcdserverpb::PutRequest;
use rustcd_mvcc::KvStore;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(dir.path().join("db")).expect("open");
    let no_leases = |_: i64| false;
    let mut times = Vec::new();
    for i in 0..20_000u32 {
        let req = PutRequest {
            key: format!("key{:05}", i % 10_000).into_bytes().into(),
            value: vec![b'v'; 256].into(),
            ..Default::default()
        };
        let t = std::time::Instant::now();
        store.write(false, &no_leases, |w| w.put(&req).map(|_| ())).expect("write");
        times.push(t.elapsed());
    }
    times.sort();
    println!("one put per batch: p50 {:?}, p90 {:?}, p99 {:?}", times[10_000], times[18_000], times[19_800]);
}
