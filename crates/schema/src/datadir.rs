//! A data dir's layout, etcd's `storage/datadir`: where a member keeps what, and the durable
//! writes of its small files. Start-up, the snapshot restore and etcdutl read it.
//!
//! ```text
//! <data-dir>/member/snap/db     the backend (redb)
//! <data-dir>/member/raft/       the raft log (raft-engine), unless --wal-dir
//! <data-dir>/member/identity    member ID and cluster ID, in hex, decided once
//! <data-dir>/member/restored    left by `snapshot restore`: start the raft log from the
//!                               membership in the backend (removed once it is)
//! ```

use std::path::{Path, PathBuf};

/// `member/identity`.
pub const IDENTITY_FILE: &str = "identity";
/// `member/restored`.
pub const RESTORED_FILE: &str = "restored";

/// `<data-dir>/member`.
pub fn member_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member")
}

/// `<data-dir>/member/snap`, the backend's directory.
pub fn snap_dir(data_dir: &Path) -> PathBuf {
    member_dir(data_dir).join("snap")
}

/// `<data-dir>/member/snap/db`, the backend's file.
pub fn backend_path(data_dir: &Path) -> PathBuf {
    snap_dir(data_dir).join("db")
}

/// The raft log's directory: `--wal-dir`, or `<data-dir>/member/raft`.
pub fn raft_dir(data_dir: &Path, wal_dir: Option<&Path>) -> PathBuf {
    wal_dir.map_or_else(|| member_dir(data_dir).join("raft"), Path::to_path_buf)
}

/// The member ID and cluster ID a `member` directory holds; `Ok(None)` when it holds none.
pub fn read_identity(member_dir: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let path = member_dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = text.split_whitespace().map(|x| u64::from_str_radix(x, 16));
    match (parts.next(), parts.next()) {
        (Some(Ok(member_id)), Some(Ok(cluster_id))) => Ok(Some((member_id, cluster_id))),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: malformed identity file", path.display()),
        )),
    }
}

/// Writes `member/identity` durably (a temporary file renamed in place).
pub fn write_identity(member_dir: &Path, member_id: u64, cluster_id: u64) -> std::io::Result<()> {
    use std::io::Write;
    let path = member_dir.join(IDENTITY_FILE);
    let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    writeln!(f, "{member_id:x} {cluster_id:x}").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    sync_parent(&path).map_err(err)
}

/// Whether `snapshot restore` made this member and its raft log is still to be started.
pub fn is_restored(member_dir: &Path) -> bool {
    member_dir.join(RESTORED_FILE).exists()
}

/// Marks a member `snapshot restore` made (durably).
pub fn mark_restored(member_dir: &Path) -> std::io::Result<()> {
    let path = member_dir.join(RESTORED_FILE);
    std::fs::File::create(&path)?.sync_all()?;
    sync_parent(&path)
}

/// Removes the mark once the raft log holds the restored membership.
pub fn clear_restored(member_dir: &Path) -> std::io::Result<()> {
    let path = member_dir.join(RESTORED_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_parent(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename into `path`'s directory durable (fsyncs the directory).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_restore_mark_round_trip() {
        let dir = std::env::temp_dir().join(format!("rustcd-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(read_identity(&dir).expect("read"), None);
        write_identity(&dir, 0xabc, 0xdef).expect("write");
        assert_eq!(read_identity(&dir).expect("read"), Some((0xabc, 0xdef)));
        std::fs::write(dir.join(IDENTITY_FILE), "zz").expect("spoil");
        assert!(read_identity(&dir).is_err(), "a malformed identity is an error, not a new member");
        assert!(!is_restored(&dir));
        mark_restored(&dir).expect("mark");
        assert!(is_restored(&dir));
        clear_restored(&dir).expect("clear");
        clear_restored(&dir).expect("clearing twice is fine");
        assert!(!is_restored(&dir));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
