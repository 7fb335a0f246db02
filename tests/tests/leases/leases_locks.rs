//! Leases, locks and elections on one member, each scenario run with the real etcdctl and with
//! ours: expiry within 5-7 s, keep-alive, time-to-live output, revoke; mutual exclusion over 200
//! lock rounds; a killed holder's lock freed by its lease; election observers following
//! campaigners.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::{Cluster, Ctl, ctl_watch, lease_id, stdout, wait_for};

/// One test per scenario and etcdctl.
macro_rules! with_both_etcdctls {
    ($scenario:ident, $real:ident, $ours:ident) => {
        #[test]
        fn $real() {
            $scenario(Ctl::Real);
        }
        #[test]
        fn $ours() {
            $scenario(Ctl::Ours);
        }
    };
}

with_both_etcdctls!(
    lease_expiry,
    lease_expiry_keepalive_timetolive_and_revoke,
    our_etcdctl_lease_expiry_keepalive_timetolive_and_revoke
);
with_both_etcdctls!(
    lock_exclusion,
    lock_gives_mutual_exclusion_over_200_rounds,
    our_etcdctl_lock_gives_mutual_exclusion
);
with_both_etcdctls!(
    killed_holder,
    killed_holder_releases_the_lock_when_its_lease_expires,
    our_etcdctl_killed_holder_releases_the_lock
);
with_both_etcdctls!(election, election_observers_follow_campaigners, our_etcdctl_election_observers_follow_campaigners);

fn lease_expiry(ctl: Ctl) {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let run = |args: &[&str]| ctl.run(&ep, args, None);
    let granted = Instant::now();
    let id = lease_id(&run(&["lease", "grant", "5"]));
    assert_eq!(stdout(&run(&["put", "short", "v", &format!("--lease={id}")])), "OK\n");
    let kept = lease_id(&run(&["lease", "grant", "5"]));
    run(&["put", "kept", "v", &format!("--lease={kept}")]);
    let mut keeper = ctl.spawn(&ep, &["lease", "keep-alive", &kept]);

    let out = run(&["lease", "timetolive", &id, "--keys"]);
    let ttl = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(ttl.starts_with(&format!("lease {id} granted with TTL(5s), remaining(")), "{ttl} / {err}");
    assert!(ttl.ends_with("s), attached keys([short])\n"), "{ttl}");

    let gone = wait_for("the leased key to expire", Duration::from_secs(10), || {
        stdout(&run(&["get", "short"])).is_empty().then(|| granted.elapsed())
    });
    assert!(gone >= Duration::from_secs(5) && gone <= Duration::from_secs(7), "expired after {gone:?}");
    assert_eq!(stdout(&run(&["lease", "timetolive", &id])), format!("lease {id} already expired\n"));
    assert_eq!(stdout(&run(&["get", "kept", "--print-value-only"])), "v\n", "kept alive");
    let _ = keeper.kill();
    let _ = keeper.wait();

    let many = lease_id(&run(&["lease", "grant", "100"]));
    for k in ["r1", "r2", "r3"] {
        run(&["put", k, "v", &format!("--lease={many}")]);
    }
    assert_eq!(stdout(&run(&["lease", "revoke", &many])), format!("lease {many} revoked\n"));
    assert_eq!(stdout(&run(&["get", "r", "--prefix"])), "");
    let list = stdout(&run(&["lease", "list"]));
    assert!(list.starts_with("found ") && !list.contains(&many), "{list}");
}

fn lock_exclusion(ctl: Ctl) {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    c.etcdctl(0, &["put", "counter", "0"]);
    let bin = ctl.path();
    let bin = bin.display();
    let critical = format!(
        "v=$({bin} --endpoints={ep} get counter --print-value-only) && {bin} --endpoints={ep} put counter $((v+1)) >/dev/null"
    );
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let (ep, critical) = (ep.clone(), critical.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let st = ctl
                        .command(&ep)
                        .args(["lock", "counter-lock", "--", "sh", "-c", &critical])
                        .stdout(Stdio::null())
                        .status()
                        .expect("etcdctl lock");
                    assert!(st.success(), "a lock round failed");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(stdout(&c.etcdctl(0, &["get", "counter", "--print-value-only"])), "200\n", "no update lost");
}

fn killed_holder(ctl: Ctl) {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let mut holder = ctl.spawn(&ep, &["lock", "--ttl=3", "held", "sleep", "600"]);
    wait_for("the holder to take the lock", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["get", "held/", "--prefix", "--keys-only"])).contains("held/").then_some(())
    });
    let killed = Instant::now();
    // SAFETY: kill(2) on a child we spawned.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(holder.id() as i32, libc::SIGKILL);
    }
    let _ = holder.wait();
    let out = ctl.run(&ep, &["lock", "held", "echo", "acquired"], None);
    let waited = killed.elapsed();
    assert_eq!(stdout(&out), "acquired\n");
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(8), "lock freed after {waited:?}");
}

fn election(ctl: Ctl) {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let obs_ep = ep.clone();
    let observer =
        std::thread::spawn(move || ctl_watch(ctl, &obs_ep, &["elect", "-l", "job"], 4, Duration::from_secs(20)));
    let campaign = |who: &str| ctl.spawn(&ep, &["elect", "job", who]);
    let mut alice = campaign("alice");
    wait_for("alice to lead", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["get", "job/", "--prefix"])).contains("alice").then_some(())
    });
    let mut bob = campaign("bob");
    wait_for("bob to queue", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["get", "job/", "--prefix"])).contains("bob").then_some(())
    });
    // alice steps down (SIGINT makes etcdctl resign); bob takes over.
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
    assert_eq!(lines.len(), 4, "{:?}", seen.stdout);
    assert!(lines[0].starts_with("job/") && lines[2].starts_with("job/") && lines[0] != lines[2]);
    assert_eq!((lines[1], lines[3]), ("alice", "bob"));
}
