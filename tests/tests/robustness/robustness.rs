//! Robustness, short mode: a 3- and a 5-member rustcd cluster under a mixed client load (puts,
//! reads, deletes on a few keys, through every member) while members are killed, restarted,
//! paused and resumed, the leader's inbound peer traffic is blackholed or a follower's delayed
//! (through a proxy in front of each peer URL), a learner joins and leaves, and a member
//! crashes at a failpoint of its write path (around the raft log fsync or the backend commit),
//! with watchers on the keys through two members that resume after every broken stream. Every
//! operation is recorded with its call and return times; afterwards the history must be
//! linearizable key by key (writes that got no answer may or may not have happened), each
//! watcher must have seen every event in order, once, with the right `prev_kv`, and every
//! member must hold the same data (`HashKV` at one revision).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest};
use rustcd_testkit::ClusterExt as _;
use rustcd_testkit::linearizability::{self, Action, Op};
use rustcd_testkit::proxy::Fault;
use rustcd_testkit::watch_check::{self, Seen};
use rustcd_testkit::{Cluster, hash_kv, leader_index, wait_for};
use rustcd_verify::record::{self, History, Watched, Workload};

const KEYS: usize = 4;
const CLIENTS: usize = 6;
const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// The robustness load: keys `rb/k0..`, answers awaited 3 s, leases that outlive the run.
fn workload() -> Arc<Workload> {
    Arc::new(Workload { prefix: "rb/".into(), keys: KEYS, op_timeout: OP_TIMEOUT, rate: 0.0, lease_ttl: 300 })
}

fn lazy(endpoint: &str) -> tonic::transport::Channel {
    record::lazy_channel(endpoint).expect("a member's endpoint")
}

/// Writes the history where a failing run can be replayed from, and returns the path.
fn save(history: &[Op], violations: &[String]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("rustcd-robustness-{}.txt", std::process::id()));
    let mut text = format!("violations on keys: {violations:?}\n");
    for op in history {
        text.push_str(&format!("{op:?}\n"));
    }
    let _ = std::fs::write(&path, text);
    path
}

#[test]
fn cluster_robustness_3_members_linearizable_under_kills_and_pauses() {
    robustness(3);
}

#[test]
fn cluster_robustness_5_members_linearizable_under_kills_and_pauses() {
    robustness(5);
}

