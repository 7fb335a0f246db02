//! Raft messages from a peer, as bytes off the wire: decoded, screened by the member's
//! `refuse` and stepped into raft (as leader or follower of three voters), with every Ready
//! handled as the raft thread does. Whatever a peer sends, raft must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, Message, MessageType};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

fn node(leader: bool) -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    let entries: Vec<Entry> = (1..=5).map(|i| Entry { index: i, term: 1, ..Default::default() }).collect();
    storage.wl().append(&entries).expect("append");
    let cfg = Config { id: 1, election_tick: 10, heartbeat_tick: 1, check_quorum: true, ..Default::default() };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut n = RawNode::new(&cfg, storage, &logger).expect("raw node");
    if leader {
        n.campaign().expect("campaign");
        let term = n.raft.term;
        let vote =
            Message { msg_type: MessageType::MsgRequestVoteResponse, from: 2, to: 1, term, ..Default::default() };
        n.step(vote).expect("vote");
        assert_eq!(n.raft.state, StateRole::Leader);
    }
    handle_ready(&mut n);
    n
}

fn handle_ready(n: &mut RawNode<MemStorage>) {
    if !n.has_ready() {
        return;
    }
    let mut rd = n.ready();
    let store = n.store().clone();
    if !rd.snapshot().is_empty() {
        let _ = store.wl().apply_snapshot(rd.snapshot().clone());
    }
    let _ = rd.take_committed_entries();
    let _ = store.wl().append(rd.entries());
    if let Some(hs) = rd.hs() {
        store.wl().set_hardstate(hs.clone());
    }
    let mut light = n.advance(rd);
    if let Some(commit) = light.commit_index() {
        store.wl().mut_hard_state().commit = commit;
    }
    let _ = light.take_committed_entries();
    n.advance_apply();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut n = node(mode % 2 == 1);
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        let Ok(mut m) = Message::parse_from_bytes(chunk) else { continue };
        if rustcd_raft::node::refuse(&n.raft, &mut m).is_some() {
            continue;
        }
        let _ = n.step(m);
        if mode & 2 != 0 {
            n.tick();
        }
        handle_ready(&mut n);
    }
});
