//! Alarms as etcd has them: raised through Maintenance.Alarm (and by the periodic corruption
//! check), listed and disarmed with etcdctl, kept across restarts; while CORRUPT is active every
//! write fails with `etcdserver: corrupt cluster`, while NOSPACE every write that grows the
//! store fails with `etcdserver: mvcc: database space exceeded`, and reads go on. The
//! single-member scenario runs against the real etcd too, and both must answer alike.

use std::time::Duration;

use rustcd_api::etcdserverpb::alarm_request::AlarmAction;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest,
};
use rustcd_testkit::{Cluster, ClusterExt, Server, channel, leader_index, stdout, wait_for};

/// What one step answered: the gRPC code and message, or "ok".
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

fn put(k: &str) -> PutRequest {
    PutRequest { key: k.to_string().into_bytes().into(), value: "v".into(), ..Default::default() }
}

fn txn_with(op: ReqOp) -> TxnRequest {
    TxnRequest { success: vec![RequestOp { request: Some(op) }], ..Default::default() }
}

fn alarm(action: AlarmAction, member_id: u64, t: AlarmType) -> AlarmRequest {
    AlarmRequest { action: action as i32, member_id, alarm: t as i32 }
}

/// Raises `t`, then records what each kind of request answers, what etcdctl lists and what
/// endpoint status reports, across a restart; disarms it and records a put again.
async fn alarm_session(server: Server, t: AlarmType) -> Vec<String> {
    let mut c = Cluster::start_with(server, 1, &[]);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    let mut kv = KvClient::new(channel(&ep).await);
    let mut m = MaintenanceClient::new(channel(&ep).await);
    kv.put(put("before")).await.expect("put before the alarm");
    let id = m.status(StatusRequest {}).await.expect("status").into_inner().header.expect("header").member_id;
    let mut seen = vec![format!("list before: {:?}", stdout(&c.etcdctl(0, &["alarm", "list"])))];
    let raised = m.alarm(alarm(AlarmAction::Activate, id, t)).await.expect("activate").into_inner();
    seen.push(format!("activate answers: {:?}", raised.alarms.iter().map(|a| a.alarm).collect::<Vec<_>>()));

    for round in ["raised", "after restart"] {
        if round == "after restart" {
            c.kill(0, libc::SIGTERM);
            c.restart(0);
            kv = KvClient::new(channel(&ep).await);
            m = MaintenanceClient::new(channel(&ep).await);
        }
        seen.push(format!("{round}: put {}", outcome(kv.put(put("k")).await)));
        seen.push(format!(
            "{round}: get {}",
            outcome(kv.range(RangeRequest { key: "before".into(), ..Default::default() }).await)
        ));
        let del = DeleteRangeRequest { key: "before".into(), ..Default::default() };
        seen.push(format!("{round}: txn put {}", outcome(kv.txn(txn_with(ReqOp::RequestPut(put("t")))).await)));
        seen.push(format!("{round}: txn delete {}", outcome(kv.txn(txn_with(ReqOp::RequestDeleteRange(del))).await)));
        seen.push(format!(
            "{round}: list {:?}",
            stdout(&c.etcdctl(0, &["alarm", "list"])).replace(&id.to_string(), "ID")
        ));
        let errors = m.status(StatusRequest {}).await.expect("status").into_inner().errors;
        seen.push(format!("{round}: status errors {:?}", errors.join("|").replace(&id.to_string(), "ID")));
    }
    let disarmed = stdout(&c.etcdctl(0, &["alarm", "disarm"])).replace(&id.to_string(), "ID");
    seen.push(format!("disarm: {disarmed:?}"));
    seen.push(format!("disarmed: put {}", outcome(kv.put(put("k")).await)));
    seen.push(format!("disarmed: list {:?}", stdout(&c.etcdctl(0, &["alarm", "list"]))));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_alarm_stops_writes_as_in_etcd() {
    let ours = alarm_session(Server::Rustcd, AlarmType::Corrupt).await;
    eprintln!("{}", ours.join("\n"));
    for expected in [
        "raised: put DataLoss: etcdserver: corrupt cluster",
        "raised: get ok",
        "raised: txn delete DataLoss: etcdserver: corrupt cluster",
        "after restart: put DataLoss: etcdserver: corrupt cluster",
        "after restart: list \"memberID:ID alarm:CORRUPT \\n\"",
        "after restart: status errors \"memberID:ID alarm:CORRUPT \"",
        "disarmed: put ok",
    ] {
        assert!(ours.contains(&expected.to_string()), "rustcd answered {expected:?}: {ours:#?}");
    }
    assert_eq!(ours, alarm_session(Server::Etcd, AlarmType::Corrupt).await, "rustcd and etcd answer alike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_alarm_stops_growth_as_in_etcd() {
    let ours = alarm_session(Server::Rustcd, AlarmType::Nospace).await;
    eprintln!("{}", ours.join("\n"));
    for expected in [
        "raised: put ResourceExhausted: etcdserver: mvcc: database space exceeded",
        "raised: txn put ResourceExhausted: etcdserver: mvcc: database space exceeded",
        "raised: txn delete ok",
        "after restart: list \"memberID:ID alarm:NOSPACE \\n\"",
        "disarmed: put ok",
    ] {
        assert!(ours.contains(&expected.to_string()), "rustcd answered {expected:?}: {ours:#?}");
    }
    assert_eq!(ours, alarm_session(Server::Etcd, AlarmType::Nospace).await, "rustcd and etcd answer alike");
}

/// The periodic check (`--experimental-corrupt-check-time`): a follower whose backend was
/// changed behind raft's back is found by the leader, which raises CORRUPT for it; the cluster
/// then refuses writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_corruption_check_raises_corrupt() {
    let mut c = Cluster::start_with(Server::Rustcd, 3, &["--experimental-corrupt-check-time=500ms"]);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let mut kv = KvClient::new(channel(&c.members[leader].endpoint()).await);
    for i in 0..10 {
        kv.put(put(&format!("k{i}"))).await.expect("put");
    }
    let victim = (leader + 1) % 3;
    let mut m = MaintenanceClient::new(channel(&c.members[victim].endpoint()).await);
    let victim_id = m.status(StatusRequest {}).await.expect("status").into_inner().header.expect("header").member_id;
    c.kill(victim, libc::SIGTERM);
    // A write the cluster never made, straight into the stopped follower's backend.
    let db = c.members[victim].data_dir.join("member/snap/db");
    {
        let store = rustcd_mvcc::KvStore::open(&db).expect("open the follower's backend");
        store.write(true, &|_| false, |w| w.put(&put("injected")).map(|_| ())).expect("write").value.expect("put");
    }
    c.restart(victim);
    let leader_ep = c.members[leader].endpoint();
    let mut lm = MaintenanceClient::new(channel(&leader_ep).await);
    let alarms = wait_for("the CORRUPT alarm", Duration::from_secs(30), || {
        let r = futures_block(lm.alarm(alarm(AlarmAction::Get, 0, AlarmType::None)));
        r.ok().map(|r| r.into_inner().alarms).filter(|a| !a.is_empty())
    });
    assert_eq!(alarms.len(), 1, "one alarm: {alarms:?}");
    assert_eq!(
        (alarms[0].alarm, alarms[0].member_id),
        (AlarmType::Corrupt as i32, victim_id),
        "raised for the follower"
    );
    let refused = kv.put(put("after")).await.expect_err("writes are refused");
    assert_eq!((refused.code(), refused.message()), (tonic::Code::DataLoss, "etcdserver: corrupt cluster"));
    let log = std::fs::read_to_string(&c.members[leader].log).unwrap_or_default();
    assert!(log.contains("revision from follower must be less than or equal to leader's"), "the leader says why");
    assert!(log.contains("alarm raised"), "every member logs the alarm");
}

/// The compaction hash check (`--experimental-compact-hash-check-enabled`): members that ran
/// the same compaction over the same data agree, and the leader says so; a follower whose
/// backend was changed behind raft's back hashes differently at the next compaction, and the
/// leader raises CORRUPT for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_hash_check_raises_corrupt() {
    let flags = ["--experimental-compact-hash-check-enabled", "--experimental-compact-hash-check-time=300ms"];
    let mut c = Cluster::start_with(Server::Rustcd, 3, &flags);
    c.wait_writable(0);
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_index(&c));
    let mut kv = KvClient::new(channel(&c.members[leader].endpoint()).await);
    let compact_now = |kv: &mut KvClient<tonic::transport::Channel>| {
        let mut kv = kv.clone();
        async move {
            let rev = kv.put(put("last")).await.expect("put").into_inner().header.expect("header").revision;
            kv.compact(CompactionRequest { revision: rev, physical: true }).await.expect("compact");
            rev
        }
    };
    for i in 0..10 {
        kv.put(put(&format!("k{i}"))).await.expect("put");
    }
    let rev = compact_now(&mut kv).await;
    let leader_log = c.members[leader].log.clone();
    let log = || std::fs::read_to_string(&leader_log).unwrap_or_default();
    wait_for("the members to agree", Duration::from_secs(30), || {
        log()
            .lines()
            .any(|l| {
                l.contains("successfully checked hash on whole cluster") && l.contains(&format!(r#""revision":{rev}"#))
            })
            .then_some(())
    });

    let victim = (leader + 1) % 3;
    let mut m = MaintenanceClient::new(channel(&c.members[victim].endpoint()).await);
    let victim_id = m.status(StatusRequest {}).await.expect("status").into_inner().header.expect("header").member_id;
    c.kill(victim, libc::SIGTERM);
    let db = c.members[victim].data_dir.join("member/snap/db");
    {
        let store = rustcd_mvcc::KvStore::open(&db).expect("open the follower's backend");
        store.write(true, &|_| false, |w| w.put(&put("injected")).map(|_| ())).expect("write").value.expect("put");
    }
    c.restart(victim);
    c.wait_writable(victim);
    compact_now(&mut kv).await;
    let mut lm = MaintenanceClient::new(channel(&c.members[leader].endpoint()).await);
    let alarms = wait_for("the CORRUPT alarm", Duration::from_secs(30), || {
        let r = futures_block(lm.alarm(alarm(AlarmAction::Get, 0, AlarmType::None)));
        r.ok().map(|r| r.into_inner().alarms).filter(|a| !a.is_empty())
    });
    assert_eq!(
        alarms.iter().map(|a| (a.alarm, a.member_id)).collect::<Vec<_>>(),
        vec![(AlarmType::Corrupt as i32, victim_id)],
        "raised for the follower"
    );
    assert!(log().contains("failed compaction hash check"), "the leader says why");
}

/// Runs a future to completion from inside a polling closure.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// `--quota-backend-bytes`: puts that would take the backend past the quota are refused with
/// etcd's `database space exceeded` and raise NOSPACE for the member; reads and deletes go on,
/// `/health` says why (unless told to exclude it); compacting, defragmenting and disarming
/// recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_fill_raises_nospace_and_compact_defrag_disarm_recover() {
    let c = Cluster::start_with(Server::Rustcd, 1, &["--quota-backend-bytes=16777216"]);
    c.wait_writable(0);
    let ch = channel(&c.members[0].endpoint()).await;
    let mut kv = KvClient::new(ch.clone());
    let big = |i: usize| PutRequest {
        key: format!("big{i:04}").into_bytes().into(),
        value: vec![b'x'; 64 * 1024].into(),
        ..Default::default()
    };
    let mut written = 0;
    let refused = loop {
        match kv.put(big(written)).await {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 2000, "16 MiB of quota never filled");
    };
    assert!(written > 10, "puts went through before the quota filled: {written}");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded")
    );
    let mut m = MaintenanceClient::new(ch.clone());
    let alarms = m.alarm(alarm(AlarmAction::Get, 0, AlarmType::None)).await.expect("alarm list").into_inner().alarms;
    let member = m.status(StatusRequest {}).await.expect("status").into_inner().header.expect("header").member_id;
    assert_eq!(
        alarms.iter().map(|a| (a.alarm, a.member_id)).collect::<Vec<_>>(),
        vec![(AlarmType::Nospace as i32, member)]
    );
    // Everything that would grow the store is refused; reads and deletes go on.
    let small = kv.put(put("small")).await.expect_err("a small put too");
    assert_eq!(small.message(), "etcdserver: mvcc: database space exceeded");
    let mut lease = rustcd_api::etcdserverpb::lease_client::LeaseClient::new(ch.clone());
    let grant =
        lease.lease_grant(rustcd_api::etcdserverpb::LeaseGrantRequest { ttl: 60, id: 0 }).await.expect_err("a lease");
    assert_eq!(grant.message(), "etcdserver: mvcc: database space exceeded");
    let got = kv.range(RangeRequest { key: b"big0000".to_vec().into(), ..Default::default() }).await.expect("a read");
    assert_eq!(got.into_inner().kvs.len(), 1);
    let port = c.members[0].client_port;
    let health = rustcd_testkit::http_get(port, "/health");
    assert!(health.contains(r#""health":"false","reason":"ALARM NOSPACE""#), "{health}");
    let excluded = rustcd_testkit::http_get(port, "/health?exclude=NOSPACE");
    assert!(excluded.contains(r#""health":"true""#), "{excluded}");
    // Recovery: delete, compact, defragment, disarm.
    let del =
        DeleteRangeRequest { key: b"big".to_vec().into(), range_end: b"bih".to_vec().into(), ..Default::default() };
    let rev = kv.delete_range(del).await.expect("deletes go on").into_inner().header.expect("header").revision;
    kv.compact(CompactionRequest { revision: rev, physical: true }).await.expect("compact");
    m.defragment(rustcd_api::etcdserverpb::DefragmentRequest {}).await.expect("defragment");
    m.alarm(alarm(AlarmAction::Deactivate, member, AlarmType::Nospace)).await.expect("disarm");
    kv.put(put("after")).await.expect("writes again");
    assert!(rustcd_testkit::http_get(port, "/health").contains(r#""health":"true""#));
}
