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
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

pub struct WatchService(pub Arc<EtcdServer>);

/// Batches buffered per stream before its watchers fall back to catching up from the backend.
const STREAM_BUFFER: usize = 1024;

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let incoming = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(STREAM_BUFFER);
        let session = Session { s: self.0.clone(), watchers: HashMap::new(), next_id: 0, out: out_tx };
        tokio::spawn(session.run(incoming));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

struct Session {
    s: Arc<EtcdServer>,
    /// Client watch id -> hub key.
    watchers: HashMap<i64, WatcherKey>,
    next_id: i64,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
}

impl Session {
    async fn run(mut self, mut incoming: Streaming<WatchRequest>) {
        let (ev_tx, mut ev_rx) = mpsc::channel::<WatchEvent>(STREAM_BUFFER);
        loop {
            tokio::select! {
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => {
                        if !self.handle(req, &ev_tx).await {
                            break;
                        }
                    }
                    _ => break,
                },
                Some(ev) = ev_rx.recv() => {
                    if !self.forward(ev).await {
                        break;
                    }
                }
            }
        }
        for key in self.watchers.values() {
            self.s.hub.cancel(*key);
        }
    }

    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn handle(&mut self, req: WatchRequest, ev_tx: &mpsc::Sender<WatchEvent>) -> bool {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c, ev_tx).await,
            Some(RequestUnion::CancelRequest(c)) => {
                let Some(key) = self.watchers.remove(&c.watch_id) else {
                    return true;
                };
                self.s.hub.cancel(key);
                let rev = self.s.store.current_rev();
                self.send(WatchResponse {
                    header: self.s.header(rev),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                let rev = self.s.store.current_rev();
                self.send(WatchResponse { header: self.s.header(rev), watch_id: -1, ..Default::default() }).await
            }
            None => true,
        }
    }

    async fn create(&mut self, c: WatchCreateRequest, ev_tx: &mpsc::Sender<WatchEvent>) -> bool {
        let watch_id = if c.watch_id != 0 { c.watch_id } else { self.fresh_id() };
        if self.watchers.contains_key(&watch_id) {
            let rev = self.s.store.current_rev();
            return self
                .send(WatchResponse {
                    header: self.s.header(rev),
                    watch_id,
                    created: true,
                    canceled: true,
                    cancel_reason: "etcdserver: duplicate watch ID".into(),
                    ..Default::default()
                })
                .await;
        }
        let spec = WatchSpec {
            range: KeyRange::new(&c.key, &c.range_end),
            start_rev: c.start_revision,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: c.prev_kv,
            watch_id,
        };
        let (key, rev) = self.s.hub.watch(spec, ev_tx.clone());
        self.watchers.insert(watch_id, key);
        self.send(WatchResponse { header: self.s.header(rev), watch_id, created: true, ..Default::default() }).await
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
        // A batch for a watcher cancelled meanwhile is dropped.
        if self.watchers.get(&ev.watch_id) != Some(&ev.key) {
            return true;
        }
        let canceled = ev.compact_revision != 0;
        if canceled {
            self.watchers.remove(&ev.watch_id);
        }
        self.send(WatchResponse {
            header: self.s.header(ev.revision),
            watch_id: ev.watch_id,
            canceled,
            compact_revision: ev.compact_revision,
            events: ev.events,
            ..Default::default()
        })
        .await
    }
}
