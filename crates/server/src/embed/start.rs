//! [`start`]: opens the data dir and wires the member together: the raft log and node, the
//! backend, the apply thread with its stack, the server core, the peer and client listeners and
//! the background loops; [`Running`] is what it started.

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rustcd_api::membershippb::{Attributes, ClusterMemberAttrSetRequest};
use rustcd_api::rustcdpb::StoredMembers;
use rustcd_mvcc::KvStore;
use rustcd_mvcc::watch::WatchHub;
use rustcd_peer::{PeerServices, PeerTransport};
use rustcd_raft::log_store::LogStore;
use rustcd_raft::{Input, NodeConfig, RaftNode};

use crate::api::metrics;
use crate::config;
use crate::config::Config;
use crate::embed::serve::{serve_clients, serve_peers};
use crate::embed::{identity, sd_notify};
use crate::error::StartError;
use crate::etcdserver::apply::{self, Applier, ApplyEnd};
use crate::etcdserver::membership::{Membership, member_json};
use crate::etcdserver::request::Op;
use crate::etcdserver::server::{EtcdServer, Parts};
use crate::etcdserver::{alarm, auth, compactor, corrupt, lease, quota, version};
use crate::shutdown::Shutdown;
use rustcd_schema::datadir;

/// gRPC framing allowance above `--max-request-bytes`, as etcd's.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A running member: its server core and the raft node behind it.
pub struct Running {
    pub server: Arc<EtcdServer>,
    /// The addresses the client listeners are bound to (a URL with port 0 gets a free port).
    pub client_addrs: Vec<std::net::SocketAddr>,
    /// The addresses the peer listeners are bound to.
    pub peer_addrs: Vec<std::net::SocketAddr>,
    raft: RaftNode,
    apply_thread: std::thread::JoinHandle<()>,
    /// Why the apply thread ended, once it has.
    ended: tokio::sync::watch::Receiver<Option<ApplyEnd>>,
    shutdown: Shutdown,
}

impl Running {
    /// Resolves when the member ends by itself: removed from the cluster, or a fatal apply
    /// error (the caller logs it and exits, as etcd does). A stop does not resolve it.
    pub async fn ended(&self) -> ApplyEnd {
        let mut rx = self.ended.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or(ApplyEnd::Stopped),
            Err(_) => ApplyEnd::Stopped,
        }
    }

    /// etcd's graceful stop: a leader first hands leadership to its most up-to-date follower
    /// (so clients see a new leader at once); then the shutdown signal ends the listeners, their
    /// connections and every loop the member started, raft stops, and the apply thread
    /// finishes, making the backend durable. Nothing of the member is left running after.
    pub async fn stop(self) {
        let s = &self.server;
        let is_leader = s.raft_status().is_leader.load(std::sync::atomic::Ordering::Relaxed);
        if is_leader && s.membership().list().len() > 1 && self.raft.sender().send(Input::StepDown).await.is_ok() {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(s.config().raw.election_timeout * 2);
            while tokio::time::Instant::now() < deadline && s.leader() == s.member_id() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tracing::info!(new_leader = %format!("{:x}", s.leader()), "leadership transferred before stop");
        }
        self.shutdown.fire();
        self.shutdown.ended().await;
        let (raft, apply_thread) = (self.raft, self.apply_thread);
        let stopped = tokio::task::spawn_blocking(move || {
            raft.stop();
            let _ = apply_thread.join();
        });
        if let Err(e) = stopped.await {
            tracing::error!(error = %e, "stopping raft and the apply thread failed");
        }
    }
}

/// The raft node's settings: etcd's ticks, and the bootstrap members of a new cluster.
fn raft_config(cfg: &Config, id: &identity::Identity, applied: u64) -> NodeConfig {
    NodeConfig {
        id: id.member_id,
        // A new cluster's first entries add its members, each with etcd's member JSON.
        bootstrap: if id.bootstrap {
            id.members.iter().map(|m| (m.id, member_json(m).to_json().into_bytes())).collect()
        } else {
            vec![]
        },
        tick: Duration::from_millis(cfg.raw.heartbeat_interval),
        election_tick: (cfg.raw.election_timeout / cfg.raw.heartbeat_interval) as usize,
        max_election_tick: 0,
        heartbeat_tick: 1,
        pre_vote: cfg.raw.pre_vote,
        advance_ticks: cfg.raw.initial_election_tick_advance,
        force_new_cluster: cfg.raw.force_new_cluster,
        applied,
    }
}

