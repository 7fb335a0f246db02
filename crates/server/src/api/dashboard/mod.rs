//! A live dashboard no etcd ships: one page (`/dashboard`, with `--enable-dashboard`), plain
//! HTML and JavaScript compiled into the binary (nothing fetched from elsewhere: it works
//! offline). The page holds no data: it reads the cluster through the JSON gateway (members and
//! each member's status, alarms, keys and their history, a watch stream) and `/metrics`, with
//! the signed-in user's token when auth is on.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("index.html");

/// `/dashboard` and `/dashboard/`.
pub fn routes<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.route("/dashboard", axum::routing::get(page)).route("/dashboard/", axum::routing::get(page))
}

async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
