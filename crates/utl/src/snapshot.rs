//! `snapshot status` and `snapshot restore`, for etcdutl and etcdctl alike.

use std::path::PathBuf;

use rustcd_backup::restore::{self, RestoreConfig};
use rustcd_backup::status;

use crate::UtlError;

/// `snapshot status <file>`: the output in `format`.
pub fn status(args: &[String], format: &str) -> Result<String, UtlError> {
    let [path] = args else {
        return Err(UtlError::bad_args("snapshot status requires exactly one argument"));
    };
    let path = std::path::Path::new(path);
    if let Err(e) = std::fs::metadata(path) {
        return Err(UtlError::error(format!("stat {}: {}", path.display(), rustcd_tls::go_io_error(&e))));
    }
    let st = status::status(path).map_err(UtlError::error)?;
    crate::print::snapshot_status(&st, format)
}

/// `snapshot restore`'s flags (etcd 3.5's etcdutl and etcdctl).
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// Path to the output data directory
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir", default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long = "initial-cluster", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long = "initial-advertise-peer-urls", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check")]
    pub skip_hash_check: bool,
    /// How much to increase the latest revision after restore
    #[arg(long = "bump-revision", default_value_t = 0)]
    pub bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)
    #[arg(long = "mark-compacted")]
    pub mark_compacted: bool,
    /// The snapshot file
    pub args: Vec<String>,
}

/// `snapshot restore <file>`: a new member's data dir.
pub fn restore(a: &RestoreArgs) -> Result<(), UtlError> {
    let [path] = a.args.as_slice() else {
        return Err(UtlError::bad_args("snapshot restore requires exactly one argument"));
    };
    if (a.bump_revision == 0 && a.mark_compacted) || (a.bump_revision > 0 && !a.mark_compacted) {
        return Err(UtlError::bad_args("--mark-compacted required if --revision-bump > 0"));
    }
    let data_dir = if a.data_dir.is_empty() { format!("{}.etcd", a.name) } else { a.data_dir.clone() };
    let cfg = RestoreConfig {
        snapshot_path: PathBuf::from(path),
        name: a.name.clone(),
        output_data_dir: PathBuf::from(data_dir),
        output_wal_dir: (!a.wal_dir.is_empty()).then(|| PathBuf::from(&a.wal_dir)),
        peer_urls: a.initial_advertise_peer_urls.split(',').map(str::to_string).collect(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        skip_hash_check: a.skip_hash_check,
        revision_bump: a.bump_revision,
        mark_compacted: a.mark_compacted,
    };
    let progress = crate::progress::Progress::new("restoring");
    let result = restore::restore(&cfg, &|done, total| progress.update(done, total));
    progress.finish();
    result.map(|_| ()).map_err(UtlError::error)
}
