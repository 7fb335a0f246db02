//! One shutdown signal for everything a member starts (mini-redis's `Shutdown`, on
//! tokio-util's cancellation token and task tracker): each long-lived task (listeners and their
//! connections, the read-index loop, lease expiry, the compactor, the corruption checks, member
//! publication) is spawned through [`Shutdown::spawn`], which ends it when the signal fires;
//! [`Shutdown::ended`] waits until every one of them has. A stopped member leaves nothing
//! running, so the same runtime can host it again.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The signal and the tasks it ends. Clones share both.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Spawns `task` on the current runtime; it is dropped where it waits once the signal
    /// fires (a task that must finish something first waits on [`Shutdown::fired`] itself).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Fires the signal (again is harmless).
    pub fn fire(&self) {
        self.token.cancel();
    }

    pub fn is_fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal has fired.
    pub async fn fired(&self) {
        self.token.cancelled().await
    }

    /// Resolves once the signal has fired and every task spawned through this has ended; no
    /// task may be spawned after.
    pub async fn ended(&self) {
        self.fired().await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fired_ends_every_task_and_ended_waits_for_them() {
        let s = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        for _ in 0..3 {
            let tx = tx.clone();
            // Each holds a sender until it is dropped: the channel closes when all three are.
            s.spawn(async move {
                let _held = tx;
                std::future::pending::<()>().await
            });
        }
        drop(tx);
        assert!(!s.is_fired());
        s.fire();
        s.ended().await;
        assert!(rx.recv().await.is_none(), "every task was dropped");
    }
}
