//! The member's side of etcd's peer protocol: for each peer, a writer that puts raft messages
//! on the streams the peer dialled in (else one per request), and two readers that dial the
//! peer's streams and step what arrives into raft.
//!
//! Sending never blocks the raft thread: a peer whose queue is full loses messages, which raft
//! tolerates (it retries), and is reported unreachable. Received messages go into the raft
//! thread's bounded queue, and are dropped when it is full (snapshots wait for room).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::etcd_wire::{message_from_etcd, message_to_etcd};
use crate::metrics;
use crate::rafthttp::codec::{self, MessageDecoder, MsgAppV2Decoder, MsgAppV2Encoder, is_link_heartbeat};
use crate::rafthttp::{Local, StreamKind, client};
use rustcd_raft::{Input, RaftSender, Transport};

/// Messages queued per peer before new ones are dropped (etcd's `streamBufSize`).
const PEER_QUEUE: usize = 4096;
/// Most messages taken from the queue at once.
const MAX_BATCH: usize = 512;
/// Encoded chunks waiting on a stream's connection before the stream is given up.
const STREAM_QUEUE: usize = 256;
/// etcd's `ConnReadTimeout`: a stream silent this long is dead. Writers send a link heartbeat
/// every third of it.
const CONN_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dialling a peer may take (etcd's dial timeout on its peer transport).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a snapshot may take to send.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// etcd's pipeline runs this many requests to a peer at once.
const PIPELINE_REQUESTS: usize = 4;
/// etcd's prober: its connection read timeout less a second.
const PROBE_INTERVAL: Duration = Duration::from_secs(4);

/// A new stream a peer dialled in: where its messages go.
type Attach = (StreamKind, mpsc::Sender<Bytes>);

struct PeerHandle {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
    attach: mpsc::UnboundedSender<Attach>,
    /// Ends the peer's tasks when it is removed or its URLs change.
    stop: CancellationToken,
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sends raft messages to the other members and answers their streams.
pub struct PeerTransport {
    me: Weak<PeerTransport>,
    pub(crate) local: Local,
    runtime: tokio::runtime::Handle,
    tls: Option<Arc<rustcd_tls::ClientConfig>>,
    raft_tx: Mutex<Option<RaftSender>>,
    peers: Mutex<HashMap<u64, PeerHandle>>,
}

impl PeerTransport {
    /// `tls`: how `https://` and `unixs://` peer URLs are dialled (peer TLS).
    pub fn new(local: Local, runtime: tokio::runtime::Handle, tls: Option<Arc<rustcd_tls::ClientConfig>>) -> Arc<Self> {
        Arc::new_cyclic(|me| PeerTransport {
            me: me.clone(),
            local,
            runtime,
            tls,
            raft_tx: Mutex::new(None),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Where received messages, unreachable peers and snapshot outcomes go.
    pub fn set_raft(&self, tx: RaftSender) {
        *self.raft_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    fn raft(&self) -> Option<RaftSender> {
        self.raft_tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Routes messages to exactly these members (id, peer URLs): new ones and new URLs get
    /// their streams, members no longer listed lose theirs.
    pub fn route_to(&self, members: &[(u64, Vec<String>)]) {
        let listed: Vec<u64> = members.iter().map(|m| m.0).collect();
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| listed.contains(id));
        for (id, urls) in members {
            self.upsert_peer(*id, urls.clone());
        }
    }

    /// Adds a peer or changes its URLs (the member itself is ignored).
    fn upsert_peer(&self, id: u64, urls: Vec<String>) {
        let Some(me) = self.me.upgrade() else { return };
        if id == self.local.id || urls.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.get(&id).is_some_and(|p| p.urls == urls) {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let (attach, attach_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        peers.insert(id, PeerHandle { urls: urls.clone(), tx, attach, stop: stop.clone() });
        let peer =
            Arc::new(Peer { id, urls, stop, picked: AtomicUsize::new(0), pipeline: Semaphore::new(PIPELINE_REQUESTS) });
        self.runtime.spawn(me.clone().write_loop(peer.clone(), rx, attach_rx));
        for kind in [StreamKind::MsgAppV2, StreamKind::Message] {
            self.runtime.spawn(me.clone().read_loop(peer.clone(), kind));
        }
        self.runtime.spawn(me.probe_loop(peer));
    }

    /// Whether `id` is a peer this member sends to.
    pub fn knows(&self, id: u64) -> bool {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id)
    }

    /// A stream peer `from` dialled in: the answer's body is what comes out of the receiver.
    pub fn attach(&self, from: u64, kind: StreamKind) -> Option<mpsc::Receiver<Bytes>> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&from)?.attach.send((kind, tx)).ok()?;
        Some(rx)
    }

    fn report(&self, input: Input) {
        if let Some(tx) = self.raft() {
            tx.try_send(input);
        }
    }

    /// Hands a received message to raft: dropped when raft's queue is full (raft resends what
    /// matters), but a snapshot, expensive to send again, waits for room.
    pub(crate) async fn deliver(&self, m: Message) {
        let Some(tx) = self.raft() else { return };
        if m.get_msg_type() == MessageType::MsgSnapshot {
            let _ = tx.send(Input::Step(m)).await;
        } else if !tx.try_send(Input::Step(m)) {
            tracing::debug!("raft queue full: a peer message was dropped");
        }
    }

    /// Puts queued messages on the peer's streams until the peer goes.
    async fn write_loop(
        self: Arc<Self>,
        peer: Arc<Peer>,
        mut rx: mpsc::Receiver<Message>,
        mut attach_rx: mpsc::UnboundedReceiver<Attach>,
    ) {
        let mut streams = Streams::default();
        let mut heartbeat = tokio::time::interval(CONN_READ_TIMEOUT / 3);
        loop {
            tokio::select! {
                _ = peer.stop.cancelled() => break,
                Some((kind, tx)) = attach_rx.recv() => {
                    tracing::info!(
                        stream_type = kind.name(), local_member_id = %format!("{:x}", self.local.id),
                        remote_peer_id = %format!("{:x}", peer.id), "established TCP streaming connection with remote peer"
                    );
                    streams.attach(kind, tx);
                }
                _ = heartbeat.tick() => {
                    for kind in streams.heartbeat() {
                        self.lost_stream(&peer, kind);
                    }
                }
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let mut batch = vec![m];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    self.write_batch(&peer, batch, &mut streams);
                }
            }
        }
    }

    fn lost_stream(&self, peer: &Peer, kind: StreamKind) {
        tracing::warn!(
            stream_type = kind.name(), local_member_id = %format!("{:x}", self.local.id),
            remote_peer_id = %format!("{:x}", peer.id), "lost TCP streaming connection with remote peer"
        );
        self.report(Input::Unreachable(peer.id));
    }

    /// Encodes a batch onto the streams (one chunk per stream), and sends what no stream
    /// takes one message per request.
    fn write_batch(&self, peer: &Arc<Peer>, batch: Vec<Message>, streams: &mut Streams) {
        let (mut plain, mut app) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for m in batch {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(peer.clone(), m);
                continue;
            }
            let wire = match message_to_etcd(&m) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(to = %format!("{:x}", peer.id), error = %e, "raft message dropped");
                    continue;
                }
            };
            let before = plain.len() + app.len();
            match (m.get_msg_type(), &mut streams.msgapp, &streams.message) {
                (MessageType::MsgAppend, Some((_, enc)), _) => enc.encode(&wire, &mut app),
                (_, _, Some(_)) => codec::encode_message(&wire, &mut plain),
                _ => self.pipeline(peer.clone(), wire),
            }
            bytes += plain.len() + app.len() - before;
        }
        metrics::sent(peer.id, bytes);
        for (kind, chunk) in [(StreamKind::MsgAppV2, app), (StreamKind::Message, plain)] {
            if !chunk.is_empty() && !streams.send(kind, Bytes::from(chunk)) {
                metrics::send_failed(peer.id);
                self.lost_stream(peer, kind);
            }
        }
    }

    /// etcd's pipeline: one message per `POST /raft`, a few at a time; more are dropped.
    fn pipeline(&self, peer: Arc<Peer>, m: rustcd_api::raftpb::Message) {
        let Some(me) = self.me.upgrade() else { return };
        let heartbeat = m.r#type == Some(rustcd_api::raftpb::MessageType::MsgHeartbeat as i32);
        self.runtime.spawn(async move {
            let Ok(_permit) = peer.pipeline.try_acquire() else {
                me.send_failed(&peer, heartbeat);
                return;
            };
            let body = Bytes::from(prost::Message::encode_to_vec(&m));
            let url = peer.url();
            let sent = async {
                let mut req = client::request(&url, "POST", "/raft", Some(&me.local), body)?;
                req.headers_mut().insert("Content-Type", "application/protobuf".parse().map_err(client::fail)?);
                let resp = client::send(&url, me.tls.as_ref(), DIAL_TIMEOUT * 5, req).await?;
                check_post(resp).await
            };
            if let Err(e) = sent.await {
                tracing::debug!(remote_peer_id = %format!("{:x}", peer.id), error = %e, "failed to post raft message");
                peer.next_url();
                me.send_failed(&peer, heartbeat);
            }
        });
    }

    fn send_failed(&self, peer: &Peer, heartbeat: bool) {
        metrics::send_failed(peer.id);
        if heartbeat {
            rustcd_metrics::get().server.heartbeat_send_failures_total.inc();
        }
        self.report(Input::Unreachable(peer.id));
    }

    /// etcd's snapshot sender: `POST /raft/snapshot` with the message, then the data.
    fn send_snapshot(&self, peer: Arc<Peer>, mut m: Message) {
        let Some(me) = self.me.upgrade() else { return };
        let data = m.mut_snapshot().take_data();
        self.runtime.spawn(async move {
            let started = std::time::Instant::now();
            let size = data.len();
            let sent = async {
                let head = message_to_etcd(&m).map_err(client::fail)?;
                let mut body = Vec::with_capacity(size + 256);
                codec::encode_message(&head, &mut body);
                body.extend_from_slice(&data);
                let url = peer.url();
                let mut req = client::request(&url, "POST", "/raft/snapshot", Some(&me.local), body.into())?;
                req.headers_mut().insert("Content-Type", "application/octet-stream".parse().map_err(client::fail)?);
                let resp = client::send(&url, me.tls.as_ref(), SNAPSHOT_TIMEOUT, req).await?;
                check_post(resp).await
            };
            let r = sent.await;
            let ok = r.is_ok();
            metrics::snapshot_sent(peer.id, ok, started.elapsed());
            if ok {
                metrics::sent(peer.id, size);
            }
            match r {
                Ok(()) => tracing::info!(remote_peer_id = %format!("{:x}", peer.id), bytes = size, "sent database snapshot"),
                Err(e) => tracing::warn!(remote_peer_id = %format!("{:x}", peer.id), error = %e, "failed to send database snapshot"),
            }
            me.report(Input::SnapshotStatus(peer.id, ok));
        });
    }

    /// Dials the peer's stream of `kind` again and again, stepping what arrives, until the
    /// peer goes.
    async fn read_loop(self: Arc<Self>, peer: Arc<Peer>, kind: StreamKind) {
        // The problem last logged: a peer that keeps failing the same way is logged once.
        let mut reported: Option<String> = None;
        loop {
            let read = tokio::select! {
                _ = peer.stop.cancelled() => return,
                r = self.read_stream(&peer, kind, &mut reported) => r,
            };
            if let Err(e) = read {
                if reported.as_ref() != Some(&e) {
                    tracing::warn!(
                        stream_type = kind.name(), remote_peer_id = %format!("{:x}", peer.id), error = %e,
                        "peer stream is unavailable; retrying"
                    );
                    reported = Some(e);
                }
                peer.next_url();
            }
            tokio::select! {
                _ = peer.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// One connection of a stream: dial, then step messages until it ends.
    async fn read_stream(&self, peer: &Peer, kind: StreamKind, reported: &mut Option<String>) -> Result<(), String> {
        let url = peer.url();
        let mut req = client::request(&url, "GET", &kind.path(self.local.id), Some(&self.local), Bytes::new())
            .map_err(|e| e.0)?;
        let to = format!("{:x}", peer.id).parse().map_err(|_| "bad peer id".to_string())?;
        req.headers_mut().insert("X-Raft-To", to);
        let resp = client::send(&url, self.tls.as_ref(), DIAL_TIMEOUT, req).await.map_err(|e| e.0)?;
        if resp.status() != hyper::StatusCode::OK {
            let status = resp.status();
            let text = client::body_of(resp, DIAL_TIMEOUT).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim_end().to_string();
            return Err(match status {
                hyper::StatusCode::GONE => "the member has been permanently removed from the cluster".into(),
                _ => format!("{status}: {text}"),
            });
        }
        if reported.take().is_some() && kind == StreamKind::Message {
            tracing::info!(remote_peer_id = %format!("{:x}", peer.id), "peer became active");
        }
        if kind == StreamKind::Message {
            metrics::peer_active(self.local.id, peer.id, true);
        }
        let r = self.read_messages(peer, kind, resp.into_body()).await;
        if kind == StreamKind::Message {
            metrics::peer_active(self.local.id, peer.id, false);
        }
        r
    }

    async fn read_messages(
        &self,
        peer: &Peer,
        kind: StreamKind,
        mut body: hyper::body::Incoming,
    ) -> Result<(), String> {
        let mut buf = BytesMut::new();
        let mut decoder = Decoder::new(kind, self.local.id, peer.id);
        loop {
            let frame = match tokio::time::timeout(CONN_READ_TIMEOUT, body.frame()).await {
                Err(_) => return Err("read timeout".into()),
                Ok(None) => return Err("the stream ended".into()),
                Ok(Some(f)) => f.map_err(|e| rustcd_tls::describe(&e))?,
            };
            let Ok(data) = frame.into_data() else { continue };
            metrics::received(peer.id, data.len());
            buf.extend_from_slice(&data);
            while let Some(m) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                if is_link_heartbeat(&m) {
                    continue;
                }
                match message_from_etcd(m) {
                    Ok(m) => self.deliver(m).await,
                    Err(e) => {
                        tracing::warn!(remote_peer_id = %format!("{:x}", peer.id), error = %e, "raft message dropped")
                    }
                }
            }
        }
    }

    /// etcd's prober: every [`PROBE_INTERVAL`] `GET /raft/probing` times the round trip, for
    /// `etcd_network_peer_round_trip_time_seconds`.
    async fn probe_loop(self: Arc<Self>, peer: Arc<Peer>) {
        loop {
            tokio::select! {
                _ = peer.stop.cancelled() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
            let started = std::time::Instant::now();
            let urls = [peer.url()];
            if client::get(&urls, "/raft/probing", Some(&self.local), self.tls.as_ref(), PROBE_INTERVAL).await.is_ok() {
                metrics::round_trip(peer.id, started.elapsed());
            }
        }
    }
}

/// What a peer's tasks share.
struct Peer {
    id: u64,
    urls: Vec<String>,
    stop: CancellationToken,
    /// The URL in use (etcd's `urlPicker`): the next one after a failure.
    picked: AtomicUsize,
    pipeline: Semaphore,
}

impl Peer {
    fn url(&self) -> String {
        self.urls[self.picked.load(Ordering::Relaxed) % self.urls.len()].clone()
    }

    fn next_url(&self) {
        self.picked.fetch_add(1, Ordering::Relaxed);
    }
}

/// The streams a peer dialled in, with the msgappv2 stream's encoder (its state is the
/// connection's: a new connection starts afresh).
#[derive(Default)]
struct Streams {
    message: Option<mpsc::Sender<Bytes>>,
    msgapp: Option<(mpsc::Sender<Bytes>, MsgAppV2Encoder)>,
}

impl Streams {
    fn attach(&mut self, kind: StreamKind, tx: mpsc::Sender<Bytes>) {
        match kind {
            StreamKind::Message => self.message = Some(tx),
            StreamKind::MsgAppV2 => self.msgapp = Some((tx, MsgAppV2Encoder::default())),
        }
    }

    /// Sends a chunk; false (and the stream dropped) when its connection is gone or cannot
    /// keep up. A msgappv2 stream that lost a chunk cannot go on: its encoding assumes the
    /// peer read every message before.
    fn send(&mut self, kind: StreamKind, chunk: Bytes) -> bool {
        let tx = match kind {
            StreamKind::Message => self.message.as_ref(),
            StreamKind::MsgAppV2 => self.msgapp.as_ref().map(|s| &s.0),
        };
        let ok = tx.is_some_and(|tx| tx.try_send(chunk).is_ok());
        if !ok {
            match kind {
                StreamKind::Message => self.message = None,
                StreamKind::MsgAppV2 => self.msgapp = None,
            }
        }
        ok
    }

    /// A link heartbeat on each stream; the kinds of the streams that were lost.
    fn heartbeat(&mut self) -> Vec<StreamKind> {
        let mut lost = Vec::new();
        let hb = codec::link_heartbeat();
        if self.message.is_some() {
            let mut b = Vec::new();
            codec::encode_message(&hb, &mut b);
            if !self.send(StreamKind::Message, b.into()) {
                lost.push(StreamKind::Message);
            }
        }
        if let Some((_, enc)) = self.msgapp.as_mut() {
            let mut b = Vec::new();
            enc.encode(&hb, &mut b);
            if !self.send(StreamKind::MsgAppV2, b.into()) {
                lost.push(StreamKind::MsgAppV2);
            }
        }
        lost
    }
}

enum Decoder {
    Message(MessageDecoder),
    MsgApp(MsgAppV2Decoder),
}

impl Decoder {
    fn new(kind: StreamKind, local: u64, remote: u64) -> Self {
        match kind {
            StreamKind::Message => Decoder::Message(MessageDecoder),
            StreamKind::MsgAppV2 => Decoder::MsgApp(MsgAppV2Decoder::new(local, remote)),
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<rustcd_api::raftpb::Message>, codec::CodecError> {
        match self {
            Decoder::Message(d) => d.decode(buf),
            Decoder::MsgApp(d) => d.decode(buf),
        }
    }
}

/// etcd's `checkPostResponse`: 204 is success; anything else says why.
async fn check_post(resp: hyper::Response<hyper::body::Incoming>) -> Result<(), client::RequestError> {
    let status = resp.status();
    if status == hyper::StatusCode::NO_CONTENT {
        return Ok(());
    }
    let text = client::body_of(resp, DIAL_TIMEOUT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim_end().to_string();
    Err(client::RequestError(match status {
        hyper::StatusCode::FORBIDDEN => "the member has been permanently removed from the cluster".into(),
        _ => format!("{status}: {text}"),
    }))
}

/// The member's transport as the raft core sees it.
impl Transport for PeerTransport {
    /// Queues messages for their peers; never blocks.
    fn send(&self, msgs: Vec<Message>) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut unreachable = Vec::new();
        for m in msgs {
            let to = m.to;
            match peers.get(&to) {
                Some(p) => {
                    let heartbeat = m.get_msg_type() == MessageType::MsgHeartbeat;
                    if p.tx.try_send(m).is_err() {
                        metrics::send_failed(to);
                        if heartbeat {
                            rustcd_metrics::get().server.heartbeat_send_failures_total.inc();
                        }
                        unreachable.push(to);
                    }
                }
                None => tracing::debug!(to = %format!("{to:x}"), "message to unknown peer dropped"),
            }
        }
        drop(peers);
        unreachable.dedup();
        for id in unreachable {
            self.report(Input::Unreachable(id));
        }
    }
}
