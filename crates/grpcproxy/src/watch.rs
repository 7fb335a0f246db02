//! The Watch service of the proxy (etcd's `grpcproxy/watch*.go`): client watches on the same
//! key range share one watch on the cluster (a [`Broadcast`]). A client watch joins a broadcast
//! that has not delivered past its start revision (a watch "from now" joins any established
//! one); otherwise it starts a broadcast of its own. Each client watch sees only events at or
//! after its start revision, filtered and with or without previous values as it asked. A
//! broadcast whose cluster stream breaks resumes from the revision after the last one it
//! delivered, unseen by its clients; it ends when its last client watch does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::watch_server::Watch;
use rustcd_api::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse};
use rustcd_api::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::namespace::Namespace;

type Range = (Vec<u8>, Vec<u8>);
type Out = mpsc::Sender<Result<WatchResponse, Status>>;
/// A client watch: its client stream and its watch id there.
type WatcherKey = (u64, i64);

/// Responses a client stream may have queued before the proxy drops it as too slow (etcd
/// cancels a client that does not take a response in time).
const CLIENT_QUEUE: usize = 1024;

/// One client watch.
#[derive(Clone)]
struct Watcher {
    id: i64,
    /// The first revision this watch has not been sent yet (0 until known).
    next_rev: i64,
    progress: bool,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    out: Out,
}

impl Watcher {
    /// Posts a response; false when the client stream is gone or too slow.
    fn post(&self, r: WatchResponse) -> bool {
        self.out.try_send(Ok(r)).is_ok()
    }

    /// etcd's `watcher.send`: the events of an upstream response this watch wants.
    fn send(&mut self, m: &WatchResponse, ns: &Namespace) -> bool {
        let rev = m.header.as_ref().map_or(0, |h| h.revision);
        let progress = m.events.is_empty() && m.compact_revision == 0;
        if progress && !self.progress {
            return true;
        }
        if self.next_rev > rev && !m.events.is_empty() {
            return true;
        }
        let mut events: Vec<Event> = Vec::with_capacity(m.events.len());
        let mut last = 0;
        for ev in &m.events {
            let ev_rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            if ev_rev < self.next_rev {
                continue;
            }
            last = ev_rev;
            let is_put = ev.r#type == 0;
            if (is_put && self.no_put) || (!is_put && self.no_delete) {
                continue;
            }
            let mut ev = ev.clone();
            if !self.prev_kv {
                ev.prev_kv = None;
            }
            ev.kv.iter_mut().chain(ev.prev_kv.iter_mut()).for_each(|kv| ns.strip(kv));
            events.push(ev);
        }
        if last >= self.next_rev {
            self.next_rev = last + 1;
        }
        if !progress && events.is_empty() {
            return true;
        }
        self.post(WatchResponse { header: m.header, watch_id: self.id, events, ..Default::default() })
    }
}

#[derive(Default)]
struct State {
    /// The first revision not yet delivered (0 until the cluster said where "now" is).
    next_rev: i64,
    /// Responses received from the cluster: 0 until the watch is established.
    responses: u64,
    last_header: Option<ResponseHeader>,
    watchers: HashMap<WatcherKey, Watcher>,
    done: bool,
}

