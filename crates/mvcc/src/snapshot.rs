//! Whole-store snapshots, as raft sends them to a member too far behind: every row of the
//! backend in one byte string, and the restore that replaces a store's contents with one.
//!
//! Format: a magic tag, then records `[table: u8][key len: u32 BE][key][value len: u32 BE][value]`,
//! then a trailer `[0xff][record count: u64 BE][crc32c of everything before it: u32 BE]`, so a
//! snapshot cut short or damaged is refused rather than restored in part.

use redb::ReadableTable;

use crate::error::{Error, Result};
use crate::store::{KV, KvStore, META};

const MAGIC: &[u8; 8] = b"RUSTCD01";
const TABLE_KV: u8 = 1;
const TABLE_META: u8 = 2;
const TRAILER: u8 = 0xff;

/// Appends the trailer that seals a snapshot of `count` records.
fn seal(out: &mut Vec<u8>, count: u64) {
    out.push(TRAILER);
    out.extend_from_slice(&count.to_be_bytes());
    let mut crc = crate::crc32c::Crc32c::new();
    crc.update(out);
    out.extend_from_slice(&crc.finish().to_be_bytes());
}

fn push(out: &mut Vec<u8>, table: u8, k: &[u8], v: &[u8]) {
    out.push(table);
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// One record read back from a snapshot.
pub(crate) struct Record<'a> {
    pub table: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(Error::Corrupt("snapshot truncated".into()));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

fn take_len(buf: &mut &[u8]) -> Result<usize> {
    let b = take(buf, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Parses every record, or fails on a malformed, damaged or incomplete snapshot.
pub(crate) fn parse(all: &[u8]) -> Result<Vec<Record<'_>>> {
    let mut data = all;
    if take(&mut data, MAGIC.len())? != MAGIC {
        return Err(Error::Corrupt("not a rustcd snapshot".into()));
    }
    let mut out = Vec::new();
    loop {
        let table = take(&mut data, 1)?[0];
        if table == TRAILER {
            let count =
                u64::from_be_bytes(take(&mut data, 8)?.try_into().map_err(|_| Error::Corrupt("trailer".into()))?);
            let sealed = all.len() - data.len();
            let want =
                u32::from_be_bytes(take(&mut data, 4)?.try_into().map_err(|_| Error::Corrupt("trailer".into()))?);
            let mut crc = crate::crc32c::Crc32c::new();
            crc.update(&all[..sealed]);
            if crc.finish() != want || count != out.len() as u64 || !data.is_empty() {
                return Err(Error::Corrupt("snapshot checksum mismatch".into()));
            }
            return Ok(out);
        }
        let kl = take_len(&mut data)?;
        let key = take(&mut data, kl)?;
        let vl = take_len(&mut data)?;
        let value = take(&mut data, vl)?;
        if table != TABLE_KV && table != TABLE_META {
            return Err(Error::Corrupt(format!("unknown snapshot table {table}")));
        }
        out.push(Record { table, key, value });
    }
}

impl KvStore {
    /// The whole store as one snapshot, and the consistent index it reflects.
    pub fn snapshot(&self) -> Result<(Vec<u8>, u64)> {
        let started = std::time::Instant::now();
        let taken = self.snapshot_records();
        let took = rustcd_metrics::secs(started.elapsed());
        rustcd_metrics::get().disk.backend_snapshot_duration_seconds.observe(took);
        taken
    }

    fn snapshot_records(&self) -> Result<(Vec<u8>, u64)> {
        let (tx, ci) = self.read_txn_with_index()?;
        let mut out = MAGIC.to_vec();
        let mut count = 0;
        let kv = tx.open_table(KV)?;
        for item in kv.iter()? {
            let (k, v) = item?;
            push(&mut out, TABLE_KV, k.value(), v.value());
            count += 1;
        }
        let meta = tx.open_table(META)?;
        for item in meta.iter()? {
            let (k, v) = item?;
            push(&mut out, TABLE_META, k.value().as_bytes(), v.value());
            count += 1;
        }
        seal(&mut out, count);
        Ok((out, ci))
    }
}

pub(crate) const SNAP_TABLE_KV: u8 = TABLE_KV;

#[cfg(test)]
mod tests {
    use rustcd_api::etcdserverpb::{PutRequest, RangeRequest};

    use crate::KvStore;

    #[test]
    fn snapshot_restores_into_another_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = KvStore::open(dir.path().join("a")).unwrap();
        let none = |_: i64| false;
        a.write(false, &none, |w| {
            w.put(&PutRequest { key: b"k".to_vec().into(), value: b"v".to_vec().into(), ..Default::default() })
                .unwrap();
            w.set_consistent_index(7);
        })
        .unwrap();
        let (data, index) = a.snapshot().unwrap();
        assert_eq!(index, 7);
        let b = KvStore::open(dir.path().join("b")).unwrap();
        b.write(false, &none, |w| {
            w.put(&PutRequest { key: b"old".to_vec().into(), ..Default::default() }).unwrap();
        })
        .unwrap();
        b.restore(&data).unwrap();
        assert_eq!((b.current_rev(), b.consistent_index()), (2, 7));
        let all =
            b.range(&RangeRequest { key: vec![0].into(), range_end: vec![0].into(), ..Default::default() }).unwrap();
        assert_eq!(all.kvs.len(), 1);
        assert_eq!(all.kvs[0].key.as_ref(), b"k");
        assert!(b.restore(b"garbage").is_err());
    }

    proptest::proptest! {
        /// A damaged snapshot (random bytes, or a real one cut or with a byte changed) is an
        /// error or a set of records, never a panic.
        #[test]
        fn damaged_snapshots_never_panic(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cut in 0usize..64,
            flip in 0usize..64,
        ) {
            let _ = super::parse(&raw);
            let mut framed = super::MAGIC.to_vec();
            framed.extend_from_slice(&raw);
            let _ = super::parse(&framed);
            let mut good = super::MAGIC.to_vec();
            super::push(&mut good, super::TABLE_KV, b"key", b"value");
            super::push(&mut good, super::TABLE_META, b"consistent_index", &7u64.to_be_bytes());
            super::seal(&mut good, 2);
            proptest::prop_assert_eq!(super::parse(&good).map(|r| r.len()).ok(), Some(2));
            let cut = good.len().saturating_sub(cut);
            proptest::prop_assert!(cut == good.len() || super::parse(&good[..cut]).is_err());
            let mut flipped = good.clone();
            let i = flip % flipped.len();
            flipped[i] ^= 0xff;
            proptest::prop_assert!(super::parse(&flipped).is_err(), "a changed byte is caught");
        }
    }
}
