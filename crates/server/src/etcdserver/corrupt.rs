//! etcd's corruption checks. The initial one (`--experimental-initial-corrupt-check`): before a
//! member serves clients, it compares the hash of its key-value store with each peer's hash at
//! the same revision (asked through the peer's Maintenance.HashKV). Two members holding the same
//! revision and compaction but different hashes have diverged: the member refuses to start, as
//! etcd does. A peer that cannot answer (not started, behind, compacted past the revision) is
//! skipped with a warning. The periodic one (`--experimental-corrupt-check-time`): every
//! interval the leader compares its hash with every follower's, and raises the CORRUPT alarm
//! through raft for the first member found diverged; the cluster then refuses writes until an
//! operator disarms it (see [`crate::etcdserver::alarm`]). The compaction hash check
//! (`--experimental-compact-hash-check-enabled`) compares the hashes members took as they ran
//! the same compactions.

use std::sync::Weak;
use std::time::Duration;

use rustcd_api::etcdserverpb::{AlarmType, HashKvResponse};

use crate::error::StartError;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::blocking;

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
    for (id, answer) in peer_hashes(s, rev, timeout).await {
        let peer = format!("{id:x}");
        let Some(HashKvResponse { hash: peer_hash, compact_revision: peer_compact, .. }) = answer else {
            tracing::warn!(local_member_id = %me, remote_peer_id = %peer, "cannot fetch hash from remote peer");
            continue;
        };
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
            mismatched.push(peer);
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

/// The periodic check: runs while the server lives; only a leader checks.
pub async fn monitor(server: Weak<EtcdServer>, every: Duration) {
    if let Some(s) = server.upgrade() {
        let me = format!("{:x}", s.member_id());
        tracing::info!(local_member_id = %me, interval = ?every, "enabled corruption checking");
    }
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = server.upgrade() else { return };
        if s.leader() != s.member_id() {
            continue;
        }
        if let Err(e) = check_peers(&s).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// etcd's `checkHashKV`: the leader hashes its store, asks every follower for its hash at the
/// same revision, hashes again (writes may have gone on), and raises CORRUPT when a follower is
/// ahead of it, has compacted further, or holds a different hash under the same compaction.
async fn check_peers(s: &EtcdServer) -> Result<(), String> {
    let me = s.member_id();
    let hash_now = || {
        let store = s.store().clone();
        async move { blocking(move || store.hash_kv(0)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string()) }
    };
    let (hash, crev, rev) = hash_now().await?;
    let timeout = Duration::from_secs(5) + Duration::from_millis(2 * s.config().raw.election_timeout);
    let peers: Vec<(u64, HashKvResponse)> =
        peer_hashes(s, rev, timeout).await.into_iter().filter_map(|(id, r)| Some((id, r?))).collect();
    let (hash2, crev2, rev2) = hash_now().await?;
    let mut suspect = None;
    if hash2 != hash && rev2 == rev && crev2 == crev {
        tracing::warn!(revision = rev, leader_hash = hash, leader_new_hash = hash2, "found hash mismatch");
        suspect = Some(me);
    }
    for (id, p) in &peers {
        let peer_rev = p.header.as_ref().map_or(0, |h| h.revision);
        let peer = format!("{id:x}");
        let why = if peer_rev > rev2 {
            "revision from follower must be less than or equal to leader's"
        } else if p.compact_revision > crev2 {
            "compact revision from follower must be less than or equal to leader's"
        } else if p.compact_revision == crev && p.hash != hash {
            "same compact revision then hashes must match"
        } else {
            continue;
        };
        tracing::warn!(
            leader_revision = rev2, leader_compact_revision = crev2, leader_hash = hash,
            follower_revision = peer_rev, follower_compact_revision = p.compact_revision,
            follower_hash = p.hash, follower_peer_id = %peer, "{why}"
        );
        suspect.get_or_insert(*id);
    }
    tracing::info!(number_of_peers_checked = peers.len(), "finished peer corruption check");
    if let Some(member_id) = suspect {
        s.raise_alarm(member_id, AlarmType::Corrupt).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The compaction hash check (`--experimental-compact-hash-check-enabled`): every interval the
/// leader takes the hashes its last compactions recorded, newest first, and asks each follower
/// for its hash at the same revision. A follower that answers under the same compaction must
/// hold the same hash, or the CORRUPT alarm is raised for it. The first revision every
/// follower could be checked at ends the pass; later passes look only at newer compactions.
pub async fn monitor_compact_hashes(server: Weak<EtcdServer>, every: Duration) {
    let mut latest_checked = 0;
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = server.upgrade() else { return };
        if s.leader() == s.member_id() {
            compact_hash_check(&s, &mut latest_checked).await;
        }
    }
}

/// etcd's `CompactHashCheck`, with its log lines.
async fn compact_hash_check(s: &EtcdServer, latest_checked: &mut i64) {
    let timeout = Duration::from_secs(5) + Duration::from_millis(2 * s.config().raw.election_timeout);
    tracing::info!(local_member_id = %format!("{:x}", s.member_id()), timeout = ?timeout, "starting compact hash check");
    let hashes: Vec<_> = s.store().compaction_hashes().into_iter().filter(|h| h.revision > *latest_checked).collect();
    for (i, h) in hashes.iter().enumerate() {
        let peers = peer_hashes(s, h.revision, timeout).await;
        if peers.is_empty() {
            continue;
        }
        let mut checked = 0;
        for (id, answer) in &peers {
            let Some(p) = answer.as_ref().filter(|p| p.compact_revision == h.compact_revision) else { continue };
            let peer = format!("{id:x}");
            if p.hash != h.hash {
                tracing::error!(
                    revision = h.revision, leader_compact_revision = h.compact_revision, leader_hash = h.hash,
                    follower_compact_revision = p.compact_revision, follower_hash = p.hash,
                    follower_peer_id = %peer, "failed compaction hash check"
                );
                if let Err(e) = s.raise_alarm(*id, AlarmType::Corrupt).await {
                    tracing::warn!(error = %e, "failed to raise the corrupt alarm");
                }
                return;
            }
            checked += 1;
            tracing::info!(revision = h.revision, peer_id = %peer, "successfully checked hash on follower");
        }
        if checked == peers.len() {
            tracing::info!(
                number_of_peers_checked = checked,
                revision = h.revision,
                "successfully checked hash on whole cluster"
            );
            *latest_checked = (*latest_checked).max(h.revision);
            tracing::info!(number_of_hashes_checked = i + 1, "finished compaction hash check");
            return;
        }
        tracing::warn!(
            number_of_peers_checked = checked,
            number_of_peers = peers.len(),
            revision = h.revision,
            "skipped revision in compaction hash check; was not able to check all peers"
        );
    }
    tracing::info!(number_of_hashes_checked = hashes.len(), "finished compaction hash check");
}

/// etcd's `getPeerHashKVs`: every other member's HashKV at `rev`, asked at its peer URLs in
/// turn, with the peer certificate (`None` for a member none of whose URLs answered; each
/// failure is logged).
async fn peer_hashes(s: &EtcdServer, rev: i64, timeout: Duration) -> Vec<(u64, Option<HashKvResponse>)> {
    let me = format!("{:x}", s.member_id());
    let mut out = Vec::new();
    for m in s.membership().list().into_iter().filter(|m| m.id != s.member_id()) {
        let mut answer = None;
        for url in &m.peer_ur_ls {
            match peer_hash(s, url, rev, timeout).await {
                Ok(r) => {
                    answer = Some(r);
                    break;
                }
                Err(e) => tracing::warn!(
                    local_member_id = %me, remote_peer_id = %format!("{:x}", m.id),
                    remote_peer_endpoint = %url, error = %e, "failed hash kv request"
                ),
            }
        }
        out.push((m.id, answer));
    }
    out
}

async fn peer_hash(s: &EtcdServer, url: &str, rev: i64, timeout: Duration) -> Result<HashKvResponse, String> {
    let local = rustcd_peer::Local {
        id: s.member_id(),
        cluster_id: s.cluster_id(),
        peer_urls: s.config().advertise_peer_urls.clone(),
        server_version: rustcd_api::ETCD_VERSION,
    };
    let asked = rustcd_peer::rafthttp::client::hash_kv(url, &local, s.peer_tls(), rev, timeout);
    asked.await.map_err(|e| e.0)
}
