//! The apply thread: applies committed raft entries to the MVCC store in order, one backend
//! transaction per batch, then notifies watchers and fires the proposers' waiters. It also
//! answers read-index rounds and decides when the backend is made durable and the raft log
//! compacted (every `--snapshot-count` entries, keeping etcd's 5000 catch-up entries).

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use prost::Message;
use protobuf::Message as _;
use rustcd_api::etcdserverpb::Member;
use rustcd_api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, TxnResponse,
};
use rustcd_mvcc::watch::WatchHub;
use rustcd_mvcc::{KvStore, WriteTxn};
use rustcd_raft::eraftpb::{ConfChange, Entry, EntryType};
use rustcd_raft::{Input, Output, RaftSender};
use tokio::sync::watch;

use crate::error::ServerError;
use crate::etcdserver::lease::{self, SharedLessor};
use crate::etcdserver::membership::{Change, Membership};
use crate::etcdserver::request::{self, Op};
use crate::etcdserver::server::{ReadWaiters, Waiters};

/// The result of applying one proposal.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    /// A membership change or published attributes: the member list after it.
    Members(Vec<Member>),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint,
    Alarm(rustcd_api::etcdserverpb::AlarmResponse),
    Auth(rustcd_auth::AuthResponse),
    /// A request with no answer to give (cluster version, downgrade state, a v2 request).
    Done,
}

/// Where a request in the raft log came from: its entry's index, and the user it runs as
/// (from the request's header: a client's, root's for an expired lease's revocation, none for
/// the server's own requests).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub index: u64,
    pub who: Option<rustcd_auth::AuthInfo>,
}

/// The response an apply result of the expected kind carries, or `UnexpectedApply`.
macro_rules! expect_applied {
    ($applied:expr, $kind:ident) => {
        match $applied {
            $crate::etcdserver::apply::Applied::$kind(resp) => Ok(resp),
            _ => Err($crate::error::ServerError::UnexpectedApply),
        }
    };
}
pub(crate) use expect_applied;

/// Why the apply thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyEnd {
    /// Raft stopped (the member is stopping): everything applied is durable.
    Stopped,
    /// A conf change removed this member: it must not serve again from this data dir.
    Removed,
    /// The backend could not take what raft committed (etcd's fatal apply errors): the raft
    /// log still holds it, and a restart replays it. The text is the log line's error.
    Fatal(String),
}

/// Most entries applied in one backend transaction.
const MAX_APPLY_BATCH: usize = 8192;
/// Longest time a backend commit stays non-durable.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

pub struct Applier {
    pub member_id: u64,
    /// etcd's `--experimental-warning-apply-duration`: a request applied slower is logged.
    pub warn_apply_duration: Duration,
    /// What applies client requests (see [`ApplyRequest`]).
    pub stack: Box<dyn ApplyRequest>,
    pub lessor: SharedLessor,
    /// Reloaded with the store when a snapshot replaces it.
    pub alarms: Arc<crate::etcdserver::alarm::Alarms>,
    pub auth: Arc<rustcd_auth::AuthStore>,
    pub membership: Arc<Membership>,
    pub store: Arc<KvStore>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub read_waiters: Arc<ReadWaiters>,
    pub applied: watch::Sender<u64>,
    pub raft_tx: RaftSender,
    pub snapshot_count: u64,
    /// Entries kept in the raft log behind the applied index for slow followers.
    pub catch_up_entries: u64,
}

