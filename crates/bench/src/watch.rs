//! etcd's watch benchmarks: `watch` (watchers on streams, then puts; how long a watch takes to
//! create and how long after its put each event arrives), `watch-get` (serializable gets while
//! many watchers catch up from an old revision) and `watch-latency` (a put at a time, how long
//! until every client's watch sees it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::conn::{Token, with_token};
use crate::report::{Report, error_text};

/// How long the last events may take to arrive after the last put.
const EVENT_DEADLINE: Duration = Duration::from_secs(60);

fn create(key: &[u8], start_revision: i64) -> WatchRequest {
    let c = WatchCreateRequest { key: key.to_vec().into(), start_revision, ..Default::default() };
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

/// A watch stream: its request sender and its answers. The first request goes in before the
/// call (a Go server answers the call with its first message).
pub async fn open_stream(
    channel: &Channel,
    token: &Token,
    first: WatchRequest,
    capacity: usize,
) -> Result<(mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>), String> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    tx.send(first).await.map_err(|_| "watch stream closed".to_string())?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answers = WatchClient::new(channel.clone()).watch(with_token(stream, token)).await;
    Ok((tx, answers.map_err(|s| error_text(&s))?.into_inner()))
}

/// etcd's `benchmark watch` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct WatchParams {
    /// Total watch streams
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total watchers per stream
    #[arg(long, default_value_t = 100)]
    pub watch_per_stream: usize,
    /// Total number of keys to be watched
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub put_rate: u64,
    /// Number of put requests
    #[arg(long, default_value_t = 1000)]
    pub put_total: usize,
    /// Key size of watch request
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1, value_parser = clap::value_parser!(usize))]
    pub key_space: usize,
    /// Use sequential keys
    #[arg(long)]
    pub sequential_keys: bool,
}

/// What `watch` measured.
pub struct WatchReport {
    /// Watch creation: request sent to created answer.
    pub create: Report,
    /// Put sent to event received, one per event; missing events are errors.
    pub events: Report,
}

fn watched_key(i: usize, wp: &WatchParams) -> Vec<u8> {
    let space = wp.key_space.max(1);
    let k = if wp.sequential_keys { i % space } else { crate::load::mix(i) % space };
    crate::load::key(k, wp.key_size)
}

