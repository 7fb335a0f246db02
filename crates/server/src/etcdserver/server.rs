//! The etcd server core: propose-and-wait, linearizable reads, and the shared state the gRPC
//! services read. The raft thread owns raft; the apply thread (see [`crate::etcdserver::apply`]) owns the
//! MVCC write path; this struct only sends them messages and waits for answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustcd_api::etcdserverpb::ResponseHeader;
use rustcd_mvcc::KvStore;
use rustcd_mvcc::watch::WatchHub;
use rustcd_raft::{Input, NodeStatus, RaftSender};
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::error::ServerError;
use crate::etcdserver::apply::Applied;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::lease::SharedLessor;
use crate::etcdserver::membership::Membership;
use crate::etcdserver::request::{self, Op as InternalOp};
use crate::etcdserver::wait::Wait;

/// Waiters for proposals, keyed by request id; the apply thread triggers them.
pub type Waiters = Wait<Result<Applied, ServerError>>;
/// Waiters for read-index rounds, keyed by round id; the apply thread triggers them.
pub type ReadWaiters = Wait<u64>;

pub struct EtcdServer {
    /// What the server is built from (start-up hands it over whole).
    p: Parts,
    next_id: AtomicU64,
    read_tx: tokio::sync::mpsc::UnboundedSender<oneshot::Sender<Result<(), ServerError>>>,
}

/// Time a proposal or read may wait before `etcdserver: request timed out`.
fn request_timeout(cfg: &Config) -> Duration {
    Duration::from_secs(5) + Duration::from_millis(2 * cfg.raw.election_timeout)
}

/// What an [`EtcdServer`] is built from: the member's identity and configuration, the state it
/// reads (membership, lessor, store, watcher hub, raft status, applied index) and the ways to
/// the raft thread and the apply thread's waiters.
pub struct Parts {
    pub cfg: Config,
    pub member_id: u64,
    pub cluster_id: u64,
    pub membership: Arc<Membership>,
    /// How the member dials fellow members' client URLs.
    pub client_dial: Option<Arc<rustcd_tls::ClientConfig>>,
    /// How the member dials fellow members' peer URLs (outside raft's transport).
    pub peer_dial: Option<Arc<rustcd_tls::ClientConfig>>,
    pub alarms: Arc<crate::etcdserver::alarm::Alarms>,
    /// `--quota-backend-bytes` (`None`: no quota).
    pub quota: Option<u64>,
    pub auth: Arc<rustcd_auth::AuthStore>,
    pub lessor: SharedLessor,
    pub store: Arc<KvStore>,
    pub hub: Arc<WatchHub>,
    pub raft_status: Arc<NodeStatus>,
    pub raft_tx: RaftSender,
    pub waiters: Arc<Waiters>,
    pub read_waiters: Arc<ReadWaiters>,
    /// Last applied raft index.
    pub applied: watch::Receiver<u64>,
    /// Ends the server's loops (and everything else the member started) when it stops.
    pub shutdown: crate::shutdown::Shutdown,
}

impl EtcdServer {
    /// Builds the server and starts its linearizable read loop.
    pub fn new(p: Parts) -> Arc<Self> {
        let (read_tx, read_rx) = tokio::sync::mpsc::unbounded_channel();
        // etcd's request ids: member id prefix, then time, then a counter.
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let start = ((p.member_id & 0xffff) << 48) | ((ms & 0xff_ffff_ffff) << 8);
        let s = Arc::new(EtcdServer { p, next_id: AtomicU64::new(start), read_tx });
        s.p.shutdown.spawn(read_loop(s.clone(), read_rx));
        s
    }

    /// The member's shutdown signal: its long-lived tasks are spawned through it.
    pub fn shutdown(&self) -> &crate::shutdown::Shutdown {
        &self.p.shutdown
    }

    pub fn config(&self) -> &Config {
        &self.p.cfg
    }
    pub fn member_id(&self) -> u64 {
        self.p.member_id
    }
    pub fn cluster_id(&self) -> u64 {
        self.p.cluster_id
    }
    pub fn membership(&self) -> &Arc<Membership> {
        &self.p.membership
    }
    /// A channel to a fellow member's client URL (with the member's client TLS for `https://`).
    pub async fn dial_member(&self, url: &str, timeout: Duration) -> Result<tonic::transport::Channel, String> {
        rustcd_tls::connect::dial(url, self.p.client_dial.as_ref(), timeout).await
    }

    /// Whether the cluster runs at `major.minor` or later (an undecided version counts as this
    /// member's own, as etcd 3.5 behaves): what it may propose depends on it.
    pub fn cluster_version_at_least(&self, major: u64, minor: u64) -> bool {
        let current = self.membership().cluster_version();
        current.as_deref().and_then(crate::etcdserver::version::major_minor).is_none_or(|v| v >= (major, minor))
    }

