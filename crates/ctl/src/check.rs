//! `etcdctl check perf` and `check datascale`: etcd's own health checks of a cluster under a
//! fixed write load, with its pass/fail thresholds and its report lines.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Subcommand;
use rustcd_api::etcdserverpb::{CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use rustcd_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{CtlError, Ctx};
use rustcd_gocompat::prefix_end;

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    Perf(CheckArgs),
    #[command(
        about = "Check the memory usage of holding data for different workloads on a given server endpoint.",
        long_about = "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used."
    )]
    Datascale(DatascaleArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    #[arg(long, default_value = "/etcdctl-check-perf/", help = "The prefix for writing the performance check's keys.")]
    pub prefix: String,
    #[arg(long = "auto-compact", help = "Compact storage with last revision after test is finished.")]
    pub auto_compact: bool,
    #[arg(long = "auto-defrag", help = "Defragment storage after test is finished.")]
    pub auto_defrag: bool,
}

#[derive(clap::Args, Debug)]
pub struct DatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    #[arg(
        long,
        default_value = "/etcdctl-check-datascale/",
        help = "The prefix for writing the datascale check's keys."
    )]
    pub prefix: String,
    #[arg(long = "auto-compact", help = "Compact storage with last revision after test is finished.")]
    pub auto_compact: bool,
    #[arg(long = "auto-defrag", help = "Defragment storage after test is finished.")]
    pub auto_defrag: bool,
}

impl From<DatascaleArgs> for CheckArgs {
    fn from(a: DatascaleArgs) -> CheckArgs {
        CheckArgs { load: a.load, prefix: a.prefix, auto_compact: a.auto_compact, auto_defrag: a.auto_defrag }
    }
}

/// A small xorshift generator: check keys only need to be spread, not unpredictable.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng(seed ^ u64::from(std::process::id()) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A key of `size` bytes under `prefix`, random at the front like etcd's varint keys.
    fn key(&mut self, prefix: &str, size: usize) -> Vec<u8> {
        let mut k = prefix.as_bytes().to_vec();
        k.extend(self.next().to_le_bytes());
        k.resize(prefix.len() + size, 0);
        k
    }
}

/// Latencies of the requests that succeeded and the errors of the others.
#[derive(Default)]
struct Report {
    ok: Vec<f64>,
    errors: std::collections::BTreeMap<String, u64>,
}

impl Report {
    fn slowest(&self) -> f64 {
        self.ok.iter().copied().fold(0.0, f64::max)
    }
    fn stddev(&self) -> f64 {
        let n = self.ok.len().max(1) as f64;
        let mean = self.ok.iter().sum::<f64>() / n;
        (self.ok.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
    }
}

/// A progress line like the pb bar etcdctl draws.
fn progress(done: u64, total: u64, started: Instant) {
    let pct = done as f64 * 100.0 / total.max(1) as f64;
    let mut line = format!("\r{done} / {total} {pct:>7.2}%");
    if done > 0 && done < total {
        let left = started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64;
        line.push_str(&format!(" {:02}m{:02}s", left as u64 / 60, left as u64 % 60));
    }
    print!("{line}");
    let _ = std::io::stdout().flush();
}

async fn prefix_is_empty(ctx: &Ctx, c: &Client, prefix: &str) -> Result<(), CtlError> {
    let req = RangeRequest {
        key: prefix.as_bytes().to_vec().into(),
        range_end: prefix_end(prefix.as_bytes()).into(),
        limit: 1,
        ..Default::default()
    };
    if !ctx.call(c.kv().range(req)).await?.kvs.is_empty() {
        return Err(CtlError::new(
            3,
            &format!("prefix {prefix:?} has keys. Delete with 'etcdctl del --prefix {prefix}' first"),
        ));
    }
    Ok(())
}

/// Puts `count` keys (or keys for `duration`, at most `rate` a second) from `clients` tasks.
async fn load(
    c: &Client,
    a: &CheckArgs,
    clients: usize,
    count: Option<u64>,
    rate: Option<(u64, Duration)>,
    ksize: usize,
    vsize: usize,
) -> Report {
    let (tx, rx) = async_channel(clients);
    let report = std::sync::Arc::new(std::sync::Mutex::new(Report::default()));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (rx, c, report) = (rx.clone(), c.clone(), report.clone());
        workers.push(tokio::spawn(async move {
            let mut kv = c.kv();
            while let Some(put) = next(&rx).await {
                let start = Instant::now();
                let res = kv.put(put).await;
                let Ok(mut r) = report.lock() else { return };
                match res {
                    Ok(_) => r.ok.push(start.elapsed().as_secs_f64()),
                    Err(e) => *r.errors.entry(e.message().to_string()).or_default() += 1,
                }
            }
        }));
    }
    let mut rng = Rng::new();
    let value = tonic::codegen::Bytes::from(vec![0u8; vsize]);
    let next_put = |rng: &mut Rng| PutRequest {
        key: rng.key(&a.prefix, ksize).into(),
        value: value.clone(),
        ..Default::default()
    };
    let started = Instant::now();
    match (count, rate) {
        (Some(n), _) => {
            for i in 0..n {
                let put = next_put(&mut rng);
                if tx.send(put).await.is_err() {
                    break;
                }
                if i % 100 == 0 {
                    progress(i, n, started);
                }
            }
            progress(n, n, started);
        }
        (None, Some((per_sec, duration))) => {
            let secs = duration.as_secs();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec.max(1) as f64));
            let mut shown = 0;
            progress(0, secs, started);
            while started.elapsed() < duration {
                tick.tick().await;
                let put = next_put(&mut rng);
                if tx.send(put).await.is_err() {
                    break;
                }
                let now = started.elapsed().as_secs();
                if now != shown {
                    shown = now;
                    progress(now.min(secs), secs, started);
                }
            }
        }
        (None, None) => {}
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    println!();
    let mut r = report.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
    r.ok.shrink_to_fit();
    r
}

