//! The auth attack suite: with auth on, a user with permission on `eve/` only, a caller with no
//! token, a forged token and an expired one try every kind of request on another's keys and on
//! the cluster. Each is refused with etcd's code and text, and afterwards nothing of root's
//! data has changed.

use std::time::Duration;

use rustcd_api::etcdserverpb::alarm_request::AlarmAction;
use rustcd_api::etcdserverpb::auth_client::AuthClient;
use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::lease_client::LeaseClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::request_op::Request as TxnOp;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::*;
use rustcd_testkit::{Cluster, Server, channel};
use tonic::Code;
use tonic::transport::Channel;

fn with_token<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut().insert("token", token.parse().expect("token metadata"));
    }
    r
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest { key: k.as_bytes().to_vec().into(), value: v.as_bytes().to_vec().into(), ..Default::default() }
}

fn get(k: &str) -> RangeRequest {
    RangeRequest { key: k.as_bytes().to_vec().into(), ..Default::default() }
}

fn op(r: TxnOp) -> RequestOp {
    RequestOp { request: Some(r) }
}

async fn authenticate(ch: &Channel, name: &str, password: &str) -> String {
    let req = AuthenticateRequest { name: name.into(), password: password.into() };
    AuthClient::new(ch.clone()).authenticate(req).await.expect("authenticate").into_inner().token
}

/// Every attempt of a caller holding `token`, with its outcome as `Code: message`.
async fn attempts(ch: &Channel, token: &str, lease: i64) -> Vec<(&'static str, String)> {
    let kv = KvClient::new(ch.clone());
    let outcome = |r: Result<(), tonic::Status>| match r {
        Ok(()) => "allowed".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    let t = token;
    let mut out = Vec::new();
    out.push(("range", outcome(kv.clone().range(with_token(t, get("secret"))).await.map(|_| ()))));
    let ser = RangeRequest { serializable: true, ..get("secret") };
    out.push(("serializable range", outcome(kv.clone().range(with_token(t, ser)).await.map(|_| ()))));
    let all = RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() };
    out.push(("range of everything", outcome(kv.clone().range(with_token(t, all)).await.map(|_| ()))));
    out.push(("put", outcome(kv.clone().put(with_token(t, put("secret", "stolen"))).await.map(|_| ()))));
    let del = DeleteRangeRequest { key: b"secret".to_vec().into(), ..Default::default() };
    out.push(("delete", outcome(kv.clone().delete_range(with_token(t, del)).await.map(|_| ()))));
    let cmp = Compare {
        key: b"secret".to_vec().into(),
        target: CompareTarget::Value as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::Value(b"1".to_vec().into())),
        ..Default::default()
    };
    let txn_cmp =
        TxnRequest { compare: vec![cmp], success: vec![op(TxnOp::RequestPut(put("eve/x", "1")))], failure: vec![] };
    out.push(("txn compare", outcome(kv.clone().txn(with_token(t, txn_cmp)).await.map(|_| ()))));
    let txn_then =
        TxnRequest { compare: vec![], success: vec![op(TxnOp::RequestPut(put("secret", "stolen")))], failure: vec![] };
    out.push(("txn then", outcome(kv.clone().txn(with_token(t, txn_then)).await.map(|_| ()))));
    let never = Compare {
        key: b"eve/x".to_vec().into(),
        target: CompareTarget::Version as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::Version(12345)),
        ..Default::default()
    };
    let txn_else = TxnRequest {
        compare: vec![never],
        success: vec![],
        failure: vec![op(TxnOp::RequestDeleteRange(DeleteRangeRequest {
            key: b"secret".to_vec().into(),
            ..Default::default()
        }))],
    };
    out.push(("txn else", outcome(kv.clone().txn(with_token(t, txn_else)).await.map(|_| ()))));
    // A watch: refused in its created response.
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"secret".to_vec().into(),
            ..Default::default()
        })),
    };
    let watched = async {
        let mut stream =
            WatchClient::new(ch.clone()).watch(with_token(t, tokio_stream::iter(vec![create]))).await?.into_inner();
        match stream.message().await? {
            Some(r) if r.canceled => Err(tonic::Status::new(Code::PermissionDenied, r.cancel_reason)),
            _ => Ok(()),
        }
    };
    out.push(("watch", outcome(watched.await)));
    let mut lease_client = LeaseClient::new(ch.clone());
    out.push((
        "lease revoke of another's keys",
        outcome(lease_client.lease_revoke(with_token(t, LeaseRevokeRequest { id: lease })).await.map(|_| ())),
    ));
    let ttl = LeaseTimeToLiveRequest { id: lease, keys: true };
    out.push(("lease keys of another", outcome(lease_client.lease_time_to_live(with_token(t, ttl)).await.map(|_| ()))));
    let mut cluster = ClusterClient::new(ch.clone());
    let add = MemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: false };
    out.push(("member add", outcome(cluster.member_add(with_token(t, add)).await.map(|_| ()))));
    out.push((
        "member remove",
        outcome(cluster.member_remove(with_token(t, MemberRemoveRequest { id: 1 })).await.map(|_| ())),
    ));
    let mut m = MaintenanceClient::new(ch.clone());
    out.push(("defragment", outcome(m.defragment(with_token(t, DefragmentRequest {})).await.map(|_| ()))));
    out.push(("hash", outcome(m.hash(with_token(t, HashRequest {})).await.map(|_| ()))));
    out.push(("hash kv", outcome(m.hash_kv(with_token(t, HashKvRequest { revision: 0 })).await.map(|_| ()))));
    out.push(("snapshot", outcome(m.snapshot(with_token(t, SnapshotRequest {})).await.map(|_| ()))));
    out.push((
        "move leader",
        outcome(m.move_leader(with_token(t, MoveLeaderRequest { target_id: 1 })).await.map(|_| ())),
    ));
    let disarm =
        AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: 0, alarm: AlarmType::Nospace as i32 };
    out.push(("alarm disarm", outcome(m.alarm(with_token(t, disarm)).await.map(|_| ()))));
    let mut a = AuthClient::new(ch.clone());
    out.push((
        "user add",
        outcome(
            a.user_add(with_token(
                t,
                AuthUserAddRequest { name: "mallory".into(), password: "x".into(), ..Default::default() },
            ))
            .await
            .map(|_| ()),
        ),
    ));
    let grant = AuthUserGrantRoleRequest { user: "eve".into(), role: "root".into() };
    out.push(("grant itself root", outcome(a.user_grant_role(with_token(t, grant)).await.map(|_| ()))));
    out.push(("auth disable", outcome(a.auth_disable(with_token(t, AuthDisableRequest {})).await.map(|_| ()))));
    out
}

