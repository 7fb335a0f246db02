//! A follower catching up from a snapshot of more than 200 MB: the leader makes the snapshot
//! off its raft thread and streams it while it keeps leading. Throughout the catch-up every
//! member that knows a leader names the same leader in the same term: the leader's heartbeats
//! never stopped for an election timeout (a follower that misses them for that long campaigns,
//! and its pre-vote would raise the term once it wins one). And a linearizable read on the
//! leader (a ReadIndex round: heartbeats to a quorum and back) always answers within an
//! election timeout, while every member is also asked for its Status (whose backend size
//! figure once took the backend's write transaction and stalled the leader's applies).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_testkit::{Cluster, Server, channel, leader_index, probe, wait_for};

const VALUE_BYTES: usize = 2 * 1024 * 1024;
const LARGE_PUTS: usize = 105; // 210 MiB of values

const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the watcher saw: every (leader, term) pair any member reported, and the slowest
/// linearizable read on the leader (`Duration::MAX` for one that failed).
#[derive(Default)]
struct Seen {
    views: Vec<(u64, u64)>,
    slowest_read: Duration,
    reads: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_catch_up_from_a_200mb_snapshot_keeps_the_leader() {
    let mut c = Cluster::start_with(
        Server::Rustcd,
        3,
        &["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10", "--max-request-bytes", "3145728"],
    );
    c.wait_writable(0);
    let first_leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let follower = (first_leader + 1) % 3;
    c.kill(follower, libc::SIGKILL);

    // 210 MiB of values, then enough small writes that the leader's log is compacted past
    // everything the follower has: it can only catch up from a snapshot.
    let mut kv = KvClient::new(channel(&c.members[first_leader].endpoint()).await).max_encoding_message_size(8 << 20);
    let value = vec![b'v'; VALUE_BYTES];
    for i in 0..LARGE_PUTS {
        let put = PutRequest {
            key: format!("big/{i:04}").into_bytes().into(),
            value: value.clone().into(),
            ..Default::default()
        };
        kv.put(put).await.expect("large put");
    }
    for i in 0..200 {
        let put = PutRequest {
            key: format!("small/{i}").into_bytes().into(),
            value: b"x".to_vec().into(),
            ..Default::default()
        };
        kv.put(put).await.expect("small put");
    }

    // Under load the writes may have moved the leadership (before the catch-up, which is what
    // is watched): the leader is the one that leads now.
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));

    // Watch every member's view and the leader's read latency while the follower catches up.
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = c.endpoints();
    let leader_ep = endpoints[leader].clone();
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !stop.load(Ordering::Relaxed) {
                for ep in &endpoints {
                    // A member just restarted knows no leader (0) until it hears one.
                    if let Some((_, term, lead)) = probe::status(ep).filter(|s| s.2 != 0) {
                        seen.views.push((lead, term));
                    }
                }
                let started = Instant::now();
                let ok = probe::linearizable_get(&leader_ep, ELECTION_TIMEOUT * 2);
                seen.slowest_read = seen.slowest_read.max(if ok { started.elapsed() } else { Duration::MAX });
                seen.reads += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };
    c.restart(follower);
    let caught_up = Instant::now();
    let ep = c.members[follower].endpoint();
    wait_for("the follower to catch up", Duration::from_secs(240), || {
        probe::serializable_has(&ep, b"small/199").then_some(())
    });
    let took = caught_up.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("watcher");

    let leader_log = std::fs::read_to_string(&c.members[leader].log).unwrap_or_default();
    let sent = leader_log
        .lines()
        .filter(|l| l.contains("sent database snapshot"))
        .filter_map(|l| l.split("\"bytes\":").nth(1)?.split([',', '}']).next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    eprintln!(
        "caught up in {took:?}; snapshot of {sent} bytes; {} views of the leader; {} reads on it, slowest {:?}",
        seen.views.len(),
        seen.reads,
        seen.slowest_read
    );
    assert!(sent >= 200_000_000, "the follower caught up from a snapshot of >= 200 MB (sent {sent} bytes)");
    let first = seen.views.first().copied().expect("some member answered");
    assert!(seen.views.iter().all(|v| *v == first), "leader or term changed during the catch-up: {:?}", seen.views);
    assert!(seen.views.len() >= 10, "members answered Status during the catch-up: {} views", seen.views.len());
    assert!(
        seen.reads > 0 && seen.slowest_read < ELECTION_TIMEOUT,
        "a read on the leader took {:?}",
        seen.slowest_read
    );
}