/// Opens the data dir, starts raft, the apply thread, the peer and client listeners.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let (member_dir, log, store) = open_data_dir(&cfg)?;
    let listen = |urls: &[crate::config::url::Url]| urls.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    let tls = config::tls::member_tls(
        &cfg.raw.tls,
        &cfg.data_dir,
        &listen(&cfg.listen_client_urls),
        &listen(&cfg.listen_peer_urls),
    )?;
    let id = identity::identify(&cfg, &member_dir, &store, tls.peer_dial.as_ref()).await?;
    let (member_id, cluster_id) = (id.member_id, id.cluster_id);
    tracing::info!(
        name = %cfg.raw.name, data_dir = %cfg.data_dir.display(),
        member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "starting an etcd server"
    );
    let local = rustcd_peer::Local {
        id: member_id,
        cluster_id,
        peer_urls: cfg.advertise_peer_urls.clone(),
        server_version: rustcd_api::ETCD_VERSION,
    };
    let transport = PeerTransport::new(local, tokio::runtime::Handle::current(), tls.peer_dial.clone());
    let routes = transport.clone();
    let membership = Arc::new(Membership::new(
        StoredMembers { members: id.members.clone(), removed: vec![] },
        Box::new(move |members| {
            routes.route_to(&members.iter().map(|m| (m.id, m.peer_urls.clone())).collect::<Vec<_>>())
        }),
    ));
    membership.load_version(&store);
    if membership.is_removed(member_id) {
        return Err(StartError::Config("the member has been permanently removed from the cluster".into()));
    }
    let state = Shared::load(&cfg, &store)?;
    let consistent_index = store.consistent_index();
    let (out_tx, out_rx) = mpsc::sync_channel(1024);
    let snap_store = store.clone();
    let snapshot_source = Arc::new(move || {
        fail::fail_point!("snapshotBeforeSave");
        snap_store.snapshot().map_err(|e| e.to_string())
    });
    let log = log.join().map_err(|_| StartError::DataDir("the raft log could not be opened".into()))??;
    let node_cfg = raft_config(&cfg, &id, consistent_index);
    let (raft, raft_tx) = RaftNode::start(node_cfg, log, out_tx, transport.clone(), snapshot_source)?;
    // A restored member's raft log now holds the restored membership, durably.
    datadir::clear_restored(&member_dir).map_err(|e| StartError::DataDir(e.to_string()))?;
    transport.set_raft(raft_tx);
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(consistent_index);
    let (waiters, read_waiters) = (Arc::new(Default::default()), Arc::new(Default::default()));
    let applier = Applier {
        member_id,
        warn_apply_duration: cfg.raw.experimental_warning_apply_duration,
        stack: state.apply_stack(&store, &membership),
        auth: state.auth.clone(),
        lessor: state.lessor.clone(),
        alarms: state.alarms.clone(),
        membership: membership.clone(),
        store: store.clone(),
        hub: state.hub.clone(),
        waiters: Arc::clone(&waiters),
        read_waiters: Arc::clone(&read_waiters),
        applied: applied_tx,
        raft_tx: raft.sender(),
        snapshot_count: cfg.raw.snapshot_count,
        catch_up_entries: cfg.raw.experimental_snapshot_catchup_entries,
    };
    let (apply_thread, ended) = spawn_apply(applier, out_rx)?;
    start_watch_sync(state.hub.clone());

    // Whatever is spawned from here on ends if start-up fails after it.
    let shutdown = Shutdown::new();
    let started = EndUnlessStarted(Some(shutdown.clone()));
    let peers = rustcd_peer::rafthttp::server::router(transport.clone(), peer_services(&store, &raft, &membership));
    let peer_addrs = serve_peers(&cfg, tls.peer_server.clone(), peers, &shutdown).await?;
    let server = EtcdServer::new(Parts {
        cfg: cfg.clone(),
        member_id,
        cluster_id,
        membership,
        client_dial: tls.client_dial.clone(),
        peer_dial: tls.peer_dial.clone(),
        alarms: state.alarms,
        quota: state.quota,
        auth: state.auth,
        lessor: state.lessor,
        store,
        hub: state.hub,
        raft_status: raft.status.clone(),
        raft_tx: raft.sender(),
        waiters,
        read_waiters,
        applied: applied_rx,
        shutdown: shutdown.clone(),
    });
    if cfg.raw.experimental_initial_corrupt_check {
        corrupt::initial_check(&server).await?;
    }
    metrics::initialize(&server);
    let client_addrs = serve_clients(&cfg, tls.client_server.clone(), server.clone()).await?;
    spawn_loops(&server, &cfg, &shutdown);
    started.disarm();
    Ok(Running { server, client_addrs, peer_addrs, raft, apply_thread, ended, shutdown })
}

