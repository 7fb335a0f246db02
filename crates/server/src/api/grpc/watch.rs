//! The Watch service: one bidirectional stream carries many watchers. Each stream has one
//! task that reads client requests and forwards the hub's event batches, so a watcher's
//! `created` reply always precedes its events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use rustcd_api::etcdserverpb::watch_create_request::FilterType;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::watch_server::Watch;
use rustcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use rustcd_mvcc::KeyRange;
use rustcd_mvcc::watch::{WatchEvent, WatchSpec, WatcherKey};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

pub struct WatchService(pub Arc<EtcdServer>);

/// Batches buffered per stream before its watchers fall back to catching up from the backend.
const STREAM_BUFFER: usize = 1024;
/// How often a progress request waiting for a watcher to catch up is tried again.
const PROGRESS_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        // Who may watch what is asked at each create, with the stream's token (or certificate).
        let token = req.metadata().get("token").and_then(|v| v.to_str().ok()).map(str::to_string);
        let cn = req.extensions().get::<crate::api::caller::PeerCommonName>().map(|c| c.0.clone());
        Ok(Response::new(self.open(req.into_inner(), token, cn)))
    }
}

impl WatchService {
    /// Serves one watch stream: `incoming` carries the client's requests (a gRPC stream, or the
    /// JSON gateway's decoded body); the answer is the stream of responses. As etcd's, the
    /// responses go on after the client stops sending, until it goes away.
    pub fn open<S>(&self, incoming: S, token: Option<String>, cn: Option<String>) -> WatchStream
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(STREAM_BUFFER);
        rustcd_metrics::get().mvcc.watch_stream_total.inc();
        let session = Session {
            s: self.0.clone(),
            watchers: HashMap::new(),
            next_id: 0,
            out: out_tx,
            progress_asked: false,
            token,
            cn,
        };
        tokio::spawn(session.run(incoming));
        Box::pin(ReceiverStream::new(out_rx))
    }
}

/// One watcher of a stream.
struct Watching {
    key: WatcherKey,
    /// Split responses larger than `--max-request-bytes` (the client asked for fragments).
    fragment: bool,
    /// Send an empty response with the current revision when idle for a progress interval.
    progress_notify: bool,
    /// Events were sent since the last progress tick.
    active: bool,
}

struct Session {
    s: Arc<EtcdServer>,
    /// Client watch id -> its watcher.
    watchers: HashMap<i64, Watching>,
    next_id: i64,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    /// The client asked for progress while a watcher was still catching up: answer once synced.
    progress_asked: bool,
    /// The stream's auth token, and its TLS client certificate's common name.
    token: Option<String>,
    cn: Option<String>,
}

impl Session {
    async fn run<S>(mut self, mut incoming: S)
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin,
    {
        let (ev_tx, mut ev_rx) = mpsc::channel::<WatchEvent>(STREAM_BUFFER);
        let every = self.s.config().raw.experimental_watch_progress_notify_interval;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut sending_done = false;
        let out = self.out.clone();
        loop {
            tokio::select! {
                _ = progress.tick() => self.progress_notify(&ev_tx),
                _ = tokio::time::sleep(PROGRESS_RETRY), if self.progress_asked => self.request_progress(&ev_tx),
                msg = incoming.next(), if !sending_done => match msg {
                    Some(Ok(req)) => {
                        if !self.handle(req, &ev_tx).await {
                            break;
                        }
                    }
                    // The client closed its side: its watchers go on (as etcd's recvLoop ends).
                    None => sending_done = true,
                    Some(Err(_)) => break,
                },
                _ = out.closed() => break,
                Some(ev) = ev_rx.recv() => {
                    if !self.forward(ev).await {
                        break;
                    }
                }
            }
        }
        for w in self.watchers.values() {
            self.s.hub().cancel(w.key);
        }
        rustcd_metrics::get().mvcc.watch_stream_total.dec();
    }

    /// etcd's progress notification: idle, synced watchers that asked for it learn the
    /// revision, behind their events in the stream (see `WatchHub::progress`).
    fn progress_notify(&mut self, ev_tx: &mpsc::Sender<WatchEvent>) {
        for (watch_id, w) in &mut self.watchers {
            if w.progress_notify && !w.active {
                self.s.hub().progress(&[w.key], *watch_id, ev_tx);
            }
            w.active = false;
        }
    }

    /// A client's progress request: one notification (watch id -1) for the whole stream once
    /// every watcher on it is synced.
    fn request_progress(&mut self, ev_tx: &mpsc::Sender<WatchEvent>) {
        let keys: Vec<WatcherKey> = self.watchers.values().map(|w| w.key).collect();
        self.progress_asked = !self.s.hub().progress(&keys, -1, ev_tx);
    }

    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn handle(&mut self, req: WatchRequest, ev_tx: &mpsc::Sender<WatchEvent>) -> bool {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c, ev_tx).await,
            Some(RequestUnion::CancelRequest(c)) => {
                let Some(w) = self.watchers.remove(&c.watch_id) else {
                    return true;
                };
                self.s.hub().cancel(w.key);
                let rev = self.s.store().current_rev();
                self.send(WatchResponse {
                    header: self.s.header(rev),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.request_progress(ev_tx);
                true
            }
            None => true,
        }
    }

