//! The caller of a client request, as the front ends find it: resolved from the request's
//! `token` metadata or its connection's TLS common name by [`crate::api::grpc::entry`] (and by
//! the JSON gateway from its `Authorization` header), put on the request, and taken from there
//! by each handler to pass to the typed API.

use std::time::Duration;

use axum::http::Request;
use rustcd_auth::AuthStore;

use crate::etcdserver::auth::Caller;
use crate::etcdserver::server::EtcdServer;

/// The caller the entry layer put on a gRPC request ([`Caller::unresolved`] if none did).
pub fn of<T>(req: &tonic::Request<T>) -> Caller {
    on(req.extensions())
}

/// [`of`] for a request served by hand (the raw HTTP request).
pub fn of_http<B>(req: &Request<B>) -> Caller {
    on(req.extensions())
}

fn on(x: &axum::http::Extensions) -> Caller {
    x.get::<Caller>().cloned().unwrap_or_else(Caller::unresolved)
}

/// The TLS client certificate's common name, put on each request of its connection.
#[derive(Clone, Debug)]
pub struct PeerCommonName(pub String);

/// How long a request waits for its member to apply the entry that made its simple token.
const TOKEN_WAIT: Duration = Duration::from_secs(5);

/// The raft index a gRPC request's token was made at, when this member may not have applied it
/// yet (a token made through another member): wait for it before [`caller_of`].
pub fn token_index<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get("token").and_then(|v| v.to_str().ok()).and_then(AuthStore::token_index)
}

/// Waits (a bounded time) until this member applied the entry that made a token.
pub async fn wait_for_token(s: &EtcdServer, index: u64) {
    s.wait_applied(index, TOKEN_WAIT).await;
}

/// Who a gRPC request's token (or TLS common name) names ([`crate::api::grpc::entry`] puts it
/// on the request for the handler).
pub fn caller_of<B>(s: &EtcdServer, req: &Request<B>) -> Caller {
    let token = req.headers().get("token").and_then(|v| v.to_str().ok());
    let cn = req.extensions().get::<PeerCommonName>().map(|c| c.0.as_str());
    Caller::resolve(s, token, cn)
}
