//! Dead letters: events a group gave up on, kept whole with why and when.

use hookwire_core::Event;

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// Which delivery this was (1-based).
    pub attempt: u32,
    /// When it failed, Unix milliseconds.
    pub at_ms: u64,
    /// The error and its `source()` chain, outermost first.
    pub chain: Vec<String>,
}

/// An event a group stopped retrying: after `max_deliveries` failures, or at once for a
/// non-retryable error.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead letter's id (`<group>/<original entry id>`), for get, redrive and discard.
    pub id: String,
    /// The group whose handler failed.
    pub group: String,
    /// The transport's id of the original delivery (a stream entry id on Redis).
    pub original_id: String,
    /// The event, parsed from [`DeadLetter::event_bytes`].
    pub event: Event,
    /// The event's bytes exactly as published; a redrive publishes these bytes again.
    pub event_bytes: Vec<u8>,
    /// Deliveries made.
    pub attempts: u32,
    /// The recorded failures, oldest first (at most the last 20).
    pub failures: Vec<Failure>,
    /// First failure, Unix milliseconds.
    pub first_failed_at_ms: u64,
    /// Last failure, Unix milliseconds.
    pub last_failed_at_ms: u64,
}