/// Adds a learner, promotes it when it has caught up, then removes it again (the original
/// `n` members stay), all while the load runs.
fn change_membership(c: &mut Cluster, n: usize) {
    let ep = c.members[0].endpoint();
    let ctl = |args: &[&str]| rustcd_testkit::Ctl::Ours.run(&ep, args, None);
    let name = format!("extra{}", c.members.len());
    let (new, peer_url) = c.plan_member(&name);
    let out = ctl(&["member", "add", &name, &format!("--peer-urls={peer_url}"), "--learner"]);
    assert!(out.status.success(), "member add: {}", String::from_utf8_lossy(&out.stderr));
    let id = rustcd_testkit::stdout(&out).split_whitespace().nth(1).expect("new member id").to_string();
    c.start_joining(new);
    wait_for("the learner to be promoted", Duration::from_secs(30), || {
        ctl(&["member", "promote", &id]).status.success().then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    wait_for("the extra member to be removed", Duration::from_secs(30), || {
        ctl(&["member", "remove", &id]).status.success().then_some(())
    });
    c.kill(new, libc::SIGKILL);
    wait_for("a leader among the original members", Duration::from_secs(10), || leader_index(c).filter(|l| *l < n));
}

/// Failpoints a member crashes at, one per round, and whether the leader is the one.
const CRASH_POINTS: [(&str, bool); 4] =
    [("raftAfterSave", true), ("beforeCommit", false), ("raftBeforeSave", false), ("afterCommit", true)];

/// The members other than `leader`, the first `count` of them after it.
fn others(n: usize, leader: usize, count: usize) -> Vec<usize> {
    (1..n).map(|d| (leader + d) % n).take(count).collect()
}

fn robustness(n: usize) {
    // Frequent snapshots: log compaction runs during the load, and a member that was down
    // may have to catch up from a snapshot.
    let mut c = Cluster::start_proxied(n, &["--snapshot-count", "500"]);
    c.wait_writable(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // Channels that connect lazily are made inside the runtime.
    let _in_runtime = rt.enter();
    let start = Instant::now();
    let history: History = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = workload();
    let leftover: Arc<Mutex<Vec<i64>>> = Arc::default();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let ch = lazy(&c.members[i % n].endpoint());
            rt.spawn(record::client(i, ch, w.clone(), start, history.clone(), stop.clone(), leftover.clone()))
        })
        .collect();
    let watched: Vec<Watched> = (0..2).map(|_| Watched::default()).collect();
    let watchers: Vec<_> = watched
        .iter()
        .enumerate()
        .map(|(i, seen)| {
            rt.spawn(record::watcher(lazy(&c.members[i + 1].endpoint()), w.prefix.clone(), 1, seen.clone()))
        })
        .collect();

    // Faults, one after the other, with traffic running throughout. CI runs one round; set
    // RUSTCD_ROBUSTNESS_ROUNDS for a long run.
    let rounds: usize = std::env::var("RUSTCD_ROBUSTNESS_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let traffic = |secs: u64| std::thread::sleep(Duration::from_secs(secs));
    for round in 0..rounds {
        // The leader killed, then back.
        traffic(2);
        let leader = leader_index(&c).expect("a leader");
        c.kill(leader, libc::SIGKILL);
        traffic(3);
        c.restart(leader);
        traffic(1);
        // A follower paused, then resumed.
        let leader = leader_index(&c).expect("a leader after the restart");
        let paused = others(n, leader, 1);
        paused.iter().for_each(|&i| c.kill(i, libc::SIGSTOP));
        traffic(2);
        paused.iter().for_each(|&i| c.kill(i, libc::SIGCONT));
        traffic(1);
        // A minority of followers killed: the rest keep serving.
        let leader = leader_index(&c).expect("a leader after the pause");
        let killed = others(n, leader, (n - 1) / 2);
        killed.iter().for_each(|&i| c.kill(i, libc::SIGKILL));
        traffic(2);
        killed.iter().for_each(|&i| c.restart(i));
        traffic(1);
        // The leader killed and half the rest paused: no quorum until they return.
        let leader = leader_index(&c).expect("a leader after the minority returned");
        c.kill(leader, libc::SIGKILL);
        let paused = others(n, leader, n / 2);
        paused.iter().for_each(|&i| c.kill(i, libc::SIGSTOP));
        traffic(2);
        paused.iter().for_each(|&i| c.kill(i, libc::SIGCONT));
        c.restart(leader);
        traffic(2);
        // The leader cut off from what its peers send (it still reaches them): check-quorum
        // makes it step down and the others elect a new leader; then the link heals.
        let leader = leader_index(&c).expect("a leader before the partition");
        c.proxies[leader].set(Fault::Blackhole);
        wait_for("another leader while the old one hears nothing", Duration::from_secs(15), || {
            leader_index(&c).filter(|l| *l != leader).map(|_| ())
        });
        traffic(1);
        c.proxies[leader].set(Fault::Healthy);
        traffic(1);
        // A follower's inbound traffic delayed.
        let leader = leader_index(&c).expect("a leader after the partition");
        let slow = others(n, leader, 1)[0];
        c.proxies[slow].set(Fault::Delay(Duration::from_millis(150)));
        traffic(2);
        c.proxies[slow].set(Fault::Healthy);
        traffic(1);
        // Membership under load: a learner joins, is promoted once caught up, then removed.
        change_membership(&mut c, n);
        // A member crashes at a failpoint of its write path (a different one each round) and
        // comes back without it.
        let (point, on_leader) = CRASH_POINTS[(round + n) % CRASH_POINTS.len()];
        let leader = leader_index(&c).expect("a leader after the membership change");
        let victim = if on_leader { leader } else { others(n, leader, 1)[0] };
        c.crash_at(victim, point, 20, |_| {});
        traffic(1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });

    // Final reads of every key through every member close the history.
    for i in 0..n {
        c.wait_ready(i);
    }
    let mut final_ops = Vec::new();
    rt.block_on(async {
        for m in &c.members[..n] {
            let ch = rustcd_testkit::channel(&m.endpoint()).await;
            final_ops.extend(record::final_reads(ch, &w, CLIENTS, start).await.expect("final reads"));
        }
    });
    let mut history = history.lock().expect("history").clone();
    history.extend(final_ops);

    let count = |f: fn(&Action) -> bool| history.iter().filter(|o| f(&o.action)).count();
    let puts = count(|a| matches!(a, Action::Put(_)));
    let gets = count(|a| matches!(a, Action::Get(_)));
    let swaps = count(|a| matches!(a, Action::Cas { succeeded: Some(true), .. }));
    let revokes = count(|a| matches!(a, Action::Revoke(_)));
    let unknown = history.iter().filter(|o| o.ret.is_none()).count();
    eprintln!(
        "robustness: {} operations ({puts} puts, {gets} reads, {swaps} successful compare-and-swaps, {revokes} lease revokes, {unknown} without an answer)",
        history.len()
    );
    assert!(
        puts > 100 && gets > 100 && swaps > 10 && revokes > 10,
        "the load ran: {puts} puts, {gets} reads, {swaps} swaps, {revokes} revokes"
    );

    // Every member holds the same data at one revision.
    let rev = rt.block_on(async {
        let mut kv = KvClient::new(rustcd_testkit::channel(&c.members[0].endpoint()).await);
        let r = kv.range(RangeRequest { key: b"rb/".to_vec().into(), ..Default::default() }).await.expect("rev");
        r.into_inner().header.map_or(0, |h| h.revision)
    });
    let hashes: Vec<u32> = c.members[..n]
        .iter()
        .map(|m| {
            let ep = m.endpoint();
            wait_for("HashKV at the common revision", Duration::from_secs(10), || rt.block_on(hash_kv(&ep, rev)).ok())
        })
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "HashKV differs across members at {rev}: {hashes:?}");

    // Watch guarantees: the canonical event list from a fresh watch, then every watcher's.
    let canonical: Watched = Watched::default();
    let fresh = rt.spawn(record::watcher(lazy(&c.members[0].endpoint()), w.prefix.clone(), 1, canonical.clone()));
    let reached = |w: &Watched| w.lock().expect("watched").events.last().is_some_and(|e| e.rev >= rev).then_some(());
    wait_for("a fresh watch to reach the last revision", Duration::from_secs(20), || reached(&canonical));
    for w in &watched {
        wait_for("every watcher to reach the last revision", Duration::from_secs(20), || reached(w));
    }
    fresh.abort();
    watchers.iter().for_each(|w| w.abort());
    let snapshots: usize = c
        .members
        .iter()
        .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default().matches("applied snapshot from leader").count())
        .sum();
    eprintln!("members brought up to date by a snapshot: {snapshots}");
    let canonical = canonical.lock().expect("canonical").events.clone();
    // Unanswered writes no event shows never happened (values are unique): out of the search.
    let written = canonical.iter().filter(|e| e.put).map(|e| (e.key.as_str(), e.value.as_str())).collect();
    let checked = Instant::now();
    let violations = linearizability::check(&linearizability::patch(&history, &written));
    eprintln!("linearizability checked in {:?}", checked.elapsed());
    if !violations.is_empty() {
        let path = save(&history, &violations);
        panic!("history is not linearizable on {violations:?}; written to {}", path.display());
    }
    let bookmarks: usize = watched.iter().map(|w| w.lock().expect("watched").bookmarks.len()).sum();
    eprintln!("watch: {} events, checked through 2 resuming watchers ({bookmarks} bookmarks)", canonical.len());
    watch_check::check_prev_kv(&canonical).unwrap_or_else(|e| panic!("prev_kv: {e}"));
    watch_check::check_writes(&history, &canonical).unwrap_or_else(|e| panic!("writes: {e}"));
    for (i, w) in watched.iter().enumerate() {
        let log = w.lock().expect("watched").clone();
        watch_check::check_bookmarks(&log).unwrap_or_else(|e| panic!("watcher {i}: {e}"));
        let seen: Vec<Seen> = log.events.into_iter().filter(|e| e.rev <= rev).collect();
        watch_check::check_watcher(&seen, &canonical).unwrap_or_else(|e| panic!("watcher {i}: {e}"));
        assert_eq!(seen.len(), canonical.len(), "watcher {i} saw every event up to {rev}");
    }
}

