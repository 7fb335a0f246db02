//! A snapshot from a peer, restored into a store: either the raw bytes (the parser must refuse
//! anything damaged), or records built from the bytes and sealed with a valid trailer (the
//! restore and the rebuilt store must cope with any rows at all). Never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rustcd_mvcc::KvStore;

fn store() -> &'static KvStore {
    static STORE: OnceLock<(tempfile::TempDir, KvStore)> = OnceLock::new();
    let (_, s) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = KvStore::open(dir.path().join("db")).expect("open store");
        (dir, s)
    });
    s
}

/// `RUSTCD01`, then records taken from `data` (`[table][key len][value len][key][value]`, one
/// byte each for the lengths), then the trailer: record count and crc32c.
fn sealed(mut data: &[u8]) -> Vec<u8> {
    let mut out = b"RUSTCD01".to_vec();
    let mut count = 0u64;
    while data.len() >= 3 {
        let (table, kl, vl) = (1 + data[0] % 2, data[1] as usize, data[2] as usize);
        data = &data[3..];
        let key = &data[..kl.min(data.len())];
        data = &data[key.len()..];
        let value = &data[..vl.min(data.len())];
        data = &data[value.len()..];
        out.push(table);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
        count += 1;
    }
    out.push(0xff);
    out.extend_from_slice(&count.to_be_bytes());
    let mut crc = rustcd_mvcc::crc32c::Crc32c::new();
    crc.update(&out);
    out.extend_from_slice(&crc.finish().to_be_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let snap = if mode % 2 == 0 { rest.to_vec() } else { sealed(rest) };
    let s = store();
    if s.restore(&snap).is_ok() {
        // The restored store serves reads and takes a snapshot of itself.
        let all = rustcd_api::etcdserverpb::RangeRequest {
            key: vec![0].into(),
            range_end: vec![0].into(),
            ..Default::default()
        };
        let _ = s.range(&all);
        let _ = s.snapshot();
    }
});
