//! `compare`: the performance table, each row run against rustcd and then the real etcd on clusters
//! started for it (pinned: servers on one set of cores, the load generator on the others), and
//! the performance targets checked against the figures.

use std::path::PathBuf;
use std::time::Instant;

use rustcd_api::etcdserverpb::RangeRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_cluster::{Cluster, Server};

use crate::load::{self, Params, Workload};
use crate::pin::Pinning;
use crate::proc::{PeakRss, mib, proc_usage};
use crate::report::Report;
use crate::watch::{WatchParams, watch};
use crate::{k8s, plot};

pub struct Options {
    pub total: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: usize,
    pub only: String,
    pub tls: bool,
    pub auth: bool,
    pub pinning: Option<Pinning>,
    pub plot: Option<PathBuf>,
    pub json: bool,
    /// Leases of the lease-keepalive row.
    pub leases: usize,
    /// Watchers of the watch row (on one member, 100 a stream).
    pub watchers: usize,
    /// Size of the large range row, MiB (0 skips it).
    pub big_range_mib: usize,
}

/// Both servers' reports of one row.
pub struct Pair {
    pub name: String,
    pub rustcd: Report,
    pub etcd: Report,
}

/// The ratio rustcd/etcd a target asks for.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

/// A performance target: one figure of both servers and the ratio it must reach.
struct Target {
    what: String,
    rustcd: f64,
    etcd: f64,
    unit: &'static str,
    goal: Goal,
}

impl Target {
    fn ratio(&self) -> f64 {
        self.rustcd / self.etcd
    }

    fn met(&self) -> bool {
        match self.goal {
            Goal::AtLeast(t) => self.ratio() >= t,
            Goal::AtMost(t) => self.ratio() <= t,
        }
    }

    fn goal(&self) -> String {
        match self.goal {
            Goal::AtLeast(t) => format!(">= {t:.2}"),
            Goal::AtMost(t) => format!("<= {t:.2}"),
        }
    }
}

/// Starts a cluster of `server` for a row, waits until it takes writes, pins its members.
fn start(server: Server, members: usize, o: &Options, extra: &[&str]) -> Cluster {
    let c =
        if o.tls { Cluster::start_tls(server, members, extra) } else { Cluster::start_with(server, members, extra) };
    c.wait_writable(0);
    if let Some(pinning) = &o.pinning {
        for pid in c.members.iter().filter_map(|m| m.pid()) {
            if let Err(e) = pinning.pin_server(pid) {
                crate::fail(e);
            }
        }
    }
    c
}

struct Row {
    name: &'static str,
    members: usize,
    workload: Workload,
    clients: usize,
    conns: usize,
    /// Requests of the row, from the run's `--total`.
    total: fn(usize) -> usize,
}

const PUT_1000: &str = "3 nodes, put, 1000 clients / 100 conns";
const PUT_1: &str = "3 nodes, put, 1 client";
const RANGE: &str = "3 nodes, linearizable range, 100 clients";
const TXN_MIXED: &str = "3 nodes, txn-mixed 90/10, 100 clients";
const K8S: &str = "3 nodes, Kubernetes-like mix, 100 clients";
const LEASES: &str = "3 nodes, lease-keepalive";
const WATCH: &str = "3 nodes, watch, watchers on one member";
const BIG_RANGE: &str = "3 nodes, one large range";

fn rows(o: &Options) -> Vec<Row> {
    let k8s = Workload::K8s(k8s::Config { objects: 10_000, page: 500 });
    let same = |t: usize| t;
    let mut rows = vec![
        Row { name: PUT_1000, members: 3, workload: Workload::Put, clients: 1000, conns: 100, total: same },
        // One client cannot finish the full total quickly; keep its run short.
        Row { name: PUT_1, members: 3, workload: Workload::Put, clients: 1, conns: 1, total: |t| t / 10 },
        Row { name: RANGE, members: 3, workload: Workload::Range, clients: 100, conns: 10, total: same },
        Row { name: TXN_MIXED, members: 3, workload: Workload::TxnMixed(90), clients: 100, conns: 10, total: same },
        Row { name: K8S, members: 3, workload: k8s, clients: 100, conns: 10, total: same },
        Row {
            name: "1 node, put, 1000 clients",
            members: 1,
            workload: Workload::Put,
            clients: 1000,
            conns: 100,
            total: same,
        },
    ];
    if o.leases > 0 {
        rows.insert(
            5,
            Row {
                name: LEASES,
                members: 3,
                workload: Workload::LeaseKeepalive,
                clients: o.leases,
                conns: 100,
                total: |t| t,
            },
        );
    }
    rows
}

