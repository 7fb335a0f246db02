//! rustcd-peer: the peer transport, raft messages streamed to every other member over gRPC on the peer
//! URLs, one stream per peer and direction, batched, reconnecting with backoff. Snapshot
//! messages travel on a stream of their own, in chunks.
//!
//! Sending never blocks the raft thread: a peer whose queue is full loses messages, which
//! raft tolerates (it retries), and is reported unreachable. Received messages go into the
//! raft thread's bounded queue, and are dropped when it is full.
//!
//! Owns the peer gRPC service and client streams, and the translation of raft messages to and
//! from etcd's wire form ([`etcd_wire`], the first piece of etcd's peer protocol). Must not
//! touch raft state: it only carries messages between the raft cores of members (it
//! implements `rustcd_raft::Transport`).

pub mod etcd_wire;
pub mod rafthttp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use rustcd_api::etcdserverpb::{HashKvRequest, HashKvResponse};
use rustcd_api::rustcdpb::peer_client::PeerClient;
use rustcd_api::rustcdpb::peer_server::{Peer, PeerServer};
use rustcd_api::rustcdpb::{PeerAck, PeerMembersRequest, PeerMembersResponse, RaftBatch, SnapshotChunk, StoredMember};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use rustcd_raft::{Input, RaftSender, Transport};

mod metrics;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Most messages in one batch on the wire.
const MAX_BATCH: usize = 512;
/// Snapshot data per chunk.
const CHUNK: usize = 1024 * 1024;
/// How often each peer's round trip is timed (etcd's prober: its connection read timeout less
/// a second).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// Largest peer message accepted (raft entries are bounded by max_size_per_msg, 1 MiB).
const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

