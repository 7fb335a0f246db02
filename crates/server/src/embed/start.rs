//! [`start`]: opens the data dir and wires the member together: the raft log and node, the
//! backend, the apply thread with its stack, the server core, the peer and client listeners and
//! the background loops; [`Running`] is what it started.

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use prost::Message;
use rustcd_api::etcdserverpb::auth_server::AuthServer;
use rustcd_api::etcdserverpb::cluster_server::ClusterServer;
use rustcd_api::etcdserverpb::kv_server::KvServer;
use rustcd_api::etcdserverpb::lease_server::LeaseServer;
use rustcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use rustcd_api::etcdserverpb::watch_server::WatchServer;
use rustcd_api::rustcdpb::{MemberAttributes, StoredMembers};
use rustcd_api::v3electionpb::election_server::ElectionServer;
use rustcd_api::v3lockpb::lock_server::LockServer;
use rustcd_mvcc::KvStore;
use rustcd_mvcc::watch::WatchHub;
use rustcd_peer::{MembersFn, PeerService, PeerTransport};
use rustcd_raft::log_store::LogStore;
use rustcd_raft::{Input, NodeConfig, RaftNode};

use crate::api::{grpc, http, metrics, otel};
use crate::config::Config;
use crate::embed::{identity, listen, sd_notify};
use crate::error::StartError;
use crate::etcdserver::apply::{self, Applier, ApplyEnd};
use crate::etcdserver::membership::Membership;
use crate::etcdserver::server::{EtcdServer, Parts};
use crate::etcdserver::{alarm, auth, compactor, corrupt, lease, quota};
use crate::shutdown::Shutdown;
use crate::{config, error};
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
        bootstrap: if id.bootstrap { id.members.iter().map(|m| (m.id, m.encode_to_vec())).collect() } else { vec![] },
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
    let member_dir = datadir::member_dir(&cfg.data_dir);
    let snap_dir = datadir::snap_dir(&cfg.data_dir);
    std::fs::create_dir_all(&snap_dir).map_err(|e| StartError::DataDir(format!("{}: {e}", snap_dir.display())))?;
    rustcd_process::failpoints::setup().map_err(StartError::Config)?;
    // The raft log recovers on another thread while the backend rebuilds its key index: the
    // two biggest parts of a restart, independent of each other.
    let wal_dir = (!cfg.raw.wal_dir.is_empty()).then(|| PathBuf::from(&cfg.raw.wal_dir));
    let raft_dir = datadir::raft_dir(&cfg.data_dir, wal_dir.as_deref());
    let no_fsync = cfg.raw.unsafe_no_fsync;
    let log = std::thread::Builder::new()
        .name("raft-log-open".into())
        .spawn(move || LogStore::open(&raft_dir).map(|l| if no_fsync { l.without_fsync() } else { l }))
        .map_err(|e| StartError::DataDir(format!("cannot start a thread: {e}")))?;
    let store = Arc::new(KvStore::open(datadir::backend_path(&cfg.data_dir))?);
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
    let transport = PeerTransport::new(cluster_id, member_id, tokio::runtime::Handle::current(), tls.peer_dial.clone());
    let routes = transport.clone();
    let membership = Arc::new(Membership::new(
        StoredMembers { members: id.members.clone(), removed: vec![] },
        Box::new(move |members| routes.route_to(members)),
    ));
    if membership.is_removed(member_id) {
        return Err(StartError::Config("the member has been permanently removed from the cluster".into()));
    }

    let lessor: lease::SharedLessor =
        Arc::new(std::sync::Mutex::new(rustcd_lease::Lessor::new(lease::min_ttl(cfg.raw.election_timeout))));
    lease::restore(&store, &lessor)?;
    let alarms = Arc::new(alarm::Alarms::load(&store)?);
    let quota = quota::from_flag(cfg.raw.quota_backend_bytes);
    let auth = Arc::new(
        rustcd_auth::AuthStore::open(&store, cfg.auth_tokens.clone(), cfg.raw.bcrypt_cost as u32)
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let hub = Arc::new(WatchHub::new(store.clone()));
    let consistent_index = store.consistent_index();
    let (out_tx, out_rx) = mpsc::sync_channel(1024);
    let node_cfg = raft_config(&cfg, &id, consistent_index);
    let snap_store = store.clone();
    let snapshot_source = Arc::new(move || {
        fail::fail_point!("snapshotBeforeSave");
        snap_store.snapshot().map_err(|e| e.to_string())
    });
    let log = log.join().map_err(|_| StartError::DataDir("the raft log could not be opened".into()))??;
    let (raft, raft_tx) = RaftNode::start(node_cfg, log, out_tx, transport.clone(), snapshot_source)?;
    // A restored member's raft log now holds the restored membership, durably.
    datadir::clear_restored(&member_dir).map_err(|e| StartError::DataDir(e.to_string()))?;
    transport.set_raft(raft_tx);
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(consistent_index);
    let waiters = Arc::new(Default::default());
    let read_waiters = Arc::new(Default::default());
    let applier = Applier {
        member_id,
        warn_apply_duration: cfg.raw.experimental_warning_apply_duration,
        stack: Box::new(auth::AuthGate {
            auth: auth.clone(),
            lessor: lessor.clone(),
            inner: Box::new(alarm::AlarmGate {
                alarms: alarms.clone(),
                inner: Box::new(quota::QuotaGate {
                    store: store.clone(),
                    quota,
                    inner: Box::new(apply::Backend {
                        lessor: lessor.clone(),
                        alarms: alarms.clone(),
                        auth: auth.clone(),
                        membership: membership.clone(),
                    }),
                }),
            }),
        }),
        auth: auth.clone(),
        lessor: lessor.clone(),
        alarms: alarms.clone(),
        membership: membership.clone(),
        store: store.clone(),
        hub: hub.clone(),
        waiters: Arc::clone(&waiters),
        read_waiters: Arc::clone(&read_waiters),
        applied: applied_tx,
        raft_tx: raft.sender(),
        snapshot_count: cfg.raw.snapshot_count,
        catch_up_entries: cfg.raw.experimental_snapshot_catchup_entries,
    };
    let (ended_tx, ended) = tokio::sync::watch::channel(None);
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            ended_tx.send_replace(Some(applier.run(out_rx)));
        })
        .map_err(|e| StartError::DataDir(format!("cannot start apply thread: {e}")))?;
    start_watch_sync(hub.clone());

    let hash_kv_fn: rustcd_peer::HashKvFn = {
        let (store, status) = (store.clone(), raft.status.clone());
        Arc::new(move |rev| {
            let (hash, compact_revision, hash_revision) =
                store.hash_kv(rev).map_err(|e| tonic::Status::from(error::ServerError::from(e)))?;
            let header = Some(rustcd_api::etcdserverpb::ResponseHeader {
                cluster_id,
                member_id,
                revision: store.current_rev(),
                raft_term: status.term.load(std::sync::atomic::Ordering::Relaxed),
            });
            Ok(rustcd_api::etcdserverpb::HashKvResponse { header, hash, compact_revision, hash_revision })
        })
    };
    let members_fn: MembersFn = {
        let membership = membership.clone();
        Arc::new(move || membership.stored())
    };
    // Whatever is spawned from here on ends if start-up fails after it.
    let shutdown = Shutdown::new();
    let started = EndUnlessStarted(Some(shutdown.clone()));
    let peer_addrs = serve_peers(
        &cfg,
        tls.peer_server.clone(),
        PeerService::server(cluster_id, raft.sender(), members_fn, hash_kv_fn),
        &shutdown,
    )
    .await?;
    let server = EtcdServer::new(Parts {
        cfg: cfg.clone(),
        member_id,
        cluster_id,
        membership,
        client_dial: tls.client_dial.clone(),
        peer_dial: tls.peer_dial.clone(),
        alarms,
        quota,
        auth,
        lessor,
        store,
        hub,
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
    shutdown.spawn(publish(server.clone()));
    shutdown.spawn(lease::expiry_loop(server.clone()));
    if !cfg.raw.experimental_corrupt_check_time.is_zero() {
        shutdown.spawn(corrupt::monitor(Arc::downgrade(&server), cfg.raw.experimental_corrupt_check_time));
    }
    if cfg.raw.experimental_compact_hash_check_enabled {
        let every = cfg.raw.experimental_compact_hash_check_time;
        shutdown.spawn(corrupt::monitor_compact_hashes(Arc::downgrade(&server), every));
    }
    if let Some(retention) = cfg.auto_compaction {
        shutdown.spawn(compactor::run(Arc::downgrade(&server), retention));
    }
    started.disarm();
    Ok(Running { server, client_addrs, peer_addrs, raft, apply_thread, ended, shutdown })
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
    let attrs = MemberAttributes {
        id: s.member_id(),
        name: s.config().raw.name.clone(),
        client_urls: s.config().advertise_client_urls.clone(),
    };
    loop {
        if s.leader() != 0 {
            match s
                .propose_internal(rustcd_api::rustcdpb::internal_request::Request::MemberAttributes(attrs.clone()))
                .await
            {
                Ok(_) => {
                    let (id, cluster) = (format!("{:x}", s.member_id()), format!("{:x}", s.cluster_id()));
                    tracing::info!(
                        local_member_id = %id,
                        local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", attrs.name, attrs.client_urls.join(" ")),
                        cluster_id = %cluster,
                        "published local member to cluster through raft"
                    );
                    // The cluster version is fixed (every member speaks the same one).
                    let v = rustcd_api::ETCD_CLUSTER_VERSION;
                    let version = v.rsplit_once('.').map_or(v, |(major_minor, _)| major_minor);
                    tracing::info!(cluster_id = %cluster, local_member_id = %id, cluster_version = version, "set initial cluster version");
                    tracing::info!(cluster_version = version, "enabled capabilities for version");
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

async fn serve_peers<S>(
    cfg: &Config,
    tls: Option<Arc<rustcd_tls::ServerConfig>>,
    svc: S,
    shutdown: &Shutdown,
) -> Result<Vec<std::net::SocketAddr>, StartError>
where
    S: tonic::server::NamedService
        + tower_service::Service<
            axum::http::Request<tonic::body::Body>,
            Response = axum::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let router = tonic::service::Routes::new(svc).into_axum_router();
    // etcd checks a peer's certificate against the address it connects from, unless told not to.
    let t = &cfg.raw.tls;
    let check_client_san = t.peer.client_cert_auth && !t.peer_skip_client_san;
    let shutdown = shutdown.clone();
    let opts = listen::ServeOpts { tls, check_client_san, shutdown, ..listen::ServeOpts::from_settings(&cfg.raw) };
    listen::serve_on(&cfg.listen_peer_urls, router, "serving peer traffic", &opts).await
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

async fn serve_clients(
    cfg: &Config,
    tls: Option<Arc<rustcd_tls::ServerConfig>>,
    s: Arc<EtcdServer>,
) -> Result<Vec<std::net::SocketAddr>, StartError> {
    let max = cfg.raw.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let routes =
        tonic::service::Routes::new(KvServer::new(grpc::kv::KvService(s.clone())).max_decoding_message_size(max))
            .add_service(WatchServer::new(grpc::watch::WatchService(s.clone())).max_decoding_message_size(max))
            .add_service(LeaseServer::new(grpc::lease::LeaseService(s.clone())))
            .add_service(AuthServer::new(grpc::auth::AuthService(s.clone())))
            .add_service(LockServer::new(grpc::lock::LockService(s.clone())))
            .add_service(ElectionServer::new(grpc::election::ElectionService(s.clone())))
            .add_service(MaintenanceServer::new(grpc::maintenance::MaintenanceService(s.clone())))
            .add_service(ClusterServer::new(grpc::cluster::ClusterService(s.clone())));
    let shutdown = s.shutdown().clone();
    let opts = listen::ServeOpts { tls, shutdown, ..listen::ServeOpts::from_settings(&cfg.raw) };
    if !cfg.listen_metrics_urls.is_empty() {
        listen::serve_on(&cfg.listen_metrics_urls, http::routes(s.clone()), "serving metrics", &opts).await?;
    }
    let mut grpc = routes
        .into_axum_router()
        .route(grpc::kv_range::PATH, axum::routing::post(grpc::kv_range::handle).with_state(s.clone()))
        .route(grpc::unary::PUT, axum::routing::post(grpc::unary::put).with_state(s.clone()))
        .route(grpc::unary::DELETE_RANGE, axum::routing::post(grpc::unary::delete_range).with_state(s.clone()))
        .route(grpc::unary::TXN, axum::routing::post(grpc::unary::txn).with_state(s.clone()));
    if let Some(t) = &cfg.raw.distributed_tracing {
        let tracer = otel::Tracer::start(t).map_err(StartError::Config)?;
        grpc = grpc.layer(axum::middleware::from_fn_with_state(tracer, otel::layer));
    }
    let access = http::Access { cors: cfg.raw.cors.clone(), hosts: cfg.raw.host_whitelist.clone() };
    let http = if cfg.listen_client_http_urls.is_empty() {
        Some(http::client_routes(s.clone(), access))
    } else {
        // etcd's --listen-client-http-urls: HTTP moves off the client URLs to its own listeners
        let what = "serving client traffic insecurely; this is strongly discouraged!";
        listen::serve_on(&cfg.listen_client_http_urls, http::client_routes(s.clone(), access), what, &opts).await?;
        None
    };
    let entry = grpc::entry::Entry { server: s, http };
    let router = grpc.layer(axum::middleware::from_fn_with_state(entry, grpc::entry::layer));
    let bound = listen::serve_on(
        &cfg.listen_client_urls,
        router,
        "serving client traffic insecurely; this is strongly discouraged!",
        &opts,
    )
    .await?;
    tracing::info!("ready to serve client requests");
    Ok(bound)
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
