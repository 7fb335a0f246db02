//! Leases, locks and elections on a 3-member cluster with the leader killed (SIGKILL) in the
//! middle: no lease expires early, kept-alive leases survive, no two lock holders at once
//! (no lost update), and election observers see each new leader in order.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustcd_testkit::{
    Cluster, REAL_ETCDCTL, etcdctl, etcdctl_watch, leader_index, lease_id, spawn_etcdctl, stdout, wait_for,
};

/// With auth on, a follower asked for a lease's time-to-live asks the leader (the primary
/// lessor) for the same caller: the answer is the lease's, not `user name is empty`.
#[test]
fn cluster_lease_time_to_live_through_a_follower_with_auth_on() {
    let c = Cluster::start(3);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let (l, f) = (c.members[leader].endpoint(), c.members[(leader + 1) % 3].endpoint());
    for args in [&["user", "add", "root:pw"][..], &["user", "add", "reader:pw"], &["auth", "enable"]] {
        let out = etcdctl(&[&l], args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let id = lease_id(&etcdctl(&[&l], &["--user=root:pw", "lease", "grant", "100"]));
    let put = etcdctl(&[&l], &["--user=root:pw", "put", "k", "v", &format!("--lease={id}")]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let ttl = etcdctl(&[&f], &["--user=root:pw", "--command-timeout=5s", "lease", "timetolive", &id, "--keys"]);
    let text = stdout(&ttl);
    assert!(ttl.status.success(), "timetolive through a follower: {}", String::from_utf8_lossy(&ttl.stderr));
    assert!(text.contains("granted with TTL(100s)") && text.contains("attached keys([k])"), "{text}");
    // A user without read permission on the lease's keys may not list them.
    let denied = etcdctl(&[&f], &["--user=reader:pw", "--command-timeout=5s", "lease", "timetolive", &id, "--keys"]);
    assert!(!denied.status.success(), "{}", stdout(&denied));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"));
}

#[test]
fn cluster_leases_survive_leader_kill() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let all = c.endpoints().join(",");
    let eps: Vec<&str> = vec![&all];
    let granted = Instant::now();
    let short = lease_id(&etcdctl(&eps, &["lease", "grant", "8"]));
    etcdctl(&eps, &["put", "short", "v", &format!("--lease={short}")]);
    // etcdctl (clientv3) drops a keep-alive itself when no renewal answers within the TTL:
    // the election and its 500 ms reconnect must fit in it, with room for a loaded machine.
    let kept = lease_id(&etcdctl(&eps, &["lease", "grant", "5"]));
    etcdctl(&eps, &["put", "kept", "v", &format!("--lease={kept}")]);
    let mut keeper = spawn_etcdctl(&all, &["lease", "keep-alive", &kept]);

    std::thread::sleep(Duration::from_millis(1500));
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    c.kill(leader, libc::SIGKILL);
    let survivor = (leader + 1) % 3;
    let ep = c.members[survivor].endpoint();

    // Until the short lease's TTL is over it must stay; the kept one stays throughout.
    while granted.elapsed() < Duration::from_secs(7) {
        // Keys "kept" and "short" both lie in the range [k, t).
        let out = etcdctl(&[&ep], &["get", "k", "t", "--consistency=s", "--keys-only"]);
        let text = stdout(&out);
        if out.status.success() {
            assert!(text.contains("short"), "lease expired early, after {:?}", granted.elapsed());
            assert!(text.contains("kept"), "kept-alive lease expired after {:?}", granted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // After it, the new leader revokes it (within its TTL plus the failover extension).
    wait_for("the short lease to expire", Duration::from_secs(15), || {
        stdout(&etcdctl(&[&ep], &["get", "short"])).is_empty().then_some(())
    });
    assert_eq!(stdout(&etcdctl(&[&ep], &["get", "kept", "--print-value-only"])), "v\n");
    let _ = keeper.kill();
    let _ = keeper.wait();
}

#[test]
fn cluster_lock_and_election_across_leader_kill() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let all = c.endpoints().join(",");
    etcdctl(&[&all], &["put", "counter", "0"]);

    // Observer of the election, and a first leader.
    let obs_eps = all.clone();
    let observer =
        std::thread::spawn(move || etcdctl_watch(&obs_eps, &["elect", "-l", "job"], 4, Duration::from_secs(60)));
    let campaign = |who: &str| spawn_etcdctl(&all, &["elect", "job", who]);
    let mut alice = campaign("alice");
    wait_for("alice to lead", Duration::from_secs(10), || {
        stdout(&etcdctl(&[&all], &["get", "job/", "--prefix"])).contains("alice").then_some(())
    });

    // Lock workers: each confirmed critical section increments the counter once.
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicUsize::new(0));
    let critical = format!(
        "v=$({REAL_ETCDCTL} --endpoints={all} get counter --print-value-only) && {REAL_ETCDCTL} --endpoints={all} put counter $((v+1)) >/dev/null"
    );
    let workers: Vec<_> = (0..5)
        .map(|_| {
            let (all, critical, stop, confirmed) = (all.clone(), critical.clone(), stop.clone(), confirmed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let st = Command::new(REAL_ETCDCTL)
                        .args([&format!("--endpoints={all}"), "lock", "--ttl=5", "cl", "--", "sh", "-c", &critical])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("etcdctl lock");
                    if st.success() {
                        confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    wait_for("some lock rounds", Duration::from_secs(30), || (confirmed.load(Ordering::Relaxed) >= 20).then_some(()));
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    c.kill(leader, libc::SIGKILL);
    let before = confirmed.load(Ordering::Relaxed);
    wait_for("lock rounds after the kill", Duration::from_secs(60), || {
        (confirmed.load(Ordering::Relaxed) >= before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let ep = c.members[(leader + 1) % 3].endpoint();
    let counter: usize =
        stdout(&etcdctl(&[&ep], &["get", "counter", "--print-value-only"])).trim().parse().expect("counter");
    // Two holders at once would lose updates: the counter would fall behind the confirmed rounds.
    assert!(
        counter >= confirmed.load(Ordering::Relaxed),
        "counter {counter} < {} confirmed rounds",
        confirmed.load(Ordering::Relaxed)
    );

    // A new campaigner takes over when alice resigns, after the leader change.
    let mut bob = campaign("bob");
    wait_for("bob to queue", Duration::from_secs(10), || {
        stdout(&etcdctl(&[&ep], &["get", "job/", "--prefix"])).contains("bob").then_some(())
    });
    // SAFETY: kill(2) on a child we spawned.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(alice.id() as i32, libc::SIGINT);
    }
    let _ = alice.wait();
    let seen = observer.join().expect("observer");
    let _ = bob.kill();
    let _ = bob.wait();
    let lines: Vec<&str> = seen.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "observer saw {:?}", seen.stdout);
    assert_eq!((lines[1], lines[3]), ("alice", "bob"));
}
