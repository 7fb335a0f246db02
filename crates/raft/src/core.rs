//! The raft core: the `RawNode` and the handling of its `Ready`, with no thread, clock or I/O
//! of its own. The member's raft thread ([`crate::node`]) drives it with real time, raft-engine
//! and the gRPC transport; deterministic tests and the fuzzer drive the very same code with an
//! in-memory log and network ([`crate::io`]). Per `Ready`, in raft-rs's order: send messages,
//! persist entries and hard state (one fsync: group commit), hand committed entries to the
//! apply side, advance.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message};
use raft::{RawNode, SnapshotStatus as Snap, StateRole};

use crate::error::{Error, Result};
use crate::io::{ApplySink, LogStorage, Transport};
use crate::types::{Input, NodeConfig, NodeStatus};

/// The raft state machine of one member and what it reads and writes through.
pub struct RaftCore<L: LogStorage, T: Transport, A: ApplySink> {
    node: RawNode<L>,
    transport: T,
    apply: A,
    status: Arc<NodeStatus>,
}

impl<L: LogStorage, T: Transport, A: ApplySink> RaftCore<L, T, A> {
    /// Builds the `RawNode` on `store` (bootstrapping a new cluster's log when it is empty).
    /// A lone voter campaigns at once, as etcd's does.
    pub fn new(cfg: &NodeConfig, mut store: L, transport: T, apply: A) -> Result<Self> {
        let commit = store.initial_state()?.hard_state.commit;
        let mut applied = cfg.applied.min(commit);
        if store.is_empty() && !cfg.bootstrap.is_empty() {
            bootstrap(&mut store, &cfg.bootstrap)?;
            // The bootstrap entries are already in the conf state: nothing to apply from them.
            applied = cfg.bootstrap.len() as u64;
        } else if cfg.force_new_cluster && !store.is_empty() {
            force_new_cluster(&mut store, cfg.id)?;
        }
        let single_voter = store.initial_state()?.conf_state.voters == vec![cfg.id];
        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_tick,
            min_election_tick: cfg.election_tick,
            max_election_tick: cfg.max_election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: cfg.pre_vote,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let logger = crate::slog_bridge::logger();
        let mut node = RawNode::new(&raft_cfg, store, &logger)?;
        if single_voter {
            node.campaign()?;
        } else if cfg.advance_ticks {
            for _ in 1..cfg.election_tick {
                node.tick();
            }
        }
        let status: Arc<NodeStatus> = Arc::default();
        status.term.store(node.raft.term, Ordering::Relaxed);
        status.commit.store(node.raft.raft_log.committed, Ordering::Relaxed);
        Ok(RaftCore { node, transport, apply, status })
    }

    /// Live facts about this node, shared with other threads.
    pub fn status(&self) -> &Arc<NodeStatus> {
        &self.status
    }

    /// The raft-rs node, for tests and fuzzers that inspect (or provoke) its state.
    pub fn raw_node(&mut self) -> &mut RawNode<L> {
        &mut self.node
    }

    pub fn apply_sink(&mut self) -> &mut A {
        &mut self.apply
    }

