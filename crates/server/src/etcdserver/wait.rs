//! etcd's `pkg/wait`: a registry of waiters by ID. The one who asks registers an ID and awaits
//! its receiver; the one who answers triggers the ID with the value. The server registers
//! proposals (by request ID) and read-index rounds (by round); the apply thread triggers them.
//! A waiter given up (time out, refused proposal) is cancelled, so nothing is kept for it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Waiters for values of type `T`, keyed by ID.
#[derive(Debug)]
pub struct Wait<T> {
    waiters: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait { waiters: Mutex::new(HashMap::new()) }
    }
}

impl<T> Wait<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<T>>> {
        // A poisoned map is still a map of senders: a panic elsewhere leaves it consistent.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `id`; its value arrives on the receiver (which errs if the registry drops it).
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Hands `value` to the waiter of `id`; false when no one waits (any more).
    pub fn trigger(&self, id: u64, value: T) -> bool {
        match self.lock().remove(&id) {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    /// Triggers each (id, value), under one lock.
    pub fn trigger_all(&self, answers: impl IntoIterator<Item = (u64, T)>) {
        let mut w = self.lock();
        for (id, value) in answers {
            if let Some(tx) = w.remove(&id) {
                let _ = tx.send(value);
            }
        }
    }

    /// Forgets the waiter of `id` (it gave up).
    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn is_registered(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::Wait;

    #[tokio::test]
    async fn a_waiter_gets_its_own_value_once() {
        let w = Wait::<&str>::default();
        let (a, b) = (w.register(1), w.register(2));
        w.trigger_all([(2, "two"), (3, "nobody")]);
        assert!(w.trigger(1, "one"));
        assert!(!w.trigger(1, "again"), "an ID is answered once");
        assert_eq!((a.await, b.await), (Ok("one"), Ok("two")));
        let c = w.register(4);
        w.cancel(4);
        assert!(!w.is_registered(4));
        assert!(c.await.is_err(), "a cancelled waiter hears nothing");
    }
}
