//! etcd's v2 discovery (`--discovery`): a new cluster's members meet at a discovery URL
//! (`https://discovery.etcd.io/<token>`, or any etcd's v2 keys API:
//! `http://host:2379/v2/keys/discovery/<token>`). The token's `_config/size` key says how
//! many members the cluster has; each member registers `name=peer-url` under its member ID,
//! then waits until `size` members have registered. The first `size` registrations (in
//! creation order) are the initial cluster; a later one finds the cluster full. Member IDs are
//! computed with the discovery URL as the cluster token, as etcd computes them, so rustcd and
//! etcd members can discover each other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

/// etcd's discovery errors, with its texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: invalid URL")]
    InvalidUrl,
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: found duplicate id")]
    DuplicateId,
    #[error("discovery: found duplicate name")]
    DuplicateName,
    #[error("discovery: cluster is full")]
    FullCluster,
    #[error("discovery: bad discovery endpoint")]
    BadDiscoveryEndpoint,
    #[error("{0}")]
    Other(String),
}

/// A v2 keys API node.
#[derive(Debug, Clone, Default, Deserialize)]
struct Node {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, rename = "createdIndex")]
    created_index: u64,
    #[serde(default, rename = "modifiedIndex")]
    modified_index: u64,
    #[serde(default)]
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    node: Option<Node>,
    #[serde(default, rename = "errorCode")]
    error_code: Option<u64>,
}

/// One answer of the keys API: its status, `X-Etcd-Index` and body.
struct Reply {
    status: u16,
    index: u64,
    answer: Answer,
}

/// etcd's v2 keys API error codes the protocol cares about.
const KEY_NOT_FOUND: u64 = 100;
const NODE_EXIST: u64 = 105;

/// Registers this member and returns the initial cluster (`name=url,...`) once `size` members
/// have registered.
pub async fn join_cluster(url: &str, proxy: &str, id: u64, config: &str) -> Result<String, DiscoveryError> {
    let d = Discovery::new(url, proxy, id)?;
    // The fast path: a full cluster is refused before registering.
    d.check_cluster().await?;
    d.create_self(config).await?;
    let (nodes, size, index) = d.check_cluster().await?;
    let all = d.wait_nodes(nodes, size, index).await?;
    nodes_to_cluster(&all, size)
}

/// The cluster a discovery URL holds, for a proxy (etcd's `GetCluster`).
pub async fn get_cluster(url: &str, proxy: &str) -> Result<String, DiscoveryError> {
    let d = Discovery::new(url, proxy, 0)?;
    let (nodes, size, _) = d.registrations().await?;
    if (nodes.len() as u64) < size {
        return Err(DiscoveryError::Other(format!("discovery: the cluster has {} of its {size} members", nodes.len())));
    }
    nodes_to_cluster(&nodes[..size as usize], size)
}

struct Discovery {
    /// `http://host:port` (the scheme, host and port of the discovery URL).
    origin: String,
    /// The discovery URL's path: the cluster's directory.
    cluster: String,
    proxy: Option<String>,
    id: u64,
    tls: Option<Arc<rustcd_tls::ClientConfig>>,
}

impl Discovery {
    fn new(url: &str, proxy: &str, id: u64) -> Result<Discovery, DiscoveryError> {
        let (scheme, rest) = url.split_once("://").ok_or(DiscoveryError::InvalidUrl)?;
        if !matches!(scheme, "http" | "https") || rest.is_empty() {
            return Err(DiscoveryError::InvalidUrl);
        }
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let tls = (scheme == "https")
            .then(|| {
                // Discovery trusts the system's CAs, as etcd's default transport does.
                let info = rustcd_tls::TlsInfo { trusted_ca_file: rustcd_tls::SYSTEM_CAS.into(), ..Default::default() };
                info.client_config().map_err(|e| DiscoveryError::Other(format!("discovery TLS: {e}")))
            })
            .transpose()?;
        let proxy = if proxy.is_empty() {
            None
        } else {
            let p = proxy.strip_prefix("http://").unwrap_or(proxy).trim_end_matches('/');
            Some(p.to_string())
        };
        Ok(Discovery {
            origin: format!("{scheme}://{host}"),
            cluster: path.trim_end_matches('/').to_string(),
            proxy,
            id,
            tls,
        })
    }

    fn self_key(&self) -> String {
        format!("{}/{:x}", self.cluster, self.id)
    }

