//! The whole server in this test's process: `start` on port 0 (the listeners report the ports
//! they got), the typed API behind real gRPC (puts, linearizable and serializable ranges, a
//! read-only txn, etcd's error for a bad request), then a graceful stop and a restart on the
//! same data dir that still holds the data. As in the `etcd` binary, a member lives in its own
//! runtime: shutting the runtime down ends its tasks and closes the backend.

use std::time::Duration;

use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::request_op::Request as ReqOp;
use rustcd_api::etcdserverpb::response_op::Response as RespOp;
use rustcd_api::etcdserverpb::watch_client::WatchClient;
use rustcd_api::etcdserverpb::watch_request::RequestUnion;
use rustcd_api::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use rustcd_server::config::{Config, Settings};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn config(dir: &std::path::Path) -> Config {
    let raw = Settings {
        name: "solo".into(),
        data_dir: dir.join("solo.etcd").display().to_string(),
        listen_client_urls: "http://127.0.0.1:0".into(),
        advertise_client_urls: "http://127.0.0.1:0".into(),
        listen_peer_urls: "http://127.0.0.1:0".into(),
        initial_advertise_peer_urls: "http://127.0.0.1:0".into(),
        initial_cluster: "solo=http://127.0.0.1:0".into(),
        ..Settings::default()
    };
    Config::from_raw(raw).expect("config")
}

async fn channel(running: &rustcd_server::Running) -> Channel {
    let addr = running.client_addrs[0];
    assert_ne!(addr.port(), 0, "the listener reports the port it was given");
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
}

/// Opens a watch stream on `ch` with one create request; returns its sender (the stream ends
/// when it is dropped), the stream and the server's first answer.
async fn open_watch(
    ch: &Channel,
    create: WatchCreateRequest,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>, WatchResponse) {
    let (tx, rx) = mpsc::channel(1);
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.expect("queue");
    let mut stream =
        WatchClient::new(ch.clone()).watch(ReceiverStream::new(rx)).await.expect("a watch stream").into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an answer in time")
        .expect("stream")
        .expect("a response");
    (tx, stream, first)
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.as_bytes().to_vec().into(), value: value.as_bytes().to_vec().into(), ..Default::default() }
}

