//! What goes into raft ([`Input`], [`NodeConfig`]) and what comes out ([`Output`],
//! [`NodeStatus`]): the types the core ([`crate::core`]), its I/O traits ([`crate::io`]) and the
//! thread that drives it ([`crate::node`]) all take from here, so none of them imports another
//! for its vocabulary.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc;
use std::time::Duration;

use raft::ReadState;
use raft::eraftpb::{ConfChange, Entry, Message};

use crate::error::Result;

/// How a member's raft is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// Members of a new cluster (id, opaque context); ignored when the log already holds a
    /// configuration. As etcd does, each becomes a committed AddNode entry of term 1.
    pub bootstrap: Vec<(u64, Vec<u8>)>,
    pub tick: Duration,
    pub election_tick: usize,
    /// Elections start after a random number of ticks in `[election_tick, max_election_tick)`;
    /// 0 means raft-rs's default, twice `election_tick`.
    pub max_election_tick: usize,
    pub heartbeat_tick: usize,
    /// raft's Pre-Vote phase (etcd's `--pre-vote`, on by default).
    pub pre_vote: bool,
    /// etcd's `--initial-election-tick-advance`: a member that starts as a follower begins
    /// one tick short of its election timeout, so a cluster without a leader elects one sooner.
    pub advance_ticks: bool,
    /// etcd's `--force-new-cluster`: restart as the only member, keeping the data.
    pub force_new_cluster: bool,
    /// Last index applied to the state machine (the backend's consistent index).
    pub applied: u64,
}

/// The context of a normal entry that is really etcd's UpdateNode conf change (its `member
/// update`), its data the conf change in etcd's encoding. raft-rs has no UpdateNode, and needs
/// none (etcd's raft does nothing with one either): the entry goes through raft-rs as a normal
/// one, the apply side changes the member's peer URLs, and rustcd-peer's etcd wire turns it
/// into etcd's conf change entry and back.
pub const UPDATE_NODE_CONTEXT: &[u8] = b"etcd.ConfChangeUpdateNode";

/// What the raft task is asked to do.
pub enum Input {
    Propose(Vec<u8>, tokio::sync::oneshot::Sender<Result<()>>),
    /// Proposes etcd's UpdateNode conf change (its encoding): see [`UPDATE_NODE_CONTEXT`].
    ProposeUpdateNode(Vec<u8>, tokio::sync::oneshot::Sender<Result<()>>),
    ReadIndex(Vec<u8>),
    Step(Message),
    /// The state machine applied (durably) up to this index: the log before it may go.
    Compact(u64),
    TransferLeader(u64),
    ProposeConfChange(ConfChange, tokio::sync::oneshot::Sender<Result<()>>),
    /// The transport could not reach this peer.
    Unreachable(u64),
    /// Outcome of sending a snapshot to this peer.
    SnapshotStatus(u64, bool),
    /// On a leader: the commit index and every peer's matched index; `None` elsewhere.
    Progress(tokio::sync::oneshot::Sender<Option<LeaderProgress>>),
    /// A leader hands leadership to its most up-to-date voter (before a graceful stop).
    StepDown,
    /// Ends the raft thread.
    Stop,
}

/// A leader's commit index and each member's (id, matched index).
pub type LeaderProgress = (u64, Vec<(u64, u64)>);

/// What the raft task hands to the apply side, in order.
pub enum Output {
    Committed(Vec<Entry>),
    ReadStates(Vec<ReadState>),
    /// Replace the state machine with this snapshot of another member's, taken at `index`.
    /// The apply side answers on `done` once the snapshot is durable.
    Snapshot {
        data: Vec<u8>,
        index: u64,
        done: mpsc::SyncSender<()>,
    },
}

/// Live facts about the node, readable from any thread.
#[derive(Default, Debug)]
pub struct NodeStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    pub last_index: AtomicU64,
    pub is_leader: AtomicBool,
    pub is_learner: AtomicBool,
}
