//! Reading a bbolt file: the newer valid meta page names the root bucket; each bucket's B+tree
//! is walked depth first, page by page, checking every offset against the page it is in.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::page::{self, BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, HEADER, LEAF, META_LEN};
use crate::{Error, Result, corrupt};

/// Deeper than any real tree (every branch has at least two children, so 64 levels would need
/// 2^64 pages): a deeper walk is a damaged file.
const MAX_DEPTH: usize = 64;

/// An open bbolt file (read only).
pub struct Reader {
    file: File,
    page_size: u64,
    /// Pages in the file (the meta's high-water mark).
    pages: u64,
    root: u64,
    freelist: u64,
    /// Bytes of pages read so far (for progress reports).
    read: std::sync::atomic::AtomicU64,
}

/// What a walk calls with each leaf element: key, value, element flags.
type Visit<'a> = dyn FnMut(&[u8], &[u8], u32) -> Result<()> + 'a;

/// Where a node is: a page of the file, or a bucket's inline page.
enum Node<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

impl Reader {
    /// Opens the first `len` bytes of `file` as a bbolt database (a snapshot carries a trailer
    /// after them).
    pub fn new(file: File, len: u64) -> Result<Self> {
        let read_meta = |at: u64| -> Option<(u64, u64, u64, u64, u64)> {
            let mut b = [0u8; HEADER + META_LEN];
            if at + b.len() as u64 > len {
                return None;
            }
            file.read_exact_at(&mut b, at).ok()?;
            let m = &b[HEADER..];
            let ok = page::u32_at(m, 0) == page::MAGIC
                && page::u32_at(m, 4) == page::VERSION
                && page::u64_at(m, page::META_CHECKSUM_AT) == page::fnv1a64(&m[..page::META_CHECKSUM_AT]);
            let ps = page::u32_at(m, 8) as u64;
            let sane = ps.is_power_of_two() && (512..=1 << 20).contains(&ps);
            // (page size, root, freelist, pages, txid)
            (ok && sane)
                .then(|| (ps, page::u64_at(m, 16), page::u64_at(m, 32), page::u64_at(m, 40), page::u64_at(m, 48)))
        };
        let first = read_meta(0);
        let second = read_meta(first.map_or(page::PAGE_SIZE as u64, |m| m.0));
        let best = match (first, second) {
            (Some(a), Some(b)) => Some(if b.4 > a.4 { b } else { a }),
            (a, b) => a.or(b),
        };
        let Some((page_size, root, freelist, pages, _)) = best else {
            return corrupt("no valid meta page (not a bbolt database, or damaged)");
        };
        if pages.checked_mul(page_size).is_none_or(|size| size > len) {
            return corrupt(format!("file size too small: {len} bytes for {pages} pages of {page_size}"));
        }
        Ok(Reader { file, page_size, pages, root, freelist, read: Default::default() })
    }

