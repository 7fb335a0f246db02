//! Membership changes under write load with the real etcdctl: add a learner, promote it,
//! remove a voter, move the leader; afterwards every acknowledged write is on every member.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::{Cluster, leader_index, start_writers, stdout, verify_cluster, wait_for};

fn member_id(c: &Cluster, name: &str) -> String {
    let list = stdout(&c.etcdctl(0, &["member", "list"]));
    list.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("{name} not in member list:\n{list}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_add_promote_remove_under_load() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = start_writers(c.endpoints(), "mem", 4, stop.clone());

    // Add a learner; it joins with --initial-cluster-state existing.
    let (new, peer_url) = c.plan_member("m3");
    let out = c.etcdctl(0, &["member", "add", "m3", &format!("--peer-urls={peer_url}"), "--learner"]);
    assert!(out.status.success(), "member add: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("Member ") && stdout(&out).contains(" added to cluster "), "{}", stdout(&out));
    c.start_joining(new);
    let id = wait_for("m3 to publish its name", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["member", "list"])).contains(", m3, ").then(|| member_id(&c, "m3"))
    });
    let status = stdout(&c.etcdctl(new, &["endpoint", "status"]));
    assert!(status.contains(", true, "), "the new member reports itself a learner: {status}");

    // A learner cannot be promoted before it has caught up; once it has, it can.
    wait_for("the learner to be promoted", Duration::from_secs(30), || {
        let out = c.etcdctl(0, &["member", "promote", &id]);
        if !out.status.success() {
            eprintln!("promote: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        }
        out.status.success().then_some(())
    });
    let list = stdout(&c.etcdctl(0, &["member", "list"]));
    assert!(list.lines().any(|l| l.starts_with(&id) && l.ends_with(", false")), "promoted: {list}");
    assert!(list.contains(", started, m3, "), "{list}");

    // Remove a voter that is not the leader; its process stops.
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let victim_id = member_id(&c, &format!("m{victim}"));
    let out = c.etcdctl(leader, &["member", "remove", &victim_id]);
    assert!(out.status.success(), "member remove: {}", String::from_utf8_lossy(&out.stderr));
    c.kill(victim, libc::SIGKILL);
    let list = stdout(&c.etcdctl(leader, &["member", "list"]));
    assert!(!list.contains(&victim_id), "{list}");
    assert_eq!(list.lines().count(), 3);

    // Move the leadership to the new member.
    let out = c.etcdctl(leader, &["move-leader", &id]);
    assert!(out.status.success(), "move-leader: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(wait_for("m3 to lead", Duration::from_secs(10), || leader_index(&c)), new);

    // Errors as etcd gives them.
    let out = c.etcdctl(new, &["member", "remove", "1234"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error: etcdserver: member not found"));
    let out = c.etcdctl(new, &["member", "promote", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error: etcdserver: can only promote a learner member"));

    let progress_target = acked.lock().unwrap().len() + 100;
    wait_for("writes after the changes", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= progress_target).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    verify_cluster(&c, &acked, "mem").await;
}
