//! Raft messages from a peer, as bytes off the wire, stepped into the member's own raft core
//! (`RaftCore`, as leader or follower of three voters, on raft-rs's in-memory log): the same
//! `handle` (which screens messages with `refuse`) and `on_ready` the raft thread runs.
//! Whatever a peer sends, raft must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::StateRole;
use raft::eraftpb::{ConfState, Entry, Message, MessageType};
use raft::storage::MemStorage;
use rustcd_raft::{ApplySink, Input, NodeConfig, RaftCore, ReadState, Transport};

struct Nowhere;

impl Transport for Nowhere {
    fn send(&self, _: Vec<Message>) {}
}

impl ApplySink for Nowhere {
    fn committed(&mut self, _: Vec<Entry>) -> rustcd_raft::Result<()> {
        Ok(())
    }
    fn read_states(&mut self, _: Vec<ReadState>) -> rustcd_raft::Result<()> {
        Ok(())
    }
    fn restore(&mut self, _: Vec<u8>, _: u64) -> rustcd_raft::Result<()> {
        Ok(())
    }
}

type Core = RaftCore<MemStorage, Nowhere, Nowhere>;

fn core(leader: bool) -> Core {
    let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    let entries: Vec<Entry> = (1..=5).map(|i| Entry { index: i, term: 1, ..Default::default() }).collect();
    storage.wl().append(&entries).expect("append");
    let cfg = NodeConfig {
        id: 1,
        bootstrap: vec![],
        tick: std::time::Duration::from_millis(100),
        election_tick: 10,
        max_election_tick: 0,
        heartbeat_tick: 1,
        pre_vote: true,
        advance_ticks: false,
        force_new_cluster: false,
        applied: 0,
    };
    let mut c = Core::new(&cfg, storage, Nowhere, Nowhere).expect("core");
    if leader {
        let n = c.raw_node();
        n.campaign().expect("campaign");
        let term = n.raft.term;
        let vote =
            Message { msg_type: MessageType::MsgRequestVoteResponse, from: 2, to: 1, term, ..Default::default() };
        n.step(vote).expect("vote");
        assert_eq!(n.raft.state, StateRole::Leader);
    }
    c.on_ready().expect("ready");
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut c = core(mode % 2 == 1);
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        let Ok(m) = Message::parse_from_bytes(chunk) else { continue };
        c.handle(Input::Step(m));
        if mode & 2 != 0 {
            c.tick();
        }
        let _ = c.on_ready();
    }
});
