//! etcd's names in its bbolt backend (and so in every etcd snapshot): its buckets, and its keys
//! in the `meta` and `auth` buckets.

/// etcd's bucket names.
pub mod bucket {
    pub const KEY: &[u8] = b"key";
    pub const META: &[u8] = b"meta";
    pub const LEASE: &[u8] = b"lease";
    pub const ALARM: &[u8] = b"alarm";
    pub const CLUSTER: &[u8] = b"cluster";
    pub const MEMBERS: &[u8] = b"members";
    pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
    pub const AUTH: &[u8] = b"auth";
    pub const AUTH_USERS: &[u8] = b"authUsers";
    pub const AUTH_ROLES: &[u8] = b"authRoles";
    /// Every bucket an etcd 3.4/3.5 backend has, written even when empty.
    pub const ALL: [&[u8]; 10] =
        [KEY, META, LEASE, ALARM, CLUSTER, MEMBERS, MEMBERS_REMOVED, AUTH, AUTH_USERS, AUTH_ROLES];
}

/// etcd's key of a revision in its `key` bucket: `main`, `_`, `sub` (big-endian), then `t`
/// for a tombstone.
pub fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// (main, sub, tombstone) of etcd's revision key; `None` for anything else.
pub fn parse_rev_key(k: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(k[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
    Some((main, sub, tombstone))
}

/// etcd's keys in the `meta`, `cluster` and `auth` buckets.
pub mod meta_key {
    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
    pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
    pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";
    pub const AUTH_ENABLED: &[u8] = b"authEnabled";
    pub const AUTH_REVISION: &[u8] = b"authRevision";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_read_back() {
        assert_eq!(rev_key(1, 2, false), [0, 0, 0, 0, 0, 0, 0, 1, b'_', 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(parse_rev_key(&rev_key(7, 3, true)), Some((7, 3, true)));
        assert_eq!(parse_rev_key(b"short"), None);
    }
}
