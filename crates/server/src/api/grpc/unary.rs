//! Unary KV calls served by hand rather than through tonic's codec (Put, DeleteRange, Txn here;
//! Range in [`super::kv_range`]): the request read as tonic reads it (one uncompressed
//! length-prefixed message of at most `--max-request-bytes` and gRPC's overhead, grpc-go's
//! refusal past that), the answer encoded into one buffer and sent with its trailers, errors as
//! trailers-only answers with etcd's codes and texts. The same wire as tonic's, less work per
//! call: no codec stream, no boxed body per message.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use rustcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, TxnRequest};
use tonic::Status;

use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

pub const PUT: &str = "/etcdserverpb.KV/Put";
pub const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
pub const TXN: &str = "/etcdserverpb.KV/Txn";

/// The largest request message a member takes.
pub fn max_request(s: &EtcdServer) -> usize {
    s.config().raw.max_request_bytes as usize + crate::GRPC_OVERHEAD_BYTES
}

/// One uncompressed gRPC message of at most `max` bytes.
pub async fn read_request<M: Message + Default>(req: Request, max: usize) -> Result<M, Status> {
    if let Some(enc) = req.headers().get("grpc-encoding").and_then(|v| v.to_str().ok())
        && enc != "identity"
    {
        return Err(Status::unimplemented(format!("Content is compressed with `{enc}` which isn't supported")));
    }
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::internal(format!("error reading a body from connection: {e}")))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > max {
                return Err(Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({len} vs. {max})"
                )));
            }
            if buf.len() >= 5 + len {
                break;
            }
        }
    }
    if buf.len() < 5 {
        return Err(Status::internal("Missing request message."));
    }
    if buf[0] != 0 {
        return Err(Status::internal(
            "protocol error: received message with compressed-flag but no grpc-encoding was specified",
        ));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let msg = buf.get(5..5 + len).ok_or_else(|| Status::internal("Missing request message."))?;
    M::decode(msg).map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))
}

/// The trailers that end a call with `status`.
pub fn trailers(status: &Status) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(status.code() as i32));
    if !status.message().is_empty()
        && let Ok(v) = HeaderValue::from_str(&super::size_limit::percent_encode(status.message()))
    {
        t.insert("grpc-message", v);
    }
    t
}

/// A gRPC frame's five-byte prefix: not compressed, `len` bytes of message.
pub fn frame_prefix(len: usize, buf: &mut BytesMut) {
    buf.put_u8(0);
    buf.put_u32(len as u32);
}

/// A gRPC answer with `body` (its messages, then its trailers).
pub fn grpc_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

/// A gRPC answer of one frame (prefix and message), then `grpc-status: 0`.
pub fn one_frame(frame: Bytes) -> Response {
    grpc_response(Body::new(Once { data: Some(frame), trailers: Some(trailers(&Status::ok(""))) }))
}

/// A gRPC answer of one message, then `grpc-status: 0`.
pub fn one_message(msg: &impl Message) -> Response {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    frame_prefix(len, &mut buf);
    msg.encode_raw(&mut buf);
    one_frame(buf.freeze())
}

/// A body of one data frame and the trailers.
struct Once {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Once {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// Reads the request, runs `f` for its caller, answers.
async fn serve<M, R, F>(s: Arc<EtcdServer>, req: Request, f: impl FnOnce(Arc<EtcdServer>, Caller, M) -> F) -> Response
where
    M: Message + Default,
    R: Message,
    F: std::future::Future<Output = Result<R, ServerError>>,
{
    let max = max_request(&s);
    let caller = crate::api::caller::of_http(&req);
    match read_request::<M>(req, max).await {
        Ok(m) => match f(s, caller, m).await {
            Ok(resp) => one_message(&resp),
            Err(e) => Status::from(e).into_http(),
        },
        Err(status) => status.into_http(),
    }
}

pub async fn put(State(s): State<Arc<EtcdServer>>, req: Request) -> Response {
    serve(s, req, |s, c, p: PutRequest| async move { s.put(&c, p).await }).await
}

pub async fn delete_range(State(s): State<Arc<EtcdServer>>, req: Request) -> Response {
    serve(s, req, |s, c, d: DeleteRangeRequest| async move { s.delete_range(&c, d).await }).await
}

pub async fn txn(State(s): State<Arc<EtcdServer>>, req: Request) -> Response {
    serve(s, req, |s, c, t: TxnRequest| async move { s.txn(&c, t).await }).await
}
