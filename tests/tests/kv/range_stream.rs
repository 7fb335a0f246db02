//! `KV.RangeStream` (etcd 3.7): a range in chunks whose keys, in order, are the Range's, with
//! header, `more` and `count` on the last chunk only; etcd's errors for what it does not
//! support; and etcdctl's `get --prefix` using it when the server has it (the output unchanged)
//! and falling back to Range on a server without it (the real etcd 3.4).

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::range_request::SortOrder;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use rustcd_testkit::{Cluster, Ctl, Server, channel, stdout};
use tonic::Code;

/// 300 keys of 20 KiB: 6 MB, more than a 4 MiB message and many chunks of --max-request-bytes.
const KEYS: usize = 300;

async fn fill(endpoint: &str) {
    let mut kv = KvClient::new(channel(endpoint).await);
    for i in 0..KEYS {
        let put = PutRequest {
            key: format!("big/{i:04}").into_bytes().into(),
            value: vec![b'a' + (i % 26) as u8; 20 * 1024].into(),
            ..Default::default()
        };
        kv.put(put).await.expect("put");
    }
    kv.put(PutRequest { key: b"other".to_vec().into(), value: b"x".to_vec().into(), ..Default::default() })
        .await
        .expect("put");
}

fn prefix(limit: i64) -> RangeRequest {
    RangeRequest { key: b"big/".to_vec().into(), range_end: b"big0".to_vec().into(), limit, ..Default::default() }
}