/// The failpoints set, the data dir's directories made, the raft log opening on a thread of
/// its own while the backend rebuilds its key index here: the two biggest parts of a restart,
/// independent of each other.
fn open_data_dir(cfg: &Config) -> Result<(PathBuf, std::thread::JoinHandle<LogOpened>, Arc<KvStore>), StartError> {
    let member_dir = datadir::member_dir(&cfg.data_dir);
    let snap_dir = datadir::snap_dir(&cfg.data_dir);
    std::fs::create_dir_all(&snap_dir).map_err(|e| StartError::DataDir(format!("{}: {e}", snap_dir.display())))?;
    rustcd_process::failpoints::setup().map_err(StartError::Config)?;
    let wal_dir = (!cfg.raw.wal_dir.is_empty()).then(|| PathBuf::from(&cfg.raw.wal_dir));
    let raft_dir = datadir::raft_dir(&cfg.data_dir, wal_dir.as_deref());
    let no_fsync = cfg.raw.unsafe_no_fsync;
    let log = std::thread::Builder::new()
        .name("raft-log-open".into())
        .spawn(move || LogStore::open(&raft_dir).map(|l| if no_fsync { l.without_fsync() } else { l }))
        .map_err(|e| StartError::DataDir(format!("cannot start a thread: {e}")))?;
    let store = Arc::new(KvStore::open(datadir::backend_path(&cfg.data_dir))?);
    Ok((member_dir, log, store))
}

/// What opening the raft log gives.
type LogOpened = Result<LogStore, rustcd_raft::Error>;

/// The state the apply stack and the server core share, loaded from the backend.
struct Shared {
    lessor: lease::SharedLessor,
    alarms: Arc<alarm::Alarms>,
    quota: Option<u64>,
    auth: Arc<rustcd_auth::AuthStore>,
    hub: Arc<WatchHub>,
}

impl Shared {
    fn load(cfg: &Config, store: &Arc<KvStore>) -> Result<Shared, StartError> {
        let lessor: lease::SharedLessor =
            Arc::new(std::sync::Mutex::new(rustcd_lease::Lessor::new(lease::min_ttl(cfg.raw.election_timeout))));
        lease::restore(store, &lessor)?;
        let auth = rustcd_auth::AuthStore::open(store, cfg.auth_tokens.clone(), cfg.raw.bcrypt_cost as u32)
            .map_err(|e| StartError::Config(e.to_string()))?;
        Ok(Shared {
            lessor,
            alarms: Arc::new(alarm::Alarms::load(store)?),
            quota: quota::from_flag(cfg.raw.quota_backend_bytes),
            auth: Arc::new(auth),
            hub: Arc::new(WatchHub::new(store.clone())),
        })
    }

    /// etcd's applier stack: the auth, alarm and quota checks over the backend applier.
    fn apply_stack(&self, store: &Arc<KvStore>, membership: &Arc<Membership>) -> Box<dyn apply::ApplyRequest> {
        let backend = apply::Backend {
            lessor: self.lessor.clone(),
            alarms: self.alarms.clone(),
            auth: self.auth.clone(),
            membership: membership.clone(),
        };
        let quota = quota::QuotaGate { store: store.clone(), quota: self.quota, inner: Box::new(backend) };
        let alarms = alarm::AlarmGate { alarms: self.alarms.clone(), inner: Box::new(quota) };
        Box::new(auth::AuthGate { auth: self.auth.clone(), lessor: self.lessor.clone(), inner: Box::new(alarms) })
    }
}

/// The apply thread, and where it says why it ended.
fn spawn_apply(
    applier: Applier,
    out_rx: mpsc::Receiver<rustcd_raft::Output>,
) -> Result<(std::thread::JoinHandle<()>, tokio::sync::watch::Receiver<Option<ApplyEnd>>), StartError> {
    let (ended_tx, ended) = tokio::sync::watch::channel(None);
    let thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            ended_tx.send_replace(Some(applier.run(out_rx)));
        })
        .map_err(|e| StartError::DataDir(format!("cannot start apply thread: {e}")))?;
    Ok((thread, ended))
}

