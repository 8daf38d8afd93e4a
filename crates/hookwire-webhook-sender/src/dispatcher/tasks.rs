//! The delivery tasks a dispatcher starts, owned by the dispatcher: each is registered while it
//! runs so [`crate::Dispatcher::shutdown`] can stop them all (a task that outlived every
//! handle to it would go on sending requests nobody can stop).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug, Default)]
pub(crate) struct Tasks {
    next: AtomicU64,
    live: Mutex<HashMap<u64, AbortHandle>>,
}

impl Tasks {
    /// Spawns `fut`, registered until it ends.
    pub(crate) fn spawn<F>(self: &Arc<Self>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let owner: Weak<Self> = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            let out = fut.await;
            if let Some(t) = owner.upgrade() {
                t.forget(id);
            }
            out
        });
        self.lock().insert(id, handle.abort_handle());
        // A task that ended before it was registered removed nothing: take it out here.
        if handle.is_finished() {
            self.forget(id);
        }
        handle
    }

    /// Aborts every registered task.
    pub(crate) fn abort_all(&self) {
        for (_, h) in self.lock().drain() {
            h.abort();
        }
    }

    /// How many tasks are registered.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
