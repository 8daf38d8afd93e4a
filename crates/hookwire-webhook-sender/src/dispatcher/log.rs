//! The bounded delivery log.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

/// One finished delivery to one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryRecord {
    /// The subscription.
    pub subscription_id: String,
    /// The event type.
    pub event_type: String,
    /// The event id.
    pub event_id: String,
    /// Whether a 2xx arrived.
    pub success: bool,
    /// The last HTTP status (0 when none).
    pub status: u16,
    /// The last error, for failures.
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Time from the first attempt to the end.
    pub duration: Duration,
    /// Unix milliseconds when the delivery finished.
    pub timestamp: u64,
    /// The exact body bytes sent (not a re-serialization).
    pub body: Bytes,
}

#[derive(Debug)]
pub(crate) struct DeliveryLog {
    cap: usize,
    items: Mutex<VecDeque<DeliveryRecord>>,
}

impl DeliveryLog {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            items: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
        }
    }

    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<DeliveryRecord>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn push(&self, r: DeliveryRecord) {
        if self.cap == 0 {
            return;
        }
        let mut q = self.items();
        if q.len() == self.cap {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// The newest `n`, newest first.
    pub(crate) fn newest(&self, n: usize) -> Vec<DeliveryRecord> {
        self.items().iter().rev().take(n).cloned().collect()
    }
}