    /// One tick of raft's logical clock (a heartbeat interval).
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Handles one input; false when asked to stop.
    pub fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Stop => return false,
            Input::Propose(data, done) => {
                let r = self.node.propose(vec![], data).map_err(Error::from);
                let _ = done.send(r);
            }
            Input::ProposeUpdateNode(data, done) => {
                let r = self.node.propose(crate::UPDATE_NODE_CONTEXT.to_vec(), data).map_err(Error::from);
                let _ = done.send(r);
            }
            Input::ReadIndex(ctx) => self.node.read_index(ctx),
            Input::Step(mut m) => {
                if let Some(why) = refuse(&self.node.raft, &mut m) {
                    tracing::warn!(from = %format!("{:x}", m.from), why, "raft message from a peer refused");
                } else if let Err(e) = self.node.step(m) {
                    tracing::debug!(error = %e, "raft step ignored a message");
                }
            }
            Input::Compact(index) => {
                if let Err(e) = self.node.mut_store().compact(index) {
                    tracing::warn!(error = %e, "raft log compaction failed");
                }
            }
            Input::TransferLeader(to) => self.node.transfer_leader(to),
            Input::ProposeConfChange(cc, done) => {
                let r = self.node.propose_conf_change(vec![], cc).map_err(Error::from);
                let _ = done.send(r);
            }
            Input::Unreachable(id) => self.node.report_unreachable(id),
            Input::Progress(done) => {
                let raft = &self.node.raft;
                let answer = (raft.state == StateRole::Leader).then(|| {
                    let matched = raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
                    (raft.raft_log.committed, matched)
                });
                let _ = done.send(answer);
            }
            Input::StepDown => {
                if self.node.raft.state == StateRole::Leader {
                    let me = self.node.raft.id;
                    let voters = self.node.raft.prs().conf().voters().ids();
                    let best = voters
                        .iter()
                        .filter(|id| *id != me)
                        .filter_map(|id| self.node.raft.prs().get(id).map(|p| (p.matched, id)))
                        .max();
                    if let Some((_, to)) = best {
                        self.node.transfer_leader(to);
                    }
                }
            }
            Input::SnapshotStatus(id, ok) => {
                let status = if ok { Snap::Finish } else { Snap::Failure };
                self.node.report_snapshot(id, status);
            }
        }
        true
    }

    pub fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }
        if let Some(ss) = rd.ss() {
            let (id, term) = (self.node.raft.id, self.node.raft.term);
            let old = self.status.leader.swap(ss.leader_id, Ordering::Relaxed);
            // etcd's raft.node lines, which log-based tooling watches for leader changes
            match (old, ss.leader_id) {
                (o, n) if o == n => {}
                (0, n) => tracing::info!("raft.node: {id:x} elected leader {n:x} at term {term}"),
                (o, 0) => tracing::info!("raft.node: {id:x} lost leader {o:x} at term {term}"),
                (o, n) => tracing::info!("raft.node: {id:x} changed leader from {o:x} to {n:x} at term {term}"),
            }
            // etcd counts a change to a (new) leader, not the loss of one. (Whether there is a
            // leader, and whether it is this member, are read off the status at scrape time.)
            if ss.leader_id != 0 && ss.leader_id != old {
                rustcd_metrics::get().server.leader_changes_seen_total.inc();
            }
            self.status.is_leader.store(ss.raft_state == StateRole::Leader, Ordering::Relaxed);
        }
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let index = snap.get_metadata().index;
            // The state machine takes the snapshot (durably) before the log forgets what it
            // replaces: a crash in between must not leave a gap between the two.
            let in_progress = &rustcd_metrics::get().server.snapshot_apply_in_progress_total;
            in_progress.set(1);
            let restored = self.apply.restore(snap.get_data().to_vec(), index);
            in_progress.set(0);
            restored?;
            fail::fail_point!("raftBeforeApplySnap");
            self.node.mut_store().apply_snapshot(&snap)?;
            fail::fail_point!("raftAfterApplySnap");
        }
        let committed = rd.take_committed_entries();
        self.hand_out(committed)?;
        let hs = rd.hs().cloned();
        let must_sync = rd.must_sync();
        let saving = !rd.entries().is_empty();
        if saving {
            fail::fail_point!("raftBeforeSave");
        }
        self.node.mut_store().append(rd.entries(), hs.as_ref(), must_sync)?;
        if saving {
            fail::fail_point!("raftAfterSave");
        }
        if let Some(hs) = &hs {
            self.status.term.store(hs.term, Ordering::Relaxed);
            self.status.commit.store(hs.commit, Ordering::Relaxed);
        }
        if !rd.persisted_messages().is_empty() {
            self.transport.send(rd.take_persisted_messages());
        }
        if !rd.read_states().is_empty() {
            self.apply.read_states(rd.take_read_states())?;
        }
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
            self.status.commit.store(commit, Ordering::Relaxed);
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.hand_out(committed)?;
        self.node.advance_apply();
        let last = raft::Storage::last_index(self.node.store()).unwrap_or(0);
        self.status.last_index.store(last, Ordering::Relaxed);
        let learner = self.node.raft.prs().conf().learners().contains(&self.node.raft.id);
        self.status.is_learner.store(learner, Ordering::Relaxed);
        Ok(())
    }

    /// Applies committed configuration changes to raft, then hands every
    /// committed entry to the apply side.
    fn hand_out(&mut self, committed: Vec<Entry>) -> Result<()> {
        if committed.is_empty() {
            return Ok(());
        }
        for e in committed.iter().filter(|e| e.get_entry_type() == EntryType::EntryConfChange) {
            let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
                tracing::error!(index = e.index, "undecodable conf change entry");
                continue;
            };
            match self.node.apply_conf_change(&cc) {
                Ok(cs) => self.node.mut_store().set_conf_state(cs)?,
                Err(err) => tracing::warn!(error = %err, "conf change not applied"),
            }
        }
        self.apply.committed(committed)
    }
}

