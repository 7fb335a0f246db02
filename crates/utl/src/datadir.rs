//! `defrag` and `backup` of a data dir no member is using.

use std::path::{Path, PathBuf};

use prost::Message;
use rustcd_api::rustcdpb::StoredMembers;
use rustcd_backup::restore::{self, RestoreConfig};
use rustcd_mvcc::KvStore;
use rustcd_schema::{datadir, meta};

use crate::UtlError;

/// Opens a data dir's backend; a member using it holds it locked.
fn open(data_dir: &Path) -> Result<KvStore, String> {
    let path = datadir::backend_path(data_dir);
    if !path.exists() {
        return Err(format!("open {}: no such file or directory", path.display()));
    }
    KvStore::open(&path).map_err(|e| format!("{e} (is a member using {}?)", data_dir.display()))
}

/// `defrag --data-dir`: rewrites the backend without its free pages.
pub fn defrag(data_dir: &str) -> Result<(), UtlError> {
    let fail = |e: String| UtlError::error(format!("Failed to defragment etcd data[{data_dir}] ({e})"));
    let store = open(Path::new(data_dir)).map_err(fail)?;
    store.defragment().map_err(|e| fail(e.to_string()))
}

/// `backup --data-dir --backup-dir`: a copy of the member's data as a one-member data dir of
/// the same name and peer URLs (etcd's backup is meant to be started with
/// `--force-new-cluster`, which this one needs no more than it tolerates).
pub fn backup(data_dir: &str, backup_dir: &str, backup_wal_dir: &str) -> Result<(), UtlError> {
    let src = Path::new(data_dir);
    let store = open(src).map_err(UtlError::error)?;
    let members = store
        .meta(meta::MEMBERS)
        .ok()
        .flatten()
        .and_then(|b| StoredMembers::decode(b.as_slice()).ok())
        .ok_or_else(|| UtlError::error(format!("{data_dir}: no membership in the backend")))?;
    let me = datadir::read_identity(&datadir::member_dir(src))
        .ok()
        .flatten()
        .and_then(|(id, _)| members.members.into_iter().find(|m| m.id == id))
        .ok_or_else(|| UtlError::error(format!("{data_dir}: cannot tell which member this data dir is")))?;
    // The snapshot goes next to the backup, and away again once restored.
    let tmp = PathBuf::from(format!("{backup_dir}.snapshot.tmp"));
    let file = std::fs::File::create(&tmp).map_err(UtlError::error)?;
    let written = rustcd_backup::export::export(&store, std::io::BufWriter::new(file));
    drop(store);
    let cleanup = |e: String| {
        let _ = std::fs::remove_file(&tmp);
        UtlError::error(e)
    };
    let (out, _) = written.map_err(|e| cleanup(e.to_string()))?;
    out.into_inner().map_err(|e| cleanup(e.to_string()))?.sync_all().map_err(|e| cleanup(e.to_string()))?;
    let cluster: Vec<String> = me.peer_urls.iter().map(|u| format!("{}={u}", me.name)).collect();
    let cfg = RestoreConfig {
        snapshot_path: tmp.clone(),
        name: me.name.clone(),
        output_data_dir: PathBuf::from(backup_dir),
        output_wal_dir: (!backup_wal_dir.is_empty()).then(|| PathBuf::from(backup_wal_dir)),
        peer_urls: me.peer_urls.clone(),
        initial_cluster: cluster.join(","),
        initial_cluster_token: "etcd-cluster".into(),
        skip_hash_check: true,
        revision_bump: 0,
        mark_compacted: false,
    };
    let result = restore::restore(&cfg, &|_, _| {});
    let _ = std::fs::remove_file(&tmp);
    result.map(|_| ()).map_err(UtlError::error)
}
