//! The on-disk layout: page headers, meta pages, leaf and branch elements (all little-endian,
//! as bbolt writes them on the machines etcd runs on).

/// The page size the writer uses (bbolt takes the OS page size: 4096 on Linux).
pub const PAGE_SIZE: usize = 4096;
pub const HEADER: usize = 16;
/// Both element kinds are 16 bytes.
pub const ELEMENT: usize = 16;
/// The meta record, as stored after the page header, up to and including its checksum.
pub const META_LEN: usize = 64;
/// Where the checksum sits in the meta record: the FNV-1a 64 hash covers the bytes before it.
pub const META_CHECKSUM_AT: usize = 56;

pub const BRANCH: u16 = 0x01;
pub const LEAF: u16 = 0x02;
pub const META: u16 = 0x04;
pub const FREELIST: u16 = 0x10;
/// A leaf element whose value is a bucket.
pub const BUCKET_LEAF: u32 = 0x01;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// A bucket header: root page id and sequence; a root of 0 means the bucket's page follows.
pub const BUCKET_HEADER: usize = 16;

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A page header: id, flags, element count, overflow page count.
pub fn header(id: u64, flags: u16, count: u16, overflow: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&id.to_le_bytes());
    h[8..10].copy_from_slice(&flags.to_le_bytes());
    h[10..12].copy_from_slice(&count.to_le_bytes());
    h[12..16].copy_from_slice(&overflow.to_le_bytes());
    h
}

/// The meta record of a file whose root bucket starts at `root`, `pages` pages long.
pub fn meta(page_size: u32, root: u64, freelist: u64, pages: u64, txid: u64) -> [u8; META_LEN] {
    let mut m = [0u8; META_LEN];
    m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    m[4..8].copy_from_slice(&VERSION.to_le_bytes());
    m[8..12].copy_from_slice(&page_size.to_le_bytes());
    // flags (12..16) stay 0; the root bucket's sequence (24..32) too.
    m[16..24].copy_from_slice(&root.to_le_bytes());
    m[32..40].copy_from_slice(&freelist.to_le_bytes());
    m[40..48].copy_from_slice(&pages.to_le_bytes());
    m[48..56].copy_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&m[..META_CHECKSUM_AT]);
    m[56..64].copy_from_slice(&sum.to_le_bytes());
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a64_matches_the_reference_values() {
        assert_eq!(super::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
