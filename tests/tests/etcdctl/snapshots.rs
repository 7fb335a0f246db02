//! Snapshots in etcd's format: taken from rustcd by the real etcdctl 3.4 and restored into the
//! real etcd, taken from the real etcd and restored into rustcd by our etcdutl, each time with
//! every key's revisions, versions and leases compared; a snapshot taken under writes holds
//! exactly the writes up to its revision; a three-member cluster restored from one snapshot.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::request_op::Request as Op;
use rustcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseLeasesRequest, LeaseTimeToLiveRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use rustcd_api::mvccpb::KeyValue;
use rustcd_testkit::{Cluster, Ctl, Server, channel, stdout, wait_for, workspace_bin};

const KEYS: usize = 50_000;
const PUTS_PER_TXN: usize = 100;

async fn kv(ep: &str) -> KvClient<tonic::transport::Channel> {
    KvClient::new(channel(ep).await).max_decoding_message_size(256 << 20)
}

/// Puts `keys` (with `value(i)`, and `lease(i)` when not 0) in transactions of 100 puts.
async fn put_all(ep: &str, keys: &[String], value: impl Fn(usize) -> String, lease: impl Fn(usize) -> i64) {
    let mut kv = kv(ep).await;
    for (n, chunk) in keys.chunks(PUTS_PER_TXN).enumerate() {
        let success = chunk
            .iter()
            .enumerate()
            .map(|(j, k)| {
                let i = n * PUTS_PER_TXN + j;
                let put = PutRequest {
                    key: k.clone().into_bytes().into(),
                    value: value(i).into_bytes().into(),
                    lease: lease(i),
                    ..Default::default()
                };
                RequestOp { request: Some(Op::RequestPut(put)) }
            })
            .collect();
        kv.txn(TxnRequest { success, ..Default::default() }).await.expect("txn of puts");
    }
}

async fn grant(ep: &str, id: i64, ttl: i64) {
    let mut lease = LeaseClient::new(channel(ep).await);
    lease.lease_grant(LeaseGrantRequest { id, ttl }).await.expect("lease grant");
}

async fn revision(ep: &str) -> i64 {
    let r = kv(ep).await.range(RangeRequest { key: b"x".to_vec().into(), ..Default::default() }).await;
    r.expect("range").into_inner().header.expect("header").revision
}

/// Everything a migration must keep: the revision, every key as of now and as of `old_rev`
/// (with its create and mod revisions, version, value and lease), whether revisions below the
/// compaction are refused, and every lease with its granted TTL and keys.
#[derive(Debug, PartialEq)]
struct Dump {
    revision: i64,
    kvs: Vec<KeyValue>,
    at_old: Vec<KeyValue>,
    below_compaction_refused: bool,
    leases: Vec<(i64, i64, Vec<Vec<u8>>)>,
}

async fn dump(ep: &str, old_rev: i64, compacted: i64) -> Dump {
    let mut kv = kv(ep).await;
    let all =
        |rev: i64| RangeRequest { key: vec![0].into(), range_end: vec![0].into(), revision: rev, ..Default::default() };
    let now = kv.range(all(0)).await.expect("range all").into_inner();
    let at_old = kv.range(all(old_rev)).await.expect("range at the old revision").into_inner();
    let below = kv.range(all(compacted - 1)).await;
    let below_compaction_refused =
        below.as_ref().err().is_some_and(|s| s.message() == "etcdserver: mvcc: required revision has been compacted");
    let mut lc = LeaseClient::new(channel(ep).await);
    let mut ids: Vec<i64> = lc
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    ids.sort();
    let mut leases = Vec::new();
    for id in ids {
        let t = lc.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.expect("ttl").into_inner();
        let mut keys: Vec<Vec<u8>> = t.keys.iter().map(|k| k.to_vec()).collect();
        keys.sort();
        leases.push((id, t.granted_ttl, keys));
    }
    // The harness's own probe key (written to see a cluster take writes) is not data.
    let data = |kvs: Vec<KeyValue>| kvs.into_iter().filter(|kv| kv.key.as_ref() != b"__harness_probe").collect();
    Dump {
        revision: now.header.expect("header").revision,
        kvs: data(now.kvs),
        at_old: data(at_old.kvs),
        below_compaction_refused,
        leases,
    }
}

