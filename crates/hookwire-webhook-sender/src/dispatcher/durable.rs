//! Durable mode: the task payload, enqueueing a fan-out, and running one task as small steps
//! (read the payload → find the subscription → refuse when disabled → wait for the breaker and
//! the rate limit → one attempt → retry, or record the result).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::{Event, HttpError, QueuedTask, TaskQueue};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::health::Gate;
use super::{DELIVER_TASK, DeliveryRecord, Dispatcher, Entry, MemoryTaskQueue, unix_ms};
use crate::delivery::DeliveryOutcome;
use crate::error::{Error, ErrorKind};
use crate::webhook::Sent;

/// What [`Dispatcher::run_task`] decided for one durable task.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// Delivered.
    Done(DeliveryRecord),
    /// Try again: enqueue this task (same id, next attempt, with a delay).
    Retry(QueuedTask),
    /// Gave up (blocked, exhausted, or the subscription is disabled).
    Failed(DeliveryRecord),
    /// The task cannot be run (malformed payload, subscription removed).
    Dropped(String),
}

/// The payload of a [`DELIVER_TASK`] (its JSON shape is documented there and must not change:
/// tasks enqueued by an older version are still run).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliverTask {
    subscription_id: String,
    event_id: String,
    event_type: String,
    /// The exact body, as a string.
    body: String,
    /// Attempts made so far.
    #[serde(default)]
    attempt: u32,
    /// Unix ms of the first enqueue (for the policy's `max_window`); absent counts from now.
    #[serde(default)]
    first_at_ms: Option<u64>,
}