/// One watch on the cluster, shared by client watches on its range.
pub struct Broadcast {
    range: Range,
    /// The auth token of the client watch that started it (etcd's proxy watches with the
    /// first watcher's context); later watches join only after their own permission check.
    token: Option<Token>,
    state: Mutex<State>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Broadcast {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// etcd's `watchBroadcast.add`: joins `w` when it would miss nothing.
    fn try_join(&self, key: WatcherKey, mut w: Watcher) -> bool {
        let mut st = self.lock();
        if st.done {
            return false;
        }
        if st.responses == 0 {
            // Not established: the cluster's created response will tell both where they start.
            if st.next_rev != w.next_rev {
                return false;
            }
            st.watchers.insert(key, w);
            return true;
        }
        if w.next_rev == 0 {
            w.next_rev = st.next_rev;
        }
        if w.next_rev < st.next_rev {
            return false;
        }
        let mut header = st.last_header.unwrap_or_default();
        header.revision = st.next_rev - 1;
        if !w.post(WatchResponse { header: Some(header), watch_id: w.id, created: true, ..Default::default() }) {
            return false;
        }
        st.watchers.insert(key, w);
        true
    }

    /// Hands one response from the cluster to every client watch; false when the broadcast
    /// has ended (the cluster canceled it).
    fn deliver(&self, m: &WatchResponse, stats: &Stats, ns: &Namespace) -> bool {
        let mut st = self.lock();
        let rev = m.header.as_ref().map_or(0, |h| h.revision);
        if m.canceled {
            for w in st.watchers.values() {
                w.post(WatchResponse {
                    header: m.header,
                    watch_id: w.id,
                    canceled: true,
                    compact_revision: m.compact_revision,
                    cancel_reason: m.cancel_reason.clone(),
                    ..Default::default()
                });
            }
            st.watchers.clear();
            st.done = true;
            return false;
        }
        if m.created {
            if st.responses == 0 {
                if st.next_rev == 0 {
                    st.next_rev = rev + 1;
                }
                st.responses = 1;
                st.last_header = m.header;
                st.watchers.retain(|_, w| {
                    if w.next_rev == 0 {
                        w.next_rev = rev + 1;
                    }
                    let created =
                        WatchResponse { header: m.header, watch_id: w.id, created: true, ..Default::default() };
                    w.post(created)
                });
            }
            // A created response after a resume is the proxy's business alone.
            return true;
        }
        st.responses += 1;
        st.next_rev = st.next_rev.max(rev + 1);
        st.last_header = m.header;
        if !m.events.is_empty() && st.watchers.len() > 1 {
            stats.events_coalesced.fetch_add((st.watchers.len() - 1) as u64, Ordering::Relaxed);
        }
        st.watchers.retain(|_, w| w.send(m, ns));
        true
    }
}

/// What `/metrics` reports of the watch proxy.
#[derive(Default)]
pub struct Stats {
    /// Events delivered to more than one client watch from one cluster event, minus one each.
    pub events_coalesced: AtomicU64,
}

struct Hub {
    upstream: Channel,
    ns: Namespace,
    ranges: Mutex<HashMap<Range, Vec<Arc<Broadcast>>>>,
    next_stream: AtomicU64,
    stats: Arc<Stats>,
}

impl Hub {
    fn ranges(&self) -> MutexGuard<'_, HashMap<Range, Vec<Arc<Broadcast>>>> {
        self.ranges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a client watch on a broadcast: an existing one that fits, or a new one.
    fn add(self: &Arc<Self>, range: Range, key: WatcherKey, w: Watcher, token: Option<Token>) -> Arc<Broadcast> {
        let mut ranges = self.ranges();
        let list = ranges.entry(range.clone()).or_default();
        for b in list.iter() {
            if b.try_join(key, w.clone()) {
                return b.clone();
            }
        }
        let start = w.next_rev;
        let mut st = State { next_rev: start, ..Default::default() };
        st.watchers.insert(key, w);
        let b = Arc::new(Broadcast { range, token, state: Mutex::new(st), task: Mutex::new(None) });
        let task = tokio::spawn(run(Arc::downgrade(self), b.clone()));
        *b.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        list.push(b.clone());
        b
    }

