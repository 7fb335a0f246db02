//! `snapshot restore`: a new member's data dir from a snapshot, as etcd's restore makes it: the
//! snapshot's data at its revisions and the membership of the new cluster given by the flags,
//! marked restored so that its first start begins the raft log with just that membership
//! (`rustcd_schema::datadir`): every member restored with the same flags starts as one cluster.

use std::path::{Path, PathBuf};

use prost::Message;
use rustcd_api::rustcdpb::{StoredMember, StoredMembers};
use rustcd_bbolt::Reader;
use rustcd_mvcc::KvStore;

use rustcd_schema::{datadir, ids, meta};

use crate::{BackupError, has_checksum};

/// etcd's `snapshot.RestoreConfig`.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub snapshot_path: PathBuf,
    pub name: String,
    pub output_data_dir: PathBuf,
    /// The raft log's directory when not under the data dir (`--wal-dir`).
    pub output_wal_dir: Option<PathBuf>,
    pub peer_urls: Vec<String>,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub skip_hash_check: bool,
    /// Raise the newest revision by this much and mark it compacted (etcd 3.5's
    /// `--bump-revision` with `--mark-compacted`): watchers of the old cluster then resume
    /// with a compaction error instead of missing or repeating changes.
    pub revision_bump: u64,
    pub mark_compacted: bool,
}

/// What a restore made.
#[derive(Debug, Clone)]
pub struct Restored {
    pub member_id: u64,
    pub cluster_id: u64,
    pub revision: i64,
    pub imported: crate::import::Imported,
}

/// Restores `cfg.snapshot_path` into `cfg.output_data_dir` (which must be empty or absent).
/// On any failure nothing is left behind. `progress` hears the bytes of
/// the snapshot read so far and its size.
pub fn restore(cfg: &RestoreConfig, progress: &dyn Fn(u64, u64)) -> Result<Restored, BackupError> {
    if (cfg.revision_bump == 0) == cfg.mark_compacted {
        return Err(BackupError::Invalid("--mark-compacted required if --revision-bump > 0".into()));
    }
    let (members, member_id, cluster_id) = new_cluster(cfg)?;
    let data_dir = &cfg.output_data_dir;
    if std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(data_dir.exists()) {
        return Err(BackupError::Invalid(format!("data-dir {:?} not empty or could not be read", data_dir.display())));
    }
    let wal_dir = datadir::raft_dir(data_dir, cfg.output_wal_dir.as_deref());
    if cfg.output_wal_dir.is_some() && wal_dir.exists() {
        return Err(BackupError::Invalid(format!("wal-dir {:?} exists", wal_dir.display())));
    }
    let snap_dir = datadir::snap_dir(data_dir);
    tracing::info!(path = %cfg.snapshot_path.display(), wal_dir = %wal_dir.display(), data_dir = %data_dir.display(), snap_dir = %snap_dir.display(), "restoring snapshot");
    // Everything is written beside the data dir first and moved in place at the end: a restore
    // cut short (a crash, a full disk) leaves no member dir a server could start on half made.
    let tmp = beside(data_dir);
    let tmp_wal = cfg.output_wal_dir.as_deref().map(beside);
    for t in [Some(&tmp), tmp_wal.as_ref()].into_iter().flatten() {
        if t.exists() {
            std::fs::remove_dir_all(t)?; // what an interrupted restore left
        }
    }
    let written_wal = datadir::raft_dir(&tmp, tmp_wal.as_deref());
    let result = write_member(cfg, &datadir::snap_dir(&tmp), &written_wal, (&members, member_id, cluster_id), progress)
        .and_then(|r| {
            fail::fail_point!("restoreBeforeRename");
            if let Some(t) = &tmp_wal {
                std::fs::rename(t, &wal_dir)?;
                datadir::sync_parent(&wal_dir)?;
            }
            std::fs::create_dir_all(data_dir)?;
            std::fs::rename(datadir::member_dir(&tmp), datadir::member_dir(data_dir))?;
            datadir::sync_parent(&datadir::member_dir(data_dir))?;
            std::fs::remove_dir_all(&tmp)?;
            Ok(r)
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if let Some(t) = &tmp_wal {
            let _ = std::fs::remove_dir_all(t);
        }
    }
    let restored = result?;
    tracing::info!(path = %cfg.snapshot_path.display(), wal_dir = %wal_dir.display(), data_dir = %data_dir.display(), snap_dir = %snap_dir.display(), "restored snapshot");
    Ok(restored)
}

/// Where a directory is written before it is moved in place: `<dir>.restore.tmp`.
fn beside(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".restore.tmp");
    PathBuf::from(name)
}