pub async fn compare(o: &Options) {
    if o.tls {
        println!("(client and peer TLS on both servers, client certificates required)");
    }
    if o.auth {
        println!("(authentication on, the load as a non-root user allowed every key)");
    }
    if !o.json {
        println!(
            "{:<44} {:>12} {:>12} {:>7} | {:>13} {:>13} | {:>9} {:>9} | {:>8} {:>8}",
            "workload",
            "rustcd req/s",
            "etcd req/s",
            "ratio",
            "p50/p99 ms",
            "etcd",
            "cpu us/rq",
            "etcd cpu",
            "rss MiB",
            "etcd rss"
        );
    }
    let mut pairs = Vec::new();
    for row in rows(o).into_iter().filter(|r| r.name.contains(&o.only)) {
        let total =
            if row.workload == Workload::LeaseKeepalive { o.total.max(3 * row.clients) } else { (row.total)(o.total) };
        let p = Params {
            workload: row.workload,
            clients: row.clients,
            conns: row.conns,
            total,
            key_size: o.key_size,
            val_size: o.val_size,
            key_space: o.key_space,
            ..Params::default()
        };
        let name = if row.workload == Workload::LeaseKeepalive {
            format!("{} {} leases", row.name, row.clients)
        } else {
            row.name.to_string()
        };
        let mut reports = Vec::new();
        for server in [Server::Rustcd, Server::Etcd] {
            let c = start(server, row.members, o, &[]);
            let mut p = p.clone();
            if o.auth {
                p.token = Some(crate::extras::enable_auth(&c.members[0].endpoint()).await);
            }
            reports.push(load::run(&c, &p).await);
        }
        let etcd = reports.pop().unwrap_or_default();
        let rustcd = reports.pop().unwrap_or_default();
        let pair = Pair { name, rustcd, etcd };
        if !o.json {
            print_row(&pair);
        }
        pairs.push(pair);
    }
    let mut extra = Vec::new();
    if o.watchers > 0 && WATCH.contains(&o.only) {
        extra.push(watch_row(o).await);
    }
    if o.big_range_mib > 0 && BIG_RANGE.contains(&o.only) {
        extra.push(big_range_row(o).await);
    }
    let targets = targets(&pairs, &extra);
    if o.json {
        let rows: Vec<serde_json::Value> = pairs
            .iter()
            .map(|p| serde_json::json!({"workload": p.name, "rustcd": p.rustcd.json(), "etcd": p.etcd.json()}))
            .collect();
        let extra: Vec<serde_json::Value> = extra.iter().map(|e| e.json()).collect();
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .map(|t| serde_json::json!({"target": t.what, "rustcd": t.rustcd, "etcd": t.etcd, "unit": t.unit, "ratio": t.ratio(), "goal": t.goal(), "met": t.met()}))
            .collect();
        let pinning = o.pinning.as_ref().map(|p| p.describe());
        println!("{}", serde_json::json!({"pinning": pinning, "rows": rows, "other": extra, "targets": targets}));
    } else {
        for e in &extra {
            println!("{}", e.text);
        }
        println!("\ntargets (rustcd/etcd):");
        for t in &targets {
            println!(
                "  {:<58} {:>10.1} {:>10.1} {:<6} ratio {:>5.2}  target {:<7} {}",
                t.what,
                t.rustcd,
                t.etcd,
                t.unit,
                t.ratio(),
                t.goal(),
                if t.met() { "met" } else { "NOT met" }
            );
        }
    }
    if let Some(path) = &o.plot {
        let mut charts: Vec<plot::Series> =
            pairs.iter().map(|p| plot::Series { name: &p.name, rustcd: &p.rustcd.lats, etcd: &p.etcd.lats }).collect();
        for e in &extra {
            if let Some((a, b)) = &e.lats {
                charts.push(plot::Series { name: &e.name, rustcd: &a.lats, etcd: &b.lats });
            }
        }
        match plot::write(path, &charts) {
            Ok(()) => eprintln!("(latency CDFs written to {})", path.display()),
            Err(e) => eprintln!("rustcd-bench: plot: {e}"),
        }
    }
}

fn print_row(p: &Pair) {
    let (a, b) = (&p.rustcd, &p.etcd);
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>7.2} | {:>13} {:>13} | {:>9.0} {:>9.0} | {:>8.1} {:>8.1}{}",
        p.name,
        a.requests_per_sec(),
        b.requests_per_sec(),
        a.requests_per_sec() / b.requests_per_sec(),
        format!("{:.2}/{:.2}", a.p50_ms(), a.p99_ms()),
        format!("{:.2}/{:.2}", b.p50_ms(), b.p99_ms()),
        a.cpu_us_per_req,
        b.cpu_us_per_req,
        a.rss_mib,
        b.rss_mib,
        if a.error_count() + b.error_count() > 0 {
            format!(
                "  errors {}/{} {:?}",
                a.error_count(),
                b.error_count(),
                a.errors.keys().chain(b.errors.keys()).next()
            )
        } else {
            String::new()
        }
    );
}