/// Compares two dumps, naming the first difference rather than printing 50k keys.
fn assert_same(what: &str, a: &Dump, b: &Dump) {
    assert_eq!((a.revision, a.below_compaction_refused), (b.revision, b.below_compaction_refused), "{what}");
    for (name, x, y) in [("now", &a.kvs, &b.kvs), ("at the old revision", &a.at_old, &b.at_old)] {
        assert_eq!(x.len(), y.len(), "{what}: keys {name}");
        if let Some((p, q)) = x.iter().zip(y).find(|(p, q)| p != q) {
            panic!("{what}: {name}, {p:?} != {q:?}");
        }
    }
    assert_eq!(a.leases, b.leases, "{what}: leases");
}

fn etcdutl(args: &[&str]) -> Output {
    Command::new(workspace_bin("etcdutl")).args(args).output().expect("run etcdutl")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}\n{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

/// `snapshot restore` of `snap` as member `i` of the planned cluster `c`.
fn restore_args(snap: &Path, c: &Cluster, i: usize) -> Vec<String> {
    let m = &c.members[i];
    vec![
        "snapshot".into(),
        "restore".into(),
        path(snap).into(),
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data_dir.display()),
        format!("--initial-cluster={}", c.initial_cluster()),
        format!("--initial-advertise-peer-urls={}", m.peer_url()),
    ]
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// rustcd -> etcd -> rustcd, with 50k keys of three revisions each, leases, deletions and a
/// compaction: the real etcdctl 3.4 saves, checks and restores rustcd's snapshot and the real
/// etcd serves it unchanged; then the real etcd's own snapshot (after more writes of its own) is
/// restored by our etcdutl and rustcd serves it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_both_ways_with_the_real_etcd_keeps_revisions_and_leases() {
    let src = Cluster::start(1);
    src.wait_writable(0);
    let ep = src.members[0].endpoint();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key/{i:05}")).collect();
    for id in 1..=10 {
        grant(&ep, 0x1000 + id, 3600 + id).await;
    }
    put_all(&ep, &keys, |i| format!("first {i}"), |_| 0).await;
    let compacted = revision(&ep).await;
    put_all(
        &ep,
        &keys,
        |i| format!("second {i}"),
        |i| if i % 1000 == 0 { 0x1000 + 1 + (i / 1000 % 10) as i64 } else { 0 },
    )
    .await;
    let old_rev = revision(&ep).await;
    put_all(&ep, &keys[..KEYS / 2], |i| format!("third {i}"), |_| 0).await;
    let mut kvc = kv(&ep).await;
    let del = DeleteRangeRequest {
        key: b"key/49".to_vec().into(),
        range_end: b"key/4a".to_vec().into(),
        ..Default::default()
    };
    kvc.delete_range(del).await.expect("delete");
    kvc.compact(CompactionRequest { revision: compacted, physical: true }).await.expect("compact");
    let before = dump(&ep, old_rev, compacted).await;
    assert_eq!(before.kvs.len(), KEYS - 1000);
    assert_eq!(before.leases.len(), 10);

    // rustcd's snapshot through the real etcdctl: saved, checked, restored, served by etcd.
    let snap = src.dir().join("from-rustcd.db");
    ok(Ctl::Real.run(&ep, &["snapshot", "save", path(&snap)], None), "real etcdctl snapshot save");
    for format in ["simple", "json", "table", "fields"] {
        let real = ok(Ctl::Real.run(&ep, &["snapshot", "status", path(&snap), "-w", format], None), "real status");
        let ours = ok(etcdutl(&["snapshot", "status", path(&snap), "-w", format]), "etcdutl snapshot status");
        assert_eq!(ours, real, "snapshot status -w {format}");
        assert!(real.contains(&before.revision.to_string()), "{real}");
    }
    let mut etcd = Cluster::planned(Server::Etcd, 1, &[]);
    let restore = restore_args(&snap, &etcd, 0);
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    ok(Ctl::Real.run(&ep, &restore, None), "real etcdctl snapshot restore");
    etcd.start_all();
    let eep = etcd.members[0].endpoint();
    assert_same("the real etcd restored from rustcd's snapshot", &before, &dump(&eep, old_rev, compacted).await);

    // The real etcd writes on (keys, deletes, a lease, a compaction), then its own snapshot
    // goes back to rustcd through our etcdutl.
    grant(&eep, 0x2000, 7200).await;
    let more: Vec<String> = (0..1000).map(|i| format!("etcd/{i:04}")).collect();
    put_all(&eep, &more, |i| format!("written by etcd {i}"), |i| if i % 100 == 0 { 0x2000 } else { 0 }).await;
    let old_rev2 = revision(&eep).await;
    let mut kvc = kv(&eep).await;
    let del = DeleteRangeRequest {
        key: b"key/00".to_vec().into(),
        range_end: b"key/01".to_vec().into(),
        ..Default::default()
    };
    kvc.delete_range(del).await.expect("delete on etcd");
    let txn = TxnRequest {
        compare: vec![rustcd_api::etcdserverpb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: b"etcd/0001".to_vec().into(),
            target_union: Some(rustcd_api::etcdserverpb::compare::TargetUnion::Version(1)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: b"etcd/0001".to_vec().into(),
                value: b"again".to_vec().into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    kvc.txn(txn).await.expect("txn on etcd");
    let compacted2 = old_rev - 5;
    kvc.compact(CompactionRequest { revision: compacted2, physical: true }).await.expect("compact on etcd");
    let before2 = dump(&eep, old_rev2, compacted2).await;
    let snap2 = src.dir().join("from-etcd.db");
    ok(Ctl::Real.run(&eep, &["snapshot", "save", path(&snap2)], None), "real etcdctl snapshot save from etcd");
    let real = ok(Ctl::Real.run(&eep, &["snapshot", "status", path(&snap2), "-w", "json"], None), "real status");
    assert_eq!(ok(etcdutl(&["snapshot", "status", path(&snap2), "-w", "json"]), "etcdutl status"), real);
    drop(etcd);

    let mut back = Cluster::planned(Server::Rustcd, 1, &[]);
    let restore = restore_args(&snap2, &back, 0);
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    ok(etcdutl(&restore), "etcdutl snapshot restore");
    back.start_all();
    let bep = back.members[0].endpoint();
    assert_same("rustcd restored from the real etcd's snapshot", &before2, &dump(&bep, old_rev2, compacted2).await);
    // And it is a working member: it takes writes at the next revision.
    let r = kv(&bep).await.put(PutRequest { key: b"after".to_vec().into(), ..Default::default() }).await;
    assert_eq!(r.expect("put").into_inner().header.expect("header").revision, before2.revision + 1);
}

/// A snapshot taken while a writer puts key after key holds exactly the writes acknowledged
/// at or below its revision: one consistent point in time, with writes going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_writes_holds_one_revision() {
    let src = Cluster::start(1);
    src.wait_writable(0);
    let ep = src.members[0].endpoint();
    // Some bulk first, so that the snapshot takes a while to write and stream.
    let bulk: Vec<String> = (0..20_000).map(|i| format!("bulk/{i:05}")).collect();
    put_all(&ep, &bulk, |_| "x".repeat(200), |_| 0).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ep, stop) = (ep.clone(), stop.clone());
        tokio::spawn(async move {
            let mut kv = kv(&ep).await;
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let put = PutRequest { key: format!("w/{i:06}").into_bytes().into(), ..Default::default() };
                let r = kv.put(put).await.expect("put during the snapshot");
                acked.push((i, r.into_inner().header.expect("header").revision));
                i += 1;
            }
            acked
        })
    };
    let start = revision(&ep).await;
    revision_passes(&ep, start + 50).await;
    let snap = src.dir().join("under-writes.db");
    ok(Ctl::Ours.run(&ep, &["snapshot", "save", path(&snap)], None), "snapshot save");
    // Keep writing a little after the snapshot too.
    let after = revision(&ep).await;
    revision_passes(&ep, after + 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer");

    let mut dst = Cluster::planned(Server::Rustcd, 1, &[]);
    let restore = restore_args(&snap, &dst, 0);
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    ok(etcdutl(&restore), "etcdutl snapshot restore");
    dst.start_all();
    let dep = dst.members[0].endpoint();
    let got = kv(&dep)
        .await
        .range(RangeRequest { key: b"w/".to_vec().into(), range_end: b"w0".to_vec().into(), ..Default::default() })
        .await
        .expect("range")
        .into_inner();
    let at = got.header.expect("header").revision;
    let want: Vec<String> = acked.iter().filter(|(_, rev)| *rev <= at).map(|(i, _)| format!("w/{i:06}")).collect();
    let have: Vec<String> = got.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect();
    assert!(
        !want.is_empty() && want.len() < acked.len(),
        "the snapshot fell inside the writes: {} of {}",
        want.len(),
        acked.len()
    );
    assert_eq!(have, want, "the snapshot at revision {at} holds exactly the writes up to it");
}

