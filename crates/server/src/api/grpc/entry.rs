//! The one middleware in front of the gRPC services, doing in order what used to be four
//! layers (each a boxed future per request): a request that is not gRPC goes to the HTTP
//! routes (when they share the client URLs); a served method's call is counted (metrics);
//! the caller is resolved from its token or certificate and put on the request for the
//! handler ([`crate::api::caller`]); tonic's
//! size refusal is rewritten into grpc-go's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, header};
use axum::middleware::Next;

use crate::api::caller;
use crate::etcdserver::server::EtcdServer;

#[derive(Clone)]
pub struct Entry {
    pub server: Arc<EtcdServer>,
    /// The HTTP routes sharing the client URLs (none when `--listen-client-http-urls` moved
    /// them off).
    pub http: Option<axum::Router>,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub async fn layer(State(e): State<Entry>, req: Request<Body>, next: Next) -> Response<Body> {
    if let Some(http) = &e.http
        && !is_grpc(&req)
    {
        return match tower_service::Service::call(&mut http.clone(), req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let (req, series) = super::metrics::on_request(req);
    if let Some(index) = caller::token_index(&req) {
        caller::wait_for_token(&e.server, index).await;
    }
    let mut req = req;
    let who = caller::caller_of(&e.server, &req);
    req.extensions_mut().insert(who);
    let resp = super::size_limit::rewrite(next.run(req).await);
    match series {
        Some(series) => super::metrics::on_response(series, resp),
        None => resp,
    }
}