/// Watchers on `streams` streams (over `channels` in turn), each on one of the watched keys,
/// then `put_total` puts to those keys through `channels`.
pub async fn watch(channels: &[Channel], token: &Token, wp: &WatchParams) -> Result<WatchReport, String> {
    let keys: Vec<Vec<u8>> = (0..wp.watched_key_total.max(1)).map(|i| watched_key(i, wp)).collect();
    let base = Instant::now();
    // When each put was sent, nanoseconds after `base`, by its sequence number.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..wp.put_total).map(|_| AtomicU64::new(0)).collect());
    let (event_tx, mut event_rx) = mpsc::unbounded_channel::<f64>();
    let bar = crate::report::bar(wp.streams * wp.watch_per_stream);
    let created_at = Instant::now();
    let mut streams = Vec::new();
    for s in 0..wp.streams {
        let (channel, token, keys, bar) =
            (channels[s % channels.len()].clone(), token.clone(), keys.clone(), bar.clone());
        let (per_stream, total_streams) = (wp.watch_per_stream, wp.streams);
        let (sent, event_tx) = (sent.clone(), event_tx.clone());
        streams.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let key_of = |j: usize| keys[(j * total_streams + s) % keys.len()].clone();
            let t = Instant::now();
            let (tx, mut answers) = open_stream(&channel, &token, create(&key_of(0), 0), 1).await?;
            for j in 0..per_stream {
                let t = if j == 0 {
                    t
                } else {
                    let t = Instant::now();
                    tx.send(create(&key_of(j), 0)).await.map_err(|_| "watch stream closed".to_string())?;
                    t
                };
                loop {
                    match answers.message().await.map_err(|s| error_text(&s))? {
                        Some(r) if r.created => break,
                        Some(_) => {}
                        None => return Err("watch stream ended".to_string()),
                    }
                }
                lat.push(t.elapsed().as_secs_f64());
                bar.inc(1);
            }
            // Events from now on: put to arrival.
            let reader = tokio::spawn(async move {
                let _keep_open = tx;
                while let Ok(Some(r)) = answers.message().await {
                    let now = base.elapsed().as_nanos() as u64;
                    for ev in r.events {
                        let seq =
                            ev.kv.and_then(|kv| std::str::from_utf8(&kv.value).ok()?.trim().parse::<usize>().ok());
                        if let Some(at) = seq.and_then(|s| sent.get(s)).map(|a| a.load(Ordering::Relaxed)) {
                            let _ = event_tx.send(now.saturating_sub(at) as f64 / 1e9);
                        }
                    }
                }
            });
            Ok::<_, String>((lat, reader))
        }));
    }
    drop(event_tx);
    let mut create_lat = Vec::new();
    let mut readers = Vec::new();
    for s in streams {
        let (lat, reader) = s.await.map_err(|e| e.to_string())??;
        create_lat.extend(lat);
        readers.push(reader);
    }
    bar.finish_and_clear();
    let create = Report::new(create_lat, BTreeMap::new(), created_at.elapsed());

    // Watchers per key decide the events each put brings.
    let mut watchers_on = vec![0usize; keys.len()];
    for s in 0..wp.streams {
        for j in 0..wp.watch_per_stream {
            watchers_on[(j * wp.streams + s) % keys.len()] += 1;
        }
    }
    let expected: usize = (0..wp.put_total).map(|i| watchers_on[i % keys.len()]).sum();
    let bar = crate::report::bar(expected);
    let puts_started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut putters = Vec::new();
    for channel in channels {
        let (next, sent, keys, channel, token) =
            (next.clone(), sent.clone(), keys.clone(), channel.clone(), token.clone());
        let (total, rate) = (wp.put_total, wp.put_rate);
        putters.push(tokio::spawn(async move {
            let mut kv = KvClient::new(channel);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                if rate > 0 {
                    tokio::time::sleep_until((puts_started + Duration::from_secs_f64(i as f64 / rate as f64)).into())
                        .await;
                }
                let put = PutRequest {
                    key: keys[i % keys.len()].clone().into(),
                    value: format!("{i:016}").into_bytes().into(),
                    ..Default::default()
                };
                sent[i].store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                kv.put(with_token(put, &token)).await.map_err(|s| error_text(&s))?;
            }
        }));
    }
    let mut errors = BTreeMap::new();
    for p in putters {
        if let Err(e) = p.await.map_err(|e| e.to_string()).and_then(|r| r) {
            *errors.entry(e).or_insert(0) += 1;
        }
    }
    let mut lats = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    while lats.len() < expected {
        match tokio::time::timeout_at(deadline, event_rx.recv()).await {
            Ok(Some(l)) => {
                lats.push(l);
                bar.inc(1);
            }
            _ => break,
        }
    }
    bar.finish_and_clear();
    for r in readers {
        r.abort();
    }
    if lats.len() < expected {
        errors.insert("event not received".to_string(), expected - lats.len());
    }
    Ok(WatchReport { create, events: Report::new(lats, errors, puts_started.elapsed()) })
}

