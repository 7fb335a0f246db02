//! The raft thread: one thread owns the [`RaftCore`] (the `RawNode` and the log) and drives it
//! with real time: inputs from a bounded queue, a tick every heartbeat interval, the Ready
//! handled after each round. What goes in ([`Input`]) and comes out ([`Output`]) is defined
//! in [`crate::types`], which the core takes them from too.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::RaftCore;
use crate::error::{Error, Result};
use crate::io::{ApplySink, LogStorage, Transport};
use crate::log_store::{LogStore, SnapshotSource};
use crate::types::{Input, NodeConfig, NodeStatus, Output};

/// Inputs queued for the raft thread before senders wait (proposals) or drop (peer messages).
pub const INPUT_QUEUE: usize = 8192;

/// The way into the raft thread: a bounded queue. Proposals and reads wait for room
/// ([`RaftSender::send`], backpressure); peer messages and reports are dropped when it is
/// full ([`RaftSender::try_send`]), which raft tolerates.
#[derive(Clone)]
pub struct RaftSender(mpsc::SyncSender<Input>);

impl RaftSender {
    /// Queues `input`, waiting (without blocking the async worker) while the queue is full.
    pub async fn send(&self, mut input: Input) -> Result<()> {
        loop {
            match self.0.try_send(input) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(back)) => {
                    input = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(Error::Stopped),
            }
        }
    }

    /// Queues `input` if there is room; false when it was dropped (or raft has stopped).
    pub fn try_send(&self, input: Input) -> bool {
        self.0.try_send(input).is_ok()
    }

    /// Queues `input`, blocking the calling thread while the queue is full (not for async code).
    pub fn send_blocking(&self, input: Input) -> Result<()> {
        self.0.send(input).map_err(|_| Error::Stopped)
    }
}

/// Handle to the raft thread.
pub struct RaftNode {
    tx: RaftSender,
    pub status: Arc<NodeStatus>,
    thread: Option<JoinHandle<()>>,
}

impl RaftNode {
    /// Starts the raft thread: the core on the opened log, talking to peers through
    /// `transport` (which reports back through [`RaftNode::sender`]) and handing what commits
    /// to the apply thread on `out`.
    pub fn start<T: Transport + Send + 'static>(
        cfg: NodeConfig,
        mut store: LogStore,
        out: mpsc::SyncSender<Output>,
        transport: T,
        snapshot_source: SnapshotSource,
    ) -> Result<(Self, RaftSender)> {
        store.set_snapshot_source(snapshot_source);
        let core = RaftCore::new(&cfg, store, transport, out)?;
        let status = core.status().clone();
        let (tx, rx) = mpsc::sync_channel(INPUT_QUEUE);
        let tx = RaftSender(tx);
        let tick = cfg.tick;
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                if let Err(e) = run(core, rx, tick) {
                    tracing::error!(error = %e, "raft task stopped");
                }
            })
            .map_err(|e| Error::Corrupt(format!("cannot start raft thread: {e}")))?;
        Ok((RaftNode { tx: tx.clone(), status, thread: Some(thread) }, tx))
    }

    pub fn sender(&self) -> RaftSender {
        self.tx.clone()
    }

    /// Stops the raft thread and waits for it.
    pub fn stop(mut self) {
        let _ = self.tx.send_blocking(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Most inputs taken in one round before handling the Ready they produce.
const MAX_BATCH: usize = 4096;

/// The raft thread: inputs as they come (a batch at a time), a tick every `tick`, and the
/// Ready they produce handled after each round.
fn run<L: LogStorage, T: Transport, A: ApplySink>(
    mut core: RaftCore<L, T, A>,
    rx: mpsc::Receiver<Input>,
    tick: Duration,
) -> Result<()> {
    let mut next_tick = Instant::now() + tick;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(input) => {
                if !core.handle(input) {
                    return Ok(());
                }
                for _ in 0..MAX_BATCH {
                    match rx.try_recv() {
                        Ok(input) => {
                            if !core.handle(input) {
                                return Ok(());
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if Instant::now() >= next_tick {
            core.tick();
            next_tick += tick;
        }
        core.on_ready()?;
    }
}