    /// The `_config/size` key and the registered members in creation order (and the index
    /// to watch from); `FullCluster` when `size` others registered before this member.
    async fn check_cluster(&self) -> Result<(Vec<Node>, u64, u64), DiscoveryError> {
        let mut attempt = 0;
        loop {
            match self.check_cluster_once().await {
                Err(DiscoveryError::Other(e)) => {
                    let wait = Duration::from_secs(1 << attempt.min(8));
                    tracing::warn!(url = %self.origin, error = %e, "discovery server is unreachable; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn check_cluster_once(&self) -> Result<(Vec<Node>, u64, u64), DiscoveryError> {
        let (nodes, size, index) = self.registrations().await?;
        let me = format!("{:x}", self.id);
        for (i, n) in nodes.iter().enumerate() {
            if base(&n.key) == me {
                break;
            }
            if i as u64 + 1 >= size {
                return Err(DiscoveryError::FullCluster);
            }
        }
        Ok((nodes, size, index))
    }

    /// The size key and the registrations in creation order, with the index to watch from.
    async fn registrations(&self) -> Result<(Vec<Node>, u64, u64), DiscoveryError> {
        let size_key = format!("{}/_config/size", self.cluster);
        let r = self.request("GET", &size_key, None).await?;
        if r.answer.error_code == Some(KEY_NOT_FOUND) {
            return Err(DiscoveryError::SizeNotFound);
        }
        let node = r.answer.node.ok_or(DiscoveryError::BadDiscoveryEndpoint)?;
        let size: u64 = node.value.parse().map_err(|_| DiscoveryError::BadSizeKey)?;
        let r = self.request("GET", &self.cluster, None).await?;
        let dir = r.answer.node.ok_or(DiscoveryError::BadDiscoveryEndpoint)?;
        let mut nodes: Vec<Node> = dir.nodes.into_iter().filter(|n| base(&n.key) != "_config").collect();
        nodes.sort_by_key(|n| n.created_index);
        Ok((nodes, size, r.index))
    }

    async fn create_self(&self, config: &str) -> Result<(), DiscoveryError> {
        let body = format!("value={}", form_escape(config));
        let r = self.request("PUT", &format!("{}?prevExist=false", self.self_key()), Some(body)).await?;
        if r.answer.error_code == Some(NODE_EXIST) {
            return Err(DiscoveryError::DuplicateId);
        }
        if r.status >= 300 {
            return Err(DiscoveryError::Other(format!("discovery: cannot register: status {}", r.status)));
        }
        Ok(())
    }

    async fn wait_nodes(&self, nodes: Vec<Node>, size: u64, index: u64) -> Result<Vec<Node>, DiscoveryError> {
        let mut all: Vec<Node> = nodes.into_iter().take(size as usize).collect();
        let me = format!("{:x}", self.id);
        for n in &all {
            if base(&n.key) == me {
                tracing::info!(self_ = %n.value, "found self from discovery server");
            } else {
                tracing::info!(peer = %n.value, "found peer from discovery server");
            }
        }
        let mut next = index + 1;
        while (all.len() as u64) < size {
            tracing::info!(
                found_peers = all.len(),
                needed_peers = size - all.len() as u64,
                "found peers from discovery server; waiting for more"
            );
            let path = format!("{}?wait=true&recursive=true&waitIndex={next}", self.cluster);
            let r = match self.request("GET", &path, None).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "error while waiting for peers; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(n) = r.answer.node else {
                return Err(DiscoveryError::BadDiscoveryEndpoint);
            };
            next = n.modified_index + 1;
            tracing::info!(peer = %n.value, "found peer from discovery server");
            all.push(n);
        }
        tracing::info!(found_peers = all.len(), "found all needed peers from discovery server");
        Ok(all)
    }

    /// One keys API request on its own connection (discovery makes only a handful).
    async fn request(&self, method: &str, path: &str, body: Option<String>) -> Result<Reply, DiscoveryError> {
        let unreachable = |e: String| DiscoveryError::Other(e);
        let io = self.connect().await.map_err(|e| unreachable(format!("cannot reach {}: {e}", self.origin)))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| unreachable(e.to_string()))?;
        let driver = tokio::spawn(conn);
        // Through a plain HTTP proxy the request names the whole URL.
        let uri = if self.proxy.is_some() && self.tls.is_none() {
            format!("{}{path}", self.origin)
        } else {
            path.to_string()
        };
        let host = self.origin.split_once("://").map_or("", |(_, h)| h);
        let mut req = hyper::Request::builder().method(method).uri(uri).header("host", host);
        if body.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| DiscoveryError::Other(e.to_string()))?;
        let call = async {
            let resp = sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let index = resp
                .headers()
                .get("x-etcd-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let bytes = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
            let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| DiscoveryError::BadDiscoveryEndpoint)?;
            Ok(Reply { status, index, answer })
        };
        // A watch waits as long as it takes; the other requests get etcd's 5 seconds.
        let r = if path.contains("wait=true") {
            call.await
        } else {
            tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .unwrap_or_else(|_| Err(unreachable("request timed out".into())))
        };
        driver.abort();
        r
    }

    async fn connect(&self) -> std::io::Result<hyper_util::rt::TokioIo<rustcd_tls::connect::Stream>> {
        let timeout = Duration::from_secs(5);
        let Some(proxy) = &self.proxy else {
            return rustcd_tls::connect::open(&self.origin, self.tls.clone(), timeout).await;
        };
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(proxy.as_str()))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let Some(tls) = &self.tls else {
            return Ok(hyper_util::rt::TokioIo::new(rustcd_tls::connect::Stream::Tcp(tcp)));
        };
        // HTTPS through a proxy: a CONNECT tunnel, then TLS inside it.
        let host = self.origin.trim_start_matches("https://");
        let authority = if host.contains(':') { host.to_string() } else { format!("{host}:443") };
        let tcp = connect_tunnel(tcp, &authority).await?;
        let name = authority.rsplit_once(':').map_or(host, |(h, _)| h);
        Ok(hyper_util::rt::TokioIo::new(rustcd_tls::connect::tls_client(tls, name, tcp).await?))
    }
}

