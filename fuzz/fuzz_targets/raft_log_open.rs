//! Any bytes as the newest raft log file: opening the log fails with an error or opens, never
//! panics. (Start from a real log file as the seed: see fuzz/README.md.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // raft-engine panics on some damaged logs; LogStore::open catches that (as the server's
    // panic hook allows) and returns an error. Any other panic still aborts.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !rustcd_raft::log_store::recovering() {
                fuzzer(info);
            }
        }));
    });
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("0000000000000001.raftlog"), data).expect("write log");
    if let Ok(store) = rustcd_raft::log_store::LogStore::open(dir.path()) {
        use raft::Storage as _;
        let (first, last) = (store.first_index().unwrap_or(0), store.last_index().unwrap_or(0));
        let _ = store.entries(first, last + 1, None, raft::GetEntriesContext::empty(false));
        let _ = store.initial_state();
    }
});
