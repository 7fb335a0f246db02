//! rustcd-bench: etcd's benchmark tool (`put`, `range`, `txn-put`, `txn-mixed`, `watch`,
//! `watch-get`, `watch-latency`, `lease-keepalive`, `stm`, with etcd's flags and report) plus a
//! Kubernetes-like mix (`k8s`), against any cluster; and side-by-side runs against the real etcd
//! (Debian's `etcd-server`) on clusters it starts, printing both figures and their ratio:
//! `compare` (the performance table and its targets, servers and load generator pinned to
//! separate cores), `failover`, `snapshot` and `defrag`; and `verify`, a linearizability and
//! watch check of any cluster, under faults when its members run here.
//!
//! Depends on the process launcher (`rustcd-cluster`) to start clusters, never on the test kit.

mod backup;
mod compare;
mod conn;
mod extras;
mod k8s;
mod load;
mod pin;
mod plot;
mod proc;
mod report;
mod stm;
mod verify;
mod watch;

use clap::{Parser, Subcommand};
use rustcd_cluster::Server;

use crate::load::{Params, Workload};

#[derive(Parser)]
#[command(name = "rustcd-bench", about = "Side-by-side benchmarks of rustcd and etcd, and etcd's benchmark workloads")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// etcd benchmark's persistent flags.
#[derive(clap::Args, Clone)]
struct Global {
    /// gRPC endpoints
    #[arg(long, global = true, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Total number of gRPC clients
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Connect only to the leader node
    #[arg(long, global = true)]
    target_leader: bool,
    /// Use full floating point precision
    #[arg(long, global = true)]
    precise: bool,
    /// Output format: simple (etcd benchmark's report) or json
    #[arg(short = 'w', long = "write-out", global = true, default_value = "simple")]
    write_out: String,
}

