//! etcd's peer protocol (its `rafthttp`, and the member endpoints etcd serves its peers), so
//! that rustcd and etcd members of one cluster talk to each other, and rustcd members among
//! themselves: one protocol.
//!
//! Each member dials every peer's stream endpoints, `GET /raft/stream/message/<its id>` and
//! `/raft/stream/msgappv2/<its id>`, and the peer writes the raft messages for it on the
//! answers, for as long as the connections last ([`codec`] has the encodings). Until a peer
//! has dialled in, messages for it go one per request (`POST /raft`, etcd's pipeline);
//! snapshots always do, the message then the data (`POST /raft/snapshot`). Every request
//! carries etcd's headers (`X-Server-From`, `X-Server-Version`, `X-Min-Cluster-Version`,
//! `X-Etcd-Cluster-ID`, `X-PeerURLs`, and `X-Raft-To` on streams), and is refused as etcd
//! refuses it: another cluster's or an incompatible version's with 412, a removed member's
//! stream with 410. [`server`] answers these and `GET /members`, `/members/hashkv`,
//! `/raft/probing` and `/version`; [`client`] makes the requests.

pub mod client;
pub mod codec;
pub mod server;

/// The oldest cluster version a member of this version joins (etcd 3.5's `MinClusterVersion`).
pub const MIN_CLUSTER_VERSION: &str = "3.0.0";

/// Who this member is, as its requests to peers say.
#[derive(Debug, Clone)]
pub struct Local {
    pub id: u64,
    pub cluster_id: u64,
    /// The peer URLs this member advertises (`X-PeerURLs`).
    pub peer_urls: Vec<String>,
    /// The etcd server version this member reports (`X-Server-Version`).
    pub server_version: &'static str,
}

/// The two kinds of stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Every message but MsgApp and snapshots (etcd's `streamTypeMessage`).
    Message,
    /// MsgApp, compactly (etcd's `streamTypeMsgAppV2`).
    MsgAppV2,
}

impl StreamKind {
    pub fn path(self, from: u64) -> String {
        match self {
            StreamKind::Message => format!("/raft/stream/message/{from:x}"),
            StreamKind::MsgAppV2 => format!("/raft/stream/msgappv2/{from:x}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Message => "stream Message",
            StreamKind::MsgAppV2 => "stream MsgApp v2",
        }
    }
}

/// Why a peer's request is refused before it is read (etcd's `errIncompatibleVersion`,
/// `errClusterIDMismatch`: the texts are the answers' bodies, which etcd's peers match).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("incompatible version")]
    IncompatibleVersion,
    #[error("cluster ID mismatch")]
    ClusterIdMismatch,
}

/// `major.minor` of a version string (`3.5.13` is (3, 5)); a missing header is etcd's 2.0.0.
fn major_minor(v: Option<&str>) -> (u64, u64) {
    let v = v.unwrap_or("2.0.0");
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// etcd's `checkClusterCompatibilityFromHeader`: the peer's version must be at least our
/// minimum cluster version, its minimum cluster version at most our version, and its
/// cluster ours.
pub fn check_peer(
    local: &Local,
    server_version: Option<&str>,
    min_cluster_version: Option<&str>,
    cluster_id: Option<&str>,
) -> Result<(), Refusal> {
    let (remote, remote_min) = (major_minor(server_version), major_minor(min_cluster_version));
    if remote < major_minor(Some(MIN_CLUSTER_VERSION)) || remote_min > major_minor(Some(local.server_version)) {
        return Err(Refusal::IncompatibleVersion);
    }
    if cluster_id != Some(format!("{:x}", local.cluster_id).as_str()) {
        return Err(Refusal::ClusterIdMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked_as_etcd_checks_them() {
        let local = Local { id: 1, cluster_id: 0xabc, peer_urls: vec![], server_version: "3.5.13" };
        assert_eq!(check_peer(&local, Some("3.4.23"), Some("3.0.0"), Some("abc")), Ok(()));
        assert_eq!(check_peer(&local, Some("3.6.0"), Some("3.0.0"), Some("abc")), Ok(()));
        assert_eq!(check_peer(&local, None, None, Some("abc")), Err(Refusal::IncompatibleVersion));
        assert_eq!(check_peer(&local, Some("3.7.0"), Some("3.6.0"), Some("abc")), Err(Refusal::IncompatibleVersion));
        assert_eq!(check_peer(&local, Some("3.5.1"), Some("3.0.0"), Some("abd")), Err(Refusal::ClusterIdMismatch));
        assert_eq!(check_peer(&local, Some("3.5.1"), Some("3.0.0"), None), Err(Refusal::ClusterIdMismatch));
        assert_eq!(StreamKind::MsgAppV2.path(0xff), "/raft/stream/msgappv2/ff");
    }
}
