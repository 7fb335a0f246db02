//! `--auto-compaction-mode`/`--auto-compaction-retention` on a running member: the leader
//! compacts away history older than the retention while writes go on, logging as etcd logs.
//! (The revision mode runs every 5 minutes, as etcd's: its schedule is tested on a paused clock
//! beside the compactor; both modes share the wiring tested here.)

use std::time::{Duration, Instant};

use rustcd_testkit::{Cluster, Ctl, Server, stdout, wait_for};

#[test]
fn periodic_auto_compaction_drops_history_older_than_the_retention() {
    let c =
        Cluster::start_with(Server::Rustcd, 1, &["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"]);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let put = |i: usize| assert!(Ctl::Ours.run(&ep, &["put", "k", &i.to_string()], None).status.success());
    let started = Instant::now();
    let mut i = 0;
    // Writes go on; within a few intervals the log shows a completed compaction.
    let line = wait_for("an auto compaction", Duration::from_secs(30), || {
        put(i);
        i += 1;
        let log = std::fs::read_to_string(&c.members[0].log).unwrap_or_default();
        log.lines().find(|l| l.contains("\"msg\":\"completed auto periodic compaction\"")).map(str::to_string)
    });
    assert!(started.elapsed() >= Duration::from_secs(2), "no compaction before the retention passed");
    assert!(line.contains("\"compact-period\":\"2s\""), "{line}");
    let rev: i64 = line
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {line}"));
    // Below the compacted revision history is gone; from it on it is kept.
    let below = Ctl::Ours.run(&ep, &["get", "k", &format!("--rev={}", rev - 1)], None);
    let err = String::from_utf8_lossy(&below.stderr);
    assert_eq!(err.lines().last(), Some("Error: etcdserver: mvcc: required revision has been compacted"), "{err}");
    let at = Ctl::Ours.run(&ep, &["get", "k", &format!("--rev={rev}"), "--print-value-only"], None);
    assert!(at.status.success() && !stdout(&at).is_empty(), "{}", String::from_utf8_lossy(&at.stderr));
}
