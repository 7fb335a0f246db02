//! rustcd-bench: runs the same workload against rustcd and the real etcd (Debian's
//! `etcd-server`) in one run and prints both figures and their ratio.
//!
//! Built so far: `failover` (SIGKILL or SIGTERM the leader of a 3-member cluster, time until
//! the first successful put through a surviving member).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_tests::{Cluster, Server, leader_index, wait_for};

#[derive(Parser)]
#[command(name = "rustcd-bench", about = "Side-by-side benchmarks of rustcd and etcd")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
