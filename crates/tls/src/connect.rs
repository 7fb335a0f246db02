//! Dialling and accepting: [`Connector`] is the tonic connector every rustcd client uses
//! (etcdctl, the peer transport, the proxies): `http://host:port` in plaintext, `https://` with
//! TLS, `unix://path` (and `unixs://`) on a Unix socket. [`Stream`] is what either side then
//! speaks over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connection: plain TCP, TLS over TCP (either side), or a Unix socket (plain or TLS).
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    ClientTlsUnix(Box<tokio_rustls::client::TlsStream<UnixStream>>),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ServerTlsUnix(Box<tokio_rustls::server::TlsStream<UnixStream>>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
            Stream::ClientTls($s) => $e,
            Stream::ClientTlsUnix($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ServerTlsUnix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
            Stream::ClientTlsUnix(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ServerTlsUnix(s) => s.is_write_vectored(),
        }
    }
}

impl Stream {
    /// The certificate the other side presented (a TLS server's view of its client).
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let certs = match self {
            Stream::ServerTls(s) => s.get_ref().1.peer_certificates(),
            Stream::ServerTlsUnix(s) => s.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs.and_then(|c| c.first()).map(|c| c.to_vec())
    }
}

/// A tonic connector for one endpoint URL's scheme: TLS (with `tls`) for `https://` and
/// `unixs://`; `unix://` and `unixs://` dial the socket path in the URL.
#[derive(Clone)]
pub struct Connector {
    tls: Option<Arc<ClientConfig>>,
    /// The name a socket's server certificate is checked against (its path up to a `:`); a
    /// TCP endpoint's is its host.
    server_name: Option<String>,
    unix: Option<String>,
    timeout: Duration,
}

/// Why a URL cannot be dialled.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}: TLS is not configured for this endpoint (give a CA, or skip verification)")]
    NoTls(String),
    #[error("invalid endpoint {0:?}")]
    BadUrl(String),
}

/// Whether a URL asks for TLS (`https://` or `unixs://`).
pub fn is_secure(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("unixs://")
}