/// Writes a new member's initial log: one committed AddNode entry per member at term 1, so the
/// first election makes term 2 and the log indexes line up with etcd's.
pub(crate) fn bootstrap<L: LogStorage>(store: &mut L, members: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut entries = Vec::with_capacity(members.len());
    for (i, (id, ctx)) in members.iter().enumerate() {
        let cc = ConfChange {
            change_type: ConfChangeType::AddNode,
            node_id: *id,
            context: ctx.clone().into(),
            ..Default::default()
        };
        let data = cc.write_to_bytes().map_err(|e| Error::Corrupt(e.to_string()))?;
        entries.push(Entry {
            entry_type: EntryType::EntryConfChange,
            term: 1,
            index: i as u64 + 1,
            data: data.into(),
            ..Default::default()
        });
    }
    let hs = HardState { term: 1, commit: entries.len() as u64, ..Default::default() };
    store.append(&entries, Some(&hs), true)?;
    let cs = ConfState { voters: members.iter().map(|m| m.0).collect(), ..Default::default() };
    store.set_conf_state(cs)
}

/// etcd's `--force-new-cluster`: the member restarts as the only member of its cluster, with its
/// data. Entries it never saw committed are dropped, and committed RemoveNode entries for every
/// other member follow its committed log; applied as usual, they leave it the only voter, and it
/// elects itself.
fn force_new_cluster<L: LogStorage>(store: &mut L, id: u64) -> Result<()> {
    let state = store.initial_state()?;
    let (mut hs, cs) = (state.hard_state, state.conf_state);
    let others: Vec<u64> = cs.voters.iter().chain(cs.learners.iter()).copied().filter(|m| *m != id).collect();
    tracing::warn!(
        local_member_id = %format!("{id:x}"), commit_index = hs.commit, removed = ?others.iter().map(|m| format!("{m:x}")).collect::<Vec<_>>(),
        "forcing restart member as a new single-member cluster"
    );
    let mut entries = Vec::with_capacity(others.len());
    for (i, other) in others.iter().enumerate() {
        let cc = ConfChange { change_type: ConfChangeType::RemoveNode, node_id: *other, ..Default::default() };
        let data = cc.write_to_bytes().map_err(|e| Error::Corrupt(e.to_string()))?;
        entries.push(Entry {
            entry_type: EntryType::EntryConfChange,
            term: hs.term,
            index: hs.commit + 1 + i as u64,
            data: data.into(),
            ..Default::default()
        });
    }
    // Appending at commit + 1 replaces any uncommitted tail, as etcd discards it.
    hs.commit += entries.len() as u64;
    store.append(&entries, Some(&hs), true)
}

/// Why a peer's message must not reach raft, if it must not: raft-rs trusts its peers and
/// panics on some messages no correct peer sends. Also clamps a heartbeat's commit index
/// to the log's end (a correct leader never sends more; raft-rs would panic on it).
pub fn refuse<S: raft::Storage>(raft: &raft::Raft<S>, m: &mut Message) -> Option<&'static str> {
    if m.to != raft.id {
        return Some("addressed to another member");
    }
    let conf = raft.prs().conf();
    // A member that has not yet learned its configuration (a joiner) hears everyone.
    let established = !conf.voters().ids().is_empty();
    if established && !conf.voters().contains(m.from) && !conf.learners().contains(&m.from) {
        return Some("from a member not in the configuration");
    }
    use raft::eraftpb::MessageType as T;
    match m.get_msg_type() {
        T::MsgHeartbeat => m.commit = m.commit.min(raft.raft_log.last_index()),
        T::MsgPropose if m.entries.is_empty() => return Some("a proposal without entries"),
        T::MsgReadIndex | T::MsgReadIndexResp if m.entries.len() != 1 => {
            return Some("a read index message without its one context entry");
        }
        T::MsgAppend => {
            let contiguous = m.entries.iter().enumerate().all(|(i, e)| e.index == m.index + 1 + i as u64);
            if !contiguous || m.entries.iter().any(|e| e.term > m.term) {
                return Some("an append whose entries do not follow its index and term");
            }
        }
        T::MsgSnapshot => {
            let meta = m.get_snapshot().get_metadata();
            if meta.index == 0 || meta.get_conf_state().voters.is_empty() {
                return Some("a snapshot without an index or a configuration");
            }
        }
        _ => {}
    }
    None
}