    /// Takes a client watch off its broadcast; the broadcast ends with its last watch.
    fn remove(&self, b: &Arc<Broadcast>, key: WatcherKey) {
        let mut ranges = self.ranges();
        let mut st = b.lock();
        st.watchers.remove(&key);
        if !st.watchers.is_empty() {
            return;
        }
        st.done = true;
        drop(st);
        if let Some(list) = ranges.get_mut(&b.range) {
            list.retain(|x| !Arc::ptr_eq(x, b));
            if list.is_empty() {
                ranges.remove(&b.range);
            }
        }
        if let Some(t) = b.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Client watches sharing a broadcast another one started, and the broadcasts.
    fn coalescing(&self) -> (usize, usize) {
        let ranges = self.ranges();
        let all = ranges.values().flatten();
        let watchers: usize = all.clone().map(|b| b.lock().watchers.len().saturating_sub(1)).sum();
        (watchers, all.count())
    }
}

/// A broadcast's watch on the cluster, resumed after the last delivered revision whenever the
/// stream breaks, until the broadcast ends.
async fn run(hub: std::sync::Weak<Hub>, b: Arc<Broadcast>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(h) = hub.upgrade() else { return };
        let (ch, stats, ns) = (h.upstream.clone(), h.stats.clone(), h.ns.clone());
        drop(h);
        let create = WatchCreateRequest {
            key: b.range.0.clone().into(),
            range_end: b.range.1.clone().into(),
            start_revision: b.lock().next_rev,
            progress_notify: true,
            prev_kv: true,
            ..Default::default()
        };
        // The request stream stays open while the watch runs: closing it ends the watch.
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
        let mut req = Request::new(ReceiverStream::new(rx));
        if let Some(t) = &b.token {
            req.metadata_mut().insert("token", t.clone());
        }
        match WatchClient::new(ch).max_decoding_message_size(usize::MAX).watch(req).await {
            Ok(resp) => {
                let mut s = resp.into_inner();
                while let Ok(Some(m)) = s.message().await {
                    backoff = Duration::from_millis(50);
                    if !b.deliver(&m, &stats, &ns) {
                        // Canceled by the cluster: its watches were told; it is gone.
                        if let Some(h) = hub.upgrade() {
                            h.remove(&b, (u64::MAX, i64::MIN));
                        }
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open a watch on the cluster; retrying"),
        }
        drop(tx);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

pub struct WatchProxy {
    hub: Arc<Hub>,
}

impl WatchProxy {
    pub fn new(ch: Channel, ns: Namespace) -> WatchProxy {
        let hub =
            Hub { upstream: ch, ns, ranges: Mutex::default(), next_stream: AtomicU64::new(0), stats: Arc::default() };
        WatchProxy { hub: Arc::new(hub) }
    }

    /// Events coalesced so far, client watches now sharing a broadcast, and broadcasts.
    pub fn stats(&self) -> (u64, usize, usize) {
        let (watchers, broadcasts) = self.hub.coalescing();
        (self.hub.stats.events_coalesced.load(Ordering::Relaxed), watchers, broadcasts)
    }
}

/// etcd's `watchRange.valid`: a range end, when given, is after the key (or `\0`).
fn valid(key: &[u8], end: &[u8]) -> bool {
    end.is_empty() || end > key || end == [0]
}

/// Serves one client stream: its creates, cancels and progress requests.
/// A client's auth token, as its requests carry it.
type Token = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// etcd's `checkPermissionForWatch`: with the client's token, a one-key serializable read of
/// the range must be allowed (the cluster answers `permission denied` otherwise).
async fn check_permission(hub: &Hub, key: &[u8], range_end: &[u8], token: &Option<Token>) -> Result<(), Status> {
    let Some(t) = token else { return Ok(()) };
    let r = rustcd_api::etcdserverpb::RangeRequest {
        key: key.to_vec().into(),
        range_end: range_end.to_vec().into(),
        limit: 1,
        serializable: true,
        keys_only: true,
        ..Default::default()
    };
    let mut req = Request::new(r);
    req.metadata_mut().insert("token", t.clone());
    rustcd_api::etcdserverpb::kv_client::KvClient::new(hub.upstream.clone()).range(req).await.map(|_| ())
}

async fn serve_stream(hub: Arc<Hub>, mut input: Streaming<WatchRequest>, out: Out, token: Option<Token>) {
    let stream = hub.next_stream.fetch_add(1, Ordering::Relaxed);
    let mut watches: HashMap<i64, Arc<Broadcast>> = HashMap::new();
    let mut next_id = 0i64;
    while let Ok(Some(req)) = input.message().await {
        match req.request_union {
            Some(RequestUnion::CreateRequest(cr)) => {
                if !valid(&cr.key, &cr.range_end) {
                    let _ = out.try_send(Ok(WatchResponse {
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        ..Default::default()
                    }));
                    continue;
                }
                let (key, end) = hub.ns.interval(&cr.key, &cr.range_end);
                if let Err(e) = check_permission(&hub, &key, &end, &token).await {
                    let _ = out.try_send(Ok(WatchResponse {
                        header: Some(ResponseHeader::default()),
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: format!("rpc error: code = {:?} desc = {}", e.code(), e.message()),
                        ..Default::default()
                    }));
                    continue;
                }
                let id = if cr.watch_id != 0 && !watches.contains_key(&cr.watch_id) {
                    cr.watch_id
                } else {
                    while watches.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id
                };
                let w = Watcher {
                    id,
                    next_rev: cr.start_revision.max(0),
                    progress: cr.progress_notify,
                    prev_kv: cr.prev_kv,
                    no_put: cr.filters.contains(&0),
                    no_delete: cr.filters.contains(&1),
                    out: out.clone(),
                };
                let b = hub.add((key, end), (stream, id), w, token.clone());
                watches.insert(id, b);
            }
            Some(RequestUnion::CancelRequest(c)) => {
                if let Some(b) = watches.remove(&c.watch_id) {
                    let header = b.lock().last_header;
                    hub.remove(&b, (stream, c.watch_id));
                    let _ = out.try_send(Ok(WatchResponse {
                        header,
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    }));
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Every watch of the stream has been sent all events up to the oldest of its
                // broadcasts' delivered revisions.
                let at = watches.values().map(|b| b.lock()).filter(|s| s.responses > 0).map(|s| {
                    let mut h = s.last_header.unwrap_or_default();
                    h.revision = s.next_rev - 1;
                    h
                });
                if let Some(header) = at.min_by_key(|h| h.revision) {
                    let _ =
                        out.try_send(Ok(WatchResponse { header: Some(header), watch_id: -1, ..Default::default() }));
                }
            }
            None => {}
        }
    }
    for (id, b) in watches {
        hub.remove(&b, (stream, id));
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let token = req.metadata().get("token").cloned();
        tokio::spawn(serve_stream(self.hub.clone(), req.into_inner(), tx, token));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