    /// Opens a bbolt file.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Self::new(file, len)
    }

    /// The database's size: pages times the page size (bbolt's `Tx.Size`).
    pub fn size(&self) -> u64 {
        self.pages * self.page_size
    }

    /// Bytes of pages read so far, counting a page once per time it is read.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.walk(Node::Page(self.root), &mut HashSet::new(), 0, &mut None, &mut |k, _, flags| {
            if flags & BUCKET_LEAF != 0 {
                out.push(k.to_vec());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each pair of bucket `name`, in key order (nested buckets are skipped);
    /// `Ok(false)` when there is no such bucket.
    pub fn for_each<E: From<Error>>(
        &self,
        name: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<bool, E> {
        let Some(bucket) = self.bucket_value(name)? else {
            return Ok(false);
        };
        let node = bucket_root(&bucket)?;
        let mut failed = None;
        let walked = self.walk(node, &mut HashSet::new(), 0, &mut None, &mut |k, v, flags| {
            if flags & BUCKET_LEAF == 0
                && failed.is_none()
                && let Err(e) = f(k, v)
            {
                failed = Some(e);
                return Err(Error::Misuse("stopped".into()));
            }
            Ok(())
        });
        match (failed, walked) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.into()),
            (None, Ok(())) => Ok(true),
        }
    }

    /// bbolt's consistency check (`Tx.Check`): every page below the high-water mark is reached
    /// exactly once from the root or is on the freelist, and keys are in order in every bucket.
    pub fn check(&self) -> Result<()> {
        let mut seen: HashSet<u64> = [0, 1].into_iter().collect();
        let mut buckets = Vec::new();
        self.walk(Node::Page(self.root), &mut seen, 0, &mut None, &mut |k, v, flags| {
            if flags & BUCKET_LEAF != 0 {
                buckets.push((k.to_vec(), v.to_vec()));
            }
            Ok(())
        })?;
        for (_, value) in &buckets {
            self.walk(bucket_root(value)?, &mut seen, 0, &mut None, &mut |_, _, _| Ok(()))?;
        }
        if self.freelist == u64::MAX {
            return Ok(()); // no freelist kept in the file: nothing to account for
        }
        for id in self.free_pages(&mut seen)? {
            if !seen.insert(id) {
                return corrupt(format!("page {id}: already freed or reachable"));
            }
        }
        match (0..self.pages).find(|id| !seen.contains(id)) {
            Some(id) => corrupt(format!("page {id}: unreachable unfreed")),
            None => Ok(()),
        }
    }

    fn free_pages(&self, seen: &mut HashSet<u64>) -> Result<Vec<u64>> {
        let p = self.read_page(self.freelist, seen)?;
        let mut count = page::u16_at(&p, 10) as usize;
        let mut at = HEADER;
        if count == 0xFFFF {
            count = usize::try_from(page::u64_at(&p, HEADER)).unwrap_or(usize::MAX);
            at += 8;
        }
        if count > (p.len() - at) / 8 {
            return corrupt(format!("freelist of {count} pages overflows its page"));
        }
        Ok((0..count).map(|i| page::u64_at(&p, at + i * 8)).collect())
    }

    /// The value of the root bucket's element `name`, if it is a bucket.
    fn bucket_value(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        self.walk(Node::Page(self.root), &mut HashSet::new(), 0, &mut None, &mut |k, v, flags| {
            if k == name && flags & BUCKET_LEAF != 0 {
                found = Some(v.to_vec());
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Reads page `id` with its overflow pages, marking each one seen (a page reached twice is
    /// damage: a loop, or two parents).
    fn read_page(&self, id: u64, seen: &mut HashSet<u64>) -> Result<Vec<u8>> {
        if id < 2 || id >= self.pages {
            return corrupt(format!("page {id} out of bounds (of {})", self.pages));
        }
        let mut header = [0u8; HEADER];
        self.file.read_exact_at(&mut header, id * self.page_size)?;
        let overflow = page::u32_at(&header, 12) as u64;
        if id + overflow >= self.pages {
            return corrupt(format!("page {id}: {overflow} overflow pages run past the end"));
        }
        for p in id..=id + overflow {
            if !seen.insert(p) {
                return corrupt(format!("page {p}: multiple references"));
            }
        }
        let mut buf = vec![0u8; ((overflow + 1) * self.page_size) as usize];
        self.file.read_exact_at(&mut buf, id * self.page_size)?;
        self.read.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(buf)
    }

    /// Calls `f` with every leaf element under `node`, in order, checking keys increase.
    fn walk(
        &self,
        node: Node<'_>,
        seen: &mut HashSet<u64>,
        depth: usize,
        last: &mut Option<Vec<u8>>,
        f: &mut Visit<'_>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return corrupt("tree too deep");
        }
        let owned;
        let p: &[u8] = match node {
            Node::Page(id) => {
                owned = self.read_page(id, seen)?;
                &owned
            }
            Node::Inline(b) => b,
        };
        if p.len() < HEADER {
            return corrupt("page shorter than its header");
        }
        let (flags, count) = (page::u16_at(p, 8), page::u16_at(p, 10) as usize);
        if HEADER + count * ELEMENT > p.len() {
            return corrupt(format!("{count} elements overflow their page"));
        }
        for i in 0..count {
            let el = HEADER + i * ELEMENT;
            if flags & LEAF != 0 {
                let (eflags, pos) = (page::u32_at(p, el), page::u32_at(p, el + 4) as usize);
                let (ks, vs) = (page::u32_at(p, el + 8) as usize, page::u32_at(p, el + 12) as usize);
                let k = slice(p, el + pos, ks)?;
                let v = slice(p, el + pos + ks, vs)?;
                if last.as_deref().is_some_and(|l| l >= k) {
                    return corrupt("keys out of order");
                }
                *last = Some(k.to_vec());
                f(k, v, eflags)?;
            } else if flags & BRANCH != 0 {
                let child = page::u64_at(p, el + 8);
                if matches!(node, Node::Inline(_)) {
                    return corrupt("a branch in an inline bucket");
                }
                self.walk(Node::Page(child), seen, depth + 1, last, f)?;
            } else {
                return corrupt(format!("page of type {flags:#x} inside a tree"));
            }
        }
        Ok(())
    }
}

/// The bytes `[at, at + len)` of `p`, or an error when they are not all inside it.
fn slice(p: &[u8], at: usize, len: usize) -> Result<&[u8]> {
    at.checked_add(len).and_then(|end| p.get(at..end)).ok_or_else(|| Error::Corrupt("element outside its page".into()))
}

/// Where a bucket's tree starts, from its value in the parent.
fn bucket_root(value: &[u8]) -> Result<Node<'_>> {
    if value.len() < BUCKET_HEADER {
        return corrupt("bucket header too short");
    }
    match page::u64_at(value, 0) {
        0 => Ok(Node::Inline(&value[BUCKET_HEADER..])),
        root => Ok(Node::Page(root)),
    }
}
