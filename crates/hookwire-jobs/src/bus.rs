//! Job lifecycle events on the event bus (feature `events`): [`JobsBuilder::publish_events`]
//! publishes `job.<queue>.completed`, `job.<queue>.failed`, `job.<queue>.dead-lettered` and
//! `job.<queue>.stalled` for every transition of this runtime.
//!
//! Workers never wait for the bus: a listener hands each event to a bounded queue, and one task
//! publishes them in batches. A bus that refuses publishes (Redis down) is retried with backoff
//! while the queue holds; past its capacity new events are dropped, logged and counted, so a
//! dead bus costs bounded memory and never slows a job.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookwire_core::{Backoff, Event};
use hookwire_events::Bus;
use tokio::sync::mpsc;

use crate::{EventKind, JobEvent, JobsBuilder};

/// Lifecycle events waiting for the bus, per runtime, before new ones are dropped.
pub const BUS_QUEUE_CAPACITY: usize = 10_000;

/// Events per `publish_many` call.
const BATCH: usize = 100;

/// The event a lifecycle transition becomes: `job.<queue>.<state>`, the payload of
/// [`JobEvent::to_event`], resource `job` + the job id (so one job's events keep their order on
/// the bus), source `hookwire-jobs`, and an id that names the transition
/// (`job:<queue>:<job id>:<state>:<attempts or stall count>`), so a transition published twice
/// is recognisable (an `Inbox` drops the repeat). `None` for progress reports, which are not
/// lifecycle transitions.
pub(crate) fn lifecycle_event(e: &JobEvent) -> Option<Event> {
    let (state, n) = match &e.kind {
        EventKind::Completed { .. } => ("completed", e.attempts_made),
        EventKind::Failed {
            dead_lettered: true,
            ..
        } => ("dead-lettered", e.attempts_made),
        EventKind::Failed { .. } => ("failed", e.attempts_made),
        EventKind::Stalled { stalled } => ("stalled", *stalled),
        _ => return None,
    };
    let base = e.to_event();
    Some(
        Event::new(format!("job.{}.{state}", e.name), base.data)
            .with_id(format!("job:{}:{}:{state}:{n}", e.name, e.id))
            .with_resource("job", e.id.clone())
            .with_source("hookwire-jobs"),
    )
}

impl JobsBuilder {
    /// Publishes this runtime's job lifecycle events on `bus`: `job.<queue>.completed`,
    /// `job.<queue>.failed` (failed for good, no dead-letter queue), `job.<queue>.dead-lettered`
    /// (failed for good, moved to the dead-letter queue) and `job.<queue>.stalled` (recovered
    /// from a worker that stopped renewing its lease; it runs again). The payload is
    /// [`JobEvent::to_event`]'s. Progress reports are not published.
    ///
    /// Publishing happens on a background task through a queue of [`BUS_QUEUE_CAPACITY`]
    /// events; see the module documentation for what happens when the bus is down.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use hookwire_events::{Bus, Event, Group, HandlerError, MemoryTransport};
    /// use hookwire_jobs::{DispatchOptions, JobDef, Jobs, MemoryBackend};
    /// let bus = Bus::builder(MemoryTransport::new()).build().unwrap();
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let _seen = bus.subscribe(Group::at_end("audit"), "job.*", move |e: Event| {
    ///     let _ = tx.send(e.name);
    ///     async { Ok::<(), HandlerError>(()) }
    /// }).await.unwrap();
    /// let jobs = Jobs::builder(MemoryBackend::new())
    ///     .job(JobDef::new("email", |_: u8, _| async { Ok::<_, std::io::Error>(()) }))
    ///     .publish_events(&bus)
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// jobs.dispatch("email", &1, DispatchOptions::new()).await.unwrap();
    /// assert_eq!(rx.recv().await.unwrap(), "job.email.completed");
    /// jobs.shutdown().await;
    /// # });
    /// ```
    #[must_use]
    pub fn publish_events(self, bus: &Bus) -> Self {
        let (tx, rx) = mpsc::channel::<Event>(BUS_QUEUE_CAPACITY);
        // The publisher starts with the first event, on the listener task: the builder itself
        // may be used outside a runtime.
        let pending = Mutex::new(Some((bus.clone(), rx)));
        let dropped = AtomicU64::new(0);
        self.on_event(move |e| {
            let Some(event) = lifecycle_event(e) else {
                return;
            };
            if let Some((bus, rx)) = pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                tokio::spawn(publish_loop(bus, rx));
            }
            if let Err(err) = tx.try_send(event) {
                let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let id = match &err {
                    mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => {
                        e.id.clone()
                    }
                };
                tracing::error!(event.id = %id, dropped = n,
                    "job lifecycle event dropped: the bus queue is full or closed");
            }
        })
    }
}

/// Publishes queued events in batches until every sender is gone (the runtime was dropped) or
/// the bus shut down. A refused batch is retried with backoff (100 ms doubling to 5 s); a batch
/// the bus rejects as invalid is retried event by event, so one bad event does not hold back
/// the others.
async fn publish_loop(bus: Bus, mut rx: mpsc::Receiver<Event>) {
    let backoff = Backoff::exponential(Duration::from_millis(100)).with_max(Duration::from_secs(5));
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut failures = 0u32;
        loop {
            match bus.publish_many(batch.clone()).await {
                Ok(()) => break,
                Err(e) if e.is_shutdown() => return,
                Err(e) if e.is_transport() => {
                    tracing::warn!(error = %e, events = batch.len(),
                        "could not publish job lifecycle events; retrying");
                    tokio::time::sleep(backoff.delay(failures)).await;
                    failures = failures.saturating_add(1);
                }
                Err(_) => {
                    publish_each(&bus, &batch).await;
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// The fallback for a rejected batch: each event alone; the ones the bus refuses are logged.
async fn publish_each(bus: &Bus, batch: &[Event]) {
    for e in batch {
        if let Err(err) = bus.publish(e.clone()).await {
            tracing::error!(event.id = %e.id, error = %err, "job lifecycle event refused by the bus");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> JobEvent {
        JobEvent {
            name: "email".into(),
            id: "j1".into(),
            data: "{\"to\":\"a\"}".into(),
            attempts_made: 2,
            kind,
        }
    }

    #[test]
    fn each_transition_has_its_name_id_and_resource() {
        let cases = [
            (EventKind::Completed { result: "1".into() }, "completed", 2),
            (
                EventKind::Failed {
                    error: "x".into(),
                    dead_lettered: false,
                },
                "failed",
                2,
            ),
            (
                EventKind::Failed {
                    error: "x".into(),
                    dead_lettered: true,
                },
                "dead-lettered",
                2,
            ),
            (EventKind::Stalled { stalled: 3 }, "stalled", 3),
        ];
        for (kind, state, n) in cases {
            let e = lifecycle_event(&ev(kind)).unwrap();
            assert_eq!(e.name, format!("job.email.{state}"));
            assert_eq!(e.id, format!("job:email:j1:{state}:{n}"));
            assert_eq!(e.data["id"], "j1");
            assert_eq!(e.data["data"]["to"], "a");
            assert_eq!(e.effective_partition_key().as_deref(), Some("job:j1"));
        }
        let progress = ev(EventKind::Progress {
            progress: "5".into(),
        });
        assert!(lifecycle_event(&progress).is_none());
    }
}