/// The new cluster's members from `--initial-cluster`, this member's ID and the cluster's,
/// checked as etcd checks a bootstrap configuration.
fn new_cluster(cfg: &RestoreConfig) -> Result<(Vec<StoredMember>, u64, u64), BackupError> {
    let initial = rustcd_schema::cluster::parse_initial_cluster(&cfg.initial_cluster).map_err(BackupError::Invalid)?;
    let members: Vec<StoredMember> = initial
        .iter()
        .map(|m| StoredMember {
            id: ids::member_id(&m.peer_urls, &cfg.initial_cluster_token),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect();
    let Some(me) = members.iter().find(|m| m.name == cfg.name) else {
        return Err(BackupError::Invalid(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        )));
    };
    let (mut mine, mut given) = (me.peer_urls.clone(), cfg.peer_urls.clone());
    mine.sort();
    given.sort();
    if mine != given {
        return Err(BackupError::Invalid(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\"(resolved from {:?}))",
            me.name,
            mine.join(","),
            given.join(","),
            given.join(","),
            given,
            mine.join(","),
            mine
        )));
    }
    let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    Ok((members.clone(), me.id, cluster_id))
}

/// Opens the snapshot, checking the sha256 after the database unless told not to.
fn open_snapshot(cfg: &RestoreConfig) -> Result<Reader, BackupError> {
    use std::io::Read;
    let mut f = std::fs::File::open(&cfg.snapshot_path).map_err(|e| {
        BackupError::Invalid(format!("open {}: {}", cfg.snapshot_path.display(), rustcd_tls::go_io_error(&e)))
    })?;
    let len = f.metadata()?.len();
    let hashed = has_checksum(len);
    if !hashed && !cfg.skip_hash_check {
        return Err(BackupError::Invalid("snapshot missing hash but --skip-hash-check=false".into()));
    }
    let db_len = if hashed { len - 32 } else { len };
    if hashed && !cfg.skip_hash_check {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut left = db_len;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = buf.len().min(left as usize);
            f.read_exact(&mut buf[..n])?;
            ctx.update(&buf[..n]);
            left -= n as u64;
        }
        let mut want = [0u8; 32];
        f.read_exact(&mut want)?;
        let got = ctx.finish();
        if got.as_ref() != want {
            return Err(BackupError::Invalid(format!("expected sha256 {:?}, got {:?}", want, got.as_ref())));
        }
    }
    Ok(Reader::new(f, db_len)?)
}

fn write_member(
    cfg: &RestoreConfig,
    snap_dir: &Path,
    wal_dir: &Path,
    (members, member_id, cluster_id): (&[StoredMember], u64, u64),
    progress: &dyn Fn(u64, u64),
) -> Result<Restored, BackupError> {
    let db = open_snapshot(cfg)?;
    std::fs::create_dir_all(snap_dir)?;
    let store = KvStore::open(snap_dir.join("db"))?;
    let mut load = store.loader()?;
    let imported = crate::import::import(&db, &mut load, progress)?;
    let mut revision = imported.revision.max(imported.compact_revision);
    if cfg.mark_compacted {
        revision += cfg.revision_bump as i64;
        tracing::info!(
            latest_revision = imported.revision,
            bump_amount = cfg.revision_bump,
            new_latest_revision = revision,
            "bumping latest revision"
        );
        tracing::info!(revision, "marking revision compacted");
        load.compact_rev(revision)?;
    }
    for m in members {
        tracing::info!(cluster_id = %format!("{cluster_id:x}"), local_member_id = "0", added_peer_id = %format!("{:x}", m.id), added_peer_peer_urls = ?m.peer_urls, "added member");
    }
    let stored = StoredMembers { members: members.to_vec(), removed: vec![] };
    load.meta(meta::MEMBERS, &stored.encode_to_vec())?;
    // The member's raft log starts with one entry per member, all applied: the backend is at
    // its end.
    load.consistent_index(members.len() as u64)?;
    load.finish()?;
    drop(store);
    let member_dir = snap_dir.parent().unwrap_or(snap_dir);
    datadir::write_identity(member_dir, member_id, cluster_id)?;
    // The raft log is made at the member's first start, from the membership just written (the
    // same committed entries a new cluster starts with): the mark says so.
    std::fs::create_dir_all(wal_dir)?;
    datadir::mark_restored(member_dir)?;
    Ok(Restored { member_id, cluster_id, revision, imported })
}
