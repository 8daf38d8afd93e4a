//! The end of an attempt: its outcome, its acknowledgement and its events.

use std::collections::HashMap;
use std::time::Duration;

use crate::def::HandlerFailure;
use crate::events::{EventKind, JobEvent};
use crate::model::{Ack, Claimed, JobOutcome, LeasedJob, Recovered};

use super::{Running, State, TaskOut, Worker};

impl Worker {
    /// The outcome of one attempt: completed, retry after the backoff, or failed for good.
    pub(super) fn outcome(
        &self,
        job: &LeasedJob,
        res: std::result::Result<String, HandlerFailure>,
    ) -> JobOutcome {
        match res {
            Ok(result) => JobOutcome::Completed { result },
            Err(f) => {
                let attempt = job.attempts_made.saturating_add(1);
                if f.retryable && attempt <= self.retries {
                    let delay = self
                        .backoff
                        .as_ref()
                        .map_or(Duration::ZERO, |b| b.delay(attempt - 1));
                    JobOutcome::Retry {
                        delay,
                        error: f.message,
                    }
                } else {
                    JobOutcome::Failed {
                        error: f.message,
                        dead_letter: self.def.dead_letter,
                    }
                }
            }
        }
    }

    /// Turns a finished task into a buffered ack (a panic is a retryable failure; an aborted
    /// or superseded attempt reports nothing).
    pub(super) fn collect(
        &self,
        r: std::result::Result<(tokio::task::Id, TaskOut), tokio::task::JoinError>,
        st: &mut State,
    ) {
        let (tid, id, res) = match r {
            Ok((tid, (id, res))) => {
                st.task_ids.remove(&tid);
                (tid, id, res)
            }
            Err(e) => {
                let Some(id) = st.task_ids.remove(&e.id()) else {
                    return;
                };
                if e.is_cancelled() {
                    // Aborted by us (lease lost or shutdown): the ack, if any, is already queued.
                    return;
                }
                let failure = HandlerFailure {
                    message: "handler panicked".to_owned(),
                    retryable: true,
                };
                (e.id(), id, Err(failure))
            }
        };
        // Only the current attempt of a job may report: a superseded one (same id, older task)
        // finishing late is ignored.
        let Some(run) = st.running.get(&id).filter(|r| r.abort.id() == tid) else {
            return;
        };
        let outcome = self.outcome(&run.job, res);
        // The per-attempt metric: subscribers turn these into counters and latency histograms.
        tracing::debug!(
            queue = %self.def.name,
            job = %id,
            attempt = run.job.attempts_made.saturating_add(1),
            elapsed_us = u64::try_from(run.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            outcome = match &outcome {
                JobOutcome::Completed { .. } => "completed",
                JobOutcome::Retry { .. } => "retry",
                JobOutcome::Failed { .. } => "failed",
                _ => "released",
            },
            "job attempt finished"
        );
        st.acks.push(Ack::new(id, outcome));
    }

    /// Drops acknowledged jobs from `running` and emits their events.
    pub(super) fn after_claim(
        &self,
        c: &Claimed,
        sent: Vec<Ack>,
        running: &mut HashMap<String, Running>,
    ) {
        let events = self.inner.events_wanted();
        for ack in sent {
            let Some(run) = running.remove(&ack.id) else {
                continue;
            };
            if c.stale_acks.contains(&ack.id) {
                tracing::warn!(queue = %self.def.name, job = %ack.id, "ack refused: lease was lost");
                continue;
            }
            if !events {
                continue;
            }
            let attempts_made = run.job.attempts_made.saturating_add(1);
            let kind = match ack.outcome {
                JobOutcome::Completed { result } => EventKind::Completed { result },
                JobOutcome::Failed { error, dead_letter } => EventKind::Failed {
                    error,
                    dead_lettered: dead_letter,
                },
                JobOutcome::Retry { .. } | JobOutcome::Release => continue,
            };
            self.inner.emit(JobEvent {
                name: self.def.name.clone(),
                id: ack.id,
                data: run.job.data,
                attempts_made,
                kind,
            });
        }
    }

    /// Events of a stalled check, emitted by the one worker whose check recovered the jobs:
    /// `stalled` for a job put back to waiting; `failed` for one failed by the stall limit,
    /// like any other failure (issue 14).
    pub(super) fn emit_recovered(&self, r: &Recovered) {
        for job in &r.jobs {
            let kind = if r.failed.contains(&job.id) {
                EventKind::Failed {
                    error: format!("job stalled more than {} times", self.max_stalled),
                    dead_lettered: self.def.dead_letter,
                }
            } else {
                EventKind::Stalled {
                    stalled: job.stalled,
                }
            };
            self.inner.emit(JobEvent {
                name: self.def.name.clone(),
                id: job.id.clone(),
                data: job.data.clone(),
                attempts_made: job.attempts_made,
                kind,
            });
        }
    }
}
