//! The gateway's streams, as grpc-gateway v1 serves them: the request body is a sequence of
//! JSON requests (one for a server stream, any number read as they arrive for watch and lease
//! keep-alive), and the answer is chunked, one `{"result":...}` line per response. An error ends
//! it with grpc-gateway's `{"error":{"grpc_code","http_code","message","http_status"}}` chunk;
//! an error before the first response also sets the HTTP status, as Go writes the status with
//! the first byte.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use rustcd_api::etcdserverpb::{LeaseKeepAliveRequest, SnapshotRequest, WatchRequest};
use rustcd_api::v3electionpb::LeaderRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::{bad_request, decode, error, http_status, token};
use crate::etcdserver::server::EtcdServer;

/// The streaming routes: watch, lease keep-alive, snapshot and election observe.
pub fn routes(r: Router<Arc<EtcdServer>>) -> Router<Arc<EtcdServer>> {
    use axum::routing::post;
    r.route("/v3/watch", post(watch))
        .route("/v3/lease/keepalive", post(keep_alive))
        .route("/v3/kv/lease/keepalive", post(keep_alive))
        .route("/v3/maintenance/snapshot", post(snapshot))
        .route("/v3/election/observe", post(observe))
}

async fn watch(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Body) -> Response {
    let incoming = match requests::<WatchRequest>(body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let svc = crate::api::grpc::watch::WatchService(s);
    respond(svc.open(incoming, token(&headers).map(str::to_string), None)).await
}

async fn keep_alive(State(s): State<Arc<EtcdServer>>, body: Body) -> Response {
    let incoming = match requests::<LeaseKeepAliveRequest>(body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    respond(crate::api::grpc::lease::LeaseService(s).keep_alive_stream(incoming)).await
}

async fn snapshot(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Bytes) -> Response {
    use rustcd_api::etcdserverpb::maintenance_server::Maintenance;
    server_stream(s, headers, body, |s, req: tonic::Request<SnapshotRequest>| async move {
        crate::api::grpc::maintenance::MaintenanceService(s).snapshot(req).await
    })
    .await
}

async fn observe(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Bytes) -> Response {
    use rustcd_api::v3electionpb::election_server::Election;
    server_stream(s, headers, body, |s, req: tonic::Request<LeaderRequest>| async move {
        crate::api::grpc::election::ElectionService(s).observe(req).await
    })
    .await
}

/// A server stream: one request (the whole body, bounded as a unary call's), opened as the
/// token's caller.
async fn server_stream<Req, Resp, St, F, Fut>(s: Arc<EtcdServer>, headers: HeaderMap, body: Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize + Send + 'static,
    St: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
    F: FnOnce(Arc<EtcdServer>, tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<St>, Status>>,
{
    let req: Req = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match f(s.clone(), super::request(&s, &headers, req)).await {
        Ok(stream) => respond(stream.into_inner()).await,
        Err(status) => error(status.code(), status.message()),
    }
}

/// A client stream's requests, decoded from the body as they arrive. As grpc-gateway, the first
/// is read before the stream opens (a body that does not decode is refused, with its code
/// Unknown as Go gives a plain error); a later one that does not decode ends the requests.
async fn requests<T>(body: Body) -> Result<ReceiverStream<Result<T, Status>>, Response>
where
    T: DeserializeOwned + Send + 'static,
{
    let mut objects = JsonObjects { body: body.into_data_stream(), buf: Vec::new(), done: false };
    let first = match objects.next::<T>().await {
        Some(Err(e)) => return Err(error(tonic::Code::Unknown, &e)),
        first => first,
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut next = first;
        while let Some(Ok(req)) = next {
            if tx.send(Ok(req)).await.is_err() {
                return;
            }
            next = objects.next::<T>().await;
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// JSON values one after another in a body, as Go's `json.Decoder` reads them.
struct JsonObjects {
    body: BodyDataStream,
    buf: Vec<u8>,
    /// The body has ended (or failed).
    done: bool,
}

impl JsonObjects {
    async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, String>> {
        loop {
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if !self.buf.is_empty() {
                let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<T>();
                match values.next() {
                    Some(Ok(v)) => {
                        let used = values.byte_offset();
                        self.buf.drain(..used);
                        return Some(Ok(v));
                    }
                    // Cut off mid-value: wait for the rest.
                    Some(Err(e)) if e.is_eof() && !self.done => {}
                    Some(Err(e)) => return Some(Err(e.to_string())),
                    None => {}
                }
            }
            if self.done {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                _ => self.done = true,
            }
        }
    }
}

/// The chunked answer of a stream of responses.
async fn respond<T, S>(mut responses: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
{
    let first = responses.next().await;
    let status = match &first {
        Some(Err(st)) => http_status(st.code()),
        _ => StatusCode::OK,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let mut item = first;
        while let Some(it) = item {
            let (chunk, last) = match it {
                Ok(resp) => (result_chunk(&resp), false),
                Err(st) => (error_chunk(&st), true),
            };
            if tx.send(Ok(chunk)).await.is_err() || last {
                return;
            }
            // The reader going away ends the stream (and so the watchers behind it).
            item = tokio::select! {
                next = responses.next() => next,
                _ = tx.closed() => return,
            };
        }
    });
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn result_chunk<T: Serialize>(resp: &T) -> Bytes {
    #[derive(Serialize)]
    struct Chunk<'a, T> {
        result: &'a T,
    }
    match serde_json::to_vec(&Chunk { result: resp }) {
        Ok(mut v) => {
            v.push(b'\n');
            v.into()
        }
        Err(e) => error_chunk(&Status::internal(e.to_string())),
    }
}

/// grpc-gateway's `StreamError` chunk (no delimiter follows it: the stream ends there).
fn error_chunk(st: &Status) -> Bytes {
    #[derive(Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(Serialize)]
    struct Chunk<'a> {
        error: StreamError<'a>,
    }
    let http = http_status(st.code());
    let error = StreamError {
        grpc_code: st.code() as i32,
        http_code: http.as_u16(),
        message: st.message(),
        http_status: http.canonical_reason().unwrap_or(""),
    };
    Bytes::from(serde_json::to_vec(&Chunk { error }).unwrap_or_default())
}