/// A row measured its own way (watch, large range): its printed lines, its figures by name,
/// and latencies to plot.
struct Other {
    name: String,
    text: String,
    figures: Vec<(&'static str, f64, f64)>,
    lats: Option<(Report, Report)>,
}

impl Other {
    fn figure(&self, what: &str) -> Option<(f64, f64)> {
        self.figures.iter().find(|f| f.0 == what).map(|f| (f.1, f.2))
    }

    fn json(&self) -> serde_json::Value {
        let figures: serde_json::Map<String, serde_json::Value> =
            self.figures.iter().map(|(k, a, b)| (k.to_string(), serde_json::json!({"rustcd": a, "etcd": b}))).collect();
        serde_json::json!({"workload": self.name, "figures": figures})
    }
}

/// 10,000 watchers (100 streams of 100 over 10 connections) on one member of three, on 100
/// keys; 2,000 puts at 200 a second through that member; the member's largest RSS and each
/// event's delay after its put.
async fn watch_row(o: &Options) -> Other {
    let streams = o.watchers.div_ceil(100);
    let wp = WatchParams {
        streams,
        watch_per_stream: o.watchers / streams,
        watched_key_total: 100,
        put_rate: 200,
        put_total: 2000,
        key_size: o.key_size,
        key_space: 100,
        sequential_keys: true,
    };
    let mut results = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = start(server, 3, o, &[]);
        let pid = c.members[0].pid().unwrap_or(0);
        let channels =
            crate::conn::connect(&[c.members[0].endpoint()], 10, false).await.unwrap_or_else(|e| crate::fail(e));
        let idle = proc_usage(pid).1;
        let peak = PeakRss::start(pid);
        let r = watch(&channels, &None, &wp).await;
        let peak = peak.stop();
        results.push((r.unwrap_or_else(|e| crate::fail(format!("watch: {e}"))), idle, peak));
    }
    let (b, b_idle, b_peak) = results.pop().unwrap_or_else(|| unreachable!());
    let (a, a_idle, a_peak) = results.pop().unwrap_or_else(|| unreachable!());
    let name = format!("{WATCH}: {} watchers, {} puts", wp.streams * wp.watch_per_stream, wp.put_total);
    let text = format!(
        "{name}\n  watch creation p99 ms: rustcd {:.2}, etcd {:.2}\n  put -> event p50/p99 ms: rustcd {:.2}/{:.2}, etcd {:.2}/{:.2} ({} / {} events, errors {} / {})\n  member RSS idle -> peak MiB: rustcd {:.1} -> {:.1}, etcd {:.1} -> {:.1}",
        a.create.p99_ms(),
        b.create.p99_ms(),
        a.events.p50_ms(),
        a.events.p99_ms(),
        b.events.p50_ms(),
        b.events.p99_ms(),
        a.events.lats.len(),
        b.events.lats.len(),
        a.events.error_count(),
        b.events.error_count(),
        mib(a_idle),
        mib(a_peak),
        mib(b_idle),
        mib(b_peak),
    );
    let figures =
        vec![("event_p99_ms", a.events.p99_ms(), b.events.p99_ms()), ("peak_rss_mib", mib(a_peak), mib(b_peak))];
    Other { name, text, figures, lats: Some((a.events, b.events)) }
}

