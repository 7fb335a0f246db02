//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/<service>/<method>` with
//! the request as proto3 JSON (the .proto's field names, int64 as strings, bytes as base64),
//! answered with the response the same way, or with grpc-gateway's error body
//! `{"error","code","message"}` and the HTTP status its code maps to. An `Authorization` header
//! carries an auth token, as etcd's gateway takes it. Every unary RPC is served here, the streams
//! (watch, lease keep-alive, snapshot, election observe) in `stream`.

mod stream;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

/// Routes `$path` to the unary RPC `$method` of the gRPC service `$svc` (so the gateway runs
/// exactly what a gRPC client's call runs: checks, forwarding to the leader, headers).
macro_rules! unary {
    ($r:ident, $($path:literal => $svc:ident :: $method:ident),* $(,)?) => {
        $(
            $r = $r.route(
                $path,
                axum::routing::post(|st: State<Arc<EtcdServer>>, h: HeaderMap, b: Bytes| {
                    call(st, h, b, |s, req| async move {
                        $svc(s).$method(req).await.map(tonic::Response::into_inner)
                    })
                }),
            );
        )*
    };
}

/// The gateway's routes: etcd 3.5's paths for every unary RPC.
pub fn routes(mut r: Router<Arc<EtcdServer>>) -> Router<Arc<EtcdServer>> {
    use rustcd_api::etcdserverpb::auth_server::Auth;
    use rustcd_api::etcdserverpb::cluster_server::Cluster;
    use rustcd_api::etcdserverpb::kv_server::Kv;
    use rustcd_api::etcdserverpb::lease_server::Lease;
    use rustcd_api::etcdserverpb::maintenance_server::Maintenance;
    use rustcd_api::v3electionpb::election_server::Election;
    use rustcd_api::v3lockpb::lock_server::Lock;

    use crate::api::grpc::auth::AuthService;
    use crate::api::grpc::cluster::ClusterService;
    use crate::api::grpc::election::ElectionService;
    use crate::api::grpc::kv::KvService;
    use crate::api::grpc::lease::LeaseService;
    use crate::api::grpc::lock::LockService;
    use crate::api::grpc::maintenance::MaintenanceService;
    unary!(r,
        "/v3/kv/range" => KvService::range,
        "/v3/kv/put" => KvService::put,
        "/v3/kv/deleterange" => KvService::delete_range,
        "/v3/kv/txn" => KvService::txn,
        "/v3/kv/compaction" => KvService::compact,
        "/v3/lease/grant" => LeaseService::lease_grant,
        "/v3/lease/revoke" => LeaseService::lease_revoke,
        "/v3/kv/lease/revoke" => LeaseService::lease_revoke,
        "/v3/lease/timetolive" => LeaseService::lease_time_to_live,
        "/v3/kv/lease/timetolive" => LeaseService::lease_time_to_live,
        "/v3/lease/leases" => LeaseService::lease_leases,
        "/v3/kv/lease/leases" => LeaseService::lease_leases,
        "/v3/cluster/member/add" => ClusterService::member_add,
        "/v3/cluster/member/remove" => ClusterService::member_remove,
        "/v3/cluster/member/update" => ClusterService::member_update,
        "/v3/cluster/member/list" => ClusterService::member_list,
        "/v3/cluster/member/promote" => ClusterService::member_promote,
        "/v3/maintenance/alarm" => MaintenanceService::alarm,
        "/v3/maintenance/status" => MaintenanceService::status,
        "/v3/maintenance/defragment" => MaintenanceService::defragment,
        "/v3/maintenance/hash" => MaintenanceService::hash,
        "/v3/maintenance/hashkv" => MaintenanceService::hash_kv,
        "/v3/maintenance/transfer-leadership" => MaintenanceService::move_leader,
        "/v3/maintenance/downgrade" => MaintenanceService::downgrade,
        "/v3/auth/enable" => AuthService::auth_enable,
        "/v3/auth/disable" => AuthService::auth_disable,
        "/v3/auth/status" => AuthService::auth_status,
        "/v3/auth/authenticate" => AuthService::authenticate,
        "/v3/auth/user/add" => AuthService::user_add,
        "/v3/auth/user/get" => AuthService::user_get,
        "/v3/auth/user/list" => AuthService::user_list,
        "/v3/auth/user/delete" => AuthService::user_delete,
        "/v3/auth/user/changepw" => AuthService::user_change_password,
        "/v3/auth/user/grant" => AuthService::user_grant_role,
        "/v3/auth/user/revoke" => AuthService::user_revoke_role,
        "/v3/auth/role/add" => AuthService::role_add,
        "/v3/auth/role/get" => AuthService::role_get,
        "/v3/auth/role/list" => AuthService::role_list,
        "/v3/auth/role/delete" => AuthService::role_delete,
        "/v3/auth/role/grant" => AuthService::role_grant_permission,
        "/v3/auth/role/revoke" => AuthService::role_revoke_permission,
        "/v3/lock/lock" => LockService::lock,
        "/v3/lock/unlock" => LockService::unlock,
        "/v3/election/campaign" => ElectionService::campaign,
        "/v3/election/proclaim" => ElectionService::proclaim,
        "/v3/election/leader" => ElectionService::leader,
        "/v3/election/resign" => ElectionService::resign,
    );
    stream::routes(r)
}

/// The auth token of the `Authorization` header.
fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// The gRPC request a gateway call makes of `msg`, for the caller its `Authorization` header's
/// token names (as the gRPC entry layer puts it on a gRPC request).
fn request<T>(s: &EtcdServer, headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.extensions_mut().insert(Caller::resolve(s, token(headers), None));
    req
}

/// One unary call: the body parsed as the request, `f` run for the token's caller.
async fn call<Req, Resp, F, Fut>(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Arc<EtcdServer>, tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, tonic::Status>>,
{
    let req: Req = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match f(s.clone(), request(&s, &headers, req)).await {
        Ok(resp) => match serde_json::to_vec(&resp) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => error(tonic::Code::Internal, &e.to_string()),
        },
        Err(status) => error(status.code(), status.message()),
    }
}

/// A call's one request: the body as proto3 JSON (an empty body is `{}`). One that does not
/// decode is answered with `bad_request`.
fn decode<Req: DeserializeOwned>(body: &[u8]) -> Result<Req, serde_json::Error> {
    serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
}

/// grpc-gateway's answer to a body that is not the request.
fn bad_request(e: serde_json::Error) -> Response {
    error(tonic::Code::InvalidArgument, &e.to_string())
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
        C::InvalidArgument | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
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
