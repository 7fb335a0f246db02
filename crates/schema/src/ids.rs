//! Member and cluster IDs, derived as etcd derives them, so the same flags give the same IDs.

use sha1::{Digest, Sha1};

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs
/// joined with nothing, followed by the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    first_u64(&Sha1::digest(&b))
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs, each 8 bytes big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_u64(&Sha1::digest(&b))
}

fn first_u64(h: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_etcd_defaults() {
        // etcd 3.x with default flags: member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }
}
