//! etcd's initial corruption check (`--experimental-initial-corrupt-check`): before a member
//! serves clients, it compares the hash of its key-value store with each peer's hash at the same
//! revision (asked through the peer's Maintenance.HashKV). Two members holding the same revision
//! and compaction but different hashes have diverged: the member refuses to start, as etcd does.
//! A peer that cannot answer (not started, behind, compacted past the revision) is skipped with
//! a warning.

use std::time::Duration;

use rustcd_api::etcdserverpb::HashKvRequest;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;

use crate::error::StartError;
use crate::server::EtcdServer;
use crate::v3::blocking;

/// Runs the check; `Err` when a peer holds different data at the same revision.
pub async fn initial_check(s: &EtcdServer) -> Result<(), StartError> {
    let me = format!("{:x}", s.member_id());
    let timeout = Duration::from_secs(5) + Duration::from_millis(2 * s.config().raw.election_timeout);
    tracing::info!(local_member_id = %me, timeout = ?timeout, "starting initial corruption check");
    let store = s.store().clone();
    let (hash, compact_rev, rev) = blocking(move || store.hash_kv(0))
        .await
        .map_err(|e| StartError::Config(e.to_string()))?
        .map_err(|e| StartError::Config(format!("cannot hash the local store: {e}")))?;
    let mut mismatched = Vec::new();
    for m in s.membership().list().into_iter().filter(|m| m.id != s.member_id()) {
        let peer = format!("{:x}", m.id);
        if m.client_ur_ls.is_empty() {
            tracing::warn!(local_member_id = %me, remote_peer_id = %peer, "cannot fetch hash from remote peer: no client URLs known for it yet");
            continue;
        }
        for url in &m.client_ur_ls {
            match peer_hash(url, rev, timeout).await {
                Ok((peer_hash, peer_compact)) => {
                    if peer_compact != compact_rev {
                        tracing::warn!(
                            local_member_id = %me, local_member_compact_revision = compact_rev,
                            remote_peer_id = %peer, remote_peer_compact_revision = peer_compact,
                            "found different compact revision values from remote peer"
                        );
                    } else if peer_hash != hash {
                        tracing::error!(
                            local_member_id = %me, local_member_revision = rev, local_member_hash = hash,
                            remote_peer_id = %peer, remote_peer_hash = peer_hash,
                            "found different hash values from remote peer"
                        );
                        mismatched.push(peer.clone());
                    }
                    break;
                }
                Err(e) => tracing::warn!(
                    local_member_id = %me, remote_peer_id = %peer, remote_peer_endpoint = %url, error = %e,
                    "cannot fetch hash from remote peer"
                ),
            }
        }
    }
    if !mismatched.is_empty() {
        return Err(StartError::Config(format!(
            "{me} found data inconsistency with peers ({})",
            mismatched.join(", ")
        )));
    }
    tracing::info!(local_member_id = %me, "initial corruption checking passed; no corruption");
    Ok(())
}

async fn peer_hash(url: &str, rev: i64, timeout: Duration) -> Result<(u32, i64), String> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let r = MaintenanceClient::new(ch)
        .hash_kv(HashKvRequest { revision: rev })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok((r.hash, r.compact_revision))
}
