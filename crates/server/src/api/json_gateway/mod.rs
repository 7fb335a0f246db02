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

use crate::error::ServerError;
use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

/// Routes `$path` to the typed-API call `$call` (`|server, caller, request| future`): the
/// gateway runs exactly what a gRPC client's call runs (checks, forwarding to the leader,
/// headers), below the gRPC layer.
macro_rules! typed {
    ($r:ident, $($path:literal => $call:expr),* $(,)?) => {
        $(
            $r = $r.route(
                $path,
                axum::routing::post(|st: State<Arc<EtcdServer>>, h: HeaderMap, b: Bytes| call(st, h, b, $call)),
            );
        )*
    };
}

/// The gateway's routes: etcd 3.5's paths for every unary RPC.
pub fn routes(mut r: Router<Arc<EtcdServer>>) -> Router<Arc<EtcdServer>> {
    use rustcd_api::etcdserverpb::*;
    use rustcd_api::v3electionpb::*;
    use rustcd_api::v3lockpb::*;
    type S = Arc<EtcdServer>;
    typed!(r,
        "/v3/kv/range" => |s: S, c: Caller, r: RangeRequest| async move { s.range(&c, r).await },
        "/v3/kv/put" => |s: S, c: Caller, r: PutRequest| async move { s.put(&c, r).await },
        "/v3/kv/deleterange" => |s: S, c: Caller, r: DeleteRangeRequest| async move { s.delete_range(&c, r).await },
        "/v3/kv/txn" => |s: S, c: Caller, r: TxnRequest| async move { s.txn(&c, r).await },
        "/v3/kv/compaction" => |s: S, c: Caller, r: CompactionRequest| async move { s.compact(&c, r).await },
        "/v3/lease/grant" => |s: S, c: Caller, r: LeaseGrantRequest| async move { s.lease_grant(&c, r).await },
        "/v3/lease/revoke" => |s: S, c: Caller, r: LeaseRevokeRequest| async move { s.lease_revoke(&c, r).await },
        "/v3/kv/lease/revoke" => |s: S, c: Caller, r: LeaseRevokeRequest| async move { s.lease_revoke(&c, r).await },
        "/v3/lease/timetolive" =>
            |s: S, c: Caller, r: LeaseTimeToLiveRequest| async move { s.lease_time_to_live(&c, r).await },
        "/v3/kv/lease/timetolive" =>
            |s: S, c: Caller, r: LeaseTimeToLiveRequest| async move { s.lease_time_to_live(&c, r).await },
        "/v3/lease/leases" => |s: S, _: Caller, _: LeaseLeasesRequest| async move { s.lease_leases().await },
        "/v3/kv/lease/leases" => |s: S, _: Caller, _: LeaseLeasesRequest| async move { s.lease_leases().await },
        "/v3/cluster/member/add" => |s: S, c: Caller, r: MemberAddRequest| async move { s.member_add(&c, r).await },
        "/v3/cluster/member/remove" =>
            |s: S, c: Caller, r: MemberRemoveRequest| async move { s.member_remove(&c, r.id).await },
        "/v3/cluster/member/update" =>
            |s: S, c: Caller, r: MemberUpdateRequest| async move { s.member_update(&c, r).await },
        "/v3/cluster/member/list" =>
            |s: S, _: Caller, r: MemberListRequest| async move { s.member_list(r.linearizable).await },
        "/v3/cluster/member/promote" =>
            |s: S, c: Caller, r: MemberPromoteRequest| async move { s.member_promote(&c, r.id).await },
        "/v3/maintenance/alarm" => |s: S, c: Caller, r: AlarmRequest| async move { s.alarm(&c, r).await },
        "/v3/maintenance/status" => |s: S, _: Caller, _: StatusRequest| async move { s.status().await },
        "/v3/maintenance/defragment" => |s: S, c: Caller, _: DefragmentRequest| async move { s.defragment(&c).await },
        "/v3/maintenance/hash" => |s: S, c: Caller, _: HashRequest| async move { s.hash(&c).await },
        "/v3/maintenance/hashkv" => |s: S, c: Caller, r: HashKvRequest| async move { s.hash_kv(&c, r.revision).await },
        "/v3/maintenance/transfer-leadership" =>
            |s: S, c: Caller, r: MoveLeaderRequest| async move { s.move_leader(&c, r.target_id).await },
        "/v3/maintenance/downgrade" => |s: S, c: Caller, r: DowngradeRequest| async move { s.downgrade(&c, r).await },
        "/v3/auth/enable" => |s: S, c: Caller, r: AuthEnableRequest| async move { s.auth_enable(&c, r).await },
        "/v3/auth/disable" => |s: S, c: Caller, r: AuthDisableRequest| async move { s.auth_disable(&c, r).await },
        "/v3/auth/status" => |s: S, c: Caller, r: AuthStatusRequest| async move { s.auth_status(&c, r).await },
        "/v3/auth/authenticate" =>
            |s: S, c: Caller, r: AuthenticateRequest| async move { s.authenticate(&c, r).await },
        "/v3/auth/user/add" => |s: S, c: Caller, r: AuthUserAddRequest| async move { s.user_add(&c, r).await },
        "/v3/auth/user/get" => |s: S, c: Caller, r: AuthUserGetRequest| async move { s.user_get(&c, r).await },
        "/v3/auth/user/list" => |s: S, c: Caller, r: AuthUserListRequest| async move { s.user_list(&c, r).await },
        "/v3/auth/user/delete" =>
            |s: S, c: Caller, r: AuthUserDeleteRequest| async move { s.user_delete(&c, r).await },
        "/v3/auth/user/changepw" =>
            |s: S, c: Caller, r: AuthUserChangePasswordRequest| async move { s.user_change_password(&c, r).await },
        "/v3/auth/user/grant" =>
            |s: S, c: Caller, r: AuthUserGrantRoleRequest| async move { s.user_grant_role(&c, r).await },
        "/v3/auth/user/revoke" =>
            |s: S, c: Caller, r: AuthUserRevokeRoleRequest| async move { s.user_revoke_role(&c, r).await },
        "/v3/auth/role/add" => |s: S, c: Caller, r: AuthRoleAddRequest| async move { s.role_add(&c, r).await },
        "/v3/auth/role/get" => |s: S, c: Caller, r: AuthRoleGetRequest| async move { s.role_get(&c, r).await },
        "/v3/auth/role/list" => |s: S, c: Caller, r: AuthRoleListRequest| async move { s.role_list(&c, r).await },
        "/v3/auth/role/delete" =>
            |s: S, c: Caller, r: AuthRoleDeleteRequest| async move { s.role_delete(&c, r).await },
        "/v3/auth/role/grant" =>
            |s: S, c: Caller, r: AuthRoleGrantPermissionRequest| async move { s.role_grant_permission(&c, r).await },
        "/v3/auth/role/revoke" =>
            |s: S, c: Caller, r: AuthRoleRevokePermissionRequest| async move { s.role_revoke_permission(&c, r).await },
        "/v3/lock/lock" => |s: S, c: Caller, r: LockRequest| async move { s.lock(&c, r).await },
        "/v3/lock/unlock" => |s: S, c: Caller, r: UnlockRequest| async move { s.unlock(&c, r).await },
        "/v3/election/campaign" => |s: S, c: Caller, r: CampaignRequest| async move { s.campaign(&c, r).await },
        "/v3/election/proclaim" => |s: S, c: Caller, r: ProclaimRequest| async move { s.proclaim(&c, r).await },
        "/v3/election/leader" => |s: S, c: Caller, r: LeaderRequest| async move { s.election_leader(&c, r).await },
        "/v3/election/resign" => |s: S, c: Caller, r: ResignRequest| async move { s.resign(&c, r).await },
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

/// One unary call: the body parsed as the request, `f` run for the `Authorization` token's
/// caller; its `ServerError` becomes grpc-gateway's error body with etcd's code and text (the
/// same [`crate::error::code`] the gRPC answers use).
async fn call<Req, Resp, F, Fut>(State(s): State<Arc<EtcdServer>>, headers: HeaderMap, body: Bytes, f: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Arc<EtcdServer>, Caller, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, ServerError>>,
{
    let req: Req = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let caller = Caller::resolve(&s, token(&headers), None);
    match f(s.clone(), caller, req).await {
        Ok(resp) => match serde_json::to_vec(&resp) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => error(tonic::Code::Internal, &e.to_string()),
        },
        Err(e) => error(crate::error::code(&e), &e.to_string()),
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
