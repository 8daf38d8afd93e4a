//! The waker: a task that blocks on the backend while its worker loop is idle, and the one
//! backoff used when the backend fails (claims, blocking waits).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::WorkerBackend;

/// The first retry delay after a backend failure.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The delay before the next attempt after `failures` consecutive failures (0: the first
/// retry): doubling from 50 ms up to 2 s, so a worker reconnects quickly after a blip and does
/// not hammer a backend that is down.
pub(super) fn retry_delay(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(RETRY_MAX)
}

/// Owns the waker task: dropping it stops the task.
pub(super) struct Waker {
    task: JoinHandle<()>,
    arm: Arc<Notify>,
    woken: Arc<Notify>,
    armed: bool,
}

impl Waker {
    pub(super) fn spawn(backend: Arc<dyn WorkerBackend>, queue: String) -> Self {
        let arm = Arc::new(Notify::new());
        let woken = Arc::new(Notify::new());
        let task = tokio::spawn(waker_loop(backend, queue, arm.clone(), woken.clone()));
        Self {
            task,
            arm,
            woken,
            armed: false,
        }
    }

    /// Starts one blocking wait, unless one is running.
    pub(super) fn arm(&mut self) {
        if !self.armed {
            self.arm.notify_one();
            self.armed = true;
        }
    }

    /// Resolves when the armed wait saw work (or failed); disarms.
    pub(super) async fn woken(&mut self) {
        self.woken.notified().await;
        self.armed = false;
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn waker_loop(
    backend: Arc<dyn WorkerBackend>,
    queue: String,
    arm: Arc<Notify>,
    woken: Arc<Notify>,
) {
    let mut failures = 0u32;
    loop {
        arm.notified().await;
        // Re-block until work shows up; each timeout is just a re-check of the connection.
        loop {
            match backend.wait_for_work(&queue, Duration::from_secs(5)).await {
                Ok(true) => {
                    failures = 0;
                    break;
                }
                Ok(false) => failures = 0,
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "blocking wait failed; retrying");
                    tokio::time::sleep(retry_delay(failures)).await;
                    failures = failures.saturating_add(1);
                    // The backend may have come back with work the marker never saw.
                    break;
                }
            }
        }
        woken.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_50ms_up_to_2s() {
        assert_eq!(retry_delay(0), Duration::from_millis(50));
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(5), Duration::from_millis(1600));
        assert_eq!(retry_delay(6), Duration::from_secs(2));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(2));
    }
}
