//! Requests to a peer's URL, as etcd's members make them: one HTTP/1.1 connection per request
//! (peers are few, and the long-lived ones are the streams), TLS where the URL is `https`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::Local;

/// A peer request that did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

pub fn fail(e: impl std::fmt::Display) -> RequestError {
    RequestError(e.to_string())
}

/// Sends `req` to `url`'s host and returns the answer's head and its body, still arriving.
pub async fn send(
    url: &str,
    tls: Option<&Arc<rustcd_tls::ClientConfig>>,
    timeout: Duration,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, RequestError> {
    let io = rustcd_tls::connect::open(url, tls.cloned(), timeout).await.map_err(fail)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(fail)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Ok(r) => r.map_err(|e| fail(rustcd_tls::describe(&e))),
        Err(_) => Err(RequestError(format!("request to {url} timed out"))),
    }
}

/// A request to `path` on the peer at `url`, with the headers etcd's members send each other
/// when `local` is given (a member not yet in the cluster sends none).
pub fn request(
    url: &str,
    method: &str,
    path: &str,
    local: Option<&Local>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, RequestError> {
    let host = url.split_once("://").map_or(url, |(_, h)| h).trim_end_matches('/');
    let mut r = Request::builder().method(method).uri(path).header("host", host);
    if let Some(local) = local {
        r = r
            .header("X-Server-From", format!("{:x}", local.id))
            .header("X-Server-Version", local.server_version)
            .header("X-Min-Cluster-Version", super::MIN_CLUSTER_VERSION)
            .header("X-Etcd-Cluster-ID", format!("{:x}", local.cluster_id))
            .header("X-PeerURLs", local.peer_urls.join(","));
    }
    r.body(Full::new(body)).map_err(fail)
}

/// The whole body of an answer, within `timeout`.
pub async fn body_of(resp: Response<Incoming>, timeout: Duration) -> Result<Bytes, RequestError> {
    match tokio::time::timeout(timeout, resp.into_body().collect()).await {
        Ok(b) => b.map(|c| c.to_bytes()).map_err(fail),
        Err(_) => Err(RequestError("reading the answer timed out".into())),
    }
}

/// A GET of `path` on the first of `urls` that answers 200: its cluster ID header and body.
pub async fn get(
    urls: &[String],
    path: &str,
    local: Option<&Local>,
    tls: Option<&Arc<rustcd_tls::ClientConfig>>,
    timeout: Duration,
) -> Result<(Option<u64>, Bytes), RequestError> {
    let mut last = RequestError("no peer URL".into());
    for url in urls {
        let answer = async {
            let resp = send(url, tls, timeout, request(url, "GET", path, local, Bytes::new())?).await?;
            let cluster = resp
                .headers()
                .get("X-Etcd-Cluster-ID")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| u64::from_str_radix(v, 16).ok());
            let status = resp.status();
            let b = body_of(resp, timeout).await?;
            if !status.is_success() {
                return Err(RequestError(format!("{status}: {}", String::from_utf8_lossy(&b).trim_end())));
            }
            Ok((cluster, b))
        };
        match answer.await {
            Ok(r) => return Ok(r),
            Err(e) => last = RequestError(format!("{url}: {}", e.0)),
        }
    }
    Err(last)
}

/// The cluster ID and member list a member at one of `urls` gives (`GET /members`, what etcd's
/// joining members ask).
pub async fn members(
    urls: &[String],
    tls: Option<&Arc<rustcd_tls::ClientConfig>>,
    timeout: Duration,
) -> Result<(u64, Vec<rustcd_schema::member::MemberJson>), RequestError> {
    let (cluster, body) = get(urls, "/members", None, tls, timeout).await?;
    let cluster = cluster.ok_or_else(|| RequestError("the answer has no X-Etcd-Cluster-ID".into()))?;
    let members = serde_json::from_slice(&body).map_err(fail)?;
    Ok((cluster, members))
}

/// A peer's HashKV at `revision` (`GET /members/hashkv`, etcd's corruption checks); the error
/// is the peer's text (`mvcc: required revision has been compacted`).
pub async fn hash_kv(
    url: &str,
    local: &Local,
    tls: Option<&Arc<rustcd_tls::ClientConfig>>,
    revision: i64,
    timeout: Duration,
) -> Result<rustcd_api::etcdserverpb::HashKvResponse, RequestError> {
    let body = Bytes::from(format!("{{\"revision\":{revision}}}"));
    let mut req = request(url, "GET", "/members/hashkv", Some(local), body)?;
    req.headers_mut().insert("Content-Type", hyper::header::HeaderValue::from_static("application/json"));
    let resp = send(url, tls, timeout, req).await?;
    let status = resp.status();
    let b = body_of(resp, timeout).await?;
    if !status.is_success() {
        return Err(RequestError(String::from_utf8_lossy(&b).trim_end().to_string()));
    }
    let v: serde_json::Value = serde_json::from_slice(&b).map_err(fail)?;
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    let unum = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let header = v.get("header").map(|h| rustcd_api::etcdserverpb::ResponseHeader {
        cluster_id: unum(h, "cluster_id"),
        member_id: unum(h, "member_id"),
        revision: num(h, "revision"),
        raft_term: unum(h, "raft_term"),
    });
    Ok(rustcd_api::etcdserverpb::HashKvResponse {
        header,
        hash: unum(&v, "hash") as u32,
        compact_revision: num(&v, "compact_revision"),
        hash_revision: num(&v, "hash_revision"),
    })
}
