//! Bad input gets etcd's error (same gRPC code and text) and the member keeps serving.

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rustcd_testkit::{Cluster, channel};
use tonic::Code;

fn put(key: &str, value: Vec<u8>) -> PutRequest {
    PutRequest { key: key.as_bytes().to_vec().into(), value: value.into(), ..Default::default() }
}

fn expect<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, msg: &str) {
    let e = r.expect_err("request must fail");
    assert_eq!((e.code(), e.message()), (code, msg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_etcds_errors() {
    let c = Cluster::start(1);
    let mut kv = KvClient::new(channel(&c.members[0].endpoint()).await);

    expect(kv.put(put("", b"v".to_vec())).await, Code::InvalidArgument, "etcdserver: key is not provided");
    expect(kv.range(RangeRequest::default()).await, Code::InvalidArgument, "etcdserver: key is not provided");
    expect(
        kv.delete_range(DeleteRangeRequest::default()).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    // Over --max-request-bytes (1.5 MiB) but within gRPC's allowance: etcd's own error.
    expect(kv.put(put("big", vec![b'x'; 1_600_000])).await, Code::InvalidArgument, "etcdserver: request is too large");
    // Beyond the gRPC allowance the transport refuses it.
    let e = kv.put(put("huge", vec![b'x'; 3 * 1024 * 1024])).await.expect_err("huge put");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().starts_with("grpc: received message larger than max (") && e.message().ends_with(" vs. 2097152)"),
        "{}",
        e.message()
    );
    let ops: Vec<RequestOp> =
        (0..129).map(|i| RequestOp { request: Some(Request::RequestPut(put(&format!("k{i}"), vec![]))) }).collect();
    expect(
        kv.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let dup = vec![
        RequestOp { request: Some(Request::RequestPut(put("d", vec![]))) },
        RequestOp { request: Some(Request::RequestPut(put("d", vec![]))) },
    ];
    expect(
        kv.txn(TxnRequest { compare: vec![], success: dup, failure: vec![] }).await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    let mut leased = put("l", vec![]);
    leased.lease = 42;
    expect(kv.put(leased).await, Code::NotFound, "etcdserver: requested lease not found");
    let mut no_key = put("nokey", vec![]);
    no_key.ignore_value = true;
    expect(kv.put(no_key).await, Code::InvalidArgument, "etcdserver: key not found");
    let future = RangeRequest { key: b"a".to_vec().into(), revision: 1000, ..Default::default() };
    expect(kv.range(future).await, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");

    // Nothing above hurt the member: it still writes and reads, and nothing was half-applied.
    let ok = kv.put(put("fine", b"yes".to_vec())).await.expect("put after bad requests").into_inner();
    let rev = ok.header.expect("header").revision;
    assert_eq!(rev, 2, "only the good put made a revision");
    let got = kv
        .range(RangeRequest { key: b"fine".to_vec().into(), ..Default::default() })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(got.kvs[0].value.as_ref(), b"yes");
}