/// The checker catches a real server's anomaly: serializable reads served by a follower that
/// was paused while a write committed are stale (etcd documents that they may be). The same
/// history with linearizable reads instead passes.
#[test]
fn cluster_checker_flags_stale_serializable_reads() {
    let mut c = Cluster::start(3);
    c.wait_writable(0);
    let leader = leader_index(&c).expect("a leader");
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let (mut history, mut stale_seen) = (Vec::new(), false);
    rt.block_on(async {
        let mut to_leader = KvClient::new(rustcd_testkit::channel(&c.members[leader].endpoint()).await);
        let mut to_follower = KvClient::new(rustcd_testkit::channel(&c.members[follower].endpoint()).await);
        for round in 0..50 {
            let put = |v: String| {
                let req = PutRequest {
                    key: b"stale".to_vec().into(),
                    value: v.clone().into_bytes().into(),
                    ..Default::default()
                };
                (req, Action::Put(v))
            };
            let (req, action) = put(format!("old{round}"));
            let call = now();
            to_leader.put(req).await.expect("put");
            history.push(Op { client: 0, key: "stale".into(), action, call, ret: Some(now()) });
            c.kill(follower, libc::SIGSTOP);
            let (req, action) = put(format!("new{round}"));
            let call = now();
            to_leader.put(req).await.expect("put with one member paused");
            history.push(Op { client: 0, key: "stale".into(), action, call, ret: Some(now()) });
            c.kill(follower, libc::SIGCONT);
            let call = now();
            let read = RangeRequest { key: b"stale".to_vec().into(), serializable: true, ..Default::default() };
            let r = to_follower.range(read).await.expect("serializable read").into_inner();
            let seen = r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
            stale_seen |= seen.as_deref() == Some(format!("old{round}").as_str());
            history.push(Op { client: 1, key: "stale".into(), action: Action::Get(seen), call, ret: Some(now()) });
            if stale_seen {
                break;
            }
        }
    });
    assert!(stale_seen, "no stale serializable read in 50 rounds: the anomaly did not show");
    assert_eq!(linearizability::check(&history), vec!["stale".to_string()], "the checker flags the stale read");
    // Without the stale read, the same history is linearizable.
    history.pop();
    assert!(linearizability::check(&history).is_empty());
}