    /// How fellow members' peer URLs are dialled (the peer certificate).
    pub fn peer_tls(&self) -> Option<&Arc<rustcd_tls::ClientConfig>> {
        self.p.peer_dial.as_ref()
    }

    /// A channel to the leader's client URLs (`etcdserver: no leader` when none answers).
    pub async fn leader_channel(&self) -> Result<tonic::transport::Channel, ServerError> {
        let leader = self.leader();
        if leader == 0 {
            return Err(ServerError::NoLeader);
        }
        for url in self.membership().get(leader).map(|m| m.client_urls).unwrap_or_default() {
            if let Ok(ch) = self.dial_member(&url, Duration::from_secs(1)).await {
                return Ok(ch);
            }
        }
        Err(ServerError::NoLeader)
    }

    pub fn alarms(&self) -> &Arc<crate::etcdserver::alarm::Alarms> {
        &self.p.alarms
    }
    pub fn auth(&self) -> &Arc<rustcd_auth::AuthStore> {
        &self.p.auth
    }

    /// `--quota-backend-bytes` as in force (`None`: no quota).
    pub fn quota(&self) -> Option<u64> {
        self.p.quota
    }

    /// etcd's quota check before proposing: a request that would take the backend past the
    /// quota raises the NOSPACE alarm for this member and is refused.
    pub async fn check_quota(&self, op: &InternalOp) -> Result<(), ServerError> {
        if crate::etcdserver::quota::available(&self.p.store, self.p.quota, crate::etcdserver::quota::cost(op)) {
            return Ok(());
        }
        if let Err(e) = self.raise_alarm(self.p.member_id, rustcd_api::etcdserverpb::AlarmType::Nospace).await {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(ServerError::NoSpace)
    }

    /// Waits (up to `timeout`) until this member has applied raft index `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        let mut rx = self.p.applied.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index)).await;
    }

    /// etcd's `IsAdminPermitted`: only root may change the membership, defragment, hash or
    /// snapshot when auth is on.
    pub fn check_admin(&self, caller: &Caller) -> Result<(), ServerError> {
        if !self.p.auth.is_enabled() {
            return Ok(());
        }
        self.p.auth.is_admin_permitted(caller.who()?).map_err(ServerError::from)
    }
    pub fn lessor(&self) -> &SharedLessor {
        &self.p.lessor
    }
    pub fn store(&self) -> &Arc<KvStore> {
        &self.p.store
    }
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.p.hub
    }
    pub fn raft_status(&self) -> &NodeStatus {
        &self.p.raft_status
    }
    /// The last raft index applied to the backend.
    pub fn applied(&self) -> u64 {
        *self.p.applied.borrow()
    }

    /// A header at the store's current revision.
    pub fn current_header(&self) -> Option<ResponseHeader> {
        self.header(self.p.store.current_rev())
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.p.cluster_id,
            member_id: self.p.member_id,
            revision,
            raft_term: self.p.raft_status.term.load(Ordering::Relaxed),
        })
    }

    async fn send_raft(&self, input: Input) -> Result<(), ServerError> {
        self.p.raft_tx.send(input).await.map_err(|_| ServerError::Stopped)
    }

    /// Proposes a client's write through raft and waits for the apply thread's result. The
    /// entry carries the caller's user and auth revision, which every member's auth gate checks.
    pub async fn propose(&self, caller: &Caller, op: InternalOp) -> Result<Applied, ServerError> {
        let who = caller.who()?.cloned().unwrap_or_default();
        self.propose_as(op, who).await
    }

    /// Proposes the server's own write (lease checkpoints, compaction, alarms, member
    /// publication): no user, as etcd proposes these; the apply side checks none of them.
    pub async fn propose_internal(&self, op: InternalOp) -> Result<Applied, ServerError> {
        self.propose_as(op, rustcd_auth::AuthInfo::default()).await
    }

    /// Proposes the server's own write as root (etcd's `WithRoot`, for revoking an expired
    /// lease): with auth on, every member checks the request as root's at the auth revision
    /// it was proposed at, as for a client's, so all of them decide alike.
    pub async fn propose_as_root(&self, op: InternalOp) -> Result<Applied, ServerError> {
        let auth = &self.p.auth;
        let who = if auth.is_enabled() {
            rustcd_auth::AuthInfo { username: "root".into(), revision: auth.revision() }
        } else {
            rustcd_auth::AuthInfo::default()
        };
        self.propose_as(op, who).await
    }

    async fn propose_as(&self, op: InternalOp, who: rustcd_auth::AuthInfo) -> Result<Applied, ServerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = request::encode(id, &who, op);
        if data.len() as u64 > self.p.cfg.raw.max_request_bytes {
            return Err(ServerError::RequestTooLarge);
        }
        self.propose_and_wait(id, |ack| Input::Propose(data, ack)).await
    }

    /// Registers a waiter for `id`, hands raft the input `make` builds, and waits until the
    /// apply thread answers (or the proposal is refused, or time runs out).
    async fn propose_and_wait(
        &self,
        id: u64,
        make: impl FnOnce(oneshot::Sender<rustcd_raft::Result<()>>) -> Input,
    ) -> Result<Applied, ServerError> {
        let m = &rustcd_metrics::get().server;
        m.proposals_pending.inc();
        let r = self.propose_and_wait_inner(id, make).await;
        m.proposals_pending.dec();
        if matches!(r, Err(ServerError::Timeout | ServerError::NoLeader | ServerError::Stopped)) {
            m.proposals_failed_total.inc();
        }
        r
    }

    async fn propose_and_wait_inner(
        &self,
        id: u64,
        make: impl FnOnce(oneshot::Sender<rustcd_raft::Result<()>>) -> Input,
    ) -> Result<Applied, ServerError> {
        let rx = self.p.waiters.register(id);
        let (ack_tx, ack_rx) = oneshot::channel();
        let accepted = match self.send_raft(make(ack_tx)).await {
            Ok(()) => ack_rx.await.map_err(|_| ServerError::Stopped).and_then(|r| r.map_err(|_| ServerError::NoLeader)),
            Err(e) => Err(e),
        };
        if let Err(e) = accepted {
            self.p.waiters.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(request_timeout(&self.p.cfg), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.p.waiters.cancel(id);
                Err(ServerError::Timeout)
            }
        }
    }

    /// A new lease ID, as etcd makes them: from the request id generator, positive.
    pub fn fresh_lease_id(&self) -> i64 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) & (i64::MAX as u64)) as i64
    }

    /// Proposes a membership change through raft and waits until it is applied.
    pub async fn propose_conf_change(&self, mut cc: rustcd_raft::eraftpb::ConfChange) -> Result<Applied, ServerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        cc.id = id;
        self.propose_and_wait(id, |ack| Input::ProposeConfChange(cc, ack)).await
    }

    /// Proposes etcd's UpdateNode conf change (its `member update`): member `node_id` is
    /// reached at `peer_urls` from now on; the context is etcd's member JSON.
    pub async fn propose_update_node(&self, node_id: u64, peer_urls: Vec<String>) -> Result<Applied, ServerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = request::update_node(id, node_id, peer_urls);
        self.propose_and_wait(id, |ack| Input::ProposeUpdateNode(data, ack)).await
    }

    /// On the leader: its commit index and every member's matched index.
    pub async fn leader_progress(&self) -> Result<Option<(u64, Vec<(u64, u64)>)>, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.send_raft(Input::Progress(tx)).await?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// Asks raft to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ServerError> {
        self.send_raft(Input::TransferLeader(to)).await
    }

    /// Waits until this member has applied everything committed before the call (ReadIndex).
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.read_tx.send(tx).map_err(|_| ServerError::Stopped)?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    pub fn leader(&self) -> u64 {
        self.p.raft_status.leader.load(Ordering::Relaxed)
    }
}

