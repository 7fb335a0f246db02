//! rustcd-bench: runs the same workload against rustcd and the real etcd (Debian's
//! `etcd-server`) in one run and prints both figures and their ratio.
//!
//! Built so far: `failover` (SIGKILL or SIGTERM the leader of a 3-member cluster, time until
//! the first successful put through a surviving member) and `compare` (put and range load on
//! 1- and 3-member clusters: throughput, latency, server CPU per request, RSS), `snapshot`
//! (save and restore of a million keys) and `defrag` (put latency during a 1 GiB defrag).

mod backup;
mod load;
mod pin;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_cluster::{Cluster, Server, leader_index, wait_for};

#[derive(Parser)]
#[command(name = "rustcd-bench", about = "Side-by-side benchmarks of rustcd and etcd")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct LoadFlags {
    /// Comma-separated `host:port` endpoints of a running cluster.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[arg(long, default_value_t = 1)]
    conns: usize,
    #[arg(long, default_value_t = 10_000)]
    total: usize,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    #[arg(long, default_value_t = 100_000)]
    key_space_size: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Puts against a running cluster (etcd's `benchmark put`).
    Put(LoadFlags),
    /// Linearizable single-key ranges against a running cluster (etcd's `benchmark range`).
    Range(LoadFlags),
    /// The comparison table: each row run against rustcd, then etcd, with the ratio.
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    match Cli::parse().cmd {
        Cmd::Put(f) => load_once(f, load::Workload::Put).await,
        Cmd::Range(f) => load_once(f, load::Workload::Range).await,
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
            restart_keys,
            rss_puts,
            pin: _,
            no_pin,
        } => {
            let pinning = if no_pin { None } else { pin::Pinning::for_this_machine() };
            match &pinning {
                Some(p) => {
                    if let Err(e) = p.pin_client() {
                        eprintln!("rustcd-bench: {e}");
                        std::process::exit(1);
                    }
                    println!("({})", p.describe());
                }
                None => println!("(not pinned: servers and load generator share every core)"),
            }
            compare(total, key_size, val_size, key_space_size, &only, tls, auth, pinning.as_ref()).await;
            if rss_puts > 0 {
                rss_after_puts(rss_puts, key_size, val_size).await;
            }
            if restart_keys > 0 {
                restart_time(restart_keys, val_size).await;
            }
        }
        Cmd::Failover { members, rounds, signal } => {
            let sig = if signal == "term" { libc::SIGTERM } else { libc::SIGKILL };
            let ours = failover(Server::Rustcd, members, rounds, sig).await;
            let theirs = failover(Server::Etcd, members, rounds, sig).await;
            println!("failover after {signal} of the leader, {members} members, {rounds} rounds (ms)");
            println!("{:<10} {:>8} {:>8} {:>8}", "server", "min", "median", "max");
            for (name, v) in [("rustcd", &ours), ("etcd 3.4", &theirs)] {
                println!("{:<10} {:>8.0} {:>8.0} {:>8.0}", name, v[0], v[v.len() / 2], v[v.len() - 1]);
            }
            println!("ratio rustcd/etcd (median): {:.2}", ours[ours.len() / 2] / theirs[theirs.len() / 2]);
        }
    }
}

async fn load_once(f: LoadFlags, workload: load::Workload) {
    let p = load::Params {
        workload,
        clients: f.clients,
        conns: f.conns,
        total: f.total,
        key_size: f.key_size,
        val_size: f.val_size,
        key_space: f.key_space_size,
        token: None,
    };
    let r = load::run_on(&f.endpoints, &[], &p).await;
    println!("{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors", r.requests_per_sec, r.p50_ms, r.p99_ms, r.errors);
}

/// One row of the comparison: cluster size and load shape.
struct Row {
    name: &'static str,
    members: usize,
    workload: load::Workload,
    clients: usize,
    conns: usize,
}

