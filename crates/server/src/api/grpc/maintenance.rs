//! The Maintenance service: Status, HashKV, Alarm, Defragment, Snapshot and MoveLeader.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustcd_api::etcdserverpb::maintenance_server::Maintenance;
use rustcd_api::etcdserverpb::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::server::EtcdServer;

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
        Ok(Response::new(self.0.status().await?))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(self.0.defragment(&api::caller::of(&req)).await?))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Ok(Response::new(self.0.hash(&api::caller::of(&req)).await?))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Ok(Response::new(self.0.hash_kv(&api::caller::of(&req), req.into_inner().revision).await?))
    }

    /// etcd's snapshot stream: the backend as etcd's database, in 32 KiB pieces each with the
    /// bytes still to come, then its sha256. The database is written from one consistent view
    /// (writes and raft go on meanwhile) to a file nobody else can see, and streamed from it.
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.0.check_admin(&api::caller::of(&req))?;
        let store = self.0.store().clone();
        let dir = rustcd_schema::datadir::snap_dir(&self.0.config().data_dir);
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
        Ok(Response::new(self.0.move_leader(&api::caller::of(&req), req.into_inner().target_id).await?))
    }

    async fn downgrade(&self, req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Ok(Response::new(self.0.downgrade(&api::caller::of(&req), req.into_inner()).await?))
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
) -> Result<(), rustcd_backup::BackupError> {
    use std::io::{Read, Seek};
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = dir.join(format!("snapshot-{}-{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    fail::fail_point!("beforeSnapshotExport");
    let started = std::time::Instant::now();
    let (out, exported) = rustcd_backup::export::export(store, std::io::BufWriter::new(file))?;
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
