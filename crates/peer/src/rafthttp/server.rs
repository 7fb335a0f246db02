//! What a member answers on its peer URLs (etcd's rafthttp handlers and its peer HTTP
//! handler): raft streams, pipeline and snapshot requests, the member list, HashKV, probing and
//! the version.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message as _;
use rustcd_api::etcdserverpb::HashKvResponse;
use rustcd_api::raftpb;
use rustcd_schema::member::MemberJson;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::codec::{MessageDecoder, READ_BYTES_LIMIT};
use super::{StreamKind, check_peer};
use crate::PeerTransport;
use crate::etcd_wire::message_from_etcd;
use crate::metrics;

/// The member list, as etcd's members JSON.
pub type MembersFn = Arc<dyn Fn() -> Vec<MemberJson> + Send + Sync>;
/// Whether a member was removed from the cluster.
pub type RemovedFn = Arc<dyn Fn(u64) -> bool + Send + Sync>;
/// The member's HashKV at a revision, or the error's text (run on a blocking thread).
pub type HashKvFn = Arc<dyn Fn(i64) -> Result<HashKvResponse, String> + Send + Sync>;
/// The cluster version the cluster runs at.
pub type VersionFn = Arc<dyn Fn() -> String + Send + Sync>;
/// Whether a downgrade is enabled.
pub type DowngradeFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the peer endpoints need from the member besides the transport.
#[derive(Clone)]
pub struct PeerServices {
    pub members: MembersFn,
    pub is_removed: RemovedFn,
    pub hash_kv: HashKvFn,
    pub cluster_version: VersionFn,
    pub downgrade_enabled: DowngradeFn,
}

#[derive(Clone)]
struct Peer {
    transport: Arc<PeerTransport>,
    services: PeerServices,
}

/// The peer URLs' routes.
pub fn router(transport: Arc<PeerTransport>, services: PeerServices) -> Router {
    Router::new()
        .route("/raft", post(pipeline))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/probing", get(probing))
        .route("/raft/stream/message/{from}", get(stream_message))
        .route("/raft/stream/msgappv2/{from}", get(stream_msgapp))
        .route("/members", get(members))
        .route("/members/hashkv", get(hash_kv))
        .route("/version", get(version))
        .route("/downgrade/enabled", get(downgrade_enabled))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Peer { transport, services })
}

/// etcd's `http.Error`: the text and a newline, as plain text.
fn error(status: StatusCode, text: &str) -> Response {
    let mut r = (status, format!("{text}\n")).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl Peer {
    fn cluster_id(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("{:x}", self.transport.local.cluster_id)).unwrap_or(HeaderValue::from_static(""))
    }

    /// etcd's check of a peer's request (version, then cluster): the refusal, if refused.
    fn refused(&self, h: &HeaderMap) -> Option<Response> {
        let local = &self.transport.local;
        let got = |n| header(h, n);
        check_peer(local, got("X-Server-Version"), got("X-Min-Cluster-Version"), got("X-Etcd-Cluster-ID"))
            .map_err(|r| {
                let (local_id, from) = (format!("{:x}", local.id), got("X-Server-From").unwrap_or(""));
                match r {
                    super::Refusal::ClusterIdMismatch => tracing::warn!(
                        local_member_id = %local_id, remote_peer_id = from,
                        local_member_cluster_id = %format!("{:x}", local.cluster_id),
                        remote_peer_cluster_id = got("X-Etcd-Cluster-ID").unwrap_or(""),
                        "request cluster ID mismatch"
                    ),
                    super::Refusal::IncompatibleVersion => tracing::warn!(
                        local_member_id = %local_id, remote_peer_id = from,
                        remote_peer_server_version = got("X-Server-Version").unwrap_or(""),
                        remote_peer_min_cluster_version = got("X-Min-Cluster-Version").unwrap_or(""),
                        "failed to check version compatibility"
                    ),
                }
                error(StatusCode::PRECONDITION_FAILED, &r.to_string())
            })
            .err()
    }

    fn with_cluster_id(&self, mut r: Response) -> Response {
        r.headers_mut().insert("X-Etcd-Cluster-ID", self.cluster_id());
        r
    }
}

