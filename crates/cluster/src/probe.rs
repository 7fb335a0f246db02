//! Questions asked of a member over gRPC, from synchronous code as well: does it serve, can it
//! write, who leads. Each synchronous probe runs on a thread of its own with its own small
//! runtime, so it works inside and outside an async context alike.

use std::future::Future;
use std::time::Duration;

use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

use crate::Cluster;

/// The client TLS of the last TLS cluster this process started (see [`Cluster::start_tls`]):
/// once set, every probe and [`channel`] dials `https://` with it.
static TLS: std::sync::RwLock<Option<std::sync::Arc<rustcd_tls::ClientConfig>>> = std::sync::RwLock::new(None);

/// Makes probes and channels speak TLS with `cfg` from now on (the newest cluster's CA).
pub fn use_tls(cfg: std::sync::Arc<rustcd_tls::ClientConfig>) {
    *TLS.write().unwrap_or_else(|p| p.into_inner()) = Some(cfg);
}

async fn dial(
    endpoint: &str,
    timeout: Duration,
    requests: Option<Duration>,
) -> Result<tonic::transport::Channel, String> {
    let tls = TLS.read().unwrap_or_else(|p| p.into_inner()).clone();
    let url = match tls {
        Some(_) => format!("https://{endpoint}"),
        None => format!("http://{endpoint}"),
    };
    rustcd_tls::connect::dial_with(&url, tls.as_ref(), timeout, requests).await
}

/// A gRPC channel to `endpoint` (`host:port`), with no deadline on its requests; panics when
/// it cannot connect within two seconds.
pub async fn channel(endpoint: &str) -> tonic::transport::Channel {
    dial(endpoint, Duration::from_secs(2), None).await.unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// A gRPC channel to `endpoint` with no deadline on its requests, or why it could not connect
/// within two seconds.
pub async fn connect(endpoint: &str) -> Result<tonic::transport::Channel, String> {
    dial(endpoint, Duration::from_secs(2), None).await.map_err(|e| format!("connect to {endpoint}: {e}"))
}

/// A channel for one probe: connecting and each request bounded by `timeout`.
async fn try_channel(endpoint: &str, timeout: Duration) -> Option<tonic::transport::Channel> {
    dial(endpoint, timeout, Some(timeout)).await.ok()
}

/// Runs `f` to completion on a fresh single-threaded runtime on a thread of its own.
fn run<T: Send>(f: impl Future<Output = Option<T>> + Send) -> Option<T> {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?.block_on(f))
            .join()
            .ok()
            .flatten()
    })
}

/// Whether the member answers a serializable read within `timeout`.
pub fn serializable_get(endpoint: &str, timeout: Duration) -> bool {
    run(async {
        let mut kv = KvClient::new(try_channel(endpoint, timeout).await?);
        let req = RangeRequest { key: b"x".to_vec().into(), serializable: true, ..Default::default() };
        kv.range(req).await.ok().map(|_| ())
    })
    .is_some()
}

/// Whether the member answers a linearizable read (a ReadIndex round) within `timeout`.
pub fn linearizable_get(endpoint: &str, timeout: Duration) -> bool {
    run(async {
        let mut kv = KvClient::new(try_channel(endpoint, timeout).await?);
        kv.range(RangeRequest { key: b"x".to_vec().into(), ..Default::default() }).await.ok().map(|_| ())
    })
    .is_some()
}

/// Whether the member holds `key` (a serializable read of its own state).
pub fn serializable_has(endpoint: &str, key: &[u8]) -> bool {
    run(async {
        let mut kv = KvClient::new(try_channel(endpoint, Duration::from_secs(2)).await?);
        let req = RangeRequest { key: key.to_vec().into(), serializable: true, count_only: true, ..Default::default() };
        let resp = kv.range(req).await.ok()?.into_inner();
        (resp.count == 1).then_some(())
    })
    .is_some()
}

/// Whether a put of `key` through the member succeeds within `timeout`.
pub fn put(endpoint: &str, key: &str, timeout: Duration) -> bool {
    run(async {
        let mut kv = KvClient::new(try_channel(endpoint, timeout).await?);
        let req = PutRequest { key: key.as_bytes().to_vec().into(), value: b"1".to_vec().into(), ..Default::default() };
        kv.put(req).await.ok().map(|_| ())
    })
    .is_some()
}

/// The member's status: (is it the leader, raft term, leader's ID), or `None` when it does not
/// answer within two seconds.
pub fn status(endpoint: &str) -> Option<(bool, u64, u64)> {
    run(async {
        let mut m = MaintenanceClient::new(try_channel(endpoint, Duration::from_secs(2)).await?);
        let st = m.status(StatusRequest {}).await.ok()?.into_inner();
        let me = st.header.map(|h| h.member_id)?;
        Some((st.leader == me && me != 0, st.raft_term, st.leader))
    })
}

/// Index of the current leader among the running members.
pub fn leader_index(c: &Cluster) -> Option<usize> {
    c.members.iter().position(|m| m.is_running() && status(&m.endpoint()).is_some_and(|s| s.0))
}
