//! Watch guarantees over real processes: a watcher that stops reading while 100k writes go on
//! never holds them up, and afterwards receives every event once, in revision order.

use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use rustcd_testkit::{Cluster, channel};
use tokio_stream::StreamExt;

const WRITES: usize = 100_000;
const CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watcher_misses_nothing_and_blocks_no_write() {
    let c = Cluster::start(1);
    let ep = c.members[0].endpoint();
    let ch = channel(&ep).await;

    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    let mut watch = WatchClient::new(ch.clone());
    let create =
        WatchCreateRequest { key: b"s/".to_vec().into(), range_end: b"s0".to_vec().into(), ..Default::default() };
    req_tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut stream =
        watch.watch(tokio_stream::wrappers::ReceiverStream::new(req_rx)).await.expect("open watch").into_inner();
    let created = stream.next().await.expect("created reply").expect("created ok");
    assert!(created.created);
    let start_rev = created.header.as_ref().map(|h| h.revision).unwrap_or(0);

    // The watcher now stalls: nobody reads `stream` while the writes go on.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let mut kv = KvClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            for n in (w..WRITES).step_by(CLIENTS) {
                let put = PutRequest {
                    key: format!("s/{:06}", n % 1000).into_bytes().into(),
                    value: n.to_string().into_bytes().into(),
                    ..Default::default()
                };
                kv.put(put).await.expect("put while a watcher stalls");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let write_time = started.elapsed();

    // Now read: every write's event, once, in revision order.
    let mut seen = 0usize;
    let mut last_rev = start_rev;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < WRITES {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {seen} of {WRITES} events arrived"))
            .expect("stream open")
            .expect("watch response");
        assert!(!resp.canceled, "watch canceled: {}", resp.cancel_reason);
        for ev in resp.events {
            let kv = ev.kv.expect("event kv");
            assert_eq!(kv.mod_revision, last_rev + 1, "events must be consecutive revisions");
            last_rev = kv.mod_revision;
            seen += 1;
        }
    }
    assert_eq!(seen, WRITES);
    eprintln!("{WRITES} writes took {write_time:?} with a stalled watcher");
    drop(c);
}

/// Opens a watch stream with one create request; returns the stream after its `created` reply.
async fn open_watch(
    ch: tonic::transport::Channel,
    create: WatchCreateRequest,
) -> (tokio::sync::mpsc::Sender<WatchRequest>, tonic::Streaming<rustcd_api::etcdserverpb::WatchResponse>) {
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    req_tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut stream = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await
        .expect("open watch")
        .into_inner();
    let created = stream.next().await.expect("created reply").expect("created ok");
    assert!(created.created);
    (req_tx, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_and_fragments() {
    let c = rustcd_testkit::Cluster::start_with(
        rustcd_testkit::Server::Rustcd,
        1,
        &["--experimental-watch-progress-notify-interval", "300ms"],
    );
    let ch = channel(&c.members[0].endpoint()).await;
    let mut kv = KvClient::new(ch.clone());
    // Three values of 700 KB: together past --max-request-bytes (1.5 MiB).
    for k in ["f1", "f2", "f3"] {
        let put =
            PutRequest { key: k.as_bytes().to_vec().into(), value: vec![b'x'; 700_000].into(), ..Default::default() };
        kv.put(put).await.expect("put");
    }

    // An idle watcher with progress_notify learns the current revision.
    let idle = WatchCreateRequest { key: b"idle".to_vec().into(), progress_notify: true, ..Default::default() };
    let (_keep, mut stream) = open_watch(ch.clone(), idle).await;
    let resp = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("a progress notification");
    let resp = resp.expect("stream open").expect("response");
    assert!(resp.events.is_empty() && !resp.canceled);
    assert_eq!(resp.header.expect("header").revision, 4);

    // A watcher that accepts fragments gets the history in pieces, the last unflagged.
    let frag = WatchCreateRequest {
        key: b"f".to_vec().into(),
        range_end: b"g".to_vec().into(),
        start_revision: 1,
        fragment: true,
        ..Default::default()
    };
    let (_keep2, mut stream) = open_watch(ch.clone(), frag).await;
    let mut flags = Vec::new();
    let mut events = 0;
    while events < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("events").unwrap().unwrap();
        events += resp.events.len();
        flags.push(resp.fragment);
    }
    assert!(flags.len() > 1, "history over the limit comes in fragments: {flags:?}");
    assert_eq!(flags.last(), Some(&false));
    assert!(flags[..flags.len() - 1].iter().all(|f| *f));
}