/// `POST /raft`: one raft message (etcd's pipeline).
async fn pipeline(State(p): State<Peer>, h: HeaderMap, body: Body) -> Response {
    if let Some(r) = p.refused(&h) {
        return p.with_cluster_id(r);
    }
    let Ok(b) = read_body(body).await else {
        return p.with_cluster_id(error(StatusCode::BAD_REQUEST, "error reading raft message"));
    };
    let m = match raftpb::Message::decode(b.clone())
        .map_err(|e| e.to_string())
        .and_then(|m| message_from_etcd(m).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "failed to unmarshal Raft message");
            return p.with_cluster_id(error(StatusCode::BAD_REQUEST, "error unmarshalling raft message"));
        }
    };
    metrics::received(m.from, b.len());
    p.transport.deliver(m).await;
    p.with_cluster_id(StatusCode::NO_CONTENT.into_response())
}

async fn read_body(body: Body) -> Result<Bytes, axum::Error> {
    let limited = http_body_util::Limited::new(body, READ_BYTES_LIMIT as usize);
    limited.collect().await.map(|c| c.to_bytes()).map_err(axum::Error::new)
}

/// `POST /raft/snapshot`: a MsgSnap, then the snapshot's data.
async fn snapshot(State(p): State<Peer>, h: HeaderMap, body: Body) -> Response {
    if let Some(r) = p.refused(&h) {
        return p.with_cluster_id(r);
    }
    let started = Instant::now();
    let Ok(all) = body.collect().await.map(|c| c.to_bytes()) else {
        return p.with_cluster_id(error(StatusCode::BAD_REQUEST, "failed to decode raft message (unexpected EOF)"));
    };
    let mut buf = BytesMut::from(all.as_ref());
    let head = match MessageDecoder.decode(&mut buf) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return p.with_cluster_id(error(StatusCode::BAD_REQUEST, "failed to decode raft message (unexpected EOF)"));
        }
        Err(e) => {
            return p.with_cluster_id(error(StatusCode::BAD_REQUEST, &format!("failed to decode raft message ({e})")));
        }
    };
    if head.r#type != Some(raftpb::MessageType::MsgSnap as i32) {
        return p.with_cluster_id(error(StatusCode::BAD_REQUEST, "wrong raft message type"));
    }
    let data = buf.split().freeze();
    let mut m = match message_from_etcd(head) {
        Ok(m) => m,
        Err(e) => {
            return p.with_cluster_id(error(StatusCode::BAD_REQUEST, &format!("failed to decode raft message ({e})")));
        }
    };
    let from = m.from;
    tracing::info!(remote_snapshot_sender_id = %format!("{from:x}"), bytes = data.len(), "received database snapshot");
    metrics::received(from, data.len());
    m.mut_snapshot().set_data(data);
    p.transport.deliver(m).await;
    metrics::snapshot_received(from, true, started.elapsed());
    p.with_cluster_id(StatusCode::NO_CONTENT.into_response())
}