/// `big_range_mib` MiB of 10 KiB values on three members, then one range of all of them from
/// one member: that member's largest RSS above its RSS just before, and the time the range
/// took (rustcd also by RangeStream, which etcd 3.4 does not have).
async fn big_range_row(o: &Options) -> Other {
    const VALUE: usize = 10 * 1024;
    let keys = o.big_range_mib * 1024 * 1024 / VALUE;
    let fill = Params {
        workload: Workload::TxnPut(10),
        clients: 20,
        conns: 4,
        total: keys.div_ceil(10),
        key_size: 8,
        val_size: VALUE,
        key_space: keys,
        sequential_keys: true,
        ..Params::default()
    };
    let mut got = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = start(server, 3, o, &["--quota-backend-bytes", "17179869184"]);
        let loaded = load::run(&c, &fill).await;
        if loaded.error_count() > 0 {
            eprintln!("({} failed txns while loading: {:?})", loaded.error_count(), loaded.errors.keys().next());
        }
        let pid = c.members[0].pid().unwrap_or(0);
        let channel = rustcd_cluster::probe::connect(&c.members[0].endpoint()).await.unwrap_or_else(|e| crate::fail(e));
        let mut kv = KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
        let all = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() };
        let idle = proc_usage(pid).1;
        let peak = PeakRss::start(pid);
        let t = Instant::now();
        let count = match kv.range(all.clone()).await {
            Ok(r) => r.into_inner().kvs.len(),
            Err(s) => {
                eprintln!("rustcd-bench: large range on {server:?}: {}", s.message());
                0
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let peak = peak.stop();
        let streamed = if server == Server::Rustcd { range_stream(&channel, pid, all).await } else { None };
        got.push((count, idle, peak, secs, streamed));
    }
    let (b_count, b_idle, b_peak, b_secs, _) = got.pop().unwrap_or_else(|| unreachable!());
    let (a_count, a_idle, a_peak, a_secs, a_stream) = got.pop().unwrap_or_else(|| unreachable!());
    let name = format!("{BIG_RANGE}: {keys} keys x 10 KiB ({} MiB)", o.big_range_mib);
    let mut text = format!(
        "{name}\n  Range: rustcd {a_count} keys in {a_secs:.2} s, RSS idle {:.1} MiB + peak {:.1} MiB; etcd {b_count} keys in {b_secs:.2} s, RSS idle {:.1} MiB + peak {:.1} MiB",
        mib(a_idle),
        mib(a_peak - a_idle),
        mib(b_idle),
        mib(b_peak - b_idle),
    );
    let mut figures = vec![("peak_rss_above_idle_mib", mib(a_peak - a_idle), mib(b_peak - b_idle))];
    if let Some((count, idle, peak, secs)) = a_stream {
        text += &format!(
            "\n  RangeStream (rustcd only): {count} keys in {secs:.2} s, RSS idle {:.1} MiB + peak {:.1} MiB",
            mib(idle),
            mib(peak - idle)
        );
        figures.push(("stream_peak_rss_above_idle_mib", mib(peak - idle), mib(b_peak - b_idle)));
    }
    Other { name, text, figures, lats: None }
}

/// The same range by RangeStream: keys, RSS before, peak RSS, seconds.
async fn range_stream(
    channel: &tonic::transport::Channel,
    pid: u32,
    all: RangeRequest,
) -> Option<(usize, f64, f64, f64)> {
    let mut kv = KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
    let idle = proc_usage(pid).1;
    let peak = PeakRss::start(pid);
    let t = Instant::now();
    let mut count = 0;
    if let Ok(answer) = kv.range_stream(all).await {
        let mut chunks = answer.into_inner();
        while let Ok(Some(c)) = chunks.message().await {
            count += c.range_response.map_or(0, |r| r.kvs.len());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Some((count, idle, peak.stop(), secs))
}

fn targets(pairs: &[Pair], other: &[Other]) -> Vec<Target> {
    use Goal::{AtLeast, AtMost};
    let pair = |name: &str| pairs.iter().find(|p| p.name.starts_with(name));
    let both = |name: &str, f: fn(&Report) -> f64| pair(name).map(|p| (f(&p.rustcd), f(&p.etcd)));
    let rps = |name: &str| both(name, Report::requests_per_sec);
    let figure = |row: &str, key: &str| other.iter().filter(|o| o.name.starts_with(row)).find_map(|o| o.figure(key));
    let rows = [
        ("put, 1000 clients / 100 conns, throughput", rps(PUT_1000), "req/s", AtLeast(2.0)),
        ("server CPU per put, summed over members", both(PUT_1000, |r| r.cpu_us_per_req), "us", AtMost(0.5)),
        ("linearizable range, 100 clients, throughput", rps(RANGE), "req/s", AtLeast(2.0)),
        ("txn-mixed 90/10, throughput", rps(TXN_MIXED), "req/s", AtLeast(2.0)),
        ("Kubernetes-like mix, throughput", rps(K8S), "req/s", AtLeast(2.0)),
        ("watch, 10k watchers on one member: RSS", figure(WATCH, "peak_rss_mib"), "MiB", AtMost(0.3)),
        ("watch, 10k watchers: put -> event p99", figure(WATCH, "event_p99_ms"), "ms", AtMost(0.5)),
        (
            "one large range: peak member RSS above idle",
            figure(BIG_RANGE, "peak_rss_above_idle_mib"),
            "MiB",
            AtMost(0.25),
        ),
        (
            "  the same by RangeStream (etcd: its Range)",
            figure(BIG_RANGE, "stream_peak_rss_above_idle_mib"),
            "MiB",
            AtMost(0.25),
        ),
        ("lease-keepalive, throughput", rps(LEASES), "req/s", AtLeast(2.0)),
        ("put, 1 client, p50 latency", both(PUT_1, Report::p50_ms), "ms", AtMost(0.6)),
    ];
    rows.into_iter()
        .filter_map(|(what, figures, unit, goal)| {
            figures.map(|(rustcd, etcd)| Target { what: what.to_string(), rustcd, etcd, unit, goal })
        })
        .collect()
}
