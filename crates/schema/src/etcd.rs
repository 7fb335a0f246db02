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

/// etcd's keys in the `meta`, `cluster` and `auth` buckets.
pub mod meta_key {
    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
    pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
    pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";
    pub const AUTH_ENABLED: &[u8] = b"authEnabled";
    pub const AUTH_REVISION: &[u8] = b"authRevision";
}
