//! Bulk-loading a new bbolt file: each bucket's pairs arrive in key order and fill leaf pages
//! one after another; the branch pages above them are written when the bucket ends, from the
//! first key of each page below. Pages 0 and 1 (the meta pages) are written last, so a file cut
//! short is never a valid database.

use std::io::{Seek, SeekFrom, Write};

use crate::page::{self, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, FREELIST, HEADER, LEAF, META, PAGE_SIZE};
use crate::{Error, Result};

/// bbolt's limits on a key and a value.
const MAX_KEY: usize = 32768;
const MAX_VALUE: usize = (1 << 31) - 2;
/// The first page the data starts at: 0 and 1 are the meta pages, 2 the (empty) freelist.
const FIRST_DATA_PAGE: u64 = 3;

/// Writes a new bbolt file: [`Writer::bucket`] starts a bucket, [`Writer::put`] adds its pairs
/// in strictly increasing key order, [`Writer::finish`] ends the last bucket and seals the file.
/// Buckets may come in any order, but each name once.
pub struct Writer<W: Write + Seek> {
    out: W,
    next_page: u64,
    /// Finished buckets: name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
    current: Option<(Vec<u8>, Tree)>,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file at the beginning of `out` (a new, empty file).
    pub fn new(mut out: W) -> Result<Self> {
        out.seek(SeekFrom::Start(0))?;
        // The meta pages come last; until then they are zeros (an invalid database).
        out.write_all(&[0u8; 2 * PAGE_SIZE])?;
        let mut freelist = vec![0u8; PAGE_SIZE];
        freelist[..HEADER].copy_from_slice(&page::header(2, FREELIST, 0, 0));
        out.write_all(&freelist)?;
        Ok(Writer { out, next_page: FIRST_DATA_PAGE, buckets: Vec::new(), current: None })
    }

    /// Ends the bucket being written, if any, and starts the bucket `name`.
    pub fn bucket(&mut self, name: &[u8]) -> Result<()> {
        self.end_bucket()?;
        if name.is_empty() || name.len() > MAX_KEY {
            return Err(Error::Misuse(format!("bucket name of {} bytes", name.len())));
        }
        if self.buckets.iter().any(|(n, _)| n == name) {
            return Err(Error::Misuse(format!("bucket {:?} written twice", String::from_utf8_lossy(name))));
        }
        self.current = Some((name.to_vec(), Tree::default()));
        Ok(())
    }

    /// Adds a pair to the current bucket; keys must increase strictly.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let Some((_, tree)) = self.current.as_mut() else {
            return Err(Error::Misuse("put outside a bucket".into()));
        };
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(Error::Misuse(format!("a key of {} bytes with a value of {}", key.len(), value.len())));
        }
        if tree.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(Error::Misuse("keys out of order".into()));
        }
        tree.last_key = Some(key.to_vec());
        tree.add(&mut self.out, &mut self.next_page, key, value, 0)
    }

    fn end_bucket(&mut self) -> Result<()> {
        if let Some((name, tree)) = self.current.take() {
            let root = tree.finish(&mut self.out, &mut self.next_page)?;
            self.buckets.push((name, root));
        }
        Ok(())
    }

    /// Ends the last bucket, writes the root bucket and the meta pages, and returns the output
    /// (flushed, not synced) with the file's length in bytes.
    pub fn finish(mut self) -> Result<(W, u64)> {
        self.end_bucket()?;
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let mut root = Tree::default();
        for (name, bucket_root) in &buckets {
            let mut header = [0u8; BUCKET_HEADER];
            header[..8].copy_from_slice(&bucket_root.to_le_bytes());
            root.add(&mut self.out, &mut self.next_page, name, &header, BUCKET_LEAF)?;
        }
        let root = root.finish(&mut self.out, &mut self.next_page)?;
        let pages = self.next_page;
        self.out.seek(SeekFrom::Start(0))?;
        for (i, txid) in [(0u64, 0u64), (1, 1)] {
            let mut p = vec![0u8; PAGE_SIZE];
            p[..HEADER].copy_from_slice(&page::header(i, META, 0, 0));
            p[HEADER..HEADER + page::META_LEN].copy_from_slice(&page::meta(PAGE_SIZE as u32, root, 2, pages, txid));
            self.out.write_all(&p)?;
        }
        self.out.seek(SeekFrom::Start(pages * PAGE_SIZE as u64))?;
        self.out.flush()?;
        Ok((self.out, pages * PAGE_SIZE as u64))
    }
}

/// One B+tree being built: the leaf being filled and, per level, the first key and page of
/// each node written so far.
#[derive(Default)]
struct Tree {
    leaf: Vec<(Vec<u8>, Vec<u8>, u32)>,
    leaf_bytes: usize,
    /// The first key and page of each leaf written so far.
    leaves: Vec<(Vec<u8>, u64)>,
    last_key: Option<Vec<u8>>,
}

