//! Faults on real 3- and 5-member clusters under write load: SIGKILL of the leader (again and
//! again), of a minority, of everyone; a follower down past several snapshots; a crash that
//! leaves a torn record at the end of the raft log. After each, every acknowledged write is on
//! every member and HashKV agrees.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rustcd_testkit::{Cluster, Server, leader_index, progress, start_writers, stop_writers, verify_cluster, wait_for};

const SIGKILL: i32 = libc::SIGKILL;

async fn leader_kills(n: usize) {
    let mut c = Cluster::start(n);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "k", 8, stop.clone());
    for _ in 0..3 {
        progress(&acked, 200).await;
        let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
        let killed = Instant::now();
        c.kill(leader, SIGKILL);
        let new_leader = wait_for("a new leader", Duration::from_secs(10), || leader_index(&c));
        eprintln!("{n} members: leader {leader} killed, member {new_leader} leads after {:?}", killed.elapsed());
        progress(&acked, 100).await;
        c.restart(leader);
    }
    progress(&acked, 100).await;
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_3_leader_sigkill_under_load() {
    leader_kills(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_5_leader_sigkill_under_load() {
    leader_kills(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_5_minority_killed_then_back() {
    let mut c = Cluster::start(5);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "m", 8, stop.clone());
    progress(&acked, 200).await;
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let victims: Vec<usize> = (0..5).filter(|i| *i != leader).take(2).collect();
    for v in &victims {
        c.kill(*v, SIGKILL);
    }
    progress(&acked, 300).await;
    for v in &victims {
        c.restart(*v);
    }
    progress(&acked, 100).await;
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_3_all_killed_then_restarted() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "a", 8, stop.clone());
    progress(&acked, 300).await;
    for i in 0..3 {
        c.kill(i, SIGKILL);
    }
    stop_writers(&stop, tasks).await;
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_writable(0);
    verify_cluster(&c, &acked, "a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_3_follower_down_past_snapshots_catches_up() {
    let flags = ["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "50"];
    let mut c = Cluster::start_with(Server::Rustcd, 3, &flags);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let follower = (leader + 1) % 3;
    c.kill(follower, SIGKILL);
    let stop = Arc::new(AtomicBool::new(false));
    let live: Vec<String> = (0..3).filter(|i| *i != follower).map(|i| c.members[i].endpoint()).collect();
    let (acked, tasks) = start_writers(live, "s", 8, stop.clone());
    progress(&acked, 1000).await;
    stop_writers(&stop, tasks).await;
    c.restart(follower);
    verify_cluster(&c, &acked, "s").await;
    let log = std::fs::read_to_string(&c.members[follower].log).expect("follower log");
    assert!(log.contains("applied snapshot from leader"), "the follower should have been brought up by a snapshot");
}

/// The newest raft log file in a member's data dir.
fn newest_raft_log(data_dir: &std::path::Path) -> std::path::PathBuf {
    let dir = data_dir.join("member").join("raft");
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("raft log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    logs.sort();
    logs.pop().expect("a raft log file")
}

/// Appends a torn record (a few bytes of a write cut short) after the last written byte of a
/// member's newest raft log file, as a crash in the middle of a log write leaves it.
fn tear_raft_log_tail(data_dir: &std::path::Path) {
    let newest = newest_raft_log(data_dir);
    let mut bytes = std::fs::read(&newest).expect("read raft log");
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let torn = [0x5a, 0x17, 0x00, 0x09, 0xc3, 0x42, 0x99];
    if bytes.len() < end + torn.len() {
        bytes.resize(end + torn.len(), 0);
    }
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&newest, bytes).expect("write raft log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_torn_raft_log_tail_is_repaired() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "torn", 4, stop.clone());
    progress(&acked, 200).await;
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    // A follower and then the leader crash mid-write: each comes back, drops the torn record
    // and catches up; no acknowledged write is lost.
    for victim in [(leader + 1) % 3, leader] {
        c.kill(victim, SIGKILL);
        tear_raft_log_tail(&c.members[victim].data_dir.clone());
        progress(&acked, 100).await;
        c.restart(victim);
        let log = std::fs::read_to_string(&c.members[victim].log).unwrap_or_default();
        assert!(log.contains("broken batch"), "the torn record was found and dropped on restart");
        progress(&acked, 100).await;
    }
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "torn").await;
}

/// A flipped byte in the middle of a member's raft log (entries it fsynced and acknowledged)
/// must stop the member with a clear error, not be dropped as if a crash had torn it; the file
/// stays as it was. Once repaired the member rejoins and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_corrupt_raft_log_stops_the_member() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "flip", 4, stop.clone());
    progress(&acked, 300).await;
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let victim = (leader + 1) % 3;
    c.kill(victim, SIGKILL);
    let path = newest_raft_log(&c.members[victim].data_dir.clone());
    let original = std::fs::read(&path).expect("read raft log");
    let end = original.iter().rposition(|b| *b != 0).expect("a written log");
    let mut flipped = original.clone();
    flipped[end / 2] ^= 0x20;
    std::fs::write(&path, &flipped).expect("write raft log");

    c.start_only(victim);
    let status = c.wait_exit(victim, Duration::from_secs(20)).expect("the member stops by itself");
    assert!(!status.success(), "a member with a corrupt raft log exits with an error");
    let log = std::fs::read_to_string(&c.members[victim].log).unwrap_or_default();
    let said = log.lines().find(|l| l.contains("corrupt") && l.contains("Refusing to start"));
    let said = said.unwrap_or_else(|| panic!("the member says what is corrupt and that it will not start:\n{log}"));
    eprintln!("member {victim} with a flipped byte at offset {} of its raft log: {said}", end / 2);
    assert_eq!(std::fs::read(&path).expect("read raft log"), flipped, "the corrupt file is left as it was");

    // The others go on; with the file repaired the member comes back and catches up.
    progress(&acked, 100).await;
    std::fs::write(&path, &original).expect("repair raft log");
    c.restart(victim);
    progress(&acked, 100).await;
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "flip").await;
}
