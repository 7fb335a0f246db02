//! The Maintenance service: Status, HashKV, Alarm, Defragment, Snapshot and MoveLeader.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustcd_api::etcdserverpb::maintenance_server::Maintenance;
use rustcd_api::etcdserverpb::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::error::ServerError;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::blocking;

pub struct MaintenanceService(pub Arc<EtcdServer>);

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    /// etcd answers alarm requests without a header; so does rustcd, so clients print the same.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(self.0.alarm(&api::caller::of(&req), req.into_inner()).await?))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = &self.0;
        // The backend's page statistics need its (single) write transaction: wait off the
        // async workers.
        let store = s.store().clone();
        let (db_size, db_size_in_use) = blocking(move || store.db_size()).await?;
        let st = &s.raft_status();
        let leader = st.leader.load(Ordering::Relaxed);
        // etcd lists a missing leader and every active alarm (in its text form) as errors.
        let mut errors: Vec<String> = Vec::new();
        if leader == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        for a in s.alarms().get(AlarmType::None) {
            let name = AlarmType::try_from(a.alarm).map_or("NONE", |t| t.as_str_name());
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        Ok(Response::new(StatusResponse {
            header: s.current_header(),
            version: rustcd_api::ETCD_VERSION.to_string(),
            db_size,
            leader,
            raft_index: st.commit.load(Ordering::Relaxed),
            raft_term: st.term.load(Ordering::Relaxed),
            raft_applied_index: s.applied(),
            errors,
            db_size_in_use,
            is_learner: st.is_learner.load(Ordering::Relaxed),
        }))
    }

    /// Rewrites this member's backend file without its free pages. Writes go on meanwhile: they
    /// wait only for the rows written during the copy to be copied, and for the swap of files.
    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let store = self.0.store().clone();
        blocking(move || {
            fail::fail_point!("defragBeforeCompact");
            let r = store.defragment_with(&|| fail::fail_point!("defragBeforeSwap"));
            fail::fail_point!("defragAfterCompact");
            r
        })
        .await?
        .map_err(ServerError::from)?;
        tracing::info!("finished defragmenting the backend");
        Ok(Response::new(DefragmentResponse { header: self.0.current_header() }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let store = self.0.store().clone();
        let (hash, _, rev) = blocking(move || store.hash_kv(0)).await?.map_err(ServerError::from)?;
        Ok(Response::new(HashResponse { header: self.0.header(rev), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let (store, rev) = (self.0.store().clone(), req.into_inner().revision);
        // A scan of the whole store: on a blocking thread.
        let (hash, compact_revision, hash_revision) =
            blocking(move || store.hash_kv(rev)).await?.map_err(ServerError::from)?;
        Ok(Response::new(HashKvResponse { header: self.0.current_header(), hash, compact_revision, hash_revision }))
    }

    /// etcd's snapshot stream: the backend as etcd's database, in 32 KiB pieces each with the
    /// bytes still to come, then its sha256. The database is written from one consistent view
    /// (writes and raft go on meanwhile) to a file nobody else can see, and streamed from it.
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let store = self.0.store().clone();
        let dir = self.0.config().data_dir.join("member").join("snap");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_snapshot(&store, &dir, &tx) {
                tracing::warn!(error = %e, "failed to send database snapshot to client");
                let _ = tx.blocking_send(Err(Status::unknown(e.to_string())));
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let target = req.into_inner().target_id;
        let s = &self.0;
        if s.leader() != s.member_id() {
            return Err(ServerError::NotLeader.into());
        }
        match s.membership().get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(ServerError::BadLeaderTransferee.into()),
        }
        if target != s.member_id() {
            s.transfer_leader(target).await?;
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_millis(s.config().raw.election_timeout * 2);
            while s.leader() != target {
                if tokio::time::Instant::now() > deadline {
                    return Err(ServerError::LeaderTransferTimeout.into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        Ok(Response::new(MoveLeaderResponse { header: s.current_header() }))
    }

    async fn downgrade(&self, _req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("downgrade is not implemented yet"))
    }
}

/// etcd's `snapshotSendBufferSize`.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

type SnapshotSender = tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>;

/// Writes the snapshot to an unlinked file in `dir` (gone with the last handle, even after a
/// crash) and streams it to `tx` until the end or until the client goes away.
fn send_snapshot(
    store: &rustcd_mvcc::KvStore,
    dir: &std::path::Path,
    tx: &SnapshotSender,
) -> Result<(), crate::backup::BackupError> {
    use std::io::{Read, Seek};
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = dir.join(format!("snapshot-{}-{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    fail::fail_point!("beforeSnapshotExport");
    let started = std::time::Instant::now();
    let (out, exported) = crate::backup::export::export(store, std::io::BufWriter::new(file))?;
    let took = rustcd_metrics::secs(started.elapsed());
    rustcd_metrics::get().disk.backend_snapshot_duration_seconds.observe(took);
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    let total = exported.size;
    tracing::info!(total_bytes = total, size = %rustcd_gocompat::human_bytes(total), "sending database snapshot to client");
    let started = std::time::Instant::now();
    file.rewind()?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
    let mut sent = 0u64;
    while sent < total {
        let n = buf.len().min((total - sent) as usize);
        file.read_exact(&mut buf[..n])?;
        sha.update(&buf[..n]);
        sent += n as u64;
        let piece =
            SnapshotResponse { remaining_bytes: total - sent, blob: buf[..n].to_vec().into(), ..Default::default() };
        if tx.blocking_send(Ok(piece)).is_err() {
            return Ok(()); // the client went away
        }
        fail::fail_point!("snapshotSendPiece");
    }
    let digest = sha.finish().as_ref().to_vec();
    let _ = tx.blocking_send(Ok(SnapshotResponse { remaining_bytes: 0, blob: digest.into(), ..Default::default() }));
    tracing::info!(total_bytes = total, size = %rustcd_gocompat::human_bytes(total), took = ?started.elapsed(), "sent database snapshot to client");
    Ok(())
}