impl DeliverTask {
    fn to_json(&self) -> serde_json::Value {
        // Strings and integers cannot fail to serialize.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl Dispatcher {
    /// Durable `publish`: one task per target; returns how many were enqueued.
    pub(super) async fn enqueue_all(
        queue: &dyn TaskQueue,
        targets: &[Arc<Entry>],
        event: &Event,
        body: &Bytes,
    ) -> Result<usize, Error> {
        let now = unix_ms();
        let body = String::from_utf8_lossy(body);
        for e in targets {
            let payload = DeliverTask {
                subscription_id: e.sub.id.clone(),
                event_id: event.id.clone(),
                event_type: event.name.clone(),
                body: body.clone().into_owned(),
                attempt: 0,
                first_at_ms: Some(now),
            };
            let task = QueuedTask::new(
                DELIVER_TASK,
                format!("{}:{}", event.id, e.sub.id),
                payload.to_json(),
            );
            queue
                .enqueue(task)
                .await
                .map_err(|err| Error::new(ErrorKind::Queue, err))?;
        }
        Ok(targets.len())
    }

    /// Runs one durable task: a single attempt; on a retryable failure returns the task to
    /// enqueue again with the policy's delay. Does not take a concurrency permit (the worker
    /// does, before taking the task).
    pub async fn run_task(&self, task: &QueuedTask) -> TaskOutcome {
        let Ok(mut payload) = serde_json::from_value::<DeliverTask>(task.payload.clone()) else {
            return TaskOutcome::Dropped(format!("task {} has a malformed payload", task.id));
        };
        let first_at = *payload.first_at_ms.get_or_insert_with(unix_ms);
        let Some(e) = self.entry(&payload.subscription_id) else {
            return TaskOutcome::Dropped(format!(
                "subscription {} no longer exists",
                payload.subscription_id
            ));
        };
        let body = Bytes::from(std::mem::take(&mut payload.body));
        if !e.sub.enabled {
            return self.refuse_disabled(&e, &payload, body);
        }
        if let Gate::Open(wait) = e.gate() {
            // The breaker is open: park the task until the probe window, without using up an
            // attempt.
            return TaskOutcome::Retry(task.clone().with_delay(wait));
        }
        if let Some(b) = &e.bucket {
            b.take().await;
        }
        let started = Instant::now();
        let result = self.attempt_task(&e, &payload, body.clone()).await;
        let attempts = payload.attempt + 1;
        let outcome = match result {
            Ok(s) => DeliveryOutcome::Delivered { status: s.status },
            Err(err) => match self.retry_delay(&err, attempts, first_at) {
                Some(delay) => {
                    self.after(&e, &DeliveryOutcome::Exhausted(err)).await;
                    payload.attempt = attempts;
                    payload.body = String::from_utf8_lossy(&body).into_owned();
                    let mut next = task.clone().with_delay(delay);
                    next.payload = payload.to_json();
                    return TaskOutcome::Retry(next);
                }
                None => self.give_up(err),
            },
        };
        let rec = Self::record(
            &e,
            &payload.event_id,
            &payload.event_type,
            &outcome,
            attempts,
            started.elapsed(),
            body,
        );
        self.after(&e, &outcome).await;
        self.inner.log.push(rec.clone());
        if rec.success {
            TaskOutcome::Done(rec)
        } else {
            TaskOutcome::Failed(rec)
        }
    }

    /// A task for a disabled subscription fails at once, without an attempt.
    fn refuse_disabled(&self, e: &Entry, p: &DeliverTask, body: Bytes) -> TaskOutcome {
        let err = HttpError::refused(&e.sub.url, "webhook", "subscription disabled");
        let rec = Self::record(
            e,
            &p.event_id,
            &p.event_type,
            &DeliveryOutcome::Blocked(err),
            0,
            Duration::ZERO,
            body,
        );
        self.inner.log.push(rec.clone());
        TaskOutcome::Failed(rec)
    }

    /// One attempt, in a `webhook.attempt` span that records the status.
    async fn attempt_task(
        &self,
        e: &Entry,
        p: &DeliverTask,
        body: Bytes,
    ) -> Result<Sent, HttpError> {
        let event =
            Event::new(p.event_type.as_str(), serde_json::Value::Null).with_id(p.event_id.as_str());
        let span = tracing::info_span!(
            "webhook.attempt",
            subscription = %p.subscription_id,
            event = %p.event_id,
            url = %e.sub.url,
            attempt = p.attempt + 1,
            status = tracing::field::Empty,
        );
        let r = match e.hook.prepare_with_body(&event, body) {
            Ok(prep) => e.hook.attempt(&prep).instrument(span.clone()).await,
            Err(err) => Err(err),
        };
        span.record(
            "status",
            r.as_ref().map_or_else(|e| e.status(), |s| s.status),
        );
        r
    }

    /// The delay before the next attempt when the policy allows one after `attempts` made since
    /// `first_at` (Unix ms).
    fn retry_delay(&self, err: &HttpError, attempts: u32, first_at: u64) -> Option<Duration> {
        let elapsed = Duration::from_millis(unix_ms().saturating_sub(first_at));
        let policy = &self.inner.policy;
        let delay = policy.delay_after(attempts - 1, err.retry_after());
        let retry = (err.is_retryable() || !policy.block_on_error)
            && policy.allows_attempt(attempts + 1, elapsed.saturating_add(delay));
        retry.then_some(delay)
    }

    /// The final outcome of a failed task that will not be retried.
    fn give_up(&self, err: HttpError) -> DeliveryOutcome {
        if err.is_retryable() || !self.inner.policy.block_on_error {
            DeliveryOutcome::Exhausted(err)
        } else {
            DeliveryOutcome::Blocked(err)
        }
    }

    /// A worker for [`MemoryTaskQueue`]: takes a concurrency permit, then a task, runs it and
    /// re-enqueues retries. Runs until the future is dropped.
    pub async fn work(&self, queue: Arc<MemoryTaskQueue>) {
        loop {
            let Ok(permit) = Arc::clone(&self.inner.sem).acquire_owned().await else {
                return;
            };
            let task = queue.next().await;
            let (me, q) = (self.clone(), Arc::clone(&queue));
            // Owned by the dispatcher: `shutdown` stops a task a dropped worker left running.
            self.inner.tasks.spawn(async move {
                let _permit = permit;
                if let TaskOutcome::Retry(t) = me.run_task(&task).await
                    && let Err(e) = q.enqueue(t).await
                {
                    tracing::error!(error = %e, task = %task.id, "could not re-enqueue a delivery");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{from_value, json};

    #[test]
    fn the_task_payload_keeps_its_json_shape() {
        let v = json!({
            "subscription_id": "s", "event_id": "e", "event_type": "t",
            "body": "{}", "attempt": 2, "first_at_ms": 5
        });
        let t: DeliverTask = from_value(v.clone()).unwrap();
        assert_eq!(t.to_json(), v);
        let old = json!({"subscription_id": "s", "event_id": "e", "event_type": "t", "body": ""});
        let t: DeliverTask = from_value(old).unwrap();
        assert_eq!((t.attempt, t.first_at_ms), (0, None));
        assert!(from_value::<DeliverTask>(json!({"event_id": "e"})).is_err());
    }
}
