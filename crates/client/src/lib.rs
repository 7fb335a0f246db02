//! rustcd-client: an async etcd v3 client over the generated API.
//!
//! Owns connecting (several endpoints, the first that answers wins, the next on failure) and
//! per-request timeouts. It knows nothing of output formats or command lines (that is
//! `etcdctl`'s job) and nothing of servers. Start with [`Client::connect`].

use std::time::Duration;

use rustcd_api::etcdserverpb::auth_client::AuthClient;
use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::v3electionpb::election_client::ElectionClient;
use rustcd_api::v3lockpb::lock_client::LockClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint answered within the dial timeout (etcdctl prints etcd's text for it).
    #[error("context deadline exceeded")]
    Unreachable,
    #[error("invalid endpoint {0:?}")]
    BadEndpoint(String),
}

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
}

/// A connection to one member, with a client per service.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    channel: Channel,
}

/// `http://host:port` for a `host:port` or URL endpoint.
pub fn endpoint_url(ep: &str) -> String {
    if ep.contains("://") { ep.to_string() } else { format!("http://{ep}") }
}

impl Client {
    /// Connects to the first endpoint that answers.
    pub async fn connect(cfg: &Config) -> Result<Client, Error> {
        for ep in &cfg.endpoints {
            if let Ok(c) = Self::connect_one(ep, cfg.dial_timeout).await {
                return Ok(c);
            }
        }
        Err(Error::Unreachable)
    }

    /// Connects to exactly this endpoint.
    pub async fn connect_one(ep: &str, dial_timeout: Duration) -> Result<Client, Error> {
        let url = endpoint_url(ep);
        let endpoint = Endpoint::from_shared(url).map_err(|_| Error::BadEndpoint(ep.to_string()))?;
        let channel = tokio::time::timeout(dial_timeout, endpoint.connect_timeout(dial_timeout).connect())
            .await
            .map_err(|_| Error::Unreachable)?
            .map_err(|_| Error::Unreachable)?;
        Ok(Client { endpoint: ep.to_string(), channel })
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }
    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }
    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }
    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone())
    }
    pub fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone())
    }
    pub fn lock(&self) -> LockClient<Channel> {
        LockClient::new(self.channel.clone())
    }
    pub fn election(&self) -> ElectionClient<Channel> {
        ElectionClient::new(self.channel.clone())
    }
}