struct PeerHandle {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// Sends raft messages to the other members.
pub struct PeerTransport {
    /// Itself, for the per-peer tasks it starts.
    me: std::sync::Weak<PeerTransport>,
    cluster_id: u64,
    id: u64,
    runtime: tokio::runtime::Handle,
    tls: Option<Arc<rustcd_tls::ClientConfig>>,
    raft_tx: Mutex<Option<RaftSender>>,
    peers: Mutex<HashMap<u64, PeerHandle>>,
}

impl PeerTransport {
    /// `tls`: how `https://` and `unixs://` peer URLs are dialled (peer TLS).
    pub fn new(
        cluster_id: u64,
        id: u64,
        runtime: tokio::runtime::Handle,
        tls: Option<Arc<rustcd_tls::ClientConfig>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| PeerTransport {
            me: me.clone(),
            tls,
            cluster_id,
            id,
            runtime,
            raft_tx: Mutex::new(None),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Where reports about unreachable peers and snapshot outcomes go.
    pub fn set_raft(&self, tx: RaftSender) {
        *self.raft_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Routes messages to exactly these members (the membership after a change): new ones
    /// and new URLs get a stream, members no longer listed lose theirs.
    pub fn route_to(&self, members: &[StoredMember]) {
        let listed: Vec<u64> = members.iter().map(|m| m.id).collect();
        let gone: Vec<u64> = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        for id in gone {
            self.remove_peer(id);
        }
        for m in members {
            self.upsert_peer(m.id, m.peer_urls.clone());
        }
    }

    /// Adds a peer or changes its URLs (the member itself is ignored).
    fn upsert_peer(&self, id: u64, urls: Vec<String>) {
        let Some(me) = self.me.upgrade() else { return };
        if id == self.id || urls.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.get(&id).is_some_and(|p| p.urls == urls) {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        peers.insert(id, PeerHandle { urls: urls.clone(), tx });
        let prober = me.clone();
        let probed = urls.clone();
        self.runtime.spawn(async move { me.peer_loop(id, urls, rx).await });
        self.runtime.spawn(async move { prober.probe_loop(id, probed).await });
    }

    /// etcd's prober: every [`PROBE_INTERVAL`] a small request to the peer (its member list)
    /// times the round trip, for `etcd_network_peer_round_trip_time_seconds`. Ends when the
    /// peer is removed or its URLs change (a new prober takes over).
    async fn probe_loop(self: Arc<Self>, id: u64, urls: Vec<String>) {
        let mut client = None;
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let current = self.peers.lock().unwrap_or_else(|p| p.into_inner()).get(&id).map(|p| p.urls == urls);
            if current != Some(true) {
                return;
            }
            if client.is_none() {
                client = self.connect(&urls).await.ok();
            }
            let Some(c) = client.as_mut() else { continue };
            let started = std::time::Instant::now();
            match tokio::time::timeout(PROBE_INTERVAL, c.members(PeerMembersRequest {})).await {
                Ok(Ok(_)) => metrics::round_trip(id, started.elapsed()),
                _ => client = None,
            }
        }
    }

    fn remove_peer(&self, id: u64) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    fn report(&self, input: Input) {
        if let Some(tx) = self.raft_tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            tx.try_send(input);
        }
    }

    /// A client on the first of `urls` that answers, or why the last one did not.
    async fn connect(&self, urls: &[String]) -> Result<PeerClient<tonic::transport::Channel>, String> {
        let mut last = "no peer URL".to_string();
        for url in urls {
            match rustcd_tls::connect::dial(url, self.tls.as_ref(), Duration::from_secs(1)).await {
                Ok(ch) => {
                    return Ok(PeerClient::new(ch)
                        .max_decoding_message_size(MAX_PEER_MESSAGE)
                        .max_encoding_message_size(MAX_PEER_MESSAGE));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }

    async fn peer_loop(self: Arc<Self>, id: u64, urls: Vec<String>, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = Duration::from_millis(50);
        // The problem last logged (and whether it was a failed dial): a peer that keeps failing
        // the same way is logged once, not at every reconnection.
        let mut reported: Option<(String, bool)> = None;
        loop {
            let client = match self.connect(&urls).await {
                Ok(c) => c,
                Err(e) => {
                    if reported.as_ref().map(|r| &r.0) != Some(&e) {
                        tracing::warn!(remote_peer_id = %format!("{id:x}"), error = %e, "peer is unreachable; retrying");
                        reported = Some((e, true));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    // Messages queued meanwhile are stale: raft resends what matters.
                    let mut dropped = false;
                    while let Ok(m) = rx.try_recv() {
                        dropped = true;
                        metrics::send_failed(id);
                        if m.get_msg_type() == MessageType::MsgSnapshot {
                            self.report(Input::SnapshotStatus(id, false));
                        }
                    }
                    if dropped {
                        self.report(Input::Unreachable(id));
                    }
                    if self.is_removed(id) {
                        return;
                    }
                    continue;
                }
            };
            if reported.as_ref().is_some_and(|r| r.1) {
                tracing::info!(remote_peer_id = %format!("{id:x}"), "peer became active");
                reported = None;
            }
            backoff = Duration::from_millis(50);
            metrics::peer_active(self.id, id, true);
            let ended = self.stream_to(id, client, &mut rx).await;
            metrics::peer_active(self.id, id, false);
            match ended {
                None => return,
                Some(Some(why)) => {
                    if reported.as_ref().map(|r| &r.0) != Some(&why) {
                        tracing::warn!(remote_peer_id = %format!("{id:x}"), error = %why, "lost TCP streaming connection with remote peer");
                        reported = Some((why, false));
                    }
                }
                Some(None) => reported = None,
            }
            self.report(Input::Unreachable(id));
        }
    }

    fn is_removed(&self, id: u64) -> bool {
        !self.peers.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id)
    }

    /// Streams batches to a connected peer until the stream breaks (`Some`, with why when the
    /// peer's side said) or the peer is removed (`None`).
    async fn stream_to(
        &self,
        id: u64,
        client: PeerClient<tonic::transport::Channel>,
        rx: &mut mpsc::Receiver<Message>,
    ) -> Option<Option<String>> {
        let (btx, brx) = mpsc::channel::<RaftBatch>(64);
        let mut c = client.clone();
        let mut call = tokio::spawn(async move { c.raft(ReceiverStream::new(brx)).await });
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let m = m?;
                    let mut batch = RaftBatch { cluster_id: self.cluster_id, from: self.id, messages: Vec::new() };
                    let mut next = Some(m);
                    while let Some(m) = next.take() {
                        if m.get_msg_type() == MessageType::MsgSnapshot {
                            self.send_snapshot(id, client.clone(), m);
                        } else if let Ok(bytes) = m.write_to_bytes() {
                            batch.messages.push(bytes.into());
                        }
                        if batch.messages.len() < MAX_BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                    tracing::trace!(to = %format!("{id:x}"), count = batch.messages.len(), "raft batch sent");
                    // Counted per batch: a label lookup per raft message would cost more than the count.
                    metrics::sent(id, batch.messages.iter().map(|m| m.len()).sum());
                    if !batch.messages.is_empty() && btx.send(batch).await.is_err() {
                        // The call has ended: its result says why.
                        let why = match (&mut call).await {
                            Ok(Err(status)) => Some(rustcd_tls::describe(&status)),
                            _ => None,
                        };
                        return Some(why);
                    }
                }
                r = &mut call => {
                    let why = match r {
                        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                            tracing::error!(remote_peer_id = %format!("{id:x}"), error = %status.message(), "request sent was ignored by remote peer");
                            None
                        }
                        Ok(Err(status)) => Some(rustcd_tls::describe(&status)),
                        _ => None,
                    };
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Some(why);
                }
            }
        }
    }

    fn send_snapshot(&self, id: u64, mut client: PeerClient<tonic::transport::Channel>, mut m: Message) {
        let data = m.mut_snapshot().take_data();
        let Ok(header) = m.write_to_bytes() else {
            return;
        };
        let (cluster_id, from) = (self.cluster_id, self.id);
        let raft_tx = self.raft_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.runtime.spawn(async move {
            let mut chunks = Vec::new();
            let mut first = true;
            let mut at = 0;
            while first || at < data.len() {
                let end = (at + CHUNK).min(data.len());
                let message = if first { header.clone().into() } else { Default::default() };
                first = false;
                chunks.push(SnapshotChunk { cluster_id, from, message, data: data.slice(at..end) });
                at = end;
            }
            let size = data.len();
            let started = std::time::Instant::now();
            let ok = client.snapshot(tokio_stream::iter(chunks)).await.is_ok();
            metrics::snapshot_sent(id, ok, started.elapsed());
            if ok {
                metrics::sent(id, size);
            }
            tracing::info!(remote_peer_id = %format!("{id:x}"), bytes = size, ok, "sent database snapshot");
            if let Some(tx) = raft_tx {
                tx.try_send(Input::SnapshotStatus(id, ok));
            }
        });
    }
}

/// Answers a peer's request for the member list (used to join an existing cluster).
pub type MembersFn = Arc<dyn Fn() -> Vec<StoredMember> + Send + Sync>;

/// The member's HashKV at a revision (run on a blocking thread: it reads the whole store).
pub type HashKvFn = Arc<dyn Fn(i64) -> Result<HashKvResponse, Status> + Send + Sync>;

/// The receiving side: steps incoming messages into the local raft.
pub struct PeerService {
    cluster_id: u64,
    raft_tx: RaftSender,
    members: MembersFn,
    hash_kv: HashKvFn,
}

impl PeerService {
    pub fn server(
        cluster_id: u64,
        raft_tx: RaftSender,
        members: MembersFn,
        hash_kv: HashKvFn,
    ) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { cluster_id, raft_tx, members, hash_kv })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }

    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            tracing::warn!(local = %format!("{:x}", self.cluster_id), remote = %format!("{cluster_id:x}"), "request cluster ID mismatch");
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: local {:x}, remote {cluster_id:x}",
                self.cluster_id
            )));
        }
        Ok(())
    }

    /// Hands a message to raft; dropped when raft's queue is full (raft resends what matters).
    /// Reads a snapshot stream whole and steps it into raft; `from` learns the sender.
    async fn receive_snapshot(
        &self,
        mut stream: Streaming<SnapshotChunk>,
        from: &mut u64,
    ) -> Result<Response<PeerAck>, Status> {
        let mut header: Option<Message> = None;
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            *from = chunk.from;
            self.check_cluster(chunk.cluster_id)?;
            if header.is_none() {
                let m = Message::parse_from_bytes(&chunk.message)
                    .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
                header = Some(m);
            }
            data.extend_from_slice(&chunk.data);
        }
        let mut m = header.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        tracing::info!(bytes = data.len(), "received database snapshot");
        metrics::received(*from, data.len());
        m.mut_snapshot().set_data(data.into());
        self.step(m).await?;
        Ok(Response::new(PeerAck {}))
    }

    async fn step(&self, m: Message) -> Result<(), Status> {
        if m.get_msg_type() == MessageType::MsgSnapshot {
            // A snapshot is worth waiting for room: it is expensive to send again.
            return self
                .raft_tx
                .send(Input::Step(m))
                .await
                .map_err(|_| Status::unavailable("etcdserver: server stopped"));
        }
        if !self.raft_tx.try_send(Input::Step(m)) {
            tracing::debug!("raft queue full: a peer message was dropped");
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            tracing::trace!(from = %format!("{:x}", batch.from), count = batch.messages.len(), "raft batch received");
            self.check_cluster(batch.cluster_id)?;
            metrics::received(batch.from, batch.messages.iter().map(|m| m.len()).sum());
            for bytes in batch.messages {
                match Message::parse_from_bytes(&bytes) {
                    Ok(m) => self.step(m).await?,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable raft message from peer dropped")
                    }
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<PeerAck>, Status> {
        let started = std::time::Instant::now();
        let mut from = 0;
        let received = self.receive_snapshot(req.into_inner(), &mut from).await;
        metrics::snapshot_received(from, received.is_ok(), started.elapsed());
        received
    }

    async fn members(&self, _req: Request<PeerMembersRequest>) -> Result<Response<PeerMembersResponse>, Status> {
        Ok(Response::new(PeerMembersResponse { cluster_id: self.cluster_id, members: (self.members)() }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let (f, rev) = (self.hash_kv.clone(), req.into_inner().revision);
        let r = tokio::task::spawn_blocking(move || f(rev)).await.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(r?))
    }
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
