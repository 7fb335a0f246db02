//! Backup figures, rustcd against etcd on the same machine: a snapshot save and restore of a
//! one-member store of many keys (time, and the server's peak RSS during the save), and the
//! worst put latency while a >= 1 GiB backend is defragmented under a put load.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};
use rustcd_cluster::{Cluster, Server, workspace_bin};

use crate::load;
use crate::proc::{PeakRss, mib, proc_usage};

const REAL_ETCDCTL: &str = "/usr/bin/etcdctl";

/// Loads `keys` keys of `val_size` bytes in txns of 100 puts (distinct keys).
pub async fn fill(c: &Cluster, keys: usize, val_size: usize) {
    const OPS: usize = 100;
    let p = load::Params {
        workload: load::Workload::TxnPut(OPS),
        clients: 50,
        conns: 10,
        total: keys.div_ceil(OPS),
        key_size: keys.to_string().len().max(8),
        val_size,
        key_space: keys,
        sequential_keys: true,
        ..load::Params::default()
    };
    let r = load::run(c, &p).await;
    if r.error_count() > 0 {
        println!("({} failed txns while loading)", r.error_count());
    }
}

fn run(cmd: &mut Command, what: &str) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// Snapshot save (the real etcdctl for both servers), restore (each server's own tool: our
/// etcdutl, etcd's etcdctl 3.4) and the first read after starting on the restored data.
pub async fn snapshot(keys: usize, val_size: usize) {
    let mut rows = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let mut c = Cluster::start_with(server, 1, &["--quota-backend-bytes", "8589934592"]);
        c.wait_writable(0);
        fill(&c, keys, val_size).await;
        let ep = c.members[0].endpoint();
        let pid = c.members[0].pid().unwrap_or(0);
        let snap = c.dir().join("bench.db");
        let rss_before = proc_usage(pid).1;
        let sampler = PeakRss::start(pid);
        let save = run(
            Command::new(REAL_ETCDCTL)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &ep, "snapshot", "save"])
                .arg(&snap),
            "snapshot save",
        );
        let peak = sampler.stop();
        let size = std::fs::metadata(&snap).map(|m| m.len()).unwrap_or(0);
        let mut planned = Cluster::planned(server, 1, &[]);
        let m = &planned.members[0];
        let tool = match server {
            Server::Rustcd => workspace_bin("etcdutl"),
            Server::Etcd => REAL_ETCDCTL.into(),
            Server::Etcd35 => rustcd_cluster::etcd_3_5_bin("etcdutl"),
        };
        let restore = run(
            Command::new(tool)
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(&snap)
                .arg("--name=m0")
                .arg(format!("--data-dir={}", m.data_dir.display()))
                .arg(format!("--initial-cluster={}", planned.initial_cluster()))
                .arg(format!("--initial-advertise-peer-urls={}", m.peer_url())),
            "snapshot restore",
        );
        c.kill(0, libc::SIGTERM);
        let started = Instant::now();
        planned.start_all();
        let start = started.elapsed();
        let count = count_keys(&planned.members[0].endpoint()).await;
        rows.push((save, restore, start, size, mib(peak), mib(peak - rss_before), count));
    }
    let secs = |d: Duration| d.as_secs_f64();
    let (a, b) = (&rows[0], &rows[1]);
    println!("snapshot of {keys} keys ({val_size}-byte values), 1 member; rustcd vs etcd:");
    println!("  keys after restore:          {} vs {}", a.6, b.6);
    println!("  snapshot file:               {:.0} MiB vs {:.0} MiB", mib(a.3 as f64), mib(b.3 as f64));
    println!(
        "  save (real etcdctl):         {:.2} s vs {:.2} s, ratio {:.2}",
        secs(a.0),
        secs(b.0),
        secs(a.0) / secs(b.0)
    );
    println!(
        "  restore:                     {:.2} s vs {:.2} s, ratio {:.2}",
        secs(a.1),
        secs(b.1),
        secs(a.1) / secs(b.1)
    );
    println!(
        "  start on the restored data:  {:.2} s vs {:.2} s, ratio {:.2}",
        secs(a.2),
        secs(b.2),
        secs(a.2) / secs(b.2)
    );
    println!("  server peak RSS during save: {:.0} MiB vs {:.0} MiB, ratio {:.2}", a.4, b.4, a.4 / b.4);
    println!("  RSS growth during save:      {:.0} MiB vs {:.0} MiB", a.5, b.5);
}