impl Connector {
    /// The connector and the URI tonic should use for `url` (`host:port` alone means http).
    pub fn for_url(
        url: &str,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Result<(Connector, String), DialError> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let secure = is_secure(url);
        if secure && tls.is_none() {
            return Err(DialError::NoTls(url.to_string()));
        }
        let tls = if secure { tls } else { None };
        // The connector makes the TLS connection itself: tonic is always handed an http URI,
        // or, with its own TLS built in (the grpc-proxy's upstream), it would refuse an https
        // one it has no TLS settings for.
        let (unix, uri) = match scheme {
            // The authority of a socket's URI is only a label; the path is what is dialled.
            "unix" | "unixs" => (Some(rest.to_string()), "http://localhost".to_string()),
            "http" | "https" => (None, format!("http://{rest}")),
            _ => return Err(DialError::BadUrl(url.to_string())),
        };
        let server_name = unix.as_ref().map(|p| p.split(':').next().unwrap_or(p).to_string());
        Ok((Connector { tls, server_name, unix, timeout }, uri))
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<Stream>, io::Error>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let me = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
            let name = me.server_name.clone().unwrap_or_else(|| host.clone());
            let timed_out = |_| io::Error::from(io::ErrorKind::TimedOut);
            let stream = match &me.unix {
                Some(path) => {
                    let s = tokio::time::timeout(me.timeout, UnixStream::connect(path.clone()))
                        .await
                        .map_err(timed_out)??;
                    match &me.tls {
                        Some(cfg) => Stream::ClientTlsUnix(Box::new(handshake(cfg, &name, s).await?)),
                        None => Stream::Unix(s),
                    }
                }
                None => {
                    let port = uri.port_u16().unwrap_or(if me.tls.is_some() { 443 } else { 80 });
                    let s = tokio::time::timeout(me.timeout, TcpStream::connect((host.as_str(), port)))
                        .await
                        .map_err(timed_out)??;
                    s.set_nodelay(true)?;
                    match &me.tls {
                        Some(cfg) => Stream::ClientTls(Box::new(handshake(cfg, &name, s).await?)),
                        None => Stream::Tcp(s),
                    }
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    cfg: &Arc<ClientConfig>,
    name: &str,
    s: S,
) -> io::Result<tokio_rustls::client::TlsStream<S>> {
    let server = ServerName::try_from(name.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(cfg.clone()).connect(server, s).await.map_err(go_tls_error)
}

/// One connection to `url` (http, https, unix or unixs), TLS made with `tls` where the URL is
/// secure: for the HTTP/1 clients (v2 discovery, the HTTP proxy) and tonic channels that need
/// a connector of their own.
pub async fn open(url: &str, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> io::Result<TokioIo<Stream>> {
    let (mut c, uri) = Connector::for_url(url, tls, timeout).map_err(|e| io::Error::other(e.to_string()))?;
    let uri: Uri = uri.parse().map_err(io::Error::other)?;
    tower_service::Service::call(&mut c, uri).await
}

/// A TLS client on an already connected stream (a tunnel through an HTTP proxy, say).
pub async fn tls_client(cfg: &Arc<ClientConfig>, name: &str, s: TcpStream) -> io::Result<Stream> {
    Ok(Stream::ClientTls(Box::new(handshake(cfg, name, s).await?)))
}

/// A refused handshake in Go's words (`remote error: tls: bad certificate`), which operators
/// and etcd's tests look for in logs.
fn go_tls_error(e: io::Error) -> io::Error {
    let Some(rustls::Error::AlertReceived(alert)) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e;
    };
    io::Error::new(e.kind(), go_alert(*alert))
}

/// What an error and its causes say, with a TLS alert from the other side in Go's words.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    // tokio-rustls hands the alert on as the text of an I/O error.
    match parts.iter().find_map(|p| p.split("received fatal alert: ").nth(1)) {
        Some(alert) => go_alert_name(alert.split(|c: char| !c.is_alphanumeric()).next().unwrap_or(alert)),
        None => parts.join(": "),
    }
}

fn go_alert(alert: rustls::AlertDescription) -> String {
    go_alert_name(&format!("{alert:?}"))
}

/// Go's text for a TLS alert named as rustls names it (`BadCertificate`).
fn go_alert_name(name: &str) -> String {
    let text = match name {
        "BadCertificate" => "bad certificate".to_string(),
        "UnknownCA" => "unknown certificate authority".to_string(),
        "CertificateRequired" => "certificate required".to_string(),
        "HandshakeFailure" => "handshake failure".to_string(),
        "DecryptError" => "error decrypting message".to_string(),
        "CertificateExpired" => "expired certificate".to_string(),
        "CertificateRevoked" => "revoked certificate".to_string(),
        "AccessDenied" => "access denied".to_string(),
        "ProtocolVersion" => "protocol version not supported".to_string(),
        other => other.to_lowercase(),
    };
    format!("remote error: tls: {text}")
}

/// The server side of a TLS handshake on an accepted connection.
pub async fn accept_tcp(acceptor: &tokio_rustls::TlsAcceptor, s: TcpStream) -> io::Result<Stream> {
    Ok(Stream::ServerTls(Box::new(acceptor.accept(s).await?)))
}

pub async fn accept_unix(acceptor: &tokio_rustls::TlsAcceptor, s: UnixStream) -> io::Result<Stream> {
    Ok(Stream::ServerTlsUnix(Box::new(acceptor.accept(s).await?)))
}

pub use tokio_rustls::TlsAcceptor;

/// A tonic channel to `url` (`http://`, `https://`, `unix://`, `unixs://`, or `host:port`),
/// connected now; `tls` is what `https://` and `unixs://` are dialled with.
pub async fn dial(
    url: &str,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    dial_with(url, tls, timeout, None).await
}

/// [`dial`], with every request on the channel bounded by `request_timeout` when given.
pub async fn dial_with(
    url: &str,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<tonic::transport::Channel, String> {
    let (connector, uri) = Connector::for_url(url, tls.cloned(), timeout).map_err(|e| e.to_string())?;
    let mut ep = tonic::transport::Endpoint::from_shared(uri).map_err(|e| format!("invalid endpoint {url:?}: {e}"))?;
    if let Some(t) = request_timeout {
        ep = ep.timeout(t);
    }
    ep.connect_timeout(timeout).connect_with_connector(connector).await.map_err(|e| {
        match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }
    })
}