    /// A create refused: created and canceled at once, with the reason.
    async fn refuse(&self, watch_id: i64, reason: &str) -> bool {
        let rev = self.s.store().current_rev();
        let resp = WatchResponse {
            header: self.s.header(rev),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason.into(),
            ..Default::default()
        };
        self.send(resp).await
    }

    async fn create(&mut self, c: WatchCreateRequest, ev_tx: &mpsc::Sender<WatchEvent>) -> bool {
        if c.start_revision < 0 {
            // etcd 3.5.24: a negative start revision is refused as compacted, with no watcher
            return self.refuse(-1, "etcdserver: mvcc: required revision has been compacted").await;
        }
        if !self.is_watch_permitted(&c) {
            return self.refuse(-1, "rpc error: code = PermissionDenied desc = etcdserver: permission denied").await;
        }
        let watch_id = if c.watch_id != 0 { c.watch_id } else { self.fresh_id() };
        if self.watchers.contains_key(&watch_id) {
            return self.refuse(watch_id, "etcdserver: duplicate watch ID").await;
        }
        let spec = WatchSpec {
            range: KeyRange::new(&c.key, &c.range_end),
            start_rev: c.start_revision,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: c.prev_kv,
            watch_id,
        };
        let (key, rev) = self.s.hub().watch(spec, ev_tx.clone());
        self.watchers.insert(
            watch_id,
            Watching { key, fragment: c.fragment, progress_notify: c.progress_notify, active: false },
        );
        self.send(WatchResponse { header: self.s.header(rev), watch_id, created: true, ..Default::default() }).await
    }

    /// etcd's `isWatchPermitted`: read permission on the range, for the stream's caller now.
    fn is_watch_permitted(&self, c: &WatchCreateRequest) -> bool {
        let auth = self.s.auth();
        if !auth.is_enabled() {
            return true;
        }
        let caller = Caller::resolve(&self.s, self.token.as_deref(), self.cn.as_deref());
        match caller.who() {
            Ok(who) => auth.is_range_permitted(who, &c.key, &c.range_end).is_ok(),
            Err(_) => false,
        }
    }

    fn fresh_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn forward(&mut self, ev: WatchEvent) -> bool {
        if ev.progress {
            if ev.watch_id != -1 && !self.watchers.contains_key(&ev.watch_id) {
                return true;
            }
            let resp =
                WatchResponse { header: self.s.header(ev.revision), watch_id: ev.watch_id, ..Default::default() };
            return self.send(resp).await;
        }
        // A batch for a watcher cancelled meanwhile is dropped.
        let Some(w) = self.watchers.get_mut(&ev.watch_id).filter(|w| w.key == ev.key) else {
            return true;
        };
        w.active = true;
        let fragment = w.fragment;
        let canceled = ev.compact_revision != 0;
        if canceled {
            self.watchers.remove(&ev.watch_id);
        }
        // etcd's cancel for a compacted start revision carries no revision in its header.
        let header = self.s.header(if canceled { 0 } else { ev.revision });
        let limit = self.s.config().raw.max_request_bytes as usize;
        let parts = if fragment { fragments(ev.events, limit) } else { vec![ev.events] };
        let last = parts.len() - 1;
        for (i, events) in parts.into_iter().enumerate() {
            rustcd_metrics::get().mvcc.events_total.inc_by(events.len() as u64);
            let resp = WatchResponse {
                header,
                watch_id: ev.watch_id,
                canceled,
                compact_revision: ev.compact_revision,
                fragment: i < last,
                events,
                ..Default::default()
            };
            if !self.send(resp).await {
                return false;
            }
        }
        true
    }
}

/// Splits events into groups of at most `limit` encoded bytes (a single larger event keeps a
/// group of its own), as etcd fragments large watch responses.
fn fragments(events: Vec<rustcd_api::mvccpb::Event>, limit: usize) -> Vec<Vec<rustcd_api::mvccpb::Event>> {
    use prost::Message;
    let mut out: Vec<Vec<rustcd_api::mvccpb::Event>> = vec![Vec::new()];
    let mut size = 0;
    for e in events {
        let n = e.encoded_len();
        if size + n > limit && !out.last().is_some_and(|g| g.is_empty()) {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(g) = out.last_mut() {
            g.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rustcd_api::mvccpb::{Event, KeyValue};

    #[test]
    fn large_batches_are_fragmented() {
        let ev = |n: usize| Event {
            kv: Some(KeyValue { value: vec![0; n].into(), ..Default::default() }),
            ..Default::default()
        };
        let parts = super::fragments(vec![ev(600), ev(600), ev(2000), ev(10)], 1000);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![1, 1, 1, 1]);
        let parts = super::fragments(vec![ev(100), ev(100), ev(100)], 1000);
        assert_eq!(parts.len(), 1);
    }
}
