//! `rustcd-bench verify`: checks any etcd v3 cluster (rustcd or etcd) under load and, when its
//! members run on this machine, under injected faults. Clients and resuming watchers record a
//! history under one key prefix (`rustcd_verify::record`); afterwards it is judged: linearizable
//! per key, every acknowledged write in the watch stream, watchers ordered and gapless with the
//! right `prev_kv`, `HashKV` equal on every member at one revision. The verdict is one line (or
//! JSON); on a violation the smallest failing sub-history of each key is written as JSON with
//! an HTML timeline. The prefix is deleted and the run's leases revoked at the end.

mod check;
mod faults;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustcd_verify::record::{self, History, Watched, Workload};

pub use faults::Fault;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// How long the load runs (e.g. 60s, 2m)
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    duration: Duration,
    /// Keys the clients share (fewer keys: more contention on each)
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// The key prefix of the run's keys; everything under it is deleted at the end
    #[arg(long, default_value = "/rustcd-verify/")]
    prefix: String,
    /// Most operations per second over all clients (0: no limit)
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Faults injected in turn, one every --fault-interval (members on this machine only)
    #[arg(long, value_delimiter = ',', value_enum)]
    faults: Vec<Fault>,
    /// Time between faults; each lasts a third of it
    #[arg(long, default_value = "6s", value_parser = duration_arg)]
    fault_interval: Duration,
    /// The members' process ids in --endpoints order (default: found from their client ports)
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Starts member {i} (its index in --endpoints) again after a kill; run with sh -c
    #[arg(long)]
    restart_cmd: Option<String>,
    /// Proxies for partition and delay faults, LISTEN:TARGET ports in --endpoints order: each
    /// member advertises LISTEN as its peer port and listens on TARGET
    #[arg(long, value_delimiter = ',')]
    peer_proxies: Vec<String>,
    /// Directory for the history, the verdict and the timelines
    #[arg(long, default_value = "verify-report")]
    out: PathBuf,
}

/// A Go duration (`60s`, `2m`, `500ms`, `1h`), or plain seconds.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => rustcd_gocompat::parse_std_duration(s).map_err(|e| e.to_string()),
    }
}

/// Runs the check; Ok(true) when every check passed.
pub async fn run(endpoints: &[String], clients: usize, json: bool, a: VerifyArgs) -> Result<bool, String> {
    if a.keys == 0 || clients == 0 {
        return Err("expected positive --keys and --clients".into());
    }
    if a.faults.iter().any(|f| f.kills()) && a.restart_cmd.is_none() {
        return Err("kill faults need --restart-cmd to start the member again".into());
    }
    if a.faults.iter().any(|f| f.needs_proxies()) && a.peer_proxies.is_empty() {
        return Err("partition and delay faults need --peer-proxies".into());
    }
    let mut members = faults::Members::new(endpoints.to_vec(), &a.pids, a.restart_cmd.clone(), &a.peer_proxies)?;
    let w = Arc::new(Workload {
        prefix: a.prefix.clone(),
        keys: a.keys,
        op_timeout: Duration::from_secs(3),
        rate: a.rate / clients as f64,
        lease_ttl: (a.duration.as_secs() as i64 + 600).max(600),
    });
    let channels: Vec<tonic::transport::Channel> =
        endpoints.iter().map(|e| record::lazy_channel(e)).collect::<Result<_, _>>()?;
    // The run starts from an empty prefix; watchers start after that delete.
    let from = clear_prefix(&channels[0], &w).await?;

    let start = Instant::now();
    let history: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let leftover: Arc<Mutex<Vec<i64>>> = Arc::default();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let ch = channels[i % channels.len()].clone();
            tokio::spawn(record::client(i, ch, w.clone(), start, history.clone(), stop.clone(), leftover.clone()))
        })
        .collect();
    let watched: Vec<Watched> = (0..channels.len().min(2)).map(|_| Watched::default()).collect();
    let watchers: Vec<_> = watched
        .iter()
        .enumerate()
        .map(|(i, seen)| {
            let ch = channels[(i + 1) % channels.len()].clone();
            tokio::spawn(record::watcher(ch, w.prefix.clone(), from + 1, seen.clone()))
        })
        .collect();

    let (fault_log, fault_errors) = load_with_faults(&a, &mut members, start, &history, json).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    let ctx = check::Context { endpoints, channels: &channels, w: &w, start, clients, from: from + 1 };
    let mut verdict = check::judge(&ctx, &history, &watched, fault_log).await;
    verdict.problems.extend(fault_errors);
    for t in watchers {
        t.abort();
    }
    let leases = leftover.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let cleaned = clean(&channels[0], &w, &leases).await;
    let ok = verdict.ok();
    verdict.write(&a.out)?;
    print(&verdict, json, &a.out);
    if let Err(e) = cleaned {
        eprintln!("rustcd-bench: cleaning {} up failed: {e}", a.prefix);
    }
    Ok(ok)
}

