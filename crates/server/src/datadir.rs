//! A data dir's layout, etcd's `storage/datadir`: where a member keeps what (`member/snap/db`,
//! the raft log, `member/identity`) and the durable writes of its small files. Start-up, the
//! snapshot restore and etcdutl read it; it depends on nothing else of the crate.

use std::path::Path;

/// `member/identity`: the member ID and cluster ID, in hex, decided once.
pub const IDENTITY_FILE: &str = "identity";

/// The member ID a data dir's `member` directory holds, if any.
pub fn read_member_id(member_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(member_dir.join(IDENTITY_FILE)).ok()?;
    u64::from_str_radix(text.split_whitespace().next()?, 16).ok()
}

/// Writes `member/identity` durably (a temporary file renamed in place).
pub fn write_identity(path: &Path, member_id: u64, cluster_id: u64) -> std::io::Result<()> {
    use std::io::Write;
    let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    writeln!(f, "{member_id:x} {cluster_id:x}").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    sync_parent(path).map_err(err)
}

/// Makes a rename into `path`'s directory durable (fsyncs the directory).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}