impl Applier {
    /// Runs until the raft side hangs up, this member is removed, or the backend fails; makes
    /// the backend durable on the way out of the first two.
    pub fn run(self, rx: mpsc::Receiver<Output>) -> ApplyEnd {
        let mut last_sync = Instant::now();
        let mut dirty = false;
        let mut compacted = 0u64;
        let mut held: Option<Output> = None;
        loop {
            let next = match held.take() {
                Some(o) => Ok(o),
                None => rx.recv_timeout(SYNC_INTERVAL),
            };
            match next {
                Ok(Output::Committed(mut entries)) => {
                    // Entries already waiting join this batch: one backend commit for all.
                    while entries.len() < MAX_APPLY_BATCH {
                        match rx.try_recv() {
                            Ok(Output::Committed(more)) => entries.extend(more),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    match self.apply_entries(&entries) {
                        Ok(false) => dirty = true,
                        Ok(true) => return self.removed(),
                        Err(e) => return ApplyEnd::Fatal(e),
                    }
                }
                Ok(Output::Snapshot { data, index, done }) => {
                    if let Err(e) = self.apply_snapshot(&data, index) {
                        return ApplyEnd::Fatal(e);
                    }
                    let _ = done.send(());
                }
                Ok(Output::ReadStates(states)) => {
                    let answers = states.into_iter().filter_map(|rs| {
                        let round = <[u8; 8]>::try_from(rs.request_ctx.as_slice()).ok()?;
                        Some((u64::from_be_bytes(round), rs.index))
                    });
                    self.read_waiters.trigger_all(answers);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if dirty && last_sync.elapsed() >= SYNC_INTERVAL {
                fail::fail_point!("beforeCommit");
                let synced = self.store.sync();
                fail::fail_point!("afterCommit");
                match synced {
                    Ok(()) => {
                        dirty = false;
                        last_sync = Instant::now();
                        let durable = self.store.consistent_index();
                        if durable > compacted + self.snapshot_count + self.catch_up_entries {
                            let to = durable - self.catch_up_entries;
                            // The durable backend is rustcd's snapshot: etcd's lines at the
                            // moment it would save one and compact its raft log.
                            tracing::info!(
                                local_member_applied_index = durable,
                                local_member_snapshot_index = compacted,
                                local_member_snapshot_count = self.snapshot_count,
                                "triggering snapshot"
                            );
                            // With raft's queue full, the next sync asks again.
                            if self.raft_tx.try_send(Input::Compact(to)) {
                                tracing::info!(snapshot_index = durable, "saved snapshot");
                                tracing::info!(compact_index = to, "compacted Raft logs");
                                compacted = to;
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "backend sync failed"),
                }
            }
        }
        if let Err(e) = self.store.sync() {
            tracing::error!(error = %e, "backend sync on shutdown failed");
        }
        ApplyEnd::Stopped
    }

    /// This member was removed: what it applied is made durable, and it stops.
    fn removed(&self) -> ApplyEnd {
        let _ = self.store.sync();
        tracing::warn!(
            "the member has been permanently removed from the cluster; the data-dir used by this member must be removed"
        );
        ApplyEnd::Removed
    }

    /// Replaces the state machine with the leader's snapshot; an error is fatal.
    fn apply_snapshot(&self, data: &[u8], index: u64) -> Result<(), String> {
        fail::fail_point!("backendBeforeRestore");
        let fatal = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        self.store.restore(data).map_err(|e| fatal("cannot apply the snapshot received from the leader", &e))?;
        self.membership.reload(&self.store);
        self.alarms.reload(&self.store).map_err(|e| fatal("cannot restore alarms from the snapshot", &e))?;
        self.auth.reload(&self.store).map_err(|e| fatal("cannot restore the auth store from the snapshot", &e))?;
        lease::restore(&self.store, &self.lessor).map_err(|e| fatal("cannot restore leases from the snapshot", &e))?;
        self.hub.resync_all();
        tracing::info!(index, revision = self.store.current_rev(), "applied snapshot from leader");
        self.applied.send_replace(index);
        Ok(())
    }

    /// Applies etcd's UpdateNode conf change (see [`rustcd_raft::UPDATE_NODE_CONTEXT`]): the
    /// member's new peer URLs from its context. Returns the change's ID (its waiter).
    fn update_node(&self, data: &[u8], w: &mut WriteTxn) -> Result<u64, String> {
        let cc = rustcd_api::raftpb::ConfChange::decode(data).map_err(|e| e.to_string())?;
        let member = rustcd_schema::member::MemberJson::parse(cc.context.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        self.membership.apply_update(cc.node_id.unwrap_or_default(), member.peer_urls, w);
        Ok(cc.id.unwrap_or_default())
    }

    /// Applies a batch in one backend transaction; `Ok(true)` when it removed this member.
    fn apply_entries(&self, entries: &[Entry]) -> Result<bool, String> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(false);
        };
        let from = self.store.consistent_index();
        let lease_exists = |id: i64| lease::lock(&self.lessor).contains(id);
        let mut removed_self = false;
        let mut compacted = false;
        let committed = self.store.write(false, &lease_exists, |w| {
            let mut results = Vec::new();
            for e in entries.iter().filter(|e| e.index > from) {
                match e.get_entry_type() {
                    EntryType::EntryConfChange => {
                        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
                            tracing::error!(index = e.index, "undecodable conf change entry skipped");
                            continue;
                        };
                        if let Change::Removed(id) = self.membership.apply_conf_change(&cc, w) {
                            removed_self |= id == self.member_id;
                        }
                        results.push((cc.id, Ok(Applied::Members(self.membership.list()))));
                    }
                    EntryType::EntryNormal if e.context.as_ref() == rustcd_raft::UPDATE_NODE_CONTEXT => {
                        match self.update_node(&e.data, w) {
                            Ok(id) => results.push((id, Ok(Applied::Members(self.membership.list())))),
                            Err(err) => {
                                tracing::error!(index = e.index, error = %err, "undecodable UpdateNode entry skipped")
                            }
                        }
                    }
                    EntryType::EntryNormal if !e.data.is_empty() => match request::decode(e.data.as_ref()) {
                        Ok(req) => {
                            let started = std::time::Instant::now();
                            let origin = Origin { index: e.index, who: req.who };
                            let r = self.stack.apply(w, req.op, &origin);
                            let took = started.elapsed();
                            if took > self.warn_apply_duration {
                                rustcd_metrics::get().server.slow_apply_total.inc();
                                tracing::warn!(
                                    took = ?took, expected_duration = ?self.warn_apply_duration, index = e.index,
                                    "apply request took too long"
                                );
                            }
                            compacted |= matches!(r, Ok(Applied::Compaction(_)));
                            results.push((req.id, r));
                        }
                        Err(err) => tracing::error!(index = e.index, error = %err, "undecodable raft entry skipped"),
                    },
                    _ => {}
                }
            }
            w.set_consistent_index(last);
            results
        });
        if compacted {
            fail::fail_point!("compactAfterCommit");
        }
        match committed {
            Ok(c) => {
                self.hub.notify(&c.events, c.revision);
                self.waiters.trigger_all(c.value);
                self.applied.send_replace(last);
            }
            // The raft log still holds these entries; a restart replays them.
            Err(e) => return Err(format!("applying committed entries failed: {e}")),
        }
        Ok(removed_self)
    }
}

/// Applies one request inside the apply batch: etcd's `applierV3`. A member's stack is
/// [`Backend`] under thin checking layers, as etcd's `authApplierV3` and quota and alarm
/// appliers wrap its backend applier: [`crate::etcdserver::auth::AuthGate`], then
/// [`crate::etcdserver::alarm::AlarmGate`], then [`crate::etcdserver::quota::QuotaGate`]. A
/// layer only checks: it refuses the request with a [`ServerError`] or passes it down, so what
/// it refuses never reaches the backend; every request kind is carried out in one place,
/// [`Backend`]. Every member applies the same entries through the same stack.
pub trait ApplyRequest: Send {
    fn apply(&self, w: &mut WriteTxn, op: Op, origin: &Origin) -> Result<Applied, ServerError>;
}

/// The bottom of the stack, etcd's `applierV3backend`: every request kind is carried out here,
/// on the store, the lessor, the alarms, the auth store or the membership; the keys a write
/// touches move between leases as its events say.
pub struct Backend {
    pub lessor: SharedLessor,
    pub alarms: Arc<crate::etcdserver::alarm::Alarms>,
    pub auth: Arc<rustcd_auth::AuthStore>,
    pub membership: Arc<Membership>,
}

impl ApplyRequest for Backend {
    fn apply(&self, w: &mut WriteTxn, op: Op, origin: &Origin) -> Result<Applied, ServerError> {
        let before = w.events().len();
        let r = self.dispatch(w, op, origin);
        let events = &w.events()[before..];
        if !events.is_empty() {
            lease::lock(&self.lessor).apply_events(events);
        }
        r
    }
}

impl Backend {
    fn dispatch(&self, w: &mut WriteTxn, op: Op, origin: &Origin) -> Result<Applied, ServerError> {
        match op {
            Op::Alarm(r) => Ok(Applied::Alarm(self.alarms.apply(w, &r))),
            Op::Auth(op) => {
                let who = origin.who.as_ref();
                self.auth.apply(w, op, who, origin.index).map(Applied::Auth).map_err(ServerError::from)
            }
            Op::ClusterVersion(v) => {
                self.membership.apply_cluster_version(&v, w);
                Ok(Applied::Done)
            }
            Op::Downgrade(d) => {
                self.membership.apply_downgrade(&d, w);
                Ok(Applied::Done)
            }
            // etcd applies these to its v2 store only, or (a range) not at all.
            Op::Range(_) | Op::V2(_) => Ok(Applied::Done),
            Op::MemberAttributes(a) => {
                self.membership.apply_attributes(&a, w);
                Ok(Applied::Members(self.membership.list()))
            }
            op => store_request(w, &self.lessor, op),
        }
    }
}

/// The requests that change keys and leases.
fn store_request(w: &mut WriteTxn, lessor: &SharedLessor, op: Op) -> Result<Applied, ServerError> {
    match op {
        Op::Put(p) => w.put(&p).map(Applied::Put).map_err(ServerError::from),
        Op::DeleteRange(d) => w.delete_range(&d).map(Applied::DeleteRange).map_err(ServerError::from),
        Op::Txn(t) => w.txn(&t).map(Applied::Txn).map_err(ServerError::from),
        Op::Compaction(c) => {
            fail::fail_point!("compactBeforeCommit", |_| Err(ServerError::Internal("failpoint".into())));
            w.compact(c.revision)
                .map(|rev| Applied::Compaction(CompactionResponse { header: Some(header(rev)) }))
                .map_err(ServerError::from)
        }
        Op::LeaseGrant(g) => lease::apply_grant(w, lessor, &g),
        Op::LeaseRevoke(r) => lease::apply_revoke(w, lessor, &r),
        Op::LeaseCheckpoint(c) => lease::apply_checkpoint(w, lessor, &c),
        _ => Err(ServerError::Internal("not a key or lease request".into())),
    }
}

fn header(revision: i64) -> rustcd_api::etcdserverpb::ResponseHeader {
    rustcd_api::etcdserverpb::ResponseHeader { revision, ..Default::default() }
}
