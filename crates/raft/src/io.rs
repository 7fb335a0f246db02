//! The raft core's I/O, behind three small traits: where the log is kept ([`LogStorage`]),
//! how messages reach peers ([`Transport`]) and who applies what commits ([`ApplySink`]).
//! The member runs the core on raft-engine, the gRPC peer transport and the apply thread;
//! tests and fuzzers run the same core on memory ([`raft::storage::MemStorage`]) and an
//! in-memory network.

use std::sync::mpsc;

use raft::eraftpb::{ConfState, Entry, HardState, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{ReadState, Storage};

use crate::error::{Error, Result};
use crate::types::Output;

/// A raft log that can be written: raft-rs reads it through [`raft::Storage`].
pub trait LogStorage: Storage {
    /// Persists new entries (replacing any conflicting tail) and the hard state in one write,
    /// fsynced when `sync`.
    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>, sync: bool) -> Result<()>;
    /// Replaces the whole log with a snapshot's position.
    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<()>;
    /// Records a new commit index (not fsynced: raft may lose it and learns it again).
    fn set_commit(&mut self, commit: u64) -> Result<()>;
    /// Records the configuration after a committed membership change.
    fn set_conf_state(&mut self, cs: ConfState) -> Result<()>;
    /// Drops entries up to and including `index`, applied and durable elsewhere.
    fn compact(&mut self, index: u64) -> Result<()>;
    /// True when nothing was ever written: a new member.
    fn is_empty(&self) -> bool {
        self.initial_state().is_ok_and(|s| s.hard_state.term == 0 && s.conf_state.voters.is_empty())
    }
}

/// Carries raft messages to the other members; never blocks the raft core. Where each member
/// is reached is not the core's business: the transport follows the membership.
pub trait Transport {
    /// Queues messages for their peers; a message that cannot be queued is lost (raft
    /// retries what matters).
    fn send(&self, msgs: Vec<Message>);
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn send(&self, msgs: Vec<Message>) {
        (**self).send(msgs)
    }
}

/// Receives, in order, what raft decided: committed entries, read states, and snapshots that
/// replace the state machine.
pub trait ApplySink {
    fn committed(&mut self, entries: Vec<Entry>) -> Result<()>;
    fn read_states(&mut self, states: Vec<ReadState>) -> Result<()>;
    /// Replaces the state machine with another member's snapshot taken at `index`; returns
    /// once the snapshot is durable (the log forgets what it replaces only after that).
    fn restore(&mut self, data: Vec<u8>, index: u64) -> Result<()>;
}

/// The member's apply thread, reached over a channel.
impl ApplySink for mpsc::SyncSender<Output> {
    fn committed(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.send(Output::Committed(entries)).map_err(|_| Error::Stopped)
    }

    fn read_states(&mut self, states: Vec<ReadState>) -> Result<()> {
        self.send(Output::ReadStates(states)).map_err(|_| Error::Stopped)
    }

    fn restore(&mut self, data: Vec<u8>, index: u64) -> Result<()> {
        let (done, restored) = mpsc::sync_channel(1);
        self.send(Output::Snapshot { data, index, done }).map_err(|_| Error::Stopped)?;
        restored.recv().map_err(|_| Error::Stopped)
    }
}

/// raft-rs's in-memory log, for deterministic tests and fuzzing: "persisted" as soon as
/// written; clones share the same log, so a clone outlives a crashed core.
impl LogStorage for MemStorage {
    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>, _sync: bool) -> Result<()> {
        let mut w = self.wl();
        w.append(entries)?;
        if let Some(hs) = hs {
            w.set_hardstate(hs.clone());
        }
        Ok(())
    }

    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        Ok(self.wl().apply_snapshot(snap.clone())?)
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    fn set_conf_state(&mut self, cs: ConfState) -> Result<()> {
        self.wl().set_conf_state(cs);
        Ok(())
    }

    fn compact(&mut self, index: u64) -> Result<()> {
        Ok(self.wl().compact(index + 1)?)
    }
}
