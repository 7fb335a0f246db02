//! rustcd-bbolt: bbolt's file format (the database etcd keeps its backend in, and so the
//! format of every etcd snapshot), read and written without bbolt itself.
//!
//! [`Writer`] bulk-loads a new file from buckets given in key order: pages are written as they
//! fill, so memory holds one page and the first key of each page (not the data). [`Reader`]
//! walks an existing file's buckets in key order, reading page by page, and refuses a damaged
//! file (bad meta checksums, pages out of bounds or reached twice, keys out of order) with an
//! error rather than a panic. Only what etcd's snapshots use is covered: top-level buckets of
//! key/value pairs (nested buckets are reported, not entered), any page size, overflow pages,
//! inline buckets.
//!
//! It knows nothing of etcd: which buckets exist and what their bytes mean belong to the caller.

mod page;
mod read;
mod write;

pub use read::Reader;
pub use write::Writer;

/// What can go wrong reading or writing a bbolt file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a bbolt database, or is damaged.
    #[error("invalid bbolt file: {0}")]
    Corrupt(String),
    /// The writer was given keys or buckets out of order, or too large.
    #[error("{0}")]
    Misuse(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn corrupt<T>(why: impl Into<String>) -> Result<T> {
    Err(Error::Corrupt(why.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    type Db = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn write(db: &Db) -> (tempfile::NamedTempFile, u64) {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        let mut w = Writer::new(std::io::BufWriter::new(f.reopen().expect("reopen"))).expect("writer");
        // Buckets in reverse order: the writer sorts them.
        for (name, pairs) in db.iter().rev() {
            w.bucket(name).expect("bucket");
            for (k, v) in pairs {
                w.put(k, v).expect("put");
            }
        }
        let (_, len) = w.finish().expect("finish");
        (f, len)
    }

    fn read(path: &std::path::Path) -> Result<Db> {
        let r = Reader::open(path)?;
        r.check()?;
        let mut db = Db::new();
        for name in r.buckets()? {
            let mut pairs = BTreeMap::new();
            let found = r.for_each(&name, |k, v| -> Result<()> {
                pairs.insert(k.to_vec(), v.to_vec());
                Ok(())
            })?;
            assert!(found);
            db.insert(name, pairs);
        }
        Ok(db)
    }

    #[test]
    fn a_written_file_reads_back_with_overflow_pages_and_deep_trees() {
        let mut db = Db::new();
        db.insert(b"empty".to_vec(), BTreeMap::new());
        let key: BTreeMap<_, _> =
            (0u32..20_000).map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").into_bytes())).collect();
        db.insert(b"key".to_vec(), key);
        let big: BTreeMap<_, _> = [(b"a".to_vec(), vec![7u8; 100_000]), (b"b".to_vec(), vec![8u8; 4070])].into();
        db.insert(b"big".to_vec(), big);
        let (f, len) = write(&db);
        assert_eq!(len % page::PAGE_SIZE as u64, 0);
        assert_eq!(std::fs::metadata(f.path()).expect("size").len(), len);
        assert_eq!(read(f.path()).expect("read"), db);
        let r = Reader::open(f.path()).expect("open");
        assert_eq!(r.size(), len);
        assert!(!r.for_each(b"missing", |_, _| -> Result<()> { Ok(()) }).expect("walk"));
    }

    #[test]
    fn out_of_order_keys_and_duplicate_buckets_are_refused() {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        let mut w = Writer::new(f.reopen().expect("reopen")).expect("writer");
        assert!(w.put(b"k", b"v").is_err(), "a put outside a bucket");
        w.bucket(b"b").expect("bucket");
        w.put(b"k2", b"v").expect("put");
        assert!(w.put(b"k1", b"v").is_err());
        assert!(w.put(b"k2", b"v").is_err());
        assert!(w.bucket(b"b").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any buckets of any pairs read back as written, and pass the consistency check.
        #[test]
        fn round_trip(db in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..20),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..40),
                proptest::collection::vec(any::<u8>(), 0..3000),
                0..60),
            1..5)) {
            let (f, _) = write(&db);
            prop_assert_eq!(read(f.path()).expect("read"), db);
        }

        /// A damaged file (bytes changed anywhere, or cut short) is an error or some data,
        /// never a panic or a hang.
        #[test]
        fn damage_never_panics(
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut db = Db::new();
            let pairs: BTreeMap<_, _> = (0u32..400).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 50])).collect();
            db.insert(b"key".to_vec(), pairs);
            db.insert(b"meta".to_vec(), [(b"x".to_vec(), vec![1u8; 9000])].into());
            let (f, _) = write(&db);
            let mut bytes = std::fs::read(f.path()).expect("read");
            for (at, b) in changes {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Some(c) = cut {
                bytes.truncate(c.index(bytes.len()));
            }
            std::fs::write(f.path(), &bytes).expect("write");
            let _ = read(f.path());
        }

        /// Random bytes are not a database.
        #[test]
        fn noise_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..20000)) {
            let f = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(f.path(), &bytes).expect("write");
            prop_assert!(read(f.path()).is_err());
        }
    }
}