/// Deletes everything under the run's prefix and revokes `leases`; the revision after.
async fn clean(ch: &tonic::transport::Channel, w: &Workload, leases: &[i64]) -> Result<i64, tonic::Status> {
    use rustcd_api::etcdserverpb::kv_client::KvClient;
    use rustcd_api::etcdserverpb::lease_client::LeaseClient;
    use rustcd_api::etcdserverpb::{DeleteRangeRequest, LeaseRevokeRequest};
    let mut lease = LeaseClient::new(ch.clone());
    for id in leases {
        // A lease revoked by the workload, or expired, is fine.
        let _ = lease.lease_revoke(LeaseRevokeRequest { id: *id }).await;
    }
    let req = DeleteRangeRequest {
        key: w.prefix.as_bytes().to_vec().into(),
        range_end: rustcd_gocompat::prefix_end(w.prefix.as_bytes()).into(),
        ..Default::default()
    };
    let r = KvClient::new(ch.clone()).delete_range(req).await?.into_inner();
    Ok(r.header.map_or(0, |h| h.revision))
}

/// Waits (up to 30 s) for the cluster to take a write, and clears the run's prefix; the
/// revision after.
async fn clear_prefix(ch: &tonic::transport::Channel, w: &Workload) -> Result<i64, String> {
    let ready = Instant::now();
    loop {
        match clean(ch, w, &[]).await {
            Ok(rev) => return Ok(rev),
            Err(e) if ready.elapsed() > Duration::from_secs(30) => {
                return Err(format!("cannot clear {} before the run: {}", w.prefix, e.message()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Lets the clients run for `--duration`, injecting the faults in turn, with a progress bar on
/// a terminal; what was injected, and the faults that could not be (after the first, no more
/// are tried: the load goes on and is judged).
async fn load_with_faults(
    a: &VerifyArgs,
    members: &mut faults::Members,
    start: Instant,
    history: &History,
    json: bool,
) -> (Vec<String>, Vec<String>) {
    let bar = indicatif::ProgressBar::new(a.duration.as_secs());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}") {
        bar.set_style(style);
    }
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut log, mut errors) = (Vec::new(), Vec::new());
    let mut next = 0;
    let mut fault_at = start + a.fault_interval;
    while start.elapsed() < a.duration {
        if !a.faults.is_empty() && errors.is_empty() && Instant::now() >= fault_at {
            let f = a.faults[next % a.faults.len()];
            next += 1;
            let at = start.elapsed().as_secs_f64();
            match members.inject(f, a.fault_interval / 3).await {
                Ok(what) => {
                    let line = format!("{at:>7.1}s  {what}");
                    if bar.is_hidden() && !json {
                        eprintln!("{line}")
                    } else {
                        bar.println(line)
                    }
                    log.push(format!("{at:.1}s {what}"));
                }
                Err(e) => errors.push(format!("fault {f:?} at {at:.1}s could not be injected: {e}")),
            }
            fault_at = Instant::now() + a.fault_interval;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(start.elapsed().as_secs().min(a.duration.as_secs()));
        bar.set_message(format!("{} operations", history.lock().unwrap_or_else(|p| p.into_inner()).len()));
    }
    bar.finish_and_clear();
    (log, errors)
}

/// The verdict on standard output: JSON, or its line, counts and problems.
fn print(verdict: &check::Verdict, json: bool, out: &std::path::Path) {
    if json {
        println!("{}", verdict.json());
        return;
    }
    println!("{}", verdict.line());
    println!("{}", verdict.counts());
    for p in &verdict.problems {
        println!("  {p}");
    }
    println!("report: {}", out.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_etcd_users_write_them() {
        assert_eq!(duration_arg("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration_arg("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration_arg("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration_arg("5"), Ok(Duration::from_secs(5)));
        assert!(duration_arg("5 parsecs").is_err());
    }
}