/// The chunks of a RangeStream.
async fn chunks(
    kv: &mut KvClient<tonic::transport::Channel>,
    r: RangeRequest,
) -> Result<Vec<RangeResponse>, tonic::Status> {
    let mut stream = kv.range_stream(r).await?.into_inner();
    let mut out = Vec::new();
    while let Some(c) = stream.message().await? {
        out.push(c.range_response.expect("a chunk carries a range response"));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_chunks_are_the_range() {
    let c = Cluster::start(1);
    c.wait_writable(0);
    let ep = c.members[0].endpoint();
    fill(&ep).await;
    let mut kv = KvClient::new(channel(&ep).await).max_decoding_message_size(usize::MAX);

    for limit in [0, 250] {
        let whole = kv.range(prefix(limit)).await.expect("range").into_inner();
        let parts = chunks(&mut kv, prefix(limit)).await.expect("range stream");
        assert!(parts.len() > 3, "a 6 MB range comes in several chunks: {}", parts.len());
        let (last, rest) = parts.split_last().expect("chunks");
        assert!(rest.iter().all(|p| p.header.is_none() && p.count == 0 && !p.more), "only the last chunk has them");
        let keys: Vec<_> = parts.iter().flat_map(|p| p.kvs.iter().cloned()).collect();
        assert_eq!(keys, whole.kvs, "limit {limit}: the chunks' keys in order are the range's");
        assert_eq!((last.more, last.count), (whole.more, whole.count), "limit {limit}");
        assert_eq!(last.count, KEYS as i64);
        let (h, wh) = (last.header.expect("header"), whole.header.expect("header"));
        assert_eq!((h.revision, h.member_id, h.cluster_id), (wh.revision, wh.member_id, wh.cluster_id));
    }
    // A large unary Range goes out as it is read (grpc/kv_range.rs): the same keys, keys-only too.
    let keys_only = kv.range(RangeRequest { keys_only: true, ..prefix(0) }).await.expect("keys only").into_inner();
    assert_eq!(keys_only.kvs.len(), KEYS);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1 && kv.key.starts_with(b"big/")));
    let count = chunks(&mut kv, RangeRequest { count_only: true, ..prefix(0) }).await.expect("count only");
    assert_eq!((count.len(), count[0].count, count[0].kvs.len()), (1, KEYS as i64, 0));

    let sorted = RangeRequest { sort_order: SortOrder::Descend as i32, ..prefix(0) };
    let e = chunks(&mut kv, sorted).await.expect_err("custom order");
    assert_eq!((e.code(), e.message()), (Code::Unimplemented, "RangeStream does not support custom sort orders"));
    let filtered = RangeRequest { min_mod_revision: 2, ..prefix(0) };
    let e = chunks(&mut kv, filtered).await.expect_err("revision filter");
    assert_eq!((e.code(), e.message()), (Code::Unimplemented, "RangeStream does not support revision filters"));
    let e = chunks(&mut kv, RangeRequest::default()).await.expect_err("no key");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_get_prefix_streams_from_rustcd_and_falls_back_on_etcd() {
    let ours = Cluster::start(1);
    let theirs = Cluster::start_with(Server::Etcd, 1, &[]);
    ours.wait_writable(0);
    theirs.wait_writable(0);
    for c in [&ours, &theirs] {
        fill(&c.members[0].endpoint()).await;
    }
    // big/0000 at version 2: sorted by version it comes last, over every chunk.
    for c in [&ours, &theirs] {
        let mut kv = KvClient::new(channel(&c.members[0].endpoint()).await);
        let again = PutRequest { key: b"big/0000".to_vec().into(), value: b"v2".to_vec().into(), ..Default::default() };
        kv.put(again).await.expect("put");
    }
    let get = |ctl: Ctl, c: &Cluster, args: &[&str]| ctl.run(&c.members[0].endpoint(), args, None);
    let by_version = ["get", "big/", "--prefix", "--keys-only", "--sort-by=VERSION"];
    let sorted = stdout(&get(Ctl::Ours, &ours, &by_version));
    assert!(sorted.trim_end().ends_with("big/0000"), "sorted over the whole range, not chunk by chunk");
    assert_eq!(sorted, stdout(&get(Ctl::Real, &ours, &by_version)));
    for args in
        [&["get", "big/", "--prefix", "--keys-only"][..], &["get", "big/", "--prefix", "-w", "json", "--limit", "7"]]
    {
        // The reference: the real etcdctl (Range) against the same server.
        let want = stdout(&get(Ctl::Real, &ours, args));
        assert!(want.contains("big/0299") || want.contains("\"count\":300"), "{want}");
        assert_eq!(stdout(&get(Ctl::Ours, &ours, args)), want, "{args:?} by RangeStream");
        let want = stdout(&get(Ctl::Real, &theirs, args));
        assert_eq!(stdout(&get(Ctl::Ours, &theirs, args)), want, "{args:?} against etcd 3.4 falls back to Range");
    }
    // All 6 MB, past a 4 MiB message.
    let all = get(Ctl::Ours, &ours, &["get", "big/", "--prefix"]);
    assert!(all.status.success() && all.stdout.len() > 6_000_000, "{}", String::from_utf8_lossy(&all.stderr));
    // A Range request past --max-request-bytes and gRPC's overhead: grpc-go's refusal, from both.
    let huge = RangeRequest { key: vec![b'k'; 3 << 20].into(), ..Default::default() };
    let mut refusals = Vec::new();
    for c in [&ours, &theirs] {
        let mut kv = KvClient::new(channel(&c.members[0].endpoint()).await).max_encoding_message_size(usize::MAX);
        let e = kv.range(huge.clone()).await.expect_err("too large");
        refusals.push((e.code(), e.message().to_string()));
    }
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[0].0, Code::ResourceExhausted, "{refusals:?}");
    let explicit = get(Ctl::Ours, &theirs, &["get", "big/0001", "--stream"]);
    assert!(!explicit.status.success(), "--stream on a server without RangeStream fails");
    assert!(
        String::from_utf8_lossy(&explicit.stderr).contains("Unimplemented")
            || String::from_utf8_lossy(&explicit.stderr).contains("unknown"),
        "{}",
        String::from_utf8_lossy(&explicit.stderr)
    );
    let one = stdout(&get(Ctl::Ours, &ours, &["get", "big/0001", "--stream", "--print-value-only"]));
    assert_eq!(one.trim_end().len(), 20 * 1024);
    // Our etcdctl's gets went by RangeStream: 4 of them answered OK, counted as etcd counts.
    let metrics = rustcd_testkit::http_get(ours.members[0].client_port, "/metrics");
    let line = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="RangeStream",grpc_service="etcdserverpb.KV",grpc_type="server_stream"} 4"#;
    assert!(
        metrics.lines().any(|l| l == line),
        "{}",
        metrics.lines().filter(|l| l.contains("RangeStream")).collect::<Vec<_>>().join("\n")
    );
}
