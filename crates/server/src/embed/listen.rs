//! Client and peer listeners: binding etcd's listen URLs (`http://host:port`, or `unix://path`
//! for a Unix socket) with the socket options asked for, and serving one router on each, gRPC
//! and HTTP/1 on one port, with etcd's HTTP/2 settings (`--max-concurrent-streams`,
//! `--grpc-keepalive-interval`/`-timeout`). Every connection goes through the `:authority`
//! fix (see `h2_authority`).

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::h2_authority::AuthorityFix;
use crate::config::Settings;
use crate::config::url::Url;
use crate::error::StartError;

/// How listeners bind and serve.
#[derive(Debug, Clone)]
pub struct ServeOpts {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub reuse_port: bool,
    /// The TLS the `https://` and `unixs://` URLs are served with.
    pub tls: Option<std::sync::Arc<rustcd_tls::ServerConfig>>,
    /// A client's certificate must name the address it connects from (etcd's check of peers).
    pub check_client_san: bool,
    /// Ends the accept loops and every connection they serve.
    pub shutdown: crate::shutdown::Shutdown,
}

impl ServeOpts {
    pub fn from_settings(s: &Settings) -> ServeOpts {
        ServeOpts {
            max_concurrent_streams: s.max_concurrent_streams,
            keepalive_interval: s.grpc_keepalive_interval,
            keepalive_timeout: s.grpc_keepalive_timeout,
            reuse_port: s.socket_reuse_port,
            tls: None,
            check_client_san: false,
            shutdown: crate::shutdown::Shutdown::new(),
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

async fn bind(url: &Url, o: &ServeOpts) -> Result<(Listener, Option<std::net::SocketAddr>), std::io::Error> {
    if url.scheme == "unix" || url.scheme == "unixs" {
        // etcd removes a stale socket file before it binds
        let _ = std::fs::remove_file(&url.host);
        return Ok((Listener::Unix(tokio::net::UnixListener::bind(&url.host)?), None));
    }
    let mut last = None;
    // A name is bound at its first IPv4 address, as Go's net.Listen does ("localhost" is
    // 127.0.0.1, where etcdctl's default endpoint points, even where ::1 resolves first).
    let mut addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(url.host_port()).await?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    for addr in addrs {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // SO_REUSEADDR is always on, as Go's listeners (and so etcd's) have it on Linux.
        socket.set_reuseaddr(true)?;
        if o.reuse_port {
            socket.set_reuseport(true)?;
        }
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(l) => {
                let local = l.local_addr()?;
                return Ok((Listener::Tcp(l), Some(local)));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host resolves to no address")))
}

/// Binds every URL and serves `router` on it; returns the bound TCP addresses (a URL with
/// port 0 gets a free port).
pub async fn serve_on(
    urls: &[Url],
    router: axum::Router,
    what: &'static str,
    o: &ServeOpts,
) -> Result<Vec<std::net::SocketAddr>, StartError> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's keepalive pings and header timeouts sleep on this timer (without one they panic)
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(o.max_concurrent_streams)
        // grpc-go sends no `date` on its answers; formatting one is work per response.
        .auto_date_header(false)
        .keep_alive_interval((!o.keepalive_interval.is_zero()).then_some(o.keepalive_interval))
        .keep_alive_timeout(o.keepalive_timeout);
    let mut bound = Vec::with_capacity(urls.len());
    for url in urls {
        let tls = match (url.scheme.as_str(), &o.tls) {
            ("https" | "unixs", Some(cfg)) => Some(rustcd_tls::connect::TlsAcceptor::from(cfg.clone())),
            ("https" | "unixs", None) => {
                return Err(StartError::Config(format!("{url}: a secure URL needs TLS settings")));
            }
            _ => None,
        };
        let (listener, local) = bind(url, o).await.map_err(|e| StartError::Listen(url.to_string(), e))?;
        let address = local.map_or_else(|| url.to_string(), |a| a.to_string());
        bound.extend(local);
        // etcd's words for the two kinds of client listener.
        let what = match (&tls, what.contains("insecurely")) {
            (Some(_), true) => "serving client traffic securely",
            _ => what,
        };
        tracing::info!(address = %address, "{what}");
        let shutdown = o.shutdown.clone();
        o.shutdown.spawn(accept_loop(listener, router.clone(), builder.clone(), tls, o.check_client_san, shutdown));
    }
    Ok(bound)
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(
    listener: Listener,
    router: axum::Router,
    builder: Builder<TokioExecutor>,
    tls: Option<rustcd_tls::connect::TlsAcceptor>,
    check_san: bool,
    shutdown: crate::shutdown::Shutdown,
) {
    use rustcd_tls::connect::{accept_tcp, accept_unix};
    loop {
        let (router, builder, tls) = (router.clone(), builder.clone(), tls.clone());
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, from)| {
                let _ = s.set_nodelay(true);
                match tls {
                    None => shutdown.spawn(serve_conn(s, router, builder)),
                    Some(acceptor) => shutdown.spawn(async move {
                        let san_of = check_san.then_some(from);
                        serve_after_handshake(accept_tcp(&acceptor, s), san_of, router, builder).await
                    }),
                }
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| match tls {
                None => shutdown.spawn(serve_conn(s, router, builder)),
                Some(acceptor) => shutdown.spawn(async move {
                    serve_after_handshake(accept_unix(&acceptor, s), None, router, builder).await
                }),
            }),
        };
        if let Err(e) = accepted {
            // out of file descriptors, say: wait, as Go's http.Server does
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Serves a connection once its TLS handshake is done (within [`HANDSHAKE_TIMEOUT`]); with
/// `san_of`, the address the client connects from, its certificate must name that address
/// (etcd's check of peers).
async fn serve_after_handshake(
    handshake: impl std::future::Future<Output = std::io::Result<rustcd_tls::connect::Stream>>,
    san_of: Option<std::net::SocketAddr>,
    router: axum::Router,
    builder: Builder<TokioExecutor>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => {
            if let Some(from) = san_of
                && !tls.peer_certificate().is_some_and(|c| rustcd_tls::san_matches(&c, from.ip()))
            {
                tracing::warn!(remote_addr = %from, "rejected connection: the client certificate does not name the address it connects from");
                return;
            }
            // The client certificate's common name names the user when auth is on (etcd's
            // AuthInfoFromTLS), for every request of the connection.
            let cn = tls.peer_certificate().and_then(|c| rustcd_tls::common_name(&c));
            let router = match cn {
                Some(cn) => router.layer(axum::Extension(crate::api::caller::PeerCommonName(cn))),
                None => router,
            }
            .layer(axum::Extension(crate::api::http::Secure));
            serve_conn(tls, router, builder).await
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "rejected connection: TLS handshake failed"),
        Err(_) => tracing::warn!("rejected connection: TLS handshake timed out"),
    }
}

async fn serve_conn<S>(s: S, router: axum::Router, builder: Builder<TokioExecutor>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(AuthorityFix::new(s));
    if let Err(e) = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(router)).await {
        tracing::debug!(error = %e, "connection ended");
    }
}
