//! The result of a delivery with retries.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::HttpError;

use crate::webhook::Prepared;

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// A 2xx arrived.
    Delivered {
        /// The status.
        status: u16,
    },
    /// A non-retryable failure stopped the delivery (3xx, most 4xx, SSRF refusal, bad config).
    Blocked(HttpError),
    /// Retries ran out; the last error.
    Exhausted(HttpError),
}

impl DeliveryOutcome {
    /// True when delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }
    /// The error for a failed delivery.
    pub fn error(&self) -> Option<&HttpError> {
        match self {
            DeliveryOutcome::Delivered { .. } => None,
            DeliveryOutcome::Blocked(e) | DeliveryOutcome::Exhausted(e) => Some(e),
        }
    }
    /// The last HTTP status (0 when there was none).
    pub fn status(&self) -> u16 {
        match self {
            DeliveryOutcome::Delivered { status } => *status,
            DeliveryOutcome::Blocked(e) | DeliveryOutcome::Exhausted(e) => e.status(),
        }
    }
}

/// A finished delivery: the outcome, how many attempts were made, how long it took and the exact
/// body bytes that were sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// Delivered, blocked or exhausted.
    pub outcome: DeliveryOutcome,
    /// Attempts made (0 when the request could not even be built).
    pub attempts: u32,
    /// From the first attempt to the end, including backoff sleeps.
    pub duration: Duration,
    /// The body bytes every attempt sent.
    pub body: Bytes,
}

impl Delivery {
    pub(crate) fn new(
        outcome: DeliveryOutcome,
        attempts: u32,
        started: Instant,
        p: &Prepared,
    ) -> Self {
        Self {
            outcome,
            attempts,
            duration: started.elapsed(),
            body: p.body().clone(),
        }
    }

    pub(crate) fn unsent(e: HttpError) -> Self {
        Self {
            outcome: DeliveryOutcome::Blocked(e),
            attempts: 0,
            duration: Duration::ZERO,
            body: Bytes::new(),
        }
    }
}
