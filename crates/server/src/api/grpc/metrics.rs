//! go-grpc-prometheus' server families for every gRPC call (started; handled, with its code;
//! messages received and sent; with `--metrics extensive`, the handling time), and etcd's
//! client byte and request counters, taken from the wire: the request and response bodies are
//! counted as their gRPC frames pass.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response};
use rustcd_metrics::{Histogram, IntCounter, get};

use crate::api::observed_body::{Observer, observe};

/// Every method rustcd serves, with go-grpc-prometheus' type, so that each has its zero
/// series from the start (go-grpc-prometheus' `InitializeMetrics`).
const METHODS: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "RangeStream", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    ("etcdserverpb.Lease", &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"]),
    ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
    (
        "etcdserverpb.Maintenance",
        &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader", "Downgrade"],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("v3lockpb.Lock", &["Lock", "Unlock"]),
    ("v3electionpb.Election", &["Campaign", "Proclaim", "Leader", "Observe", "Resign"]),
];

/// Go's names of the gRPC codes, as the `grpc_code` label spells them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn kind(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("etcdserverpb.KV", "RangeStream") => "server_stream",
        _ => "unary",
    }
}

/// One method's series, resolved once: a call then adds to counters instead of looking its
/// labels up (a hash and a lock per series per call, and the label strings' allocations).
pub struct Series {
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    /// By gRPC code.
    handled: Vec<IntCounter>,
    handling: Histogram,
    /// `unary` or `stream`, for `etcd_server_client_requests_total`.
    request_type: &'static str,
}

impl Series {
    fn new(kind: &str, service: &str, method: &str) -> Series {
        let g = &get().grpc;
        let labels = [kind, service, method];
        Series {
            started: g.started_total.with_label_values(&labels),
            received: g.msg_received_total.with_label_values(&labels),
            sent: g.msg_sent_total.with_label_values(&labels),
            handled: CODES
                .iter()
                .map(|code| g.handled_total.with_label_values(&[kind, service, method, code]))
                .collect(),
            handling: g.handling_seconds.with_label_values(&labels),
            request_type: if kind == "unary" { "unary" } else { "stream" },
        }
    }
}

/// Every served method's series by path (`/etcdserverpb.KV/Range`).
static SERIES: LazyLock<HashMap<String, Arc<Series>>> = LazyLock::new(|| {
    let mut all = HashMap::new();
    for (service, methods) in METHODS {
        for method in *methods {
            all.insert(format!("/{service}/{method}"), Arc::new(Series::new(kind(service, method), service, method)));
        }
    }
    all
});

/// The zero series of every method, as etcd shows them before any call.
pub fn initialize() {
    LazyLock::force(&SERIES);
    // `grpc_server_handling_seconds` shows only with --metrics extensive; its series exist
    // from the start like the others.
}

/// The series of a served gRPC method (`None` for a path a client made up: only served methods
/// are counted, as gRPC's interceptors see only those, so that labels a client chooses cannot
/// grow without bound). Counts the call as started and its body's messages as they arrive.
pub fn on_request(req: Request<Body>) -> (Request<Body>, Option<Arc<Series>>) {
    let Some(series) = SERIES.get(req.uri().path()).cloned() else {
        return (req, None);
    };
    series.started.inc();
    let version = req.headers().get("client-api-version").and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    get().server.client_requests_total.with_label_values(&[series.request_type, version]).inc();
    let (parts, body) = req.into_parts();
    let body = observe(body, Counted::new(series.clone(), Direction::Received));
    (Request::from_parts(parts, body), Some(series))
}

/// Counts the answer's messages as they leave, and the call as handled when it ends.
pub fn on_response(series: Arc<Series>, resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut counted = Counted::new(series, Direction::Sent);
    // A call refused before any message carries its status in the headers.
    counted.code = code_of(&parts.headers);
    Response::from_parts(parts, observe(body, counted))
}

fn code_of(h: &HeaderMap) -> Option<usize> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

#[derive(PartialEq)]
enum Direction {
    Received,
    Sent,
}

/// Counts a body's gRPC messages and bytes as they pass; a response body also ends its call's
/// `handled` count (when done, or dropped: a cancelled call).
struct Counted {
    series: Arc<Series>,
    direction: Direction,
    framing: Framing,
    code: Option<usize>,
    started: Instant,
}

impl Counted {
    fn new(series: Arc<Series>, direction: Direction) -> Self {
        Counted { series, direction, framing: Framing::default(), code: None, started: Instant::now() }
    }
}

impl Observer for Counted {
    fn data(&mut self, data: &[u8]) {
        let (messages, bytes) = self.framing.feed(data);
        let network = &get().network;
        if self.direction == Direction::Received {
            self.series.received.inc_by(messages);
            network.client_grpc_received_bytes_total.inc_by(bytes);
        } else {
            self.series.sent.inc_by(messages);
            network.client_grpc_sent_bytes_total.inc_by(bytes);
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = code_of(trailers) {
            self.code = Some(code);
        }
    }

    fn finish(&mut self) {
        if self.direction == Direction::Received {
            return;
        }
        // A stream cut off before its trailers ends as Canceled, as Go's server sees it.
        let code = match self.code {
            None => 1,
            Some(c) if c < CODES.len() => c,
            Some(_) => 2,
        };
        if let Some(c) = self.series.handled.get(code) {
            c.inc();
        }
        if rustcd_metrics::extensive() {
            self.series.handling.observe(rustcd_metrics::secs(self.started.elapsed()));
        }
    }
}

/// gRPC's length-prefixed framing, followed across body chunks: each message is a flag byte,
/// a 4-byte big-endian length, then that many bytes.
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    have: usize,
    remaining: usize,
}

impl Framing {
    /// The messages that start in `data` and the message bytes it carries.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                bytes += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let h = self.header;
                self.remaining = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                messages += 1;
            }
        }
        (messages, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    #[test]
    fn framing_counts_messages_split_anywhere() {
        let mut wire = Vec::new();
        for payload in [&b"abc"[..], b"", b"0123456789"] {
            wire.push(0);
            wire.extend((payload.len() as u32).to_be_bytes());
            wire.extend(payload);
        }
        for cut in 0..wire.len() {
            let mut f = Framing::default();
            let (a, b) = (f.feed(&wire[..cut]), f.feed(&wire[cut..]));
            assert_eq!((a.0 + b.0, a.1 + b.1), (3, 13), "cut at {cut}");
        }
    }
}
