//! What raft-engine may drop from the end of the raft log when it opens, and what it may not.
//!
//! raft-engine, opened to tolerate a broken tail, truncates the newest file of each queue at
//! its first broken batch, wherever that batch is. That repairs a write a crash cut short, but it
//! would just as quietly drop fsynced, acknowledged entries after a flipped byte in the middle
//! of the file. etcd repairs only a torn final record and refuses to start on any other
//! checksum mismatch; so do we. Before opening, the newest file of each queue is read; after,
//! the bytes raft-engine dropped are judged:
//!
//! - nothing but zeros (the space raft-engine allocates ahead of its writes): nothing was lost;
//! - whole batches after the broken one, up to the end of the data: corruption;
//! - else a broken batch that runs past the end of the file, or that has a page-sized stretch
//!   of zeros in it (pages of an unsynced write that never reached the disk): a torn write, the
//!   one a crash leaves; it was never fsynced, so never acknowledged;
//! - anything else (a whole batch, full of data, whose checksum fails): corruption.
//!
//! On corruption the file is put back as it was and the member refuses to start.
//! What is read of raft-engine's format (0.4) is its 16-byte batch header: the batch's whole
//! length shifted left 8 bits over a compression byte (0 or 1), then the offset of its footer
//! (at least 16, at most the length), both big-endian.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The page size a write reaches the disk in; a torn write leaves whole pages of zeros.
const PAGE: usize = 4096;
/// raft-engine's batch header: length and type (8 bytes), then the items' offset (8 bytes).
const BATCH_HEADER: usize = 16;

/// The newest file of each raft-engine queue, as it was before the engine opened it.
pub struct Tails(Vec<(PathBuf, Vec<u8>)>);

impl Tails {
    /// Reads the newest append-queue and rewrite-queue files in `dir` (none if the log is new).
    pub fn read(dir: &Path) -> Result<Tails> {
        let mut newest: Vec<PathBuf> = Vec::new();
        for ext in ["raftlog", "rewrite"] {
            let mut files = files_with_extension(dir, ext)?;
            files.sort();
            newest.extend(files.pop());
        }
        let mut tails = Vec::new();
        for path in newest {
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            tails.push((path, bytes));
        }
        Ok(Tails(tails))
    }

