//! `--experimental-enable-distributed-tracing`: a span for every gRPC request the member serves,
//! exported to an OpenTelemetry collector over OTLP/gRPC (`--experimental-distributed-tracing-address`),
//! as etcd's otelgrpc interceptors make them: named `etcdserverpb.KV/Put`, kind SERVER, with
//! `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`, under a resource with
//! `service.name` (and `service.instance.id` when set). Sampling is etcd's
//! `ParentBased(TraceIDRatioBased(rate / 1e6))`: a request carrying a W3C `traceparent` is
//! traced when its caller sampled it; one without is traced with the configured probability.
//! Spans are sent in batches; a full queue or an unreachable collector drops them (with a
//! warning), never slows a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response};
use axum::middleware::Next;
use rustcd_api::otlp::any_value::Value as Any;
use rustcd_api::otlp::trace_service_client::TraceServiceClient;
use rustcd_api::otlp::{
    AnyValue, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    span, status,
};
use tokio::sync::mpsc;

use crate::api::observed_body::{Observer, observe};
use crate::config::settings::TracingSettings;

/// Hands finished spans to the exporter.
#[derive(Clone)]
pub struct Tracer {
    tx: mpsc::Sender<Span>,
    /// `fraction * 2^63`: a trace ID whose low half, shifted right once, is below it is sampled.
    bound: u64,
}

const QUEUE: usize = 2048;
const BATCH: usize = 512;
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// The instrumentation etcd's spans name.
const SCOPE: &str = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc";

impl Tracer {
    /// Starts the exporter (it connects lazily: a collector that is not up yet is fine).
    pub fn start(s: &TracingSettings) -> Result<Tracer, String> {
        s.validate()?;
        let endpoint = if s.address.contains("://") { s.address.clone() } else { format!("http://{}", s.address) };
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .map_err(|e| format!("invalid --experimental-distributed-tracing-address {:?}: {e}", s.address))?
            .connect_lazy();
        let mut attributes = vec![kv("service.name", Any::StringValue(s.service_name.clone()))];
        if !s.instance_id.is_empty() {
            attributes.push(kv("service.instance.id", Any::StringValue(s.instance_id.clone())));
        }
        let resource = Resource { attributes, dropped_attributes_count: 0 };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(rx, TraceServiceClient::new(channel), resource));
        let fraction = s.sampling_rate as f64 / 1e6;
        let bound = if fraction >= 1.0 { u64::MAX } else { (fraction * (1u64 << 63) as f64) as u64 };
        tracing::info!(
            address = %s.address, service_name = %s.service_name, instance_id = %s.instance_id,
            sampling_rate = s.sampling_rate, "distributed tracing enabled"
        );
        Ok(Tracer { tx, bound })
    }

    /// The trace and parent span a request is traced under, or `None` when it is not sampled.
    fn sample(&self, headers: &HeaderMap) -> Option<([u8; 16], Option<[u8; 8]>)> {
        if let Some((trace, parent, sampled)) =
            headers.get("traceparent").and_then(|v| parse_traceparent(v.to_str().ok()?))
        {
            return sampled.then_some((trace, Some(parent)));
        }
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace[8..].copy_from_slice(&random_u64().to_be_bytes());
        let low = u64::from_be_bytes(trace[8..].try_into().unwrap_or_default()) >> 1;
        (self.bound == u64::MAX || low < self.bound).then_some((trace, None))
    }
}

