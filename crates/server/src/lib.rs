//! rustcd-server: etcd's server (`etcdserver`, `embed`, `etcdmain`): configuration, the
//! propose-and-wait path, the apply thread, linearizable reads, the gRPC services and the
//! HTTP endpoints, and start-up. It must not reach into the raft log or the backend files
//! directly: those belong to rustcd-raft and rustcd-mvcc. Read [`start`] first, then
//! [`server::EtcdServer`] and [`apply::Applier`].

pub mod apply;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod logging;
pub mod server;
pub mod url;
pub mod validate;

use std::sync::{Arc, mpsc};
use std::time::Duration;

use prost::Message;
use rustcd_api::etcdserverpb::Member;
use rustcd_api::etcdserverpb::cluster_server::ClusterServer;
use rustcd_api::etcdserverpb::kv_server::KvServer;
use rustcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use rustcd_api::etcdserverpb::watch_server::WatchServer;
use rustcd_api::rustcdpb::StoredMember;
use rustcd_mvcc::KvStore;
use rustcd_mvcc::watch::WatchHub;
use rustcd_raft::{NodeConfig, RaftNode};

use crate::apply::Applier;
use crate::config::Config;
use crate::error::ServerError;
use crate::server::{EtcdServer, Parts};

/// gRPC framing allowance above `--max-request-bytes`, as etcd's.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A running member: its server core and the raft node behind it.
pub struct Running {
    pub server: Arc<EtcdServer>,
    raft: RaftNode,
    apply_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops raft, lets the apply thread finish (it makes the backend durable), and returns.
    pub fn stop(self) {
        self.raft.stop();
        let _ = self.apply_thread.join();
    }
}

/// Opens the data dir, starts raft, the apply thread and the client listeners.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| ServerError::DataDir(format!("{}: {e}", snap_dir.display())))?;
    let token = &cfg.raw.initial_cluster_token;
    let members: Vec<Member> = cfg
        .initial_cluster
        .iter()
        .map(|m| Member {
            id: ids::member_id(&m.peer_urls, token),
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: if m.name == cfg.raw.name {
                cfg.advertise_client_urls.clone()
            } else {
                vec![]
            },
            is_learner: false,
        })
        .collect();
    let member_id = members
        .iter()
        .find(|m| m.name == cfg.raw.name)
        .map(|m| m.id)
        .unwrap_or(0);
    let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    tracing::info!(
        name = %cfg.raw.name, data_dir = %cfg.data_dir.display(),
        member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "starting an etcd server"
    );

    let store = Arc::new(KvStore::open(snap_dir.join("db"))?);
    let hub = Arc::new(WatchHub::new(store.clone()));
    let consistent_index = store.consistent_index();
    let (out_tx, out_rx) = mpsc::sync_channel(1024);
    let node_cfg = NodeConfig {
        id: member_id,
        bootstrap: members
            .iter()
            .map(|m| (m.id, stored_member(m).encode_to_vec()))
            .collect(),
        dir: member_dir.join("raft"),
        tick: Duration::from_millis(cfg.raw.heartbeat_interval),
        election_tick: (cfg.raw.election_timeout / cfg.raw.heartbeat_interval) as usize,
        heartbeat_tick: 1,
        applied: consistent_index,
    };
    let transport: rustcd_raft::Transport = Box::new(|msgs| {
        if !msgs.is_empty() {
            tracing::debug!(
                count = msgs.len(),
                "no peer transport yet: raft messages dropped"
            );
        }
    });
    let raft = RaftNode::start(node_cfg, out_tx, transport)?;
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(consistent_index);
    let waiters = Arc::new(Default::default());
    let read_waiters = Arc::new(Default::default());
    let applier = Applier {
        store: store.clone(),
        hub: hub.clone(),
        waiters: Arc::clone(&waiters),
        read_waiters: Arc::clone(&read_waiters),
        applied: applied_tx,
        raft_tx: raft.sender(),
        snapshot_count: cfg.raw.snapshot_count,
    };
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || applier.run(out_rx))
        .map_err(|e| ServerError::DataDir(format!("cannot start apply thread: {e}")))?;
    start_watch_sync(hub.clone());

    let server = EtcdServer::new(Parts {
        cfg: cfg.clone(),
        member_id,
        cluster_id,
        members,
        store,
        hub,
        raft_status: raft.status.clone(),
        raft_tx: raft.sender(),
        waiters,
        read_waiters,
        applied: applied_rx,
    });
    serve_clients(&cfg, server.clone()).await?;
    Ok(Running {
        server,
        raft,
        apply_thread,
    })
}

fn stored_member(m: &Member) -> StoredMember {
    StoredMember {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_ur_ls.clone(),
        client_urls: vec![],
        is_learner: m.is_learner,
    }
}

/// Catches unsynced watchers up from the backend, off the write path.
fn start_watch_sync(hub: Arc<WatchHub>) {
    let weak = Arc::downgrade(&hub);
    drop(hub);
    let _ = std::thread::Builder::new()
        .name("watch-sync".into())
        .spawn(move || {
            while let Some(hub) = weak.upgrade() {
                let behind = hub.sync_round();
                drop(hub);
                std::thread::sleep(Duration::from_millis(if behind > 0 { 5 } else { 50 }));
            }
        });
}

async fn serve_clients(cfg: &Config, s: Arc<EtcdServer>) -> Result<(), ServerError> {
    let max = cfg.raw.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let routes = tonic::service::Routes::new(
        KvServer::new(grpc::kv::KvService(s.clone())).max_decoding_message_size(max),
    )
    .add_service(
        WatchServer::new(grpc::watch::WatchService(s.clone())).max_decoding_message_size(max),
    )
    .add_service(MaintenanceServer::new(
        grpc::maintenance::MaintenanceService(s.clone()),
    ))
    .add_service(ClusterServer::new(grpc::cluster::ClusterService(s.clone())));
    let router = routes
        .into_axum_router()
        .layer(axum::middleware::map_response(grpc::size_limit::rewrite))
        .merge(http::routes(s));
    for url in &cfg.listen_client_urls {
        let listener = tokio::net::TcpListener::bind(url.host_port())
            .await
            .map_err(|e| ServerError::Listen(url.to_string(), e))?;
        tracing::info!(address = %url.host_port(), "serving client traffic insecurely; this is strongly discouraged!");
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "client listener stopped");
            }
        });
    }
    tracing::info!("ready to serve client requests");
    Ok(())
}