/// The request shape flags most workloads share (etcd's defaults).
#[derive(clap::Args, Clone)]
struct Shape {
    /// Total number of requests
    #[arg(long, default_value_t = 10_000)]
    total: usize,
    /// Maximum requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Key size of a request
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of a request
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    key_space_size: usize,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a cluster: linearizable per key, watch guarantees, members agree; under faults
    /// when its members run on this machine
    Verify(verify::VerifyArgs),
    /// Benchmark put
    Put(Shape),
    /// Benchmark range (of the given key or range; without one, of keys written first)
    Range {
        key: Option<String>,
        end: Option<String>,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, default_value = "l")]
        consistency: String,
        #[command(flatten)]
        shape: Shape,
    },
    /// Benchmark txn-put
    TxnPut {
        /// Number of puts per txn
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
        #[command(flatten)]
        shape: Shape,
    },
    /// Benchmark txn-mixed: txns of one range or one put
    TxnMixed {
        key: Option<String>,
        /// Read operation range end key (reads without a key read single keys written first)
        #[arg(long, default_value = "")]
        end_key: String,
        /// Read operation range result limit
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Read/write ops ratio
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, default_value = "l")]
        consistency: String,
        #[command(flatten)]
        shape: Shape,
    },
    /// Benchmark watch: watchers, then puts; creation time and put-to-event latency
    Watch(watch::WatchParams),
    /// Benchmark watch with get
    WatchGet {
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Number of events per watcher
        #[arg(long, default_value_t = 8)]
        events: usize,
    },
    /// Benchmark watch latency
    WatchLatency {
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
        #[arg(long, default_value_t = 32)]
        key_size: usize,
        #[arg(long, default_value_t = 32)]
        val_size: usize,
    },
    /// Benchmark lease keepalive
    LeaseKeepalive {
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Benchmark STM
    Stm {
        /// Read Committed (c), Repeatable Reads (r), Serializable (s), or Snapshot (ss)
        #[arg(long, default_value = "r")]
        isolation: stm::Isolation,
        /// Total unique keys accessible by the benchmark
        #[arg(long, default_value_t = 1)]
        keys: usize,
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[arg(long, default_value_t = 1)]
        keys_per_txn: usize,
        #[arg(long, default_value_t = 50)]
        txn_wr_percent: usize,
        /// Only "stm" (etcd's lock-client and lock-rpc lockers are not built)
        #[arg(long, default_value = "stm")]
        stm_locker: String,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// A Kubernetes API server's traffic: paged lists, gets, CAS updates, leased events, watches
    K8s {
        /// Objects over all resource types
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Objects per page of a list
        #[arg(long, default_value_t = 500)]
        page: i64,
        #[arg(long, default_value_t = 10_000)]
        total: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
    },
    /// The performance table: each row run against rustcd, then etcd, with the ratio and the targets.
    Compare {
        /// Requests per row.
        #[arg(long, default_value_t = 20_000)]
        total: usize,
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
        #[arg(long, default_value_t = 100_000)]
        key_space_size: usize,
        /// Run only the rows whose name contains this text.
        #[arg(long, default_value = "")]
        only: String,
        /// Both servers with client and peer TLS, client certificates required (certificates
        /// made for the run).
        #[arg(long)]
        tls: bool,
        /// Both servers with authentication on; the load runs as a user whose role may read
        /// and write every key (each request checked, as for any non-root user).
        #[arg(long)]
        auth: bool,
        /// Leases of the lease-keepalive row (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        leases: usize,
        /// Watchers of the watch row, on one member (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        /// MiB of the one-large-range row, in 10 KiB values (0 skips it).
        #[arg(long, default_value_t = 1024)]
        big_range_mib: usize,
        /// Keys loaded before the restart measurement (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        restart_keys: usize,
        /// Puts before the RSS measurement on 3 members (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        rss_puts: usize,
        /// Servers on half the cores, the load generator on the others (the default on two
        /// cores or more).
        #[arg(long, conflicts_with = "no_pin")]
        pin: bool,
        /// Everything on every core (the first round's measurement).
        #[arg(long)]
        no_pin: bool,
        /// Draws each row's latency CDF, both servers, into this SVG file.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Snapshot save and restore of a one-member store, rustcd against etcd.
    Snapshot {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
    },
    /// Defrag of a large backend under a put load: worst put latency, rustcd against etcd.
    Defrag {
        #[arg(long, default_value_t = 1.0)]
        gib: f64,
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Leader failover: kill the leader, time until a put succeeds again.
    Failover {
        /// Members per cluster.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Kills per server kind.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Signal sent to the leader: kill (SIGKILL) or term (SIGTERM, graceful).
        #[arg(long, default_value = "kill")]
        signal: String,
    },
}

/// Ends the process with `e` in one line.
fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("rustcd-bench: {e}");
    std::process::exit(1);
}

fn serializable(consistency: &str) -> bool {
    match consistency {
        "l" => false,
        "s" => true,
        other => fail(format!("unknown consistency flag {other:?}")),
    }
}

impl Global {
    fn params(&self, workload: Workload, s: &Shape) -> Params {
        Params {
            workload,
            clients: self.clients,
            conns: self.conns,
            total: s.total,
            key_size: s.key_size,
            val_size: s.val_size,
            key_space: s.key_space_size,
            sequential_keys: s.sequential_keys,
            rate: s.rate,
            target_leader: self.target_leader,
            ..Params::default()
        }
    }

    fn json(&self) -> bool {
        match self.write_out.as_str() {
            "json" => true,
            "simple" => false,
            other => fail(format!("unsupported output format {other:?} (simple or json)")),
        }
    }

    /// Prints a report under `title` (etcd prints some under a heading).
    fn print(&self, title: Option<&str>, r: &report::Report) {
        if self.json() {
            let mut j = r.json();
            if let Some(t) = title {
                j["title"] = t.into();
            }
            println!("{j}");
        } else {
            match title {
                Some(t) => print!("{t}:\n{}", r.etcd_text(self.precise)),
                None => print!("{}", r.etcd_text(self.precise)),
            }
        }
    }

    async fn channels(&self) -> Vec<tonic::transport::Channel> {
        conn::connect(&self.endpoints, self.conns, self.target_leader).await.unwrap_or_else(|e| fail(e))
    }
}

const NO_SHAPE: Shape =
    Shape { total: 10_000, rate: 0, key_size: 8, val_size: 8, key_space_size: 1, sequential_keys: false };

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Cli { global: g, cmd } = Cli::parse();
    g.json();
    let load = |p: Params| {
        let g = g.clone();
        async move {
            let r = load::run_on(&g.endpoints, &[], &p).await.unwrap_or_else(|e| fail(e));
            g.print(None, &r);
        }
    };
    match cmd {
        Cmd::Verify(a) => match verify::run(&g.endpoints, g.clients, g.json(), a).await {
            Ok(true) => {}
            Ok(false) => std::process::exit(1),
            Err(e) => fail(e),
        },
        Cmd::Put(s) => load(g.params(Workload::Put, &s)).await,
        Cmd::Range { key, end, consistency, shape } => {
            let mut p = g.params(Workload::Range, &shape);
            p.serializable = serializable(&consistency);
            p.read_range = key.map(|k| (k.into_bytes(), end.unwrap_or_default().into_bytes()));
            load(p).await
        }
        Cmd::TxnPut { txn_ops, shape } => load(g.params(Workload::TxnPut(txn_ops), &shape)).await,
        Cmd::TxnMixed { key, end_key, limit, rw_ratio, consistency, shape } => {
            let read_pct = (100.0 * rw_ratio / (1.0 + rw_ratio)).round() as usize;
            let mut p = g.params(Workload::TxnMixed(read_pct), &shape);
            p.serializable = serializable(&consistency);
            p.read_range = key.map(|k| (k.into_bytes(), end_key.into_bytes()));
            p.limit = limit;
            load(p).await
        }
        Cmd::LeaseKeepalive { total, rate } => {
            load(g.params(Workload::LeaseKeepalive, &Shape { total, rate, ..NO_SHAPE })).await
        }
        Cmd::Stm { isolation, keys, total, keys_per_txn, txn_wr_percent, stm_locker, val_size, rate } => {
            if stm_locker != "stm" {
                fail(format!("--stm-locker {stm_locker}: only \"stm\" is built"));
            }
            if keys == 0 || keys_per_txn > keys || txn_wr_percent > 100 {
                fail("expected positive --keys, --keys-per-txn at most --keys, --txn-wr-percent in [0, 100]");
            }
            let cfg = stm::Config { isolation, keys, keys_per_txn, write_percent: txn_wr_percent };
            load(g.params(Workload::Stm(cfg), &Shape { total, rate, val_size, ..NO_SHAPE })).await
        }
        Cmd::K8s { objects, page, total, rate, val_size } => {
            let cfg = k8s::Config { objects: objects.max(1), page };
            load(g.params(Workload::K8s(cfg), &Shape { total, rate, val_size, ..NO_SHAPE })).await
        }
        Cmd::Watch(wp) => {
            if wp.key_space == 0 {
                fail("expected positive --key-space-size");
            }
            let r = watch::watch(&g.channels().await, &None, &wp).await.unwrap_or_else(|e| fail(e));
            g.print(Some("Watch creation summary"), &r.create);
            g.print(Some("Put to event summary"), &r.events);
        }
        Cmd::WatchGet { watchers, streams, events } => {
            let get = conn::connect(&g.endpoints, 1, g.target_leader).await.unwrap_or_else(|e| fail(e));
            let get = get.into_iter().next().unwrap_or_else(|| fail("no connection"));
            let r = watch::watch_get(&g.channels().await, get, &None, watchers, streams, events).await;
            g.print(Some("Get during watch summary"), &r.unwrap_or_else(|e| fail(e)));
        }
        Cmd::WatchLatency { total, put_rate, key_size, val_size } => {
            let put = conn::connect(&g.endpoints, 1, g.target_leader).await.unwrap_or_else(|e| fail(e));
            let put = put.into_iter().next().unwrap_or_else(|| fail("no connection"));
            let mut clients = g.channels().await;
            // One watch per client, clients sharing the connections in turn.
            clients = (0..g.clients).map(|i| clients[i % clients.len()].clone()).collect();
            let r = watch::watch_latency(&clients, put, &None, total, put_rate, key_size, val_size).await;
            g.print(None, &r.unwrap_or_else(|e| fail(e)));
        }
        Cmd::Snapshot { keys, val_size } => backup::snapshot(keys, val_size).await,
        Cmd::Defrag { gib, clients } => backup::defrag(gib, clients).await,
        Cmd::Compare {
            total,
            key_size,
            val_size,
            key_space_size,
            only,
            tls,
            auth,
            leases,
            watchers,
            big_range_mib,
            restart_keys,
            rss_puts,
            pin: _,
            no_pin,
            plot,
        } => {
            let pinning = if no_pin { None } else { pin::Pinning::for_this_machine() };
            let json = g.json();
            match &pinning {
                Some(p) => {
                    if let Err(e) = p.pin_client() {
                        fail(e);
                    }
                    if !json {
                        println!("({})", p.describe());
                    }
                }
                None if !json => println!("(not pinned: servers and load generator share every core)"),
                None => {}
            }
            let o = compare::Options {
                total,
                key_size,
                val_size,
                key_space: key_space_size,
                only,
                tls,
                auth,
                pinning,
                plot,
                json,
                leases,
                watchers,
                big_range_mib,
            };
            compare::compare(&o).await;
            if rss_puts > 0 && !json {
                extras::rss_after_puts(rss_puts, key_size, val_size).await;
            }
            if restart_keys > 0 && !json {
                extras::restart_time(restart_keys, val_size).await;
            }
        }
        Cmd::Failover { members, rounds, signal } => {
            let sig = if signal == "term" { libc::SIGTERM } else { libc::SIGKILL };
            let ours = extras::failover(Server::Rustcd, members, rounds, sig).await;
            let theirs = extras::failover(Server::Etcd, members, rounds, sig).await;
            println!("failover after {signal} of the leader, {members} members, {rounds} rounds (ms)");
            println!("{:<10} {:>8} {:>8} {:>8}", "server", "min", "median", "max");
            for (name, v) in [("rustcd", &ours), ("etcd 3.4", &theirs)] {
                println!("{:<10} {:>8.0} {:>8.0} {:>8.0}", name, v[0], v[v.len() / 2], v[v.len() - 1]);
            }
            println!("ratio rustcd/etcd (median): {:.2}", ours[ours.len() / 2] / theirs[theirs.len() / 2]);
        }
    }
}
