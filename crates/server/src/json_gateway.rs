//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/<service>/<method>` with
//! the request as proto3 JSON (the .proto's field names, int64 as strings, bytes as base64),
//! answered with the response the same way, or with grpc-gateway's error body
//! `{"error","code","message"}` and the HTTP status its code maps to. An `Authorization` header
//! carries an auth token, as etcd's gateway takes it. Built so far: the KV service.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// The gateway's routes.
pub fn routes(r: Router<Arc<EtcdServer>>) -> Router<Arc<EtcdServer>> {
    use axum::routing::post;
    r.route("/v3/kv/range", post(|s, h, b| call(s, h, b, |s, r| async move { s.range(r).await })))
        .route("/v3/kv/put", post(|s, h, b| call(s, h, b, |s, r| async move { s.put(r).await })))
        .route("/v3/kv/deleterange", post(|s, h, b| call(s, h, b, |s, r| async move { s.delete_range(r).await })))
        .route("/v3/kv/txn", post(|s, h, b| call(s, h, b, |s, r| async move { s.txn(r).await })))
        .route("/v3/kv/compaction", post(|s, h, b| call(s, h, b, |s, r| async move { s.compact(r).await })))
}

/// One unary call: the body parsed as the request, `f` run as the token's caller.
async fn call<Req, Resp, F, Fut>(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Arc<EtcdServer>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, ServerError>>,
{
    let req: Req = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(r) => r,
        Err(e) => return error(tonic::Code::InvalidArgument, &e.to_string()),
    };
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = crate::auth::resolve(&s, token, None);
    match crate::auth::CALLER.scope(caller, f(s.clone(), req)).await {
        Ok(resp) => match serde_json::to_vec(&resp) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => error(tonic::Code::Internal, &e.to_string()),
        },
        Err(e) => {
            let status = tonic::Status::from(e);
            error(status.code(), status.message())
        }
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// grpc-gateway's error answer.
fn error(code: tonic::Code, message: &str) -> Response {
    let m = serde_json::Value::from(message).to_string();
    let body = format!("{{\"error\":{m},\"message\":{m},\"code\":{}}}", code as i32);
    json(http_status(code), body.into_bytes())
}

/// grpc-gateway's `HTTPStatusFromCode`.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::Cancelled => StatusCode::REQUEST_TIMEOUT,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