/// Starts a member on `dir` in a runtime of its own, runs `session` on a connection to it,
/// stops it gracefully and shuts its runtime down.
fn with_member<F>(dir: &std::path::Path, session: impl FnOnce(Channel) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let running = rustcd_server::start(config(dir)).await.expect("start");
        session(channel(&running).await).await;
        running.stop().await;
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn a_member_in_process_serves_stops_and_restarts_with_its_data() {
    let dir = tempfile::tempdir().expect("dir");
    with_member(dir.path(), |ch| async move {
        let mut kv = KvClient::new(ch);
        let rev = kv.put(put("a", "1")).await.expect("put").into_inner().header.expect("header").revision;
        kv.put(put("b", "2")).await.expect("put");
        let got = kv.range(RangeRequest { key: b"a".to_vec().into(), ..Default::default() }).await.expect("range");
        assert_eq!(got.into_inner().kvs[0].value.as_ref(), b"1");

        // A read-only txn: compare and read, served from one read view.
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: b"a".to_vec().into(),
                target_union: Some(TargetUnion::ModRevision(rev)),
                range_end: Default::default(),
            }],
            success: vec![RequestOp {
                request: Some(ReqOp::RequestRange(RangeRequest {
                    key: b"a".to_vec().into(),
                    range_end: b"c".to_vec().into(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let resp = kv.txn(txn).await.expect("txn").into_inner();
        assert!(resp.succeeded);
        let Some(RespOp::ResponseRange(r)) = &resp.responses[0].response else { panic!("a range response") };
        assert_eq!(r.kvs.len(), 2);
        assert_eq!(resp.header.expect("header").revision, rev + 1, "the txn committed no revision");

        let err = kv.put(put("", "x")).await.expect_err("an empty key is refused");
        assert_eq!((err.code(), err.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
    });
    with_member(dir.path(), |ch| async move {
        let mut kv = KvClient::new(ch);
        let req = RangeRequest { key: b"b".to_vec().into(), serializable: true, ..Default::default() };
        let got = kv.range(req).await.expect("range after restart").into_inner();
        assert_eq!(got.kvs[0].value.as_ref(), b"2");
    });
}

/// etcd serves 2^32-1 concurrent streams per connection (`--max-concurrent-streams`): a client
/// holding 10,000 watch streams open on one connection still puts and gets on it, and every
/// stream sees the put.
#[test]
fn ten_thousand_watch_streams_share_one_connection() {
    const STREAMS: usize = 10_000;
    let dir = tempfile::tempdir().expect("dir");
    with_member(dir.path(), |ch| async move {
        let mut streams = Vec::with_capacity(STREAMS);
        let mut senders = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let create = WatchCreateRequest { key: b"w".to_vec().into(), ..Default::default() };
            let (tx, stream, created) = open_watch(&ch, create).await;
            assert!(created.created);
            streams.push(stream);
            senders.push(tx);
        }
        let mut kv = KvClient::new(ch.clone());
        let put_rev = tokio::time::timeout(Duration::from_secs(10), kv.put(put("w", "x")))
            .await
            .expect("the put is not stuck behind the streams")
            .expect("put")
            .into_inner()
            .header
            .expect("header")
            .revision;
        let got = kv.range(RangeRequest { key: b"w".to_vec().into(), ..Default::default() }).await.expect("range");
        assert_eq!(got.into_inner().kvs[0].value.as_ref(), b"x");
        for (i, s) in streams.iter_mut().enumerate() {
            let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
                .await
                .unwrap_or_else(|_| panic!("stream {i} gets the event"))
                .expect("stream")
                .expect("a response");
            assert_eq!(ev.events.len(), 1, "stream {i}");
            assert_eq!(ev.header.expect("header").revision, put_rev);
        }
    });
}

/// etcd 3.5.24: a watch from a negative revision is refused as compacted, and no watcher is
/// made (watch id -1).
#[test]
fn a_watch_from_a_negative_revision_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    with_member(dir.path(), |ch| async move {
        let create = WatchCreateRequest { key: b"w".to_vec().into(), start_revision: -1, ..Default::default() };
        let (_tx, _stream, r) = open_watch(&ch, create).await;
        assert!(r.created && r.canceled, "{r:?}");
        assert_eq!(
            (r.watch_id, r.cancel_reason.as_str()),
            (-1, "etcdserver: mvcc: required revision has been compacted")
        );
    });
}

/// With auth on, a reader who may read only `open/` cannot reach `secret/` through work its
/// request's handler hands to another task: Election.Observe reads in a task of its own, and a
/// put spawned with the reader's caller is refused at apply, as the same put is in the
/// reader's own task. The caller travels as a value, so a spawned task cannot lose it; a
/// request nobody resolved a caller for is refused, never treated as the server's own.
#[test]
fn work_spawned_from_a_handler_keeps_its_callers_permissions() {
    use rustcd_api::etcdserverpb::auth_client::AuthClient;
    use rustcd_api::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest, AuthenticateRequest,
    };
    use rustcd_api::v3electionpb::LeaderRequest;
    use rustcd_api::v3electionpb::election_client::ElectionClient;
    use rustcd_server::error::ServerError;
    use rustcd_server::etcdserver::auth::Caller;

    fn as_user<T>(token: &str, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("token", token.parse().expect("token metadata"));
        req
    }

    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let running = rustcd_server::start(config(dir.path())).await.expect("start");
        let ch = channel(&running).await;
        let mut auth = AuthClient::new(ch.clone());
        let user = |name: &str| AuthUserAddRequest { name: name.into(), password: "pw".into(), ..Default::default() };
        auth.user_add(user("root")).await.expect("root");
        auth.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() })
            .await
            .expect("grant");
        auth.user_add(user("reader")).await.expect("reader");
        auth.role_add(AuthRoleAddRequest { name: "open-reader".into() }).await.expect("role");
        let perm = rustcd_api::authpb::Permission {
            perm_type: rustcd_api::authpb::permission::Type::Read as i32,
            key: b"open/".to_vec().into(),
            range_end: b"open0".to_vec().into(),
        };
        let grant = AuthRoleGrantPermissionRequest { name: "open-reader".into(), perm: Some(perm) };
        auth.role_grant_permission(grant).await.expect("permission");
        let to_reader = AuthUserGrantRoleRequest { user: "reader".into(), role: "open-reader".into() };
        auth.user_grant_role(to_reader).await.expect("grant");
        auth.auth_enable(AuthEnableRequest {}).await.expect("enable");
        let login = |name: &str| AuthenticateRequest { name: name.into(), password: "pw".into() };
        let reader = auth.authenticate(login("reader")).await.expect("reader logs in").into_inner().token;
        let root = auth.authenticate(login("root")).await.expect("root logs in").into_inner().token;

        // Observe serves its reads from a spawned task: the reader may not read `secret/`.
        let mut election = ElectionClient::new(ch.clone());
        let observed = election.observe(as_user(&reader, LeaderRequest { name: b"secret".to_vec().into() })).await;
        let first = match observed {
            Ok(stream) => tokio::time::timeout(Duration::from_secs(10), stream.into_inner().message())
                .await
                .expect("an answer in time")
                .expect_err("the observed election is refused"),
            Err(status) => status,
        };
        assert_eq!((first.code(), first.message()), (tonic::Code::PermissionDenied, "etcdserver: permission denied"));
        let mine = election.observe(as_user(&reader, LeaderRequest { name: b"open".to_vec().into() })).await;
        assert!(mine.is_ok(), "the reader may observe an election under open/: {mine:?}");

        // The typed API, from tasks a handler might spawn: each carries its caller with it.
        let s = running.server.clone();
        let spawned = |caller: Caller, key: &'static str| {
            let s = s.clone();
            async move { tokio::spawn(async move { s.put(&caller, put(key, "v")).await }).await.expect("task") }
        };
        let reader_caller = Caller::resolve(&s, Some(&reader), None);
        assert_eq!(spawned(reader_caller.clone(), "secret/x").await.err(), Some(ServerError::PermissionDenied));
        let read_only = spawned(reader_caller, "open/x").await;
        assert_eq!(read_only.err(), Some(ServerError::PermissionDenied), "read-only");
        assert!(spawned(Caller::resolve(&s, Some(&root), None), "secret/x").await.is_ok(), "root may write");
        let unresolved = spawned(Caller::unresolved(), "secret/y").await;
        assert_eq!(unresolved.err(), Some(ServerError::InvalidAuthToken));
        let root_caller = Caller::resolve(&s, Some(&root), None);
        let got = s.range(&root_caller, RangeRequest { key: b"secret/y".to_vec().into(), ..Default::default() });
        assert!(got.await.expect("root reads").kvs.is_empty(), "the unresolved caller's put did not happen");

        running.stop().await;
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// The shutdown signal ends everything a member started: stopped, it leaves no listener,
/// connection or loop behind holding its backend, so the same runtime starts it again on the
/// same data dir at once (redb refuses a second open of a file still open), with its data.
#[test]
fn a_member_is_hosted_twice_in_one_runtime() {
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let first = rustcd_server::start(config(dir.path())).await.expect("first start");
        let old_addr = first.client_addrs[0];
        let ch = channel(&first).await;
        KvClient::new(ch.clone()).put(put("k", "first")).await.expect("put");
        // A watch stream open at stop: its connection is ended with the member.
        let create = WatchCreateRequest { key: b"k".to_vec().into(), ..Default::default() };
        let (_tx, mut stream, created) = open_watch(&ch, create).await;
        assert!(created.created);
        first.stop().await;
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("the stream ends");
        assert!(!matches!(ended, Ok(Some(_))), "no event after the member stopped: {ended:?}");
        assert!(tokio::net::TcpStream::connect(old_addr).await.is_err(), "the old listener is closed");

        let second = rustcd_server::start(config(dir.path())).await.expect("second start in the same runtime");
        let mut kv = KvClient::new(channel(&second).await);
        let got = kv.range(RangeRequest { key: b"k".to_vec().into(), ..Default::default() }).await.expect("range");
        assert_eq!(got.into_inner().kvs[0].value.as_ref(), b"first", "the data survived the first member");
        kv.put(put("k", "second")).await.expect("the second member takes writes");
        second.stop().await;
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}