    /// Judges what the engine dropped from each file since [`Tails::read`]. On corruption the
    /// file gets its old bytes back (the engine must be closed by then) and the error names it.
    pub fn check_dropped(&self) -> Result<()> {
        for (path, before) in &self.0 {
            let now = std::fs::metadata(path).map_err(|e| io(path, e))?.len() as usize;
            if now >= before.len() {
                continue;
            }
            match judge(before, now) {
                Dropped::Nothing => {}
                Dropped::TornWrite => {
                    tracing::warn!(file = %path.display(), offset = now, "raft log: dropped a write a crash cut short");
                }
                Dropped::Corrupt(why) => {
                    return Err(Error::Corrupt(format!(
                        "{} is corrupt at offset {now}: {why}; this is not a write a crash cut short, \
                         so entries after it may have been acknowledged. Refusing to start \
                         (restore this member from a snapshot or remove and re-add it)",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The files read.
    #[cfg(test)]
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(p, _)| p.as_path())
    }

    /// Puts every file back as it was before the engine opened it.
    pub fn restore(&self) -> Result<()> {
        for (path, before) in &self.0 {
            use std::io::Write as _;
            let mut f = std::fs::File::create(path).map_err(|e| io(path, e))?;
            f.write_all(before).map_err(|e| io(path, e))?;
            f.sync_all().map_err(|e| io(path, e))?;
        }
        Ok(())
    }
}

fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == ext) {
            out.push(path);
        }
    }
    Ok(out)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Corrupt(format!("{}: {e}", path.display()))
}

#[derive(Debug, PartialEq)]
enum Dropped {
    Nothing,
    TornWrite,
    Corrupt(&'static str),
}

/// What the bytes of `before` from `at` on were, given that the engine dropped them.
fn judge(before: &[u8], at: usize) -> Dropped {
    let rest = &before[at..];
    if rest.iter().all(|b| *b == 0) {
        return Dropped::Nothing;
    }
    if at == 0 {
        return Dropped::Corrupt("its file header is broken");
    }
    let data_end = before.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if (at + 1..data_end).any(|p| whole_batches_from(before, p, data_end)) {
        return Dropped::Corrupt("whole batches follow the broken one");
    }
    let Some((len, _)) = batch_header(before, at) else {
        return Dropped::TornWrite;
    };
    if len > rest.len() {
        return Dropped::TornWrite;
    }
    if len < BATCH_HEADER {
        return Dropped::Corrupt("a batch header with an impossible length");
    }
    // The batch's bytes, cut at page boundaries of the file: a piece that is all zeros is a
    // page of the write that never reached the disk.
    let mut start = at;
    while start < at + len {
        let end = ((start / PAGE + 1) * PAGE).min(at + len);
        if before[start..end].iter().all(|b| *b == 0) {
            return Dropped::TornWrite;
        }
        start = end;
    }
    Dropped::Corrupt("a complete batch fails its checksum")
}

/// The (length, footer offset) a batch header at `at` declares, if the file holds a header there.
fn batch_header(file: &[u8], at: usize) -> Option<(usize, usize)> {
    let header = file.get(at..at + BATCH_HEADER)?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[i..i + 8]);
        u64::from_be_bytes(w)
    };
    Some(((word(0) >> 8) as usize, word(8) as usize))
}

/// True when plausible batch headers, each starting where the one before ends, lead from `at`
/// to the end of the data: whole batches are there.
fn whole_batches_from(file: &[u8], mut at: usize, data_end: usize) -> bool {
    loop {
        let Some((len, footer)) = batch_header(file, at) else {
            return false;
        };
        let compression = file[at + 7];
        if compression > 1 || len < BATCH_HEADER || footer < BATCH_HEADER || footer > len || at + len > file.len() {
            return false;
        }
        at += len;
        if at >= data_end {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `batches` batches of `len` bytes each after a 64-byte file header, followed by
    /// `zeros` bytes of zeros.
    fn file(batches: usize, len: usize, zeros: usize) -> Vec<u8> {
        let mut f = vec![7u8; 64];
        for _ in 0..batches {
            let mut b = vec![0xab; len];
            b[..8].copy_from_slice(&(((len as u64) << 8) | 1).to_be_bytes());
            b[8..16].copy_from_slice(&16u64.to_be_bytes());
            f.extend(b);
        }
        f.resize(f.len() + zeros, 0);
        f
    }

    #[test]
    fn zeros_allocated_ahead_are_nothing() {
        let f = file(3, 100, 5000);
        assert_eq!(judge(&f, 64 + 300), Dropped::Nothing);
    }

    #[test]
    fn a_batch_cut_short_is_a_torn_write() {
        let mut f = file(3, 100, 0);
        f.truncate(f.len() - 30);
        assert_eq!(judge(&f, 64 + 200), Dropped::TornWrite);
        // Cut inside its header.
        let f = file(3, 100, 0);
        assert_eq!(judge(&f[..64 + 212], 64 + 200), Dropped::TornWrite);
    }

    #[test]
    fn a_batch_with_a_page_never_written_is_a_torn_write() {
        let mut f = file(2, 3 * PAGE, 0);
        let second = 64 + 3 * PAGE;
        let page = (second / PAGE + 1) * PAGE;
        f[page..page + PAGE].fill(0);
        assert_eq!(judge(&f, second), Dropped::TornWrite);
    }

    #[test]
    fn a_flipped_byte_in_a_full_batch_is_corruption() {
        let mut f = file(10, 300, 8192);
        f[64 + 300 * 2 + 50] ^= 0x40;
        assert!(matches!(judge(&f, 64 + 600), Dropped::Corrupt(_)));
        // Also when it is the last batch written.
        let f = file(10, 300, 8192);
        assert!(matches!(judge(&f, 64 + 2700), Dropped::Corrupt(_)));
        // A garbage header in the middle.
        let mut f = file(10, 300, 0);
        f[64 + 600..64 + 608].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(judge(&f, 64 + 600), Dropped::Corrupt(_)));
        // A flipped byte in the length of a header in the middle (it now runs past the end).
        let mut f = file(10, 300, 0);
        f[64 + 600 + 2] ^= 0x10;
        assert!(matches!(judge(&f, 64 + 600), Dropped::Corrupt(_)));
        // A broken file header with data after it.
        assert!(matches!(judge(&f, 0), Dropped::Corrupt(_)));
    }

    #[test]
    fn restore_puts_the_bytes_back_and_check_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000000000001.raftlog");
        let bytes = file(4, 200, 100);
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(dir.path().join("0000000000000000.raftlog"), b"old").unwrap();
        let tails = Tails::read(dir.path()).unwrap();
        assert_eq!(tails.0.len(), 1, "only the newest file of the queue");
        std::fs::write(&path, &bytes[..64 + 400]).unwrap();
        let err = tails.check_dropped().unwrap_err().to_string();
        assert!(err.contains("0000000000000001.raftlog is corrupt at offset 464"), "{err}");
        tails.restore().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
