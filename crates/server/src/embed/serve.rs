//! The member's listeners and what they route: the peer URLs (raft's transport, the member
//! list, HashKV) and the client URLs (the gRPC services with the hand-framed KV paths, the HTTP
//! routes sharing the port or on their own URLs, metrics, tracing), each task ended by the
//! member's shutdown signal.

use std::sync::Arc;

use rustcd_api::etcdserverpb::auth_server::AuthServer;
use rustcd_api::etcdserverpb::cluster_server::ClusterServer;
use rustcd_api::etcdserverpb::kv_server::KvServer;
use rustcd_api::etcdserverpb::lease_server::LeaseServer;
use rustcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use rustcd_api::etcdserverpb::watch_server::WatchServer;
use rustcd_api::v3electionpb::election_server::ElectionServer;
use rustcd_api::v3lockpb::lock_server::LockServer;

use crate::api::{grpc, http, otel};
use crate::config::Config;
use crate::embed::listen;
use crate::embed::start::GRPC_OVERHEAD_BYTES;
use crate::error::StartError;
use crate::etcdserver::server::EtcdServer;
use crate::shutdown::Shutdown;

pub(crate) async fn serve_peers(
    cfg: &Config,
    tls: Option<Arc<rustcd_tls::ServerConfig>>,
    router: axum::Router,
    shutdown: &Shutdown,
) -> Result<Vec<std::net::SocketAddr>, StartError> {
    // etcd checks a peer's certificate against the address it connects from, unless told not to.
    let t = &cfg.raw.tls;
    let check_client_san = t.peer.client_cert_auth && !t.peer_skip_client_san;
    let shutdown = shutdown.clone();
    let opts = listen::ServeOpts { tls, check_client_san, shutdown, ..listen::ServeOpts::from_settings(&cfg.raw) };
    listen::serve_on(&cfg.listen_peer_urls, router, "serving peer traffic", &opts).await
}

pub(crate) async fn serve_clients(
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