/// etcd's `watch-get`: `events` puts of `watchkey`, then `watchers` watchers on `streams`
/// streams watching it from the first of those revisions, while one client does serializable
/// gets until every watcher has every event; the gets are the report.
pub async fn watch_get(
    channels: &[Channel],
    get_channel: Channel,
    token: &Token,
    watchers: usize,
    streams: usize,
    events: usize,
) -> Result<Report, String> {
    let mut kv = KvClient::new(channels[0].clone());
    let mut watch_rev = 0;
    for i in 0..events {
        let put = PutRequest {
            key: b"watchkey".to_vec().into(),
            value: i.to_string().into_bytes().into(),
            ..Default::default()
        };
        let resp = kv.put(with_token(put, token)).await.map_err(|s| error_text(&s))?.into_inner();
        if i == 0 {
            watch_rev = resp.header.map_or(0, |h| h.revision);
        }
    }
    let received = Arc::new(AtomicUsize::new(0));
    let want = watchers * events;
    let bar = crate::report::bar(want);
    let mut readers = Vec::new();
    for s in 0..streams.max(1) {
        let on_this = (s..watchers).step_by(streams.max(1)).count();
        if on_this == 0 {
            continue;
        }
        let (tx, mut answers) =
            open_stream(&channels[s % channels.len()], token, create(b"watchkey", watch_rev), on_this).await?;
        for _ in 1..on_this {
            tx.send(create(b"watchkey", watch_rev)).await.map_err(|_| "watch stream closed".to_string())?;
        }
        let (received, bar) = (received.clone(), bar.clone());
        readers.push(tokio::spawn(async move {
            let _keep_open = tx;
            while let Ok(Some(r)) = answers.message().await {
                received.fetch_add(r.events.len(), Ordering::Relaxed);
                bar.inc(r.events.len() as u64);
            }
        }));
    }
    let mut get = KvClient::new(get_channel);
    let (mut lats, mut errors) = (Vec::new(), BTreeMap::new());
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < want && started.elapsed() < EVENT_DEADLINE {
        let t = Instant::now();
        let r = RangeRequest { key: b"abc".to_vec().into(), serializable: true, ..Default::default() };
        match get.range(with_token(r, token)).await {
            Ok(_) => lats.push(t.elapsed().as_secs_f64()),
            Err(s) => *errors.entry(error_text(&s)).or_insert(0) += 1,
        }
    }
    bar.finish_and_clear();
    for r in readers {
        r.abort();
    }
    let got = received.load(Ordering::Relaxed);
    if got < want {
        errors.insert("event not received".to_string(), want - got);
    }
    Ok(Report::new(lats, errors, started.elapsed()))
}

/// etcd's `watch-latency`: each channel one watch on a key; `total` puts at `put_rate` a
/// second through `put_channel`; for each put and watcher, the time from the put's answer until
/// the watcher has the event.
pub async fn watch_latency(
    channels: &[Channel],
    put_channel: Channel,
    token: &Token,
    total: usize,
    put_rate: u64,
    key_size: usize,
    val_size: usize,
) -> Result<Report, String> {
    let key = crate::load::key(0, key_size.max(1));
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let mut readers = Vec::new();
    for channel in channels {
        let (tx, mut answers) = open_stream(channel, token, create(&key, 0), 1).await?;
        match answers.message().await.map_err(|s| error_text(&s))? {
            Some(r) if r.created => {}
            _ => return Err("watch not created".into()),
        }
        let arrived_tx = arrived_tx.clone();
        readers.push(tokio::spawn(async move {
            let _keep_open = tx;
            while let Ok(Some(r)) = answers.message().await {
                for _ in &r.events {
                    let _ = arrived_tx.send(Instant::now());
                }
            }
        }));
    }
    let mut kv = KvClient::new(put_channel);
    let value: bytes::Bytes = vec![b'w'; val_size].into();
    let (mut lats, mut errors) = (Vec::new(), BTreeMap::new());
    let bar = crate::report::bar(total);
    let started = Instant::now();
    for i in 0..total {
        if put_rate > 0 {
            tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / put_rate as f64)).into()).await;
        }
        let put = PutRequest { key: key.clone().into(), value: value.clone(), ..Default::default() };
        kv.put(with_token(put, token)).await.map_err(|s| error_text(&s))?;
        let answered = Instant::now();
        for _ in 0..channels.len() {
            match tokio::time::timeout(EVENT_DEADLINE, arrived.recv()).await {
                Ok(Some(at)) => lats.push(at.saturating_duration_since(answered).as_secs_f64()),
                _ => *errors.entry("event not received".to_string()).or_insert(0) += 1,
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for r in readers {
        r.abort();
    }
    Ok(Report::new(lats, errors, started.elapsed()))
}