impl Tree {
    fn add(&mut self, out: &mut impl Write, next: &mut u64, k: &[u8], v: &[u8], flags: u32) -> Result<()> {
        let size = ELEMENT + k.len() + v.len();
        if !self.leaf.is_empty() && HEADER + self.leaf_bytes + size > PAGE_SIZE {
            self.flush_leaf(out, next)?;
        }
        self.leaf.push((k.to_vec(), v.to_vec(), flags));
        self.leaf_bytes += size;
        Ok(())
    }

    fn flush_leaf(&mut self, out: &mut impl Write, next: &mut u64) -> Result<()> {
        let leaf = std::mem::take(&mut self.leaf);
        self.leaf_bytes = 0;
        let first = leaf.first().map(|(k, _, _)| k.clone()).unwrap_or_default();
        let id = write_node(out, next, LEAF, leaf.iter().map(|(k, v, f)| Element::Leaf(k, v, *f)))?;
        self.leaves.push((first, id));
        Ok(())
    }

    /// Writes what is left and the branch levels; returns the root page.
    fn finish(mut self, out: &mut impl Write, next: &mut u64) -> Result<u64> {
        if !self.leaf.is_empty() || self.leaves.is_empty() {
            self.flush_leaf(out, next)?;
        }
        let mut level = self.leaves;
        while level.len() > 1 {
            let mut above = Vec::new();
            let mut chunk: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut bytes = HEADER;
            for (k, id) in level {
                if !chunk.is_empty() && bytes + ELEMENT + k.len() > PAGE_SIZE {
                    above.push(write_branch(out, next, &mut chunk)?);
                    bytes = HEADER;
                }
                bytes += ELEMENT + k.len();
                chunk.push((k, id));
            }
            above.push(write_branch(out, next, &mut chunk)?);
            level = above;
        }
        level.first().map(|(_, id)| *id).ok_or_else(|| Error::Misuse("empty tree".into()))
    }
}

fn write_branch(out: &mut impl Write, next: &mut u64, chunk: &mut Vec<(Vec<u8>, u64)>) -> Result<(Vec<u8>, u64)> {
    let first = chunk.first().map(|(k, _)| k.clone()).unwrap_or_default();
    let id = write_node(out, next, BRANCH, chunk.iter().map(|(k, id)| Element::Branch(k, *id)))?;
    chunk.clear();
    Ok((first, id))
}

enum Element<'a> {
    Leaf(&'a [u8], &'a [u8], u32),
    Branch(&'a [u8], u64),
}

/// Writes one node at the next page (with overflow pages when it needs them); returns its id.
fn write_node<'a>(
    out: &mut impl Write,
    next: &mut u64,
    flags: u16,
    elements: impl ExactSizeIterator<Item = Element<'a>> + Clone,
) -> Result<u64> {
    let count = elements.len();
    let data: usize = elements
        .clone()
        .map(|e| match e {
            Element::Leaf(k, v, _) => k.len() + v.len(),
            Element::Branch(k, _) => k.len(),
        })
        .sum();
    let size = HEADER + count * ELEMENT + data;
    let pages = size.div_ceil(PAGE_SIZE).max(1);
    let count16 = u16::try_from(count).map_err(|_| Error::Misuse("too many elements in a page".into()))?;
    let overflow = u32::try_from(pages - 1).map_err(|_| Error::Misuse("a value too large".into()))?;
    let id = *next;
    let mut buf = vec![0u8; pages * PAGE_SIZE];
    buf[..HEADER].copy_from_slice(&page::header(id, flags, count16, overflow));
    let mut at = HEADER + count * ELEMENT;
    for (i, e) in elements.enumerate() {
        let el = HEADER + i * ELEMENT;
        let pos = (at - el) as u32;
        match e {
            Element::Leaf(k, v, f) => {
                buf[el..el + 4].copy_from_slice(&f.to_le_bytes());
                buf[el + 4..el + 8].copy_from_slice(&pos.to_le_bytes());
                buf[el + 8..el + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
                buf[el + 12..el + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
                buf[at..at + k.len()].copy_from_slice(k);
                buf[at + k.len()..at + k.len() + v.len()].copy_from_slice(v);
                at += k.len() + v.len();
            }
            Element::Branch(k, child) => {
                buf[el..el + 4].copy_from_slice(&pos.to_le_bytes());
                buf[el + 4..el + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                buf[el + 8..el + 16].copy_from_slice(&child.to_le_bytes());
                buf[at..at + k.len()].copy_from_slice(k);
                at += k.len();
            }
        }
    }
    out.write_all(&buf)?;
    *next += pages as u64;
    Ok(id)
}