/// Asks an HTTP proxy for a tunnel to `authority`.
async fn connect_tunnel(mut tcp: tokio::net::TcpStream, authority: &str) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 || head.len() > 8192 {
            return Err(std::io::Error::other("the proxy closed the tunnel"));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!(
            "the proxy refused the tunnel: {}",
            status.lines().next().unwrap_or("")
        )));
    }
    Ok(tcp)
}

/// The last element of a key's path.
fn base(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// `application/x-www-form-urlencoded` escaping of a value.
fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The registrations' values joined: the initial cluster; a name registered twice is refused.
fn nodes_to_cluster(nodes: &[Node], size: u64) -> Result<String, DiscoveryError> {
    let cluster = nodes.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(",");
    let mut names = Vec::new();
    for entry in cluster.split(',') {
        let (name, url) = entry.split_once('=').ok_or(DiscoveryError::InvalidUrl)?;
        if !url.contains("://") {
            return Err(DiscoveryError::InvalidUrl);
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() as u64 != size {
        return Err(DiscoveryError::DuplicateName);
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str, value: &str) -> Node {
        Node { key: key.into(), value: value.into(), ..Default::default() }
    }

    #[test]
    fn registrations_make_the_initial_cluster() {
        let nodes =
            [node("/t/1", "a=http://1.1.1.1:2380"), node("/t/2", "b=http://1.1.1.2:2380,b=http://1.1.1.3:2380")];
        assert_eq!(
            nodes_to_cluster(&nodes, 2),
            Ok("a=http://1.1.1.1:2380,b=http://1.1.1.2:2380,b=http://1.1.1.3:2380".into())
        );
        let twice = [node("/t/1", "a=http://1.1.1.1:2380"), node("/t/2", "a=http://1.1.1.2:2380")];
        assert_eq!(nodes_to_cluster(&twice, 2), Err(DiscoveryError::DuplicateName));
        assert_eq!(nodes_to_cluster(&[node("/t/1", "junk")], 1), Err(DiscoveryError::InvalidUrl));
    }

    #[test]
    fn urls_split_into_origin_and_cluster_directory() {
        let d = Discovery::new("http://127.0.0.1:2379/v2/keys/discovery/abc/", "", 0x1234).expect("url");
        assert_eq!((d.origin.as_str(), d.cluster.as_str()), ("http://127.0.0.1:2379", "/v2/keys/discovery/abc"));
        assert_eq!(d.self_key(), "/v2/keys/discovery/abc/1234");
        assert!(Discovery::new("127.0.0.1:2379/x", "", 1).is_err());
        assert_eq!(form_escape("a=http://h:1,b"), "a%3Dhttp%3A%2F%2Fh%3A1%2Cb");
    }
}
