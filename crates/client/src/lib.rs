//! rustcd-client: an async etcd v3 client over the generated API.
//!
//! Owns connecting (several endpoints, the first that answers wins, the next on failure) and
//! authenticating (a user's token sent with every request, as clientv3 does). It knows nothing of output formats or command lines (that is
//! `etcdctl`'s job) and nothing of servers. Start with [`Client::connect`].

pub mod srv;

use std::time::Duration;

use rustcd_api::etcdserverpb::auth_client::AuthClient;
use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::{AuthenticateRequest, RangeRequest, RangeResponse};
use rustcd_api::v3electionpb::election_client::ElectionClient;
use rustcd_api::v3lockpb::lock_client::LockClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The largest answer a client takes: clientv3's `MaxCallRecvMsgSize` default, math.MaxInt32.
const MAX_RECV: usize = i32::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint answered within the dial timeout (etcdctl prints etcd's text for it).
    #[error("context deadline exceeded")]
    Unreachable,
    #[error("invalid endpoint {0:?}")]
    BadEndpoint(String),
    /// An `https://` endpoint without TLS settings: never dialled in plaintext.
    #[error("TLS is not configured for endpoint {0}")]
    NoTls(String),
    /// The server refused the request (e.g. authentication failed).
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    /// User name and password to authenticate with, if any.
    pub credentials: Option<(String, String)>,
    /// TLS for `https://` endpoints, and for endpoints given without a scheme (as clientv3).
    pub tls: Option<std::sync::Arc<rustcd_tls::ClientConfig>>,
}

/// Adds the auth token, when there is one, to every request.
#[derive(Clone)]
pub struct Token(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

/// A channel that carries the auth token.
pub type Authed = InterceptedService<Channel, Token>;

/// A connection to one member, with a client per service.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    channel: Channel,
    token: Token,
    /// The server's answer when credentials were given but authentication is off: the client
    /// goes on without a token (as clientv3 does, which logs the answer).
    pub auth_not_enabled: Option<tonic::Status>,
}

/// The URL of an endpoint: a URL as given; `host:port` as `https://` with TLS settings, else
/// `http://` (clientv3's rule).
pub fn endpoint_url(ep: &str, tls: bool) -> String {
    match (ep.contains("://"), tls) {
        (true, _) => ep.to_string(),
        (false, true) => format!("https://{ep}"),
        (false, false) => format!("http://{ep}"),
    }
}

impl Client {
    /// Connects to the first endpoint that answers.
    pub async fn connect(cfg: &Config) -> Result<Client, Error> {
        for ep in &cfg.endpoints {
            match Self::connect_one(ep, cfg).await {
                Ok(c) => return Ok(c),
                Err(Error::Status(s)) => return Err(Error::Status(s)),
                Err(_) => continue,
            }
        }
        Err(Error::Unreachable)
    }

    /// Connects to exactly this endpoint, authenticating when credentials are given. A server
    /// without authentication enabled is used without a token, as clientv3 does.
    pub async fn connect_one(ep: &str, cfg: &Config) -> Result<Client, Error> {
        let url = endpoint_url(ep, cfg.tls.is_some());
        if rustcd_tls::connect::is_secure(&url) && cfg.tls.is_none() {
            return Err(Error::NoTls(ep.to_string()));
        }
        let dial = rustcd_tls::connect::dial(&url, cfg.tls.as_ref(), cfg.dial_timeout);
        let channel = tokio::time::timeout(cfg.dial_timeout, dial)
            .await
            .map_err(|_| Error::Unreachable)?
            .map_err(|_| Error::Unreachable)?;
        let mut client = Client { endpoint: ep.to_string(), channel, token: Token(None), auth_not_enabled: None };
        if let Some((name, password)) = &cfg.credentials {
            let req = AuthenticateRequest { name: name.clone(), password: password.clone() };
            match AuthClient::new(client.channel.clone()).authenticate(req).await {
                Ok(r) => {
                    let token = r.into_inner().token;
                    let value = token.parse().map_err(|_| tonic::Status::internal("auth token is not ASCII"))?;
                    client.token = Token(Some(value));
                }
                Err(s) if s.message() == "etcdserver: authentication is not enabled" => {
                    client.auth_not_enabled = Some(s);
                }
                Err(s) => return Err(Error::Status(s)),
            }
        }
        Ok(client)
    }

    /// A range by `KV.RangeStream` (etcd 3.7), its chunks merged into one answer as a Range's;
    /// when `fall_back` and the server has no RangeStream (etcd before 3.7), by Range.
    pub async fn range_streamed(
        &self,
        req: RangeRequest,
        fall_back: bool,
    ) -> Result<tonic::Response<RangeResponse>, tonic::Status> {
        let chunks = match self.kv().range_stream(req.clone()).await {
            Err(s) if fall_back && s.code() == tonic::Code::Unimplemented => return self.kv().range(req).await,
            other => other?,
        };
        let mut chunks = chunks.into_inner();
        let mut merged = RangeResponse::default();
        while let Some(chunk) = chunks.message().await? {
            let Some(mut part) = chunk.range_response else { continue };
            merged.kvs.append(&mut part.kvs);
            if part.header.is_some() {
                merged.header = part.header;
                merged.more = part.more;
                merged.count = part.count;
            }
        }
        Ok(tonic::Response::new(merged))
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.token.clone())
    }
    /// clientv3's default `MaxCallRecvMsgSize` (math.MaxInt32): a large range is received.
    pub fn kv(&self) -> KvClient<Authed> {
        KvClient::new(self.authed()).max_decoding_message_size(MAX_RECV)
    }
    pub fn watch(&self) -> WatchClient<Authed> {
        WatchClient::new(self.authed()).max_decoding_message_size(MAX_RECV)
    }
    pub fn lease(&self) -> LeaseClient<Authed> {
        LeaseClient::new(self.authed())
    }
    pub fn cluster(&self) -> ClusterClient<Authed> {
        ClusterClient::new(self.authed())
    }
    pub fn maintenance(&self) -> MaintenanceClient<Authed> {
        MaintenanceClient::new(self.authed())
    }
    pub fn auth(&self) -> AuthClient<Authed> {
        AuthClient::new(self.authed())
    }
    pub fn lock(&self) -> LockClient<Authed> {
        LockClient::new(self.authed())
    }
    pub fn election(&self) -> ElectionClient<Authed> {
        ElectionClient::new(self.authed())
    }
}
