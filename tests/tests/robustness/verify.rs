//! `rustcd-bench verify` against real clusters (`scripts/verify-cluster.sh`: three members on
//! loopback, peer traffic through the tool's fault proxies, restarts by a script): a healthy
//! rustcd cluster is linearizable under leader kills, pauses and partitions; one built with the
//! deliberate `ack-before-commit` failpoint loses acknowledged writes, and the tool says so and
//! writes each failing key's timeline.

use std::path::Path;
use std::process::{Command, Output};

use rustcd_testkit::{stdout, workspace_bin};

fn verify(env: &[(&str, &str)], out: &Path, flags: &[&str]) -> (Output, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify-cluster.sh");
    let run = Command::new(script)
        .arg("rustcd")
        .args(["--out", out.to_str().expect("path"), "-w", "json"])
        .args(flags)
        .env("ETCD_BIN", workspace_bin("etcd"))
        .env("BENCH_BIN", workspace_bin("rustcd-bench"))
        .envs(env.iter().copied())
        .output()
        .expect("scripts/verify-cluster.sh");
    eprintln!("{}", String::from_utf8_lossy(&run.stderr));
    let verdict =
        serde_json::from_str(&stdout(&run)).unwrap_or_else(|e| panic!("JSON verdict ({e}): {}", stdout(&run)));
    (run, verdict)
}

#[test]
fn cluster_verify_finds_a_healthy_cluster_linearizable_under_faults() {
    let dir = tempfile::tempdir().expect("dir");
    let faults = "kill-leader,stop-follower,partition-leader,isolate-kill-leader";
    let (run, v) = verify(&[], dir.path(), &["--duration", "16s", "--faults", faults, "--fault-interval", "3s"]);
    eprintln!("{v:#}");
    assert_eq!(v["verdict"], "linearizable", "{v:#}");
    assert!(run.status.success());
    assert_eq!(v["faults"].as_array().map(Vec::len), Some(4), "every fault was injected: {v:#}");
    assert!(v["operations"].as_u64() > Some(500), "the load ran: {v:#}");
    assert!(v["watch_events"].as_u64() > Some(200), "the watchers saw it: {v:#}");
    assert!(dir.path().join("history.json").is_file());
}

#[test]
fn cluster_verify_reports_the_writes_a_server_that_acks_before_commit_loses() {
    let dir = tempfile::tempdir().expect("dir");
    let env = [("FAILPOINTS", "ack-before-commit=return")];
    let flags = ["--duration", "12s", "--faults", "isolate-kill-leader", "--fault-interval", "4s"];
    let (run, v) = verify(&env, dir.path(), &flags);
    eprintln!("{v:#}");
    assert_eq!(run.status.code(), Some(1), "a failed check exits 1");
    assert_ne!(v["verdict"], "linearizable");
    let problems: Vec<&str> = v["problems"].as_array().expect("problems").iter().filter_map(|p| p.as_str()).collect();
    assert!(problems.iter().any(|p| p.contains("acknowledged write lost")), "{problems:?}");
    let failing = v["failing"].as_array().expect("failing keys");
    assert!(!failing.is_empty());
    for f in failing {
        let page = std::fs::read_to_string(dir.path().join(f["timeline"].as_str().expect("timeline")))
            .expect("the key's timeline");
        assert!(page.contains("<svg") && page.contains("#e53935"), "a timeline with the culprit marked");
        assert!(!f["operations"].as_array().expect("operations").is_empty());
    }
}