/// etcd's linearizable read loop: every read waiting when a round starts shares its ReadIndex.
async fn read_loop(
    s: Arc<EtcdServer>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<oneshot::Sender<Result<(), ServerError>>>,
) {
    let mut round: u64 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        round += 1;
        let result = read_index_round(&s, round).await;
        for w in batch {
            let _ = w.send(result.clone());
        }
    }
}

async fn read_index_round(s: &EtcdServer, round: u64) -> Result<(), ServerError> {
    let rx = s.p.read_waiters.register(round);
    let deadline = request_timeout(&s.p.cfg);
    let r = async {
        // Without a leader raft drops the request: retry until one answers or time runs out;
        // soon (a heartbeat) while no leader is known, else after etcd's 500 ms.
        let mut rx = rx;
        loop {
            s.send_raft(Input::ReadIndex(round.to_be_bytes().to_vec())).await?;
            let retry = if s.leader() == 0 { s.p.cfg.raw.heartbeat_interval.max(10) } else { 500 };
            tokio::select! {
                idx = &mut rx => return idx.map_err(|_| ServerError::Stopped),
                _ = tokio::time::sleep(Duration::from_millis(retry)) => {
                    // etcd's "timed out waiting for read index response", sent again.
                    rustcd_metrics::get().server.slow_read_indexes_total.inc();
                }
            }
        }
    };
    let index = match tokio::time::timeout(deadline, r).await {
        Ok(r) => r,
        Err(_) => {
            s.p.read_waiters.cancel(round);
            Err(ServerError::Timeout)
        }
    };
    let index = index.inspect_err(|_| rustcd_metrics::get().server.read_indexes_failed_total.inc())?;
    let mut applied = s.p.applied.clone();
    let wait = applied.wait_for(|a| *a >= index);
    match tokio::time::timeout(deadline, wait).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ServerError::Stopped),
        Err(_) => Err(ServerError::Timeout),
    }
}
