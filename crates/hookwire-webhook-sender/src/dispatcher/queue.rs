//! [`MemoryTaskQueue`]: an in-process [`TaskQueue`] for durable mode in tests and single-node
//! deployments (the jobs crates provide a Redis-backed one).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use hookwire_core::{BoxFuture, QueueError, QueuedTask, TaskQueue};
use tokio::sync::Notify;

/// Tasks ordered by the time they become runnable; an id already queued is not queued twice.
///
/// "Durable" here means "survives a failing endpoint", not "survives a crash": the tasks live in
/// this process. Use a Redis-backed [`TaskQueue`] when the process itself may die.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use hookwire_core::{QueuedTask, TaskQueue};
/// use hookwire_webhook_sender::MemoryTaskQueue;
/// let q = MemoryTaskQueue::new();
/// q.enqueue(QueuedTask::new("k", "a", serde_json::json!(1))).await.unwrap();
/// q.enqueue(QueuedTask::new("k", "a", serde_json::json!(2))).await.unwrap();
/// assert_eq!(q.len(), 1, "same id while queued: no duplicate");
/// assert_eq!(q.next().await.payload, serde_json::json!(1));
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryTaskQueue {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<(Instant, u64), QueuedTask>,
    ids: HashSet<String>,
    seq: u64,
}

impl MemoryTaskQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tasks queued (runnable or delayed).
    pub fn len(&self) -> usize {
        self.state().tasks.len()
    }

    /// True when no task is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next runnable task, waiting for one.
    ///
    /// Cancel safety: a task is removed only when this future completes, so dropping it loses
    /// nothing.
    pub async fn next(&self) -> QueuedTask {
        loop {
            let wait = {
                let mut s = self.state();
                let now = Instant::now();
                match s.tasks.first_key_value().map(|(k, _)| *k) {
                    Some(k) if k.0 <= now => {
                        if let Some(t) = s.tasks.remove(&k) {
                            s.ids.remove(&t.id);
                            return t;
                        }
                        None
                    }
                    Some(k) => Some(k.0 - now),
                    None => None,
                }
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        () = self.notify.notified() => {}
                        () = tokio::time::sleep(d) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}

impl TaskQueue for MemoryTaskQueue {
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), QueueError>> {
        {
            let mut s = self.state();
            if s.ids.insert(task.id.clone()) {
                s.seq += 1;
                let key = (super::health::later(Instant::now(), task.delay), s.seq);
                s.tasks.insert(key, task);
            }
        }
        // `notify_one` stores a permit when nobody waits, so a wake-up is never lost.
        self.notify.notify_one();
        Box::pin(async { Ok(()) })
    }
}
