//! The cluster version, decided as etcd decides it (its `monitorVersions`): the leader asks every
//! member its server version (`GET /version` on the peer URLs) and, once all have answered,
//! proposes the lowest one's `major.minor.0` when none is set yet or when every member has moved
//! past the current one (one minor up). The cluster runs at the version of its oldest member, so
//! a cluster with an etcd 3.4 member stays at 3.4.0 (and an etcd 3.4 member refuses to join a
//! 3.5.0 cluster, as etcd does), and moves up when the last older member leaves.

use std::sync::Weak;
use std::time::Duration;

use crate::etcdserver::request::Op;
use crate::etcdserver::server::EtcdServer;

/// etcd's `monitorVersionInterval`: its peer write timeout less a second.
const MONITOR_INTERVAL: Duration = Duration::from_secs(4);

/// `(major, minor)` of a version string.
pub fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The cluster version the members' server versions allow: the lowest `major.minor`; `None` while
/// some member's version is unknown.
pub fn decide(versions: &[Option<String>]) -> Option<(u64, u64)> {
    versions.iter().map(|v| v.as_deref().and_then(major_minor)).collect::<Option<Vec<_>>>()?.into_iter().min()
}

/// Whether the cluster version may move from `current` to `next` (etcd's `IsValidVersionChange`
/// without downgrades: up, within the major version).
pub fn may_change(current: (u64, u64), next: (u64, u64)) -> bool {
    current.0 == next.0 && current < next
}

/// Runs on every member; acts while it leads.
pub async fn monitor(server: Weak<EtcdServer>) {
    loop {
        // Until a cluster version is set, a new leader sets one at once (etcd acts on the first
        // commit of its term).
        let unset = server.upgrade().is_some_and(|s| s.membership().cluster_version().is_none());
        tokio::time::sleep(if unset { Duration::from_millis(200) } else { MONITOR_INTERVAL }).await;
        let Some(s) = server.upgrade() else { return };
        if s.leader() != s.member_id() {
            continue;
        }
        let versions = member_versions(&s).await;
        let decided = decide(&versions);
        let next = match (s.membership().cluster_version().as_deref().and_then(major_minor), decided) {
            // etcd starts at its minimum cluster version when some member has not answered.
            (None, None) => "3.0.0".to_string(),
            (None, Some((major, minor))) => format!("{major}.{minor}.0"),
            (Some(current), Some(next)) if may_change(current, next) => format!("{}.{}.0", next.0, next.1),
            _ => continue,
        };
        tracing::info!(cluster_version = %next, "updating the cluster version");
        if let Err(e) = s.propose_internal(Op::ClusterVersion(next)).await {
            tracing::warn!(error = %e, "failed to update the cluster version");
        }
    }
}

/// Every member's server version (this one's own), `None` for one that did not answer.
async fn member_versions(s: &EtcdServer) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for m in s.membership().stored() {
        if m.id == s.member_id() {
            out.push(Some(rustcd_api::ETCD_VERSION.to_string()));
            continue;
        }
        let asked = rustcd_peer::rafthttp::client::get(&m.peer_urls, "/version", None, s.peer_tls(), MONITOR_INTERVAL);
        let version = asked.await.ok().and_then(|(_, body)| {
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v["etcdserver"].as_str().map(str::to_string)
        });
        out.push(version);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_member_decides() {
        let v = |s: &str| Some(s.to_string());
        assert_eq!(decide(&[v("3.5.13"), v("3.4.23"), v("3.5.1")]), Some((3, 4)));
        assert_eq!(decide(&[v("3.5.13"), v("3.5.1")]), Some((3, 5)));
        assert_eq!(decide(&[v("3.5.13"), None]), None);
        assert!(may_change((3, 4), (3, 5)));
        assert!(!may_change((3, 5), (3, 4)), "no downgrade without etcd's downgrade procedure");
        assert!(!may_change((3, 5), (4, 0)));
        assert_eq!(major_minor("3.5.0"), Some((3, 5)));
    }
}
