//! The keys of the backend's meta table that are not the MVCC store's own (those, the
//! consistent index and compaction marks, are `rustcd-mvcc`'s): alarms, leases, members, auth.

/// An alarm: `alarm/<type>/<member id in hex>`, with an empty value.
pub const ALARM_PREFIX: &str = "alarm/";

/// A lease: `lease/<id in hex>` to its `StoredLease` (etcd's `leasepb.Lease`).
pub const LEASE_PREFIX: &str = "lease/";

/// The membership: a `StoredMembers`.
pub const MEMBERS: &str = "members";

/// The cluster version the cluster last agreed on (`3.5.0`), as etcd's `cluster` bucket holds it.
pub const CLUSTER_VERSION: &str = "cluster/version";

/// The cluster's downgrade state: an `etcdserverpb`-less `membershippb.DowngradeInfoSetRequest`.
pub const DOWNGRADE: &str = "cluster/downgrade";

/// Whether auth is on (`"1"`/`"0"`).
pub const AUTH_ENABLED: &str = "auth/enabled";
/// The auth revision (8 bytes, big-endian).
pub const AUTH_REVISION: &str = "auth/revision";
/// `auth/users/<name>` to its `authpb.User`.
pub const AUTH_USERS: &str = "auth/users/";
/// `auth/roles/<name>` to its `authpb.Role`.
pub const AUTH_ROLES: &str = "auth/roles/";

/// The key of the alarm of type `alarm` raised for `member_id`.
pub fn alarm_key(alarm: i32, member_id: u64) -> String {
    format!("{ALARM_PREFIX}{alarm}/{member_id:016x}")
}

/// The (alarm type, member id) an alarm key names.
pub fn parse_alarm_key(k: &str) -> Option<(i32, u64)> {
    let (t, m) = k.strip_prefix(ALARM_PREFIX)?.split_once('/')?;
    Some((t.parse().ok()?, u64::from_str_radix(m, 16).ok()?))
}

/// The key of lease `id`.
pub fn lease_key(id: i64) -> String {
    format!("{LEASE_PREFIX}{:016x}", id as u64)
}

/// The lease ID a lease key names.
pub fn parse_lease_key(k: &str) -> Option<i64> {
    u64::from_str_radix(k.strip_prefix(LEASE_PREFIX)?, 16).ok().map(|id| id as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back() {
        assert_eq!(alarm_key(1, 0xab), "alarm/1/00000000000000ab");
        assert_eq!(parse_alarm_key(&alarm_key(2, u64::MAX)), Some((2, u64::MAX)));
        assert_eq!(parse_alarm_key("alarm/x/1"), None);
        assert_eq!(lease_key(0x1234), "lease/0000000000001234");
        assert_eq!(parse_lease_key(&lease_key(-5)), Some(-5));
        assert_eq!(parse_lease_key("members"), None);
    }
}
