//! Leases, locks and elections with the real etcdctl on one member: expiry within 5-7 s, keep-alive,
//! time-to-live output, revoke; mutual exclusion over 200 lock rounds; a killed holder's lock
//! freed by its lease; election observers following campaigners.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustcd_tests::{Cluster, REAL_ETCDCTL, etcdctl_watch, lease_id, spawn_etcdctl, stdout, wait_for};

#[test]
fn lease_expiry_keepalive_timetolive_and_revoke() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let granted = Instant::now();
    let id = lease_id(&c.etcdctl(0, &["lease", "grant", "5"]));
    assert_eq!(stdout(&c.etcdctl(0, &["put", "short", "v", &format!("--lease={id}")])), "OK\n");
    let kept = lease_id(&c.etcdctl(0, &["lease", "grant", "5"]));
    c.etcdctl(0, &["put", "kept", "v", &format!("--lease={kept}")]);
    let mut keeper = spawn_etcdctl(&c.members[0].endpoint(), &["lease", "keep-alive", &kept]);

    let ttl = stdout(&c.etcdctl(0, &["lease", "timetolive", &id, "--keys"]));
    assert!(ttl.starts_with(&format!("lease {id} granted with TTL(5s), remaining(")), "{ttl}");
    assert!(ttl.ends_with("s), attached keys([short])\n"), "{ttl}");

    let gone = wait_for("the leased key to expire", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["get", "short"])).is_empty().then(|| granted.elapsed())
    });
    assert!(gone >= Duration::from_secs(5) && gone <= Duration::from_secs(7), "expired after {gone:?}");
    assert_eq!(stdout(&c.etcdctl(0, &["lease", "timetolive", &id])), format!("lease {id} already expired\n"));
    assert_eq!(stdout(&c.etcdctl(0, &["get", "kept", "--print-value-only"])), "v\n", "kept alive");
    let _ = keeper.kill();
    let _ = keeper.wait();

    let many = lease_id(&c.etcdctl(0, &["lease", "grant", "100"]));
    for k in ["r1", "r2", "r3"] {
        c.etcdctl(0, &["put", k, "v", &format!("--lease={many}")]);
    }
    assert_eq!(stdout(&c.etcdctl(0, &["lease", "revoke", &many])), format!("lease {many} revoked\n"));
    assert_eq!(stdout(&c.etcdctl(0, &["get", "r", "--prefix"])), "");
    let list = stdout(&c.etcdctl(0, &["lease", "list"]));
    assert!(list.starts_with("found ") && !list.contains(&many), "{list}");
}

#[test]
fn lock_gives_mutual_exclusion_over_200_rounds() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    c.etcdctl(0, &["put", "counter", "0"]);
    let critical = format!(
        "v=$({REAL_ETCDCTL} --endpoints={ep} get counter --print-value-only) && {REAL_ETCDCTL} --endpoints={ep} put counter $((v+1)) >/dev/null"
    );
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let (ep, critical) = (ep.clone(), critical.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let st = Command::new(REAL_ETCDCTL)
                        .args([&format!("--endpoints={ep}"), "lock", "counter-lock", "--", "sh", "-c", &critical])
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

#[test]
fn killed_holder_releases_the_lock_when_its_lease_expires() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let mut holder = spawn_etcdctl(&ep, &["lock", "--ttl=3", "held", "sleep", "600"]);
    wait_for("the holder to take the lock", Duration::from_secs(10), || {
        stdout(&c.etcdctl(0, &["get", "held/", "--prefix", "--keys-only"])).contains("held/").then_some(())
    });
    let killed = Instant::now();
    // SAFETY: kill(2) on a child we spawned.
    unsafe {
        libc::kill(holder.id() as i32, libc::SIGKILL);
    }
    let _ = holder.wait();
    let out = Command::new(REAL_ETCDCTL)
        .args([&format!("--endpoints={ep}"), "lock", "held", "echo", "acquired"])
        .output()
        .expect("second holder");
    let waited = killed.elapsed();
    assert_eq!(stdout(&out), "acquired\n");
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(8), "lock freed after {waited:?}");
}

#[test]
fn election_observers_follow_campaigners() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let obs_ep = ep.clone();
    let observer =
        std::thread::spawn(move || etcdctl_watch(&obs_ep, &["elect", "-l", "job"], 4, Duration::from_secs(20)));
    let campaign = |who: &str| spawn_etcdctl(&ep, &["elect", "job", who]);
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
