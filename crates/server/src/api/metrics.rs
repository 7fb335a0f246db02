//! `/metrics`: etcd's families (defined in `rustcd-metrics`) with the gauges this member knows
//! set at scrape time, as etcd's `GaugeFunc`s read them: leadership, raft indexes, the backend's
//! size, revisions, watchers, file descriptors.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::etcdserver::server::EtcdServer;

/// The series that never change: versions, the member's ID, the quota; and the zero series of
/// every gRPC method.
pub fn initialize(s: &EtcdServer) {
    let m = rustcd_metrics::get();
    rustcd_metrics::set_extensive(s.config().raw.metrics_extensive);
    m.server.version.with_label_values(&[rustcd_api::ETCD_VERSION]).set(1);
    m.server.id.with_label_values(&[&format!("{:x}", s.member_id())]).set(1);
    m.server.cluster_version.with_label_values(&[rustcd_api::ETCD_CLUSTER_VERSION]).set(1);
    m.server.quota_backend_bytes.set(s.quota().map_or(-1, |q| q as i64));
    crate::api::grpc::metrics::initialize();
    // promhttp's own series start at zero for the codes it answers with.
    for code in ["200", "500", "503"] {
        m.server.scrapes_total.with_label_values(&[code]);
    }
}

/// The scrape.
pub async fn scrape(State(s): State<Arc<EtcdServer>>) -> Response {
    let m = rustcd_metrics::get();
    m.server.scrapes_in_flight.inc();
    // The backend's page statistics need its write transaction: off the async workers.
    let store = s.store().clone();
    let sizes = tokio::task::spawn_blocking(move || store.db_size()).await.ok();
    if let Some((size, in_use)) = sizes {
        m.mvcc.db_total_size_in_bytes.set(size);
        m.mvcc.debugging_db_total_size_in_bytes.set(size);
        m.mvcc.db_total_size_in_use_in_bytes.set(in_use);
    }
    let st = s.raft_status();
    m.server.has_leader.set(i64::from(st.leader.load(Ordering::Relaxed) != 0));
    m.server.is_leader.set(i64::from(st.is_leader.load(Ordering::Relaxed)));
    m.server.is_learner.set(i64::from(st.is_learner.load(Ordering::Relaxed)));
    m.server.proposals_committed_total.set(st.commit.load(Ordering::Relaxed) as i64);
    m.server.proposals_applied_total.set(s.applied() as i64);
    m.server.auth_revision.set(s.auth().revision() as i64);
    let store = s.store();
    m.mvcc.keys_total.set(store.key_count() as i64);
    m.mvcc.current_revision.set(store.current_rev());
    m.mvcc.compact_revision.set(store.compact_rev());
    m.mvcc.watcher_total.set(s.hub().watchers() as i64);
    m.mvcc.slow_watcher_total.set(s.hub().unsynced() as i64);
    let (fds, fd_limit, vm_limit) = process_limits();
    m.server.fd_used.set(fds);
    m.server.fd_limit.set(fd_limit);
    m.server.virtual_memory_max_bytes.set(vm_limit);
    let text = rustcd_metrics::encode();
    m.server.scrapes_in_flight.dec();
    m.server.scrapes_total.with_label_values(&["200"]).inc();
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Open file descriptors, their limit, and the address-space limit (`-1`, as Go reports
/// "unlimited", when there is none), from `/proc/self`.
fn process_limits() -> (i64, i64, i64) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next().map(str::to_string))
            .map_or(-1, |v| v.parse::<i64>().unwrap_or(-1))
    };
    (fds, soft("Max open files"), soft("Max address space"))
}