type Sender = tokio::sync::mpsc::Sender<PutRequest>;
type Receiver = std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<PutRequest>>>;

fn async_channel(cap: usize) -> (Sender, Receiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap.max(1));
    (tx, std::sync::Arc::new(tokio::sync::Mutex::new(rx)))
}

async fn next(rx: &Receiver) -> Option<PutRequest> {
    rx.lock().await.recv().await
}

/// Deletes the check's keys, then compacts and defragments when asked.
async fn clean_up(ctx: &Ctx, c: &Client, a: &CheckArgs) -> Result<(), CtlError> {
    let del = DeleteRangeRequest {
        key: a.prefix.as_bytes().to_vec().into(),
        range_end: prefix_end(a.prefix.as_bytes()).into(),
        prev_kv: false,
    };
    let resp = ctx.call(c.kv().delete_range(del)).await?;
    if a.auto_compact {
        let revision = resp.header.map_or(0, |h| h.revision);
        ctx.call(c.kv().compact(CompactionRequest { revision, physical: true })).await?;
        println!("Compacted with revision {revision}");
    }
    if a.auto_defrag {
        for ep in &ctx.config.endpoints {
            let one = Client::connect_one(ep, &ctx.config).await?;
            match ctx.call(one.maintenance().defragment(DefragmentRequest {})).await {
                Ok(_) => println!("Defragmented {ep:?}"),
                Err(e) => eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg),
            }
        }
    }
    Ok(())
}

fn print_errors(r: &Report) -> bool {
    if r.errors.is_empty() {
        return true;
    }
    println!("FAIL: too many errors");
    for (e, n) in &r.errors {
        println!("FAIL: ERROR({e}) -> {n}");
    }
    false
}

pub async fn run(ctx: &Ctx, cmd: CheckCmd) -> Result<(), CtlError> {
    let c = ctx.client().await?;
    match cmd {
        CheckCmd::Perf(a) => {
            let (limit, clients) = match a.load.as_str() {
                "s" => (150, 50),
                "m" => (1000, 200),
                "l" => (8000, 500),
                "xl" => (15000, 1000),
                other => return Err(CtlError::new(3, &format!("unknown load option {other}"))),
            };
            prefix_is_empty(ctx, &c, &a.prefix).await?;
            let duration = Duration::from_secs(60);
            let started = Instant::now();
            let r = load(&c, &a, clients, None, Some((limit, duration)), 256, 1024).await;
            let rps = r.ok.len() as f64 / started.elapsed().as_secs_f64();
            clean_up(ctx, &c, &a).await?;
            let mut ok = print_errors(&r);
            if rps / limit as f64 <= 0.9 {
                println!("FAIL: Throughput too low: {} writes/s", rps as u64 + 1);
                ok = false;
            } else {
                println!("PASS: Throughput is {} writes/s", rps as u64 + 1);
            }
            let slowest = r.slowest();
            if slowest > 0.5 {
                println!("FAIL: Slowest request took too long: {slowest:.6}s");
                ok = false;
            } else {
                println!("PASS: Slowest request took {slowest:.6}s");
            }
            let stddev = r.stddev();
            if stddev > 0.1 {
                println!("FAIL: Stddev too high: {stddev:.6}s");
                ok = false;
            } else {
                println!("PASS: Stddev is {stddev:.6}s");
            }
            if !ok {
                println!("FAIL");
                return Err(CtlError::new(1, "").silent());
            }
            println!("PASS");
        }
        CheckCmd::Datascale(a) => {
            let a = CheckArgs::from(a);
            let (limit, clients) = match a.load.as_str() {
                "s" => (10_000, 50),
                "m" => (100_000, 200),
                "l" => (1_000_000, 500),
                "xl" => (3_000_000, 1000),
                other => return Err(CtlError::new(3, &format!("unknown load option {other}"))),
            };
            prefix_is_empty(ctx, &c, &a.prefix).await?;
            let ep = ctx.config.endpoints.first().cloned().unwrap_or_default();
            let Some(before) = resident_memory(&ep).await else {
                println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
                return Err(CtlError::new(1, "").silent());
            };
            println!(
                "Start data scale check for work load [{limit} key-value pairs, 1024 bytes per key-value, {clients} concurrent clients]."
            );
            let r = load(&c, &a, clients, Some(limit), None, 512, 512).await;
            let after = resident_memory(&ep).await;
            clean_up(ctx, &c, &a).await?;
            let Some(after) = after else {
                println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
                return Err(CtlError::new(1, "").silent());
            };
            if !print_errors(&r) {
                return Err(CtlError::new(1, "").silent());
            }
            println!("PASS: Approximate system memory used : {:.2} MB.", (after - before) / (1024.0 * 1024.0));
        }
    }
    Ok(())
}

/// `process_resident_memory_bytes` from the endpoint's `/metrics`.
async fn resident_memory(ep: &str) -> Option<f64> {
    let host = ep.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}
