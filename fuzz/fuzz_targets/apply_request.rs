//! Any request a raft entry can carry, applied as a committed entry is: the leader is a peer,
//! and every member applies the same entry, so a request that fails the whole backend
//! transaction (rather than answering an error) would stop every member. Never a panic, and
//! the transaction always commits.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use rustcd_api::rustcdpb::InternalRequest;
use rustcd_lease::Lessor;
use rustcd_mvcc::KvStore;
use rustcd_server::etcdserver::apply::{ApplyRequest, Backend, Origin};
use rustcd_server::etcdserver::lease::SharedLessor;
use rustcd_server::etcdserver::{alarm::Alarms, membership::Membership};

struct State {
    _dir: tempfile::TempDir,
    store: KvStore,
    lessor: SharedLessor,
    backend: Backend,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KvStore::open(dir.path().join("db")).expect("open store");
        let lessor = Arc::new(Mutex::new(Lessor::new(1)));
        let tokens = rustcd_auth::parse_token_options("simple", 300).expect("token options");
        let backend = Backend {
            lessor: lessor.clone(),
            alarms: Arc::new(Alarms::default()),
            auth: Arc::new(rustcd_auth::AuthStore::open(&store, tokens, 4).expect("auth store")),
            membership: Arc::new(Membership::new(Default::default(), Box::new(|_| {}))),
        };
        State { _dir: dir, store, lessor, backend }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = InternalRequest::decode(data) else { return };
    let st = state();
    let exists = |id: i64| st.lessor.lock().map(|l| l.contains(id)).unwrap_or(false);
    let Some(op) = req.request else { return };
    let origin = Origin { index: 1, internal: req.internal, who: None };
    let r = st.store.write(false, &exists, |w| st.backend.apply(w, op, &origin));
    assert!(r.is_ok(), "the backend transaction failed: {:?}", r.err());
});
