//! Revisions: the (main, sub) pair that orders every change, and its on-disk key form.

/// A revision: `main` is the store revision of a write txn, `sub` the change's index inside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of a revision key in the backend: 8 bytes main, 8 bytes sub, 1 byte kind.
pub const REV_KEY_LEN: usize = 17;
const KIND_PUT: u8 = b'p';
const KIND_TOMBSTONE: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// Backend key: big-endian so that byte order is revision order; the last byte marks a
    /// tombstone, as etcd's `t` suffix does.
    pub fn to_key(self, tombstone: bool) -> [u8; REV_KEY_LEN] {
        let mut k = [0u8; REV_KEY_LEN];
        k[..8].copy_from_slice(&self.main.to_be_bytes());
        k[8..16].copy_from_slice(&self.sub.to_be_bytes());
        k[16] = if tombstone { KIND_TOMBSTONE } else { KIND_PUT };
        k
    }

    /// The smallest backend key at or after this revision.
    pub fn lower_key(self) -> [u8; REV_KEY_LEN] {
        let mut k = self.to_key(false);
        k[16] = 0;
        k
    }

    /// Parses a backend key; `None` for anything that is not one.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        if k.len() != REV_KEY_LEN {
            return None;
        }
        let main = i64::from_be_bytes(k[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[8..16].try_into().ok()?);
        Some((Revision { main, sub }, k[16] == KIND_TOMBSTONE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_revision_order() {
        let a = Revision::new(1, 5).to_key(false);
        let b = Revision::new(2, 0).to_key(true);
        let c = Revision::new(2, 1).to_key(false);
        assert!(a < b && b < c);
        assert_eq!(Revision::from_key(&b), Some((Revision::new(2, 0), true)));
        assert_eq!(Revision::from_key(&b[..3]), None);
    }
}
