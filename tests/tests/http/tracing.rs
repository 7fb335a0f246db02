//! `--experimental-enable-distributed-tracing`: a member sends OTLP spans of the gRPC requests it
//! serves to a collector (here an OTLP/gRPC TraceService in the test, as an OpenTelemetry
//! collector receives them). With the default sampling rate (0) only requests whose caller
//! sampled them (a W3C `traceparent`) are traced, under the caller's trace and span.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::otlp::any_value::Value as Any;
use rustcd_api::otlp::trace_service_server::{TraceService, TraceServiceServer};
use rustcd_api::otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse, Span};
use rustcd_testkit::{Cluster, Server, channel, wait_for};

/// What the collector received: each span with its resource's `service.name` and
/// `service.instance.id`.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().expect("lock");
        for rs in req.into_inner().resource_spans {
            let attr = |k: &str| {
                rs.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == k).and_then(|a| match &a.value {
                    Some(v) => match &v.value {
                        Some(Any::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    },
                    None => None,
                })
            };
            let (name, instance) =
                (attr("service.name").unwrap_or_default(), attr("service.instance.id").unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push((name.clone(), instance.clone(), s));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    fn find(&self, name: &str) -> Option<(String, String, Span)> {
        self.0.lock().expect("lock").iter().find(|(_, _, s)| s.name == name).cloned()
    }
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    s.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Any::IntValue(i) => Some(*i),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_under_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(server);

    let address = format!("--experimental-distributed-tracing-address=127.0.0.1:{port}");
    let flags = [
        "--experimental-enable-distributed-tracing",
        &address,
        "--experimental-distributed-tracing-service-name=rustcd-test",
        "--experimental-distributed-tracing-instance-id=member-1",
    ];
    let c = Cluster::start_with(Server::Rustcd, 1, &flags);
    c.wait_writable(0);
    let mut kv = KvClient::new(channel(&c.members[0].endpoint()).await);
    let put = |key: &str| PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    // Not sampled by its caller, and the rate is 0: no span.
    kv.put(put("untraced")).await.expect("put");
    // Sampled by its caller: a span under the caller's trace.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = tonic::Request::new(put("traced"));
    req.metadata_mut().insert("traceparent", traceparent.parse().expect("metadata"));
    kv.put(req).await.expect("put");
    // A refused request: its span says so.
    let mut bad = tonic::Request::new(put(""));
    bad.metadata_mut().insert("traceparent", traceparent.parse().expect("metadata"));
    let refused = kv.put(bad).await.expect_err("an empty key is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let spans = wait_for("two spans at the collector", Duration::from_secs(20), || {
        let got = collector.0.lock().expect("lock").clone();
        (got.len() >= 2).then_some(got)
    });
    assert!(
        spans.iter().all(|(name, instance, s)| {
            name == "rustcd-test" && instance == "member-1" && s.name == "etcdserverpb.KV/Put"
        }),
        "only the sampled puts, under the service's name"
    );
    let (_, _, ok) = collector.find("etcdserverpb.KV/Put").expect("the put's span");
    assert_eq!(hex(&ok.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&ok.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(ok.kind, rustcd_api::otlp::span::SpanKind::Server as i32);
    assert!(ok.end_time_unix_nano >= ok.start_time_unix_nano && ok.start_time_unix_nano > 0);
    let codes: Vec<Option<i64>> = spans.iter().map(|(_, _, s)| int_attr(s, "rpc.grpc.status_code")).collect();
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(3)), "{codes:?}");
    let failed =
        spans.iter().find(|(_, _, s)| int_attr(s, "rpc.grpc.status_code") == Some(3)).expect("the refused put");
    let status = failed.2.status.clone().expect("an error status");
    assert_eq!(status.message, "etcdserver: key is not provided");
    // No span for the unsampled put arrives later either: spans leave in the order their
    // requests ended, so once a later traced request's span is in, every earlier one is.
    let mut last = tonic::Request::new(put("last"));
    last.metadata_mut().insert("traceparent", traceparent.parse().expect("metadata"));
    kv.put(last).await.expect("put");
    let spans = wait_for("the third span", Duration::from_secs(20), || {
        let got = collector.0.lock().expect("lock").clone();
        (got.len() >= 3).then_some(got)
    });
    assert_eq!(spans.len(), 3, "the unsampled put has no span");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