/// The checker catches a broken server: with the `ack-before-commit` failpoint a leader answers
/// puts before raft commits them. Puts made while both followers hear nothing are acknowledged,
/// the leader is killed, the followers elect a new leader that never had them, and a read then
/// misses acknowledged writes: the checker flags the key.
#[test]
fn cluster_checker_catches_a_server_that_acks_before_commit() {
    // SAFETY: nextest runs each test in a process of its own, and no thread has been started
    // yet that could read the environment concurrently; the members inherit the variable.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("FAILPOINTS", "ack-before-commit=return")
    };
    let mut c = Cluster::start_proxied(3, &[]);
    c.wait_writable(0);
    // The broken server acknowledges even the harness's probe at once: wait for a leader.
    let leader = wait_for("a leader", Duration::from_secs(15), || leader_index(&c));
    let followers = others(3, leader, 2);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut history = Vec::new();
    let put = |v: &str| PutRequest {
        key: b"acked".to_vec().into(),
        value: v.as_bytes().to_vec().into(),
        ..Default::default()
    };
    rt.block_on(async {
        let mut kv = KvClient::new(rustcd_testkit::channel(&c.members[leader].endpoint()).await);
        let call = now();
        kv.put(put("v0")).await.expect("put v0");
        history.push(Op { client: 0, key: "acked".into(), action: Action::Put("v0".into()), call, ret: Some(now()) });
        // v0 is committed everywhere before the followers stop.
        for &f in &followers {
            let to = KvClient::new(rustcd_testkit::channel(&c.members[f].endpoint()).await);
            wait_for_async(|| {
                let mut to = to.clone();
                async move {
                    let read = RangeRequest { key: b"acked".to_vec().into(), serializable: true, ..Default::default() };
                    let r = to.range(read).await;
                    r.ok().and_then(|r| r.into_inner().kvs.first().map(|kv| kv.value == b"v0"[..])).unwrap_or(false)
                }
            })
            .await;
        }
        // The followers hear nothing more from the leader (a paused process would still find
        // the appends in its socket buffers when it resumes).
        followers.iter().for_each(|&f| c.proxies[f].set(Fault::Blackhole));
        for i in 1..=5 {
            let v = format!("v{i}");
            let call = now();
            kv.put(put(&v)).await.expect("the broken leader acknowledges at once");
            history.push(Op { client: 0, key: "acked".into(), action: Action::Put(v), call, ret: Some(now()) });
        }
    });
    c.kill(leader, libc::SIGKILL);
    followers.iter().for_each(|&f| c.proxies[f].set(Fault::Healthy));
    let reader = followers[0];
    wait_for("a new leader among the followers", Duration::from_secs(15), || leader_index(&c));
    rt.block_on(async {
        let mut kv = KvClient::new(rustcd_testkit::channel(&c.members[reader].endpoint()).await);
        let call = now();
        let r = kv.range(RangeRequest { key: b"acked".to_vec().into(), ..Default::default() }).await.expect("read");
        let seen = r.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        history.push(Op { client: 1, key: "acked".into(), action: Action::Get(seen), call, ret: Some(now()) });
    });
    assert_eq!(linearizability::check(&history), vec!["acked".to_string()], "lost acknowledged writes: {history:?}");
}

/// Polls an async condition every 50 ms for up to 10 s.
async fn wait_for_async<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < end, "condition not met in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