/// A W3C `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    for (i, b) in t.iter_mut().enumerate() {
        *b = u8::from_str_radix(trace.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    for (i, b) in p.iter_mut().enumerate() {
        *b = u8::from_str_radix(parent.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    if t == [0; 16] || p == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((t, p, flags & 1 == 1))
}

/// A random 64-bit value: std's per-process random SipHash keys over a counter.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

fn kv(key: &str, v: Any) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }) }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The axum middleware: traces gRPC requests the sampler picks.
pub async fn layer(State(t): State<Tracer>, req: Request<Body>, next: Next) -> Response<Body> {
    let grpc = req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let Some((trace_id, parent)) = grpc.then(|| t.sample(req.headers())).flatten() else {
        return next.run(req).await;
    };
    let name = req.uri().path().trim_start_matches('/').to_string();
    let (service, method) = name.split_once('/').map_or((name.as_str(), ""), |(s, m)| (s, m));
    let attributes = vec![
        kv("rpc.system", Any::StringValue("grpc".into())),
        kv("rpc.service", Any::StringValue(service.into())),
        kv("rpc.method", Any::StringValue(method.into())),
    ];
    let span = Span {
        trace_id: trace_id.to_vec().into(),
        span_id: random_u64().to_be_bytes().to_vec().into(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default().into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: unix_nanos(SystemTime::now()),
        attributes,
        flags: 1,
        name,
        ..Default::default()
    };
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    // A gRPC error without a body carries its status in the headers.
    let status = grpc_status(&parts.headers);
    let traced = Traced { span: Some(span), status, tx: t.tx };
    Response::from_parts(parts, observe(body, traced))
}

fn grpc_status(h: &HeaderMap) -> Option<(i64, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let msg = h.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("");
    Some((code, crate::api::grpc::size_limit::percent_decode(msg)))
}

/// Ends its request's span when the response body is done (or dropped: a cancelled call).
struct Traced {
    span: Option<Span>,
    status: Option<(i64, String)>,
    tx: mpsc::Sender<Span>,
}

impl Observer for Traced {
    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(s) = grpc_status(trailers) {
            self.status = Some(s);
        }
    }

    fn finish(&mut self) {
        let Some(mut span) = self.span.take() else { return };
        span.end_time_unix_nano = unix_nanos(SystemTime::now());
        // A stream cut off before its trailers ends as gRPC's Canceled.
        let (code, message) = self.status.take().unwrap_or((1, "context canceled".into()));
        span.attributes.push(kv("rpc.grpc.status_code", Any::IntValue(code)));
        if code != 0 {
            span.status = Some(rustcd_api::otlp::Status { message, code: status::StatusCode::Error as i32 });
        }
        // A full queue drops the span rather than hold up the response.
        let _ = self.tx.try_send(span);
    }
}

/// Sends spans in batches: whatever arrived within [`BATCH_DELAY`] of the first, up to [`BATCH`].
async fn export(
    mut rx: mpsc::Receiver<Span>,
    mut client: TraceServiceClient<tonic::transport::Channel>,
    resource: Resource,
) {
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut spans = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while spans.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => spans.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = spans.len();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: SCOPE.into(), version: String::new() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match tokio::time::timeout(Duration::from_secs(10), client.export(req)).await {
            Ok(Ok(_)) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e.message(), dropped_spans = n, "failed to export spans");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!(dropped_spans = n, "failed to export spans: timed out");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c() {
        let (t, p, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!((t[0], t[15], p[0], p[7], sampled), (0x4b, 0x36, 0x00, 0xb7, true));
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").map(|x| x.2),
            Some(false)
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn sampling_follows_the_parent_then_the_rate() {
        let settings = |rate| TracingSettings {
            address: "127.0.0.1:1".into(),
            service_name: "etcd".into(),
            instance_id: String::new(),
            sampling_rate: rate,
        };
        let never = Tracer::start(&settings(0)).expect("tracer");
        let always = Tracer::start(&settings(1_000_000)).expect("tracer");
        let none = HeaderMap::new();
        assert!(never.sample(&none).is_none());
        assert!(always.sample(&none).is_some_and(|(_, parent)| parent.is_none()));
        let mut sampled = HeaderMap::new();
        sampled
            .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("header"));
        assert!(
            never
                .sample(&sampled)
                .is_some_and(|(_, parent)| parent == Some([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]))
        );
        let mut unsampled = HeaderMap::new();
        unsampled
            .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().expect("header"));
        assert!(always.sample(&unsampled).is_none(), "the caller's decision wins");
        let half = Tracer::start(&settings(500_000)).expect("tracer");
        let picked = (0..2000).filter(|_| half.sample(&none).is_some()).count();
        assert!((800..1200).contains(&picked), "about half sampled: {picked}");
        assert!(settings(-1).validate().is_err() && settings(1_000_001).validate().is_err());
    }
}