/// `GET /raft/probing`: etcd's prober's health answer.
async fn probing() -> Response {
    let now = rustcd_gocompat::rfc3339_micros(std::time::SystemTime::now());
    let mut r = format!("{{\"OK\":true,\"Now\":\"{now}\"}}\n").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn stream_message(State(p): State<Peer>, Path(from): Path<String>, h: HeaderMap) -> Response {
    stream(p, StreamKind::Message, &from, &h)
}

async fn stream_msgapp(State(p): State<Peer>, Path(from): Path<String>, h: HeaderMap) -> Response {
    stream(p, StreamKind::MsgAppV2, &from, &h)
}

/// `GET /raft/stream/<kind>/<from>`: the answer carries this member's messages for `from`, as
/// long as the connection lasts.
fn stream(p: Peer, kind: StreamKind, from: &str, h: &HeaderMap) -> Response {
    let local = &p.transport.local;
    let mut r = stream_answer(&p, kind, from, h);
    r.headers_mut().insert("X-Server-Version", HeaderValue::from_static(local.server_version));
    p.with_cluster_id(r)
}

fn stream_answer(p: &Peer, kind: StreamKind, from: &str, h: &HeaderMap) -> Response {
    if let Some(r) = p.refused(h) {
        return r;
    }
    let Ok(from) = u64::from_str_radix(from, 16) else {
        return error(StatusCode::NOT_FOUND, "invalid from");
    };
    if (p.services.is_removed)(from) {
        tracing::warn!(remote_peer_id = %format!("{from:x}"), "rejected stream from remote peer because it was removed");
        return error(StatusCode::GONE, "removed member");
    }
    if !p.transport.knows(from) {
        return error(StatusCode::NOT_FOUND, "error sender not found");
    }
    if header(h, "X-Raft-To") != Some(format!("{:x}", p.transport.local.id).as_str()) {
        return error(StatusCode::PRECONDITION_FAILED, "to field mismatch");
    }
    let Some(rx) = p.transport.attach(from, kind) else {
        return error(StatusCode::NOT_FOUND, "error sender not found");
    };
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    (StatusCode::OK, body).into_response()
}

/// `GET /members`: the member list as etcd's JSON.
async fn members(State(p): State<Peer>) -> Response {
    let list: Vec<String> = (p.services.members)().iter().map(MemberJson::to_json).collect();
    let mut r = format!("[{}]\n", list.join(",")).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    p.with_cluster_id(r)
}

/// `GET /members/hashkv` with `{"revision":N}`: this member's HashKV for its fellows'
/// corruption checks.
async fn hash_kv(State(p): State<Peer>, body: Body) -> Response {
    let Ok(b) = read_body(body).await else { return error(StatusCode::BAD_REQUEST, "error reading body") };
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&b) else {
        return error(StatusCode::BAD_REQUEST, "error unmarshalling request");
    };
    let rev = req.get("revision").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let f = p.services.hash_kv.clone();
    let answer = match tokio::task::spawn_blocking(move || f(rev)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut r = hash_kv_json(&answer).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    p.with_cluster_id(r)
}

/// A HashKVResponse as Go's JSON writes etcd's (numbers, empty fields left out).
pub fn hash_kv_json(r: &HashKvResponse) -> String {
    let mut fields = Vec::new();
    if let Some(h) = &r.header {
        let mut hf = Vec::new();
        let numbers = [
            ("cluster_id", h.cluster_id as i128),
            ("member_id", h.member_id as i128),
            ("revision", h.revision as i128),
            ("raft_term", h.raft_term as i128),
        ];
        for (name, v) in numbers.into_iter().filter(|(_, v)| *v != 0) {
            hf.push(format!("\"{name}\":{v}"));
        }
        fields.push(format!("\"header\":{{{}}}", hf.join(",")));
    }
    if r.hash != 0 {
        fields.push(format!("\"hash\":{}", r.hash));
    }
    if r.compact_revision != 0 {
        fields.push(format!("\"compact_revision\":{}", r.compact_revision));
    }
    if r.hash_revision != 0 {
        fields.push(format!("\"hash_revision\":{}", r.hash_revision));
    }
    format!("{{{}}}", fields.join(","))
}

/// `GET /downgrade/enabled` (etcd 3.5): `true` or `false`, which a joining etcd 3.5 member asks
/// every member.
async fn downgrade_enabled(State(p): State<Peer>) -> Response {
    let mut r = (p.services.downgrade_enabled)().to_string().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    p.with_cluster_id(r)
}

/// `GET /version`.
async fn version(State(p): State<Peer>) -> Response {
    let cluster = (p.services.cluster_version)();
    let mut r = format!("{{\"etcdserver\":\"{}\",\"etcdcluster\":\"{cluster}\"}}", p.transport.local.server_version)
        .into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