/// What the peer endpoints answer from the member: the member list, removed members, HashKV
/// for fellow members' corruption checks, the cluster version.
fn peer_services(store: &Arc<KvStore>, raft: &RaftNode, membership: &Arc<Membership>) -> PeerServices {
    let hash_kv: rustcd_peer::HashKvFn = {
        let (store, status) = (store.clone(), raft.status.clone());
        Arc::new(move |rev| {
            let (hash, compact_revision, hash_revision) = store.hash_kv(rev).map_err(|e| e.to_string())?;
            let header = Some(rustcd_api::etcdserverpb::ResponseHeader {
                revision: store.current_rev(),
                raft_term: status.term.load(std::sync::atomic::Ordering::Relaxed),
                ..Default::default()
            });
            Ok(rustcd_api::etcdserverpb::HashKvResponse { header, hash, compact_revision, hash_revision })
        })
    };
    let (listed, removed, versioned, downgrade) =
        (membership.clone(), membership.clone(), membership.clone(), membership.clone());
    PeerServices {
        members: Arc::new(move || listed.stored().iter().map(member_json).collect()),
        is_removed: Arc::new(move |id| removed.is_removed(id)),
        hash_kv,
        cluster_version: Arc::new(move || versioned.cluster_version().unwrap_or_else(|| "not_decided".into())),
        downgrade_enabled: Arc::new(move || downgrade.downgrade_enabled()),
    }
}

/// The member's background loops, each ended by the shutdown signal.
fn spawn_loops(server: &Arc<EtcdServer>, cfg: &Config, shutdown: &Shutdown) {
    shutdown.spawn(publish(server.clone()));
    shutdown.spawn(lease::expiry_loop(server.clone()));
    shutdown.spawn(version::monitor(Arc::downgrade(server)));
    if !cfg.raw.experimental_corrupt_check_time.is_zero() {
        shutdown.spawn(corrupt::monitor(Arc::downgrade(server), cfg.raw.experimental_corrupt_check_time));
    }
    if cfg.raw.experimental_compact_hash_check_enabled {
        let every = cfg.raw.experimental_compact_hash_check_time;
        shutdown.spawn(corrupt::monitor_compact_hashes(Arc::downgrade(server), every));
    }
    if let Some(retention) = cfg.auto_compaction {
        shutdown.spawn(compactor::run(Arc::downgrade(server), retention));
    }
}

/// Fires the shutdown signal when dropped, unless start-up got to the end: a start that fails
/// half-way leaves no listener or loop behind.
struct EndUnlessStarted(Option<Shutdown>);

impl EndUnlessStarted {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for EndUnlessStarted {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.fire();
        }
    }
}

/// etcd's publish: once a leader exists, this member's name and client URLs go through raft.
async fn publish(s: Arc<EtcdServer>) {
    let attrs = Attributes { name: s.config().raw.name.clone(), client_urls: s.config().advertise_client_urls.clone() };
    let request = ClusterMemberAttrSetRequest { member_id: s.member_id(), member_attributes: Some(attrs.clone()) };
    loop {
        if s.leader() != 0 {
            match s.propose_internal(Op::MemberAttributes(request.clone())).await {
                Ok(_) => {
                    let (id, cluster) = (format!("{:x}", s.member_id()), format!("{:x}", s.cluster_id()));
                    tracing::info!(
                        local_member_id = %id,
                        local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", attrs.name, attrs.client_urls.join(" ")),
                        cluster_id = %cluster,
                        "published local member to cluster through raft"
                    );
                    // Joined and serving: what a `Type=notify` unit waits for.
                    sd_notify::ready();
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publish failed; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Catches unsynced watchers up from the backend, off the write path.
fn start_watch_sync(hub: Arc<WatchHub>) {
    let weak = Arc::downgrade(&hub);
    drop(hub);
    let _ = std::thread::Builder::new().name("watch-sync".into()).spawn(move || {
        while let Some(hub) = weak.upgrade() {
            let behind = hub.sync_round();
            drop(hub);
            std::thread::sleep(Duration::from_millis(if behind > 0 { 5 } else { 50 }));
        }
    });
}

/// Waits for SIGTERM or SIGINT (forever where signals cannot be watched).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