/// Waits (up to 20 s) until the store's revision passes `rev`.
async fn revision_passes(ep: &str, rev: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while revision(ep).await <= rev {
        assert!(std::time::Instant::now() < deadline, "the revision never passed {rev}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// etcd's documented disaster recovery: one snapshot restored on each of three members with
/// the same `--initial-cluster` makes a new cluster that elects a leader, serves the data on
/// every member, and replicates new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_restore_three_members_from_one_snapshot() {
    let src = Cluster::start(1);
    src.wait_writable(0);
    let ep = src.members[0].endpoint();
    grant(&ep, 0x77, 900).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("dr/{i:04}")).collect();
    put_all(&ep, &keys, |i| format!("v{i}"), |i| if i < 10 { 0x77 } else { 0 }).await;
    let rev = revision(&ep).await;
    let before = dump(&ep, rev, 1).await;
    let kept = tempfile::tempdir().expect("dir");
    let snap = kept.path().join("dr.db");
    ok(Ctl::Ours.run(&ep, &["snapshot", "save", path(&snap)], None), "snapshot save");
    drop(src);

    let mut c = Cluster::planned(Server::Rustcd, 3, &[]);
    for i in 0..c.members.len() {
        let mut restore = restore_args(&snap, &c, i);
        restore.push("--initial-cluster-token=restored".into());
        let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
        ok(etcdutl(&restore), "etcdutl snapshot restore");
    }
    c.start_all();
    c.wait_writable(0);
    for i in 0..3 {
        let ep = c.members[i].endpoint();
        let mut d = dump(&ep, rev, 1).await;
        // Waiting for a writable cluster wrote one revision more.
        assert_eq!(d.revision, before.revision + 1);
        d.revision = before.revision;
        assert_same(&format!("member {i} of the restored cluster"), &before, &d);
    }
    let list = ok(Ctl::Ours.run(&c.members[1].endpoint(), &["member", "list"], None), "member list");
    for m in &c.members {
        assert!(list.contains(&format!(", started, {}, {}", m.name, m.peer_url())), "{list}");
    }
    let put = PutRequest { key: b"dr/new".to_vec().into(), value: b"after".to_vec().into(), ..Default::default() };
    kv(&c.members[2].endpoint()).await.put(put).await.expect("a write to the restored cluster");
    for m in &c.members {
        let ep = m.endpoint();
        wait_for("the write on every member", Duration::from_secs(10), || {
            let r = Ctl::Ours.run(&ep, &["get", "dr/new", "--consistency=s", "--print-value-only"], None);
            (stdout(&r) == "after\n").then_some(())
        });
    }
}

/// Restores refuse what etcd's refuse, with etcd's words: a snapshot without its hash (unless
/// told to skip the check), a damaged one, a data dir in use, a name not in the cluster.
#[test]
fn restore_refuses_what_etcd_refuses() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, vec![7u8; 8192]).expect("write");
    let target = dir.path().join("out.etcd");
    let t = format!("--data-dir={}", target.display());
    let err = |o: Output| String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default().to_string();
    let o = etcdutl(&["snapshot", "restore", path(&bad), &t]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(o), "Error: snapshot missing hash but --skip-hash-check=false");
    let o = etcdutl(&["snapshot", "restore", path(&bad), &t, "--skip-hash-check"]);
    assert!(err(o).starts_with("Error: invalid bbolt file"));
    assert!(!target.exists(), "a failed restore leaves no data dir behind");
    std::fs::create_dir_all(target.join("x")).expect("mkdir");
    let o = etcdutl(&["snapshot", "restore", path(&bad), &t, "--skip-hash-check"]);
    assert_eq!(err(o), format!("Error: data-dir {:?} not empty or could not be read", target.display().to_string()));
    let o = etcdutl(&["snapshot", "restore", path(&bad), "--name=other", &t]);
    assert_eq!(err(o), "Error: couldn't find local name \"other\" in the initial cluster configuration");
    let o = etcdutl(&["snapshot", "restore", path(&bad), "--bump-revision=5", &t]);
    assert_eq!(
        (o.status.code(), err(o)),
        (Some(128), "Error: --mark-compacted required if --revision-bump > 0".into())
    );
    let o = etcdutl(&["snapshot", "status", path(&dir.path().join("missing.db"))]);
    assert!(err(o).ends_with("missing.db: no such file or directory"));
}

