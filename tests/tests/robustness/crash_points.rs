//! Crashes at failpoints (the `fail` crate, set through `FAILPOINTS`; a panic aborts the
//! member): a member dies at a chosen point of its write path while writes go on through every
//! member: around the fsync of new raft log entries, around the backend's durable commit,
//! around a compaction, and on a member catching up from a snapshot: before the backend takes
//! it, and around the raft log recording it. It restarts without the failpoint and catches up.
//! Leaders crash while making a snapshot for a member that fell behind (the cluster loses its
//! quorum). Afterwards every acknowledged write is on every member and HashKV agrees. A lone
//! member crashed at each point of its write path, on either side of a defrag and while making
//! and streaming a client's snapshot (the whole cluster down at once) keeps every acknowledged
//! write too.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::{Acked, Cluster, leader_index, progress, start_writers, stop_writers, verify_cluster, wait_for};

/// Compacts at the current revision through member `through` (nothing if it is down).
fn compact_now(c: &Cluster, through: usize) {
    let ep = c.members[through].endpoint();
    let out = c.etcdctl(through, &["get", "x", "-w", "json", "--command-timeout=2s"]);
    let text = rustcd_testkit::stdout(&out);
    let rev = text.split("\"revision\":").nth(1).and_then(|r| r.split([',', '}']).next()).map(str::to_string);
    if let Some(rev) = rev {
        let _ = rustcd_testkit::etcdctl(&[&ep], &["compact", &rev, "--command-timeout=2s"]);
    }
}

/// Kills member `i` and lets the others write far enough past it that it must catch up from
/// a snapshot (the cluster runs with a small snapshot count).
async fn fall_behind(c: &mut Cluster, i: usize, acked: &Acked) {
    c.kill(i, libc::SIGKILL);
    progress(acked, 900).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_crashes_at_failpoints_lose_no_acknowledged_write() {
    let mut c = Cluster::start_with(
        rustcd_testkit::Server::Rustcd,
        3,
        &["--snapshot-count", "300", "--experimental-snapshot-catchup-entries", "100"],
    );
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "fp", 4, stop.clone());
    progress(&acked, 100).await;
    let leader = |c: &Cluster| wait_for("a leader", Duration::from_secs(15), || leader_index(c));
    let follower = |c: &Cluster| (leader(c) + 1) % 3;
    let nothing = |_: &Cluster| {};

    for (point, on_leader) in
        [("raftBeforeSave", true), ("raftAfterSave", false), ("beforeCommit", true), ("afterCommit", false)]
    {
        let victim = if on_leader { leader(&c) } else { follower(&c) };
        c.crash_at(victim, point, 20, nothing);
        progress(&acked, 100).await;
    }
    for point in ["compactBeforeCommit", "compactAfterCommit"] {
        let victim = follower(&c);
        let through = (victim + 1) % 3;
        c.crash_at(victim, point, 0, |c| compact_now(c, through));
        progress(&acked, 100).await;
    }
    for point in ["backendBeforeRestore", "raftBeforeApplySnap", "raftAfterApplySnap"] {
        let victim = follower(&c);
        fall_behind(&mut c, victim, &acked).await;
        c.crash_at(victim, point, 0, nothing);
        progress(&acked, 100).await;
    }
    let restored: usize = c
        .members
        .iter()
        .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default().matches("applied snapshot from leader").count())
        .sum();
    assert!(restored >= 3, "members caught up from snapshots after the snapshot crashes: {restored}");
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "fp").await;
}

/// The one member of a cluster crashes at each point of its write path: nothing acknowledged
/// may be missing when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_crashes_at_failpoints_lose_no_acknowledged_write() {
    let mut c = Cluster::start(1);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "fp1", 4, stop.clone());
    for point in
        ["raftBeforeSave", "raftAfterSave", "beforeCommit", "afterCommit", "compactBeforeCommit", "compactAfterCommit"]
    {
        progress(&acked, 100).await;
        c.crash_at(0, point, 10, |c| compact_now(c, 0));
    }
    // Defrag rewrites the whole backend file: a crash on either side of it loses nothing.
    for point in ["defragBeforeCompact", "defragBeforeSwap", "defragAfterCompact"] {
        progress(&acked, 100).await;
        c.crash_at(0, point, 0, |c| {
            compact_now(c, 0);
            let _ = c.etcdctl(0, &["defrag", "--command-timeout=10s"]);
        });
    }
    // A client's snapshot: the member crashes before writing it, and while streaming it.
    let snap = c.dir().join("crash.db");
    for point in ["beforeSnapshotExport", "snapshotSendPiece"] {
        progress(&acked, 100).await;
        // etcdctl's snapshot save waits on and on for a member that died: it runs beside.
        let mut saver = None;
        c.crash_at(0, point, 0, |c| {
            if saver.is_none() {
                let path = snap.to_str().expect("path");
                saver = Some(rustcd_testkit::spawn_etcdctl(&c.members[0].endpoint(), &["snapshot", "save", path]));
            }
        });
        if let Some(mut s) = saver {
            let _ = s.kill();
            let _ = s.wait();
        }
        assert!(!snap.exists(), "no snapshot file is left from a save cut short");
    }
    progress(&acked, 100).await;
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "fp1").await;
}

/// Whoever leads crashes while making a snapshot for a member that fell behind: both members
/// that could lead carry `snapshotBeforeSave`, so the first leader dies, the second is elected
/// with the lagging member's vote and dies too, and the cluster has no quorum until they come
/// back without it. Nothing acknowledged is lost and the lagging member catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leaders_crash_making_a_snapshot_lose_no_acknowledged_write() {
    let mut c = Cluster::start_with(
        rustcd_testkit::Server::Rustcd,
        3,
        &["--snapshot-count", "300", "--experimental-snapshot-catchup-entries", "100"],
    );
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "snap", 4, stop.clone());
    progress(&acked, 100).await;
    let leader = wait_for("a leader", Duration::from_secs(15), || leader_index(&c));
    let behind = (leader + 1) % 3;
    fall_behind(&mut c, behind, &acked).await;
    let leaders: Vec<usize> = (0..3).filter(|i| *i != behind).collect();
    for &i in &leaders {
        c.kill(i, libc::SIGKILL);
        c.members[i].env = vec![("FAILPOINTS".into(), "snapshotBeforeSave=panic".into())];
        c.restart(i);
    }
    progress(&acked, 50).await;
    c.restart(behind);
    for &i in &leaders {
        let status = c.wait_exit(i, Duration::from_secs(30)).expect("each leader crashes making the snapshot");
        c.assert_aborted_at(i, status, "snapshotBeforeSave");
    }
    for &i in &leaders {
        c.restart(i);
    }
    progress(&acked, 100).await;
    stop_writers(&stop, tasks).await;
    verify_cluster(&c, &acked, "snap").await;
    let log = std::fs::read_to_string(&c.members[behind].log).unwrap_or_default();
    assert!(log.contains("applied snapshot from leader"), "member {behind} caught up from a snapshot");
}