#[allow(clippy::too_many_arguments)]
async fn compare(
    total: usize,
    key_size: usize,
    val_size: usize,
    key_space: usize,
    only: &str,
    tls: bool,
    auth: bool,
    pinning: Option<&pin::Pinning>,
) {
    use load::Workload::{LeaseKeepalive, Put, Range, TxnMixed};
    let rows = [
        Row { name: "3 nodes, put, 1000 clients / 100 conns", members: 3, workload: Put, clients: 1000, conns: 100 },
        Row { name: "3 nodes, put, 1 client", members: 3, workload: Put, clients: 1, conns: 1 },
        Row { name: "3 nodes, linearizable range, 100 clients", members: 3, workload: Range, clients: 100, conns: 10 },
        Row {
            name: "3 nodes, txn-mixed 90/10, 100 clients",
            members: 3,
            workload: TxnMixed(90),
            clients: 100,
            conns: 10,
        },
        Row {
            name: "3 nodes, lease-keepalive, 1000 leases",
            members: 3,
            workload: LeaseKeepalive,
            clients: 1000,
            conns: 100,
        },
        Row { name: "1 node, put, 1000 clients", members: 1, workload: Put, clients: 1000, conns: 100 },
    ];
    if tls {
        println!("(client and peer TLS on both servers, client certificates required)");
    }
    if auth {
        println!("(authentication on, the load as a non-root user allowed every key)");
    }
    println!(
        "{:<42} {:>12} {:>12} {:>7} | {:>13} {:>13} | {:>9} {:>9} | {:>8} {:>8}",
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
    for row in rows.into_iter().filter(|r| r.name.contains(only)) {
        // One client cannot finish the full total quickly; keep its run short.
        let total = if row.clients == 1 { total / 10 } else { total };
        let p = load::Params {
            workload: row.workload,
            clients: row.clients,
            conns: row.conns,
            total,
            key_size,
            val_size,
            key_space,
            token: None,
        };
        let mut reports = Vec::new();
        for server in [Server::Rustcd, Server::Etcd] {
            let c = if tls {
                Cluster::start_tls(server, row.members, &[])
            } else {
                Cluster::start_with(server, row.members, &[])
            };
            c.wait_writable(0);
            if let Some(pinning) = pinning {
                for pid in c.members.iter().filter_map(|m| m.pid()) {
                    if let Err(e) = pinning.pin_server(pid) {
                        eprintln!("rustcd-bench: {e}");
                        std::process::exit(1);
                    }
                }
            }
            let mut p = p.clone();
            if auth {
                p.token = Some(enable_auth(&c.members[0].endpoint()).await);
            }
            reports.push(load::run(&c, &p).await);
        }
        let (a, b) = (&reports[0], &reports[1]);
        println!(
            "{:<42} {:>12.0} {:>12.0} {:>7.2} | {:>13} {:>13} | {:>9.0} {:>9.0} | {:>8.1} {:>8.1}{}",
            row.name,
            a.requests_per_sec,
            b.requests_per_sec,
            a.requests_per_sec / b.requests_per_sec,
            format!("{:.2}/{:.2}", a.p50_ms, a.p99_ms),
            format!("{:.2}/{:.2}", b.p50_ms, b.p99_ms),
            a.cpu_us_per_req,
            b.cpu_us_per_req,
            a.rss_mib,
            b.rss_mib,
            if a.errors + b.errors > 0 { format!("  errors {}/{}", a.errors, b.errors) } else { String::new() }
        );
    }
}

/// Turns authentication on (root, and a user `bench` whose role may read and write every
/// key) and returns `bench`'s token.
async fn enable_auth(endpoint: &str) -> String {
    use rustcd_api::etcdserverpb::auth_client::AuthClient;
    use rustcd_api::etcdserverpb::*;
    let mut a = AuthClient::new(rustcd_cluster::channel(endpoint).await);
    for user in ["root", "bench"] {
        let add = AuthUserAddRequest { name: user.into(), password: "pw".into(), ..Default::default() };
        a.user_add(add).await.expect("user add");
    }
    a.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.expect("root role");
    a.role_add(AuthRoleAddRequest { name: "bench".into() }).await.expect("role add");
    let every_key = rustcd_api::authpb::Permission { perm_type: 2, key: vec![0].into(), range_end: vec![0].into() };
    let grant = AuthRoleGrantPermissionRequest { name: "bench".into(), perm: Some(every_key) };
    a.role_grant_permission(grant).await.expect("grant");
    a.user_grant_role(AuthUserGrantRoleRequest { user: "bench".into(), role: "bench".into() }).await.expect("grant");
    a.auth_enable(AuthEnableRequest {}).await.expect("auth enable");
    let auth = AuthenticateRequest { name: "bench".into(), password: "pw".into() };
    a.authenticate(auth).await.expect("authenticate").into_inner().token
}

/// RSS of each member of a 3-member cluster after `puts` puts (1000 clients), both servers.
async fn rss_after_puts(puts: usize, key_size: usize, val_size: usize) {
    let p = load::Params {
        workload: load::Workload::Put,
        clients: 1000,
        conns: 100,
        total: puts,
        key_size,
        val_size,
        key_space: puts,
        token: None,
    };
    let mut rss = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 3, &[]);
        c.wait_writable(0);
        rss.push(load::run(&c, &p).await.rss_mib);
    }
    println!(
        "max member RSS after {puts} puts, 3 members: rustcd {:.1} MiB, etcd {:.1} MiB, ratio {:.2}",
        rss[0],
        rss[1],
        rss[0] / rss[1]
    );
}

/// One member loaded with `keys` keys, stopped gracefully, started again: time until its first
/// served read.
async fn restart_time(keys: usize, val_size: usize) {
    let mut times = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let mut c = Cluster::start_with(server, 1, &[]);
        c.wait_writable(0);
        backup::fill(&c, keys, val_size).await;
        c.kill(0, libc::SIGTERM);
        let started = Instant::now();
        c.restart(0);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "restart with {keys} keys to first served read, 1 member: rustcd {:.0} ms, etcd {:.0} ms, ratio {:.2}",
        times[0],
        times[1],
        times[0] / times[1]
    );
}

/// Sorted failover times in milliseconds.
async fn failover(server: Server, members: usize, rounds: usize, sig: i32) -> Vec<f64> {
    let mut c = Cluster::start_with(server, members, &[]);
    c.wait_writable(0);
    let mut times = Vec::new();
    for round in 0..rounds {
        let leader = wait_for("a leader", Duration::from_secs(20), || leader_index(&c));
        let survivors: Vec<String> = (0..members).filter(|i| *i != leader).map(|i| c.members[i].endpoint()).collect();
        let started = Instant::now();
        c.kill(leader, sig);
        first_put(&survivors, round).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        c.restart(leader);
        c.wait_writable(leader);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

/// Puts through the survivors in turn until one succeeds.
async fn first_put(endpoints: &[String], round: usize) {
    let mut i = 0;
    loop {
        let ep = tonic::transport::Endpoint::from_shared(format!("http://{}", endpoints[i % endpoints.len()]))
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500));
        if let Ok(ch) = ep.connect().await {
            let put = PutRequest {
                key: format!("failover/{round}").into_bytes().into(),
                value: b"1".to_vec().into(),
                ..Default::default()
            };
            if KvClient::new(ch).put(put).await.is_ok() {
                return;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