async fn count_keys(ep: &str) -> i64 {
    let mut kv = KvClient::new(rustcd_cluster::channel(ep).await);
    let all = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), count_only: true, ..Default::default() };
    kv.range(all).await.map(|r| r.into_inner().count).unwrap_or(-1)
}

/// Defragments a backend of `gib` GiB (2 KiB values) while `clients` clients put in a loop;
/// reports the defrag's duration and the worst put latency during it.
pub async fn defrag(gib: f64, clients: usize) {
    const VALUE: usize = 2048;
    let keys = (gib * (1u64 << 30) as f64 / VALUE as f64) as usize;
    let mut rows = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 1, &["--quota-backend-bytes", "8589934592"]);
        c.wait_writable(0);
        fill(&c, keys, VALUE).await;
        let ep = c.members[0].endpoint();
        let mut kv = KvClient::new(rustcd_cluster::channel(&ep).await);
        let rev = kv.range(RangeRequest { key: b"x".to_vec().into(), ..Default::default() }).await;
        let rev = rev.map(|r| r.into_inner().header.map_or(0, |h| h.revision)).unwrap_or(0);
        let _ = kv.compact(CompactionRequest { revision: rev, physical: true }).await;
        let db = c.members[0].data_dir.join("member/snap/db");
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..clients {
            let (ep, stop) = (ep.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut kv = KvClient::new(rustcd_cluster::channel(&ep).await);
                let mut lat = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let put = PutRequest {
                        key: format!("load/{w}/{}", i % 1000).into_bytes().into(),
                        value: vec![b'w'; 256].into(),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    let ok = kv.put(put).await.is_ok();
                    lat.push((t, t.elapsed(), ok));
                    i += 1;
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let began = Instant::now();
        let took = run(
            Command::new(REAL_ETCDCTL).env("ETCDCTL_API", "3").args([
                "--endpoints",
                &ep,
                "--command-timeout=600s",
                "defrag",
            ]),
            "defrag",
        );
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let mut during = Vec::new();
        let mut failed = 0;
        let mut slowest = (Duration::ZERO, Duration::ZERO);
        for w in writers {
            for (t, l, ok) in w.await.unwrap_or_default() {
                // A put that overlapped the defrag at all.
                if t < ended && t + l > began {
                    during.push(l);
                    failed += usize::from(!ok);
                    if l > slowest.1 {
                        slowest = (t.saturating_duration_since(began), l);
                    }
                }
            }
        }
        println!(
            "  ({server:?}: the slowest put began {:.0} ms into the {:.0} ms defrag)",
            slowest.0.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1000.0
        );
        // What the server complained of meanwhile (slow applies, slow syncs).
        let log = std::fs::read_to_string(&c.members[0].log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("\"level\":\"warn\"")).take(5) {
            println!("  ({server:?} log) {}", &line[..line.len().min(300)]);
        }
        during.sort();
        let worst = during.last().copied().unwrap_or_default();
        let p99 = during.get(during.len() * 99 / 100).copied().unwrap_or_default();
        rows.push((size, took, worst, p99, during.len(), failed));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (a, b) = (&rows[0], &rows[1]);
    println!("defrag of a {gib} GiB load ({keys} x 2 KiB), {clients} clients putting meanwhile; rustcd vs etcd:");
    println!("  backend before defrag:       {:.0} MiB vs {:.0} MiB", mib(a.0 as f64), mib(b.0 as f64));
    println!("  defrag took:                 {:.0} ms vs {:.0} ms, ratio {:.2}", ms(a.1), ms(b.1), ms(a.1) / ms(b.1));
    println!("  puts during the defrag:      {} vs {} (failed: {} vs {})", a.4, b.4, a.5, b.5);
    println!("  worst put latency:           {:.0} ms vs {:.0} ms, ratio {:.2}", ms(a.2), ms(b.2), ms(a.2) / ms(b.2));
    println!("  p99 put latency:             {:.1} ms vs {:.1} ms", ms(a.3), ms(b.3));
}