/// Users `root` (password `rootpw`, with the root role) and `eve` (`evepw`), auth still off.
async fn add_root_and_eve(a: &mut AuthClient<tonic::transport::Channel>) {
    for (name, pw) in [("root", "rootpw"), ("eve", "evepw")] {
        a.user_add(AuthUserAddRequest { name: name.into(), password: pw.into(), ..Default::default() })
            .await
            .expect("user");
    }
    a.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.expect("root role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_without_permission_is_refused_with_etcds_error() {
    let c = Cluster::start_with(Server::Rustcd, 1, &["--auth-token-ttl=2"]);
    c.wait_writable(0);
    let ch = channel(&c.members[0].endpoint()).await;
    let mut a = AuthClient::new(ch.clone());
    add_root_and_eve(&mut a).await;
    a.role_add(AuthRoleAddRequest { name: "eve-only".into() }).await.expect("role");
    let perm = rustcd_api::authpb::Permission {
        perm_type: 2,
        key: b"eve/".to_vec().into(),
        range_end: b"eve0".to_vec().into(),
    };
    a.role_grant_permission(AuthRoleGrantPermissionRequest { name: "eve-only".into(), perm: Some(perm) })
        .await
        .expect("perm");
    a.user_grant_role(AuthUserGrantRoleRequest { user: "eve".into(), role: "eve-only".into() }).await.expect("grant");
    a.auth_enable(AuthEnableRequest {}).await.expect("enable");

    let root = authenticate(&ch, "root", "rootpw").await;
    let kv = KvClient::new(ch.clone());
    let lease = LeaseClient::new(ch.clone())
        .lease_grant(with_token(&root, LeaseGrantRequest { ttl: 600, id: 0 }))
        .await
        .expect("lease")
        .into_inner()
        .id;
    kv.clone().put(with_token(&root, PutRequest { lease, ..put("secret", "1") })).await.expect("root's put");
    let before = kv
        .clone()
        .range(with_token(&root, RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() }))
        .await
        .expect("root reads")
        .into_inner();

    // eve may use her own keys.
    let eve = authenticate(&ch, "eve", "evepw").await;
    kv.clone().put(with_token(&eve, put("eve/x", "1"))).await.expect("eve writes her keys");

    let denied = "PermissionDenied: etcdserver: permission denied";
    let empty = "InvalidArgument: etcdserver: user name is empty";
    let invalid = "Unauthenticated: etcdserver: invalid auth token";
    let forged = "abcdefghijklmnop.1";
    let mut table = Vec::new();
    for (who, token) in [("eve", eve.as_str()), ("no token", ""), ("forged token", forged)] {
        for (what, got) in attempts(&ch, token, lease).await {
            table.push((who, what, got));
        }
    }
    // An expired token: simple tokens die --auth-token-ttl (2) seconds after their last use.
    // Asking renews the token, so the test cannot poll: it lets the TTL pass unused, once.
    let stale = authenticate(&ch, "eve", "evepw").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let expired = kv.clone().range(with_token(&stale, get("eve/x"))).await.expect_err("an expired token");
    table.push(("expired token", "range of its own keys", format!("{:?}: {}", expired.code(), expired.message())));

    let mut unexpected = Vec::new();
    for (who, what, got) in &table {
        let expected = match (*who, *what) {
            ("eve", "watch") => {
                "PermissionDenied: rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            }
            ("no token", "watch") | ("forged token", "watch") => {
                "PermissionDenied: rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            }
            ("eve", _) => denied,
            ("no token", _) => empty,
            ("forged token", _) | ("expired token", _) => invalid,
            _ => "?",
        };
        println!("{who:14} {what:32} {got}");
        if got != expected {
            unexpected.push(format!("{who} / {what}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    let root = authenticate(&ch, "root", "rootpw").await;
    let after = kv
        .clone()
        .range(with_token(&root, RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() }))
        .await
        .expect("root reads")
        .into_inner();
    let others: Vec<_> = after.kvs.iter().filter(|k| k.key.as_ref() != b"eve/x").cloned().collect();
    assert_eq!(others, before.kvs, "nothing but eve's own key changed");
}

/// Election's Observe with auth on: its stream reads the election's keys as its caller, so root
/// sees the leader and a user without permission is refused, as in a Range of the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_reads_as_its_caller() {
    use rustcd_api::v3electionpb::election_client::ElectionClient;
    use rustcd_api::v3electionpb::{CampaignRequest, LeaderRequest};
    let c = Cluster::start_with(Server::Rustcd, 1, &[]);
    c.wait_writable(0);
    let ch = channel(&c.members[0].endpoint()).await;
    let mut a = AuthClient::new(ch.clone());
    add_root_and_eve(&mut a).await;
    a.auth_enable(AuthEnableRequest {}).await.expect("enable");
    let (root, eve) = (authenticate(&ch, "root", "rootpw").await, authenticate(&ch, "eve", "evepw").await);
    let lease = LeaseClient::new(ch.clone())
        .lease_grant(with_token(&root, LeaseGrantRequest { ttl: 600, id: 0 }))
        .await
        .expect("lease")
        .into_inner()
        .id;
    let mut e = ElectionClient::new(ch.clone());
    let campaign = CampaignRequest { name: b"e".to_vec().into(), lease, value: b"v1".to_vec().into() };
    e.campaign(with_token(&root, campaign)).await.expect("root campaigns");
    let observe = |token: String| {
        let mut e = e.clone();
        async move {
            let mut s = e.observe(with_token(&token, LeaderRequest { name: b"e".to_vec().into() })).await?.into_inner();
            s.message().await
        }
    };
    let seen = observe(root).await.expect("root observes").expect("a leader");
    assert_eq!(seen.kv.expect("the leader's key").value.as_ref(), b"v1");
    let refused = observe(eve).await.expect_err("eve may not read the election");
    assert_eq!((refused.code(), refused.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
}