/// `etcdutl defrag` and `etcdutl backup` on a stopped member's data dir: the defrag shrinks
/// the backend and keeps the data; the backup starts as a one-member cluster with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdutl_defrag_and_backup_of_a_stopped_member() {
    let mut src = Cluster::start(1);
    src.wait_writable(0);
    let ep = src.members[0].endpoint();
    let keys: Vec<String> = (0..5000).map(|i| format!("d/{i:04}")).collect();
    put_all(&ep, &keys, |_| "v".repeat(1000), |_| 0).await;
    let mut kvc = kv(&ep).await;
    let del =
        DeleteRangeRequest { key: b"d/1".to_vec().into(), range_end: b"d/5".to_vec().into(), ..Default::default() };
    kvc.delete_range(del).await.expect("delete");
    let rev = revision(&ep).await;
    kvc.compact(CompactionRequest { revision: rev, physical: true }).await.expect("compact");
    let before = dump(&ep, rev, rev).await;
    src.kill(0, libc::SIGTERM);
    let data = src.members[0].data_dir.clone();
    let db = data.join("member/snap/db");
    let size = || std::fs::metadata(&db).expect("backend").len();
    let big = size();
    ok(etcdutl(&["defrag", &format!("--data-dir={}", data.display())]), "etcdutl defrag");
    assert!(size() < big / 2, "defrag shrank the backend: {big} -> {}", size());
    let backup = src.dir().join("backup.etcd");
    ok(
        etcdutl(&["backup", &format!("--data-dir={}", data.display()), &format!("--backup-dir={}", backup.display())]),
        "etcdutl backup",
    );
    src.restart(0);
    assert_same("after defrag", &before, &dump(&ep, rev, rev).await);
    src.kill(0, libc::SIGTERM);
    // The backup is the member's data dir, alone: started in its place, it serves the data.
    std::fs::remove_dir_all(&data).expect("remove the original");
    std::fs::rename(&backup, &data).expect("put the backup in its place");
    src.restart(0);
    assert_same("started from the backup", &before, &dump(&ep, rev, rev).await);
}

