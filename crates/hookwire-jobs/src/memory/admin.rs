//! [`JobAdmin`] for [`MemoryBackend`]: counts, records, dead letters, pause, drain, clean and
//! schedules.

use std::time::Duration;

use hookwire_core::BoxFuture;

use super::*;
use crate::backend::JobAdmin;

impl JobAdmin for MemoryBackend {
    fn counts<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Counts, Error>> {
        let c = self.with_queue(queue, |q| {
            let n = |x: usize| x as u64;
            Counts::new(
                n(q.wait.len()),
                n(q.active.len()),
                n(q.completed.len()),
                n(q.failed.len()),
                n(q.delayed.len()),
                n(q.dead.len()),
            )
        });
        Box::pin(async move { Ok(c) })
    }

    fn get<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, Error>> {
        let r = self.with_queue(queue, |q| q.record(id));
        Box::pin(async move { Ok(r) })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, Error>> {
        let r = self.with_queue(queue, |q| {
            q.dead
                .iter()
                .skip(offset)
                .take(limit)
                .filter_map(|(_, _, id)| q.record(id))
                .collect()
        });
        Box::pin(async move { Ok(r) })
    }

    fn redrive<'a>(
        &'a self,
        queue: &'a str,
        ids: Option<Vec<String>>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        let n = self.with_queue(queue, |q| {
            let ids: Vec<String> = ids.unwrap_or_else(|| {
                q.dead
                    .iter()
                    .take(1000)
                    .map(|(_, _, id)| id.clone())
                    .collect()
            });
            let mut n = 0;
            for id in ids {
                if q.jobs.get(&id).is_some_and(|j| j.state == JobState::Dead) {
                    q.remove_from_state_set(&id);
                    if let Some(j) = q.jobs.get_mut(&id) {
                        j.attempts = 0;
                        j.stalled = 0;
                        j.finished = None;
                        j.fin_key = None;
                    }
                    q.enqueue_wait(&id);
                    n += 1;
                }
            }
            n
        });
        Box::pin(async move { Ok(n) })
    }

    fn set_paused<'a>(&'a self, queue: &'a str, paused: bool) -> BoxFuture<'a, Result<(), Error>> {
        let r = crate::validate_queue_name(queue).map(|()| {
            self.with_queue(queue, |q| {
                q.paused = paused;
                let work = !q.wait.is_empty() || !q.delayed.is_empty();
                if !paused && work {
                    q.wake();
                }
            });
        });
        Box::pin(async move { r })
    }

    fn is_paused<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let r = self.with_queue(queue, |q| q.paused);
        Box::pin(async move { Ok(r) })
    }

    fn drain<'a>(&'a self, queue: &'a str, delayed: bool) -> BoxFuture<'a, Result<u64, Error>> {
        let n = self.with_queue(queue, |q| {
            let mut ids: Vec<String> = std::mem::take(&mut q.wait)
                .into_iter()
                .map(|(_, _, id)| id)
                .collect();
            if delayed {
                ids.extend(
                    std::mem::take(&mut q.delayed)
                        .into_iter()
                        .map(|(_, _, id)| id),
                );
            }
            for id in &ids {
                q.jobs.remove(id);
            }
            ids.len() as u64
        });
        Box::pin(async move { Ok(n) })
    }

    fn clean<'a>(
        &'a self,
        queue: &'a str,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let r = crate::validate_clean_state(state).map(|()| {
            let cutoff = now_ms().saturating_sub(ms(older_than));
            self.with_queue(queue, |q| {
                let set = match state {
                    JobState::Completed => &mut q.completed,
                    JobState::Failed => &mut q.failed,
                    _ => &mut q.dead,
                };
                let mut out = Vec::new();
                while out.len() < limit.min(MAX_CLEAN) {
                    match set.first() {
                        Some((finished, ..)) if *finished <= cutoff => {}
                        _ => break,
                    }
                    if let Some((_, _, id)) = set.pop_first() {
                        out.push(id);
                    }
                }
                for id in &out {
                    q.jobs.remove(id);
                }
                out
            })
        });
        Box::pin(async move { r })
    }

    fn save_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        spec: String,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.with_queue(queue, |q| {
            q.schedules.entry(id.to_owned()).or_default().0 = spec;
        });
        Box::pin(async move { Ok(()) })
    }

    fn schedules<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredSchedule>, Error>> {
        let out = self.with_queue(queue, |q| {
            q.schedules
                .iter()
                .map(|(id, (spec, runs, last))| StoredSchedule::new(id, spec, *runs, *last))
                .collect()
        });
        Box::pin(async move { Ok(out) })
    }

    fn remove_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let existed = self.with_queue(queue, |q| q.schedules.remove(id).is_some());
        Box::pin(async move { Ok(existed) })
    }

    fn enqueue_tick<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        tick_ms: u64,
        limit: Option<u32>,
        job: NewJob,
    ) -> BoxFuture<'a, Result<TickOutcome, Error>> {
        let r = job.validate().map(|()| {
            let now = now_ms();
            self.with_queue(queue, |q| {
                let Some((_, runs, last)) = q.schedules.get_mut(id) else {
                    return TickOutcome::Removed;
                };
                if last.is_some_and(|l| tick_ms <= l) {
                    return TickOutcome::AlreadyEnqueued;
                }
                if limit.is_some_and(|l| *runs >= l) {
                    return TickOutcome::LimitReached;
                }
                *runs += 1;
                *last = Some(tick_ms);
                q.insert(job, now);
                TickOutcome::Enqueued
            })
        });
        Box::pin(async move { r })
    }
}