/// etcdutl crashing at the end of a restore (everything written, not yet in place) leaves no
/// data dir to start on; the restore run again succeeds and the member serves every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_short_leaves_nothing_to_start_on() {
    let src = Cluster::start(1);
    src.wait_writable(0);
    let ep = src.members[0].endpoint();
    let keys: Vec<String> = (0..3000).map(|i| format!("c/{i:04}")).collect();
    put_all(&ep, &keys, |i| format!("v{i}"), |_| 0).await;
    let rev = revision(&ep).await;
    let before = dump(&ep, rev, 1).await;
    let kept = tempfile::tempdir().expect("dir");
    let snap = kept.path().join("c.db");
    ok(Ctl::Ours.run(&ep, &["snapshot", "save", path(&snap)], None), "snapshot save");
    let mut dst = Cluster::planned(Server::Rustcd, 1, &[]);
    let data = dst.members[0].data_dir.clone();
    let args = restore_args(&snap, &dst, 0);
    let crashed = Command::new(workspace_bin("etcdutl"))
        .args(&args)
        .env("FAILPOINTS", "restoreBeforeRename=panic")
        .output()
        .expect("run etcdutl");
    assert!(!crashed.status.success(), "etcdutl stopped at the failpoint");
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("restoreBeforeRename"), "{crashed:?}");
    assert!(!data.join("member").exists(), "no member dir to start on after a restore cut short");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(etcdutl(&args), "the restore run again");
    dst.start_all();
    assert_same("restored after an interrupted restore", &before, &dump(&dst.members[0].endpoint(), rev, 1).await);
}
