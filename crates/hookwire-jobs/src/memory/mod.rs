//! The embedded backend: every semantic of the Redis backend except durability across restarts.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hookwire_core::BoxFuture;
use tokio::sync::Notify;

use crate::backend::WorkerBackend;
use crate::error::Error;
use crate::model::{
    Ack, Added, ClaimRequest, Claimed, Counts, JobOutcome, JobRecord, JobState, LeasedJob,
    MAX_BULK, MAX_CLAIM, MAX_CLEAN, NewJob, Recovered, Retention, StoredSchedule, TickOutcome,
    clip_error, ms,
};

mod admin;

/// In-process job storage with leases, delays, priorities, a rate limit, retention and a DLQ.
///
/// Jobs live as long as the value (clones share it). Use it for tests, demos and single-process
/// apps that can lose queued work on restart; use `hookwire-jobs-redis` otherwise.
///
/// ```
/// # hookwire_core::idempotency::block_on(async {
/// use hookwire_jobs::{JobAdmin, MemoryBackend, NewJob, WorkerBackend};
/// let b = MemoryBackend::new();
/// let added = b.add("q", vec![NewJob::new("1")]).await.unwrap();
/// assert!(added[0].created);
/// assert_eq!(b.counts("q").await.unwrap().waiting, 1);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<HashMap<String, Queue>>>,
}

#[derive(Debug)]
struct Stored {
    data: String,
    priority: u32,
    seq: u64,
    created: u64,
    attempts: u32,
    stalled: u32,
    remove_on_complete: Retention,
    remove_on_fail: Retention,
    state: JobState,
    finished: Option<u64>,
    result: Option<String>,
    error: Option<String>,
    progress: Option<String>,
    /// (token, deadline ms) while active; also the key into `active`.
    lease: Option<(String, u64)>,
    /// Key into the finished set (`completed`, `failed` or `dead`).
    fin_key: Option<(u64, u64)>,
    /// Due time while delayed.
    due: Option<u64>,
}

#[derive(Debug, Default)]
struct Queue {
    seq: u64,
    fin_seq: u64,
    jobs: HashMap<String, Stored>,
    wait: BTreeSet<(u32, u64, String)>,
    delayed: BTreeSet<(u64, u64, String)>,
    active: BTreeSet<(u64, String)>,
    completed: BTreeSet<(u64, u64, String)>,
    failed: BTreeSet<(u64, u64, String)>,
    dead: BTreeSet<(u64, u64, String)>,
    /// Fixed-window limiter: (window start ms, jobs started in it).
    limiter: (u64, u32),
    /// Paused: claims lease nothing and send no wake-up.
    paused: bool,
    /// Schedules: id → (spec, runs, last tick).
    schedules: HashMap<String, (String, u32, Option<u64>)>,
    notify: Arc<Notify>,
}

fn now_ms() -> u64 {
    hookwire_core::time::unix_millis()
}

impl Queue {
    fn enqueue_wait(&mut self, id: &str) {
        if let Some(j) = self.jobs.get_mut(id) {
            j.state = JobState::Waiting;
            j.due = None;
            self.wait.insert((j.priority, j.seq, id.to_owned()));
            self.wake();
        }
    }

    /// Wakes one waiting worker, unless the queue is paused (a woken worker would claim
    /// nothing and pass the wake-up on, forever).
    fn wake(&self) {
        if !self.paused {
            self.notify.notify_one();
        }
    }

    fn enqueue_delayed(&mut self, id: &str, due: u64) {
        let earliest = self.delayed.first().map(|(d, ..)| *d);
        if let Some(j) = self.jobs.get_mut(id) {
            j.state = JobState::Delayed;
            j.due = Some(due);
            self.delayed.insert((due, j.seq, id.to_owned()));
            // A new earliest due time: wake a waiter so it recomputes its sleep.
            if earliest.is_none_or(|e| due < e) {
                self.wake();
            }
        }
    }

    /// Takes the job off the active set if `token` holds its lease.
    fn take_lease(&mut self, id: &str, token: &str) -> bool {
        let Some(j) = self.jobs.get_mut(id) else {
            return false;
        };
        match &j.lease {
            Some((t, deadline)) if t == token && j.state == JobState::Active => {
                self.active.remove(&(*deadline, id.to_owned()));
                j.lease = None;
                true
            }
            _ => false,
        }
    }

    fn finish(&mut self, id: &str, state: JobState, now: u64) {
        self.fin_seq += 1;
        let key = (now, self.fin_seq);
        let Some(j) = self.jobs.get_mut(id) else {
            return;
        };
        j.state = state;
        j.finished = Some(now);
        j.fin_key = Some(key);
        let retention = match state {
            JobState::Completed => j.remove_on_complete,
            JobState::Failed => j.remove_on_fail,
            _ => Retention::Keep,
        };
        let set = match state {
            JobState::Completed => &mut self.completed,
            JobState::Failed => &mut self.failed,
            _ => &mut self.dead,
        };
        match retention {
            Retention::Remove | Retention::KeepLast(0) => {
                self.jobs.remove(id);
            }
            Retention::Keep => {
                set.insert((key.0, key.1, id.to_owned()));
            }
            Retention::KeepLast(n) => {
                set.insert((key.0, key.1, id.to_owned()));
                while set.len() > n as usize {
                    if let Some((_, _, old)) = set.pop_first() {
                        self.jobs.remove(&old);
                    }
                }
            }
        }
    }

    fn apply_ack(&mut self, ack: Ack, token: &str, now: u64) -> bool {
        if !self.take_lease(&ack.id, token) {
            return false;
        }
        let id = ack.id;
        match ack.outcome {
            JobOutcome::Completed { result } => {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.attempts += 1;
                    j.result = Some(result);
                }
                self.finish(&id, JobState::Completed, now);
            }
            JobOutcome::Retry { delay, error } => {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.attempts += 1;
                    j.error = Some(clip_error(error));
                }
                if delay.is_zero() {
                    self.enqueue_wait(&id);
                } else {
                    self.enqueue_delayed(&id, now.saturating_add(ms(delay)));
                }
            }
            JobOutcome::Failed { error, dead_letter } => {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.attempts += 1;
                    j.error = Some(clip_error(error));
                }
                let state = if dead_letter {
                    JobState::Dead
                } else {
                    JobState::Failed
                };
                self.finish(&id, state, now);
            }
            JobOutcome::Release => self.enqueue_wait(&id),
        }
        true
    }

    fn promote(&mut self, now: u64) {
        while let Some((due, _, _)) = self.delayed.first() {
            if *due > now {
                break;
            }
            if let Some((_, _, id)) = self.delayed.pop_first() {
                // A job that comes due joins the back of its priority, as a new arrival.
                self.seq += 1;
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.seq = self.seq;
                }
                self.enqueue_wait(&id);
            }
        }
    }

    /// Stores one validated job (not again when its id exists).
    fn insert(&mut self, j: NewJob, now: u64) -> Added {
        self.seq += 1;
        let id = j.id.clone().unwrap_or_else(|| self.seq.to_string());
        if self.jobs.contains_key(&id) {
            return Added::new(id, false);
        }
        self.jobs.insert(
            id.clone(),
            Stored {
                data: j.data,
                priority: j.priority,
                seq: self.seq,
                created: now,
                attempts: 0,
                stalled: 0,
                remove_on_complete: j.remove_on_complete,
                remove_on_fail: j.remove_on_fail,
                state: JobState::Waiting,
                finished: None,
                result: None,
                error: None,
                progress: None,
                lease: None,
                fin_key: None,
                due: None,
            },
        );
        if j.delay.is_zero() {
            self.enqueue_wait(&id);
        } else {
            self.enqueue_delayed(&id, now.saturating_add(ms(j.delay)));
        }
        Added::new(id, true)
    }

    fn record(&self, id: &str) -> Option<JobRecord> {
        let j = self.jobs.get(id)?;
        let mut r = JobRecord::new(id, j.state, j.data.clone());
        r.attempts_made = j.attempts;
        r.stalled = j.stalled;
        r.priority = j.priority;
        r.created_at_ms = j.created;
        r.finished_at_ms = j.finished;
        r.result.clone_from(&j.result);
        r.error.clone_from(&j.error);
        r.progress.clone_from(&j.progress);
        Some(r)
    }

    fn remove_from_state_set(&mut self, id: &str) {
        let Some(j) = self.jobs.get(id) else { return };
        let id = id.to_owned();
        match j.state {
            JobState::Waiting => {
                self.wait.remove(&(j.priority, j.seq, id));
            }
            JobState::Delayed => {
                if let Some(d) = j.due {
                    self.delayed.remove(&(d, j.seq, id));
                }
            }
            JobState::Active => {
                if let Some((_, d)) = &j.lease {
                    self.active.remove(&(*d, id));
                }
            }
            JobState::Completed | JobState::Failed | JobState::Dead => {
                if let Some((a, b)) = j.fin_key {
                    let key = (a, b, id);
                    self.completed.remove(&key);
                    self.failed.remove(&key);
                    self.dead.remove(&key);
                }
            }
        }
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        // A panic while holding the lock cannot leave a half-applied transition visible in a
        // way that loses jobs (each transition mutates before it can panic only on OOM), so the
        // poisoned state is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_queue<R>(&self, queue: &str, f: impl FnOnce(&mut Queue) -> R) -> R {
        let mut g = self.lock();
        let q = g.entry(queue.to_owned()).or_default();
        f(q)
    }

    fn add_sync(&self, queue: &str, jobs: Vec<NewJob>) -> Result<Vec<Added>, Error> {
        crate::validate_queue_name(queue)?;
        if jobs.len() > MAX_BULK {
            return Err(Error::invalid(format!(
                "at most {MAX_BULK} jobs per add call"
            )));
        }
        for j in &jobs {
            j.validate()?;
        }
        let now = now_ms();
        Ok(self.with_queue(queue, |q| {
            jobs.into_iter().map(|j| q.insert(j, now)).collect()
        }))
    }

    fn claim_sync(&self, queue: &str, req: ClaimRequest) -> Claimed {
        let now = now_ms();
        self.with_queue(queue, |q| {
            let mut out = Claimed::default();
            for ack in req.acks {
                let id = ack.id.clone();
                if !q.apply_ack(ack, &req.token, now) {
                    out.stale_acks.push(id);
                }
            }
            q.promote(now);
            let mut n = if q.paused { 0 } else { req.max.min(MAX_CLAIM) };
            if let Some(rl) = req.rate_limit {
                // A window opens with its first start (as the Redis key is created by the first
                // INCRBY), so an idle period never shortens the next window.
                let per = ms(rl.per).max(1);
                if now >= q.limiter.0.saturating_add(per) {
                    q.limiter = (now, 0);
                }
                let allowed = rl.max.saturating_sub(q.limiter.1) as usize;
                if allowed < n.min(q.wait.len()) {
                    out.rate_limited_for = Some(Duration::from_millis(
                        q.limiter.0.saturating_add(per).saturating_sub(now).max(1),
                    ));
                }
                n = n.min(allowed);
            }
            let deadline = now.saturating_add(ms(req.lease));
            while out.jobs.len() < n {
                let Some((_, _, id)) = q.wait.pop_first() else {
                    break;
                };
                let Some(j) = q.jobs.get_mut(&id) else {
                    continue;
                };
                j.state = JobState::Active;
                j.lease = Some((req.token.clone(), deadline));
                q.active.insert((deadline, id.clone()));
                out.jobs.push(LeasedJob::new(
                    id,
                    j.data.clone(),
                    j.attempts,
                    j.stalled,
                    j.created,
                ));
            }
            if req.rate_limit.is_some() && q.limiter.1 == 0 && out.jobs.is_empty() {
                // Nothing started: do not open a window yet.
                q.limiter.0 = 0;
            } else if req.rate_limit.is_some() {
                q.limiter.1 = q
                    .limiter
                    .1
                    .saturating_add(u32::try_from(out.jobs.len()).unwrap_or(u32::MAX));
            }
            // Work is left: wake another waiter (the chain that lets N workers share a burst).
            if !q.wait.is_empty() {
                q.wake();
            }
            out.next_delayed_in = q
                .delayed
                .first()
                .map(|(due, ..)| Duration::from_millis(due.saturating_sub(now)));
            out
        })
    }
}

impl WorkerBackend for MemoryBackend {
    fn add<'a>(
        &'a self,
        queue: &'a str,
        jobs: Vec<NewJob>,
    ) -> BoxFuture<'a, Result<Vec<Added>, Error>> {
        Box::pin(async move { self.add_sync(queue, jobs) })
    }

    fn claim<'a>(
        &'a self,
        queue: &'a str,
        req: ClaimRequest,
    ) -> BoxFuture<'a, Result<Claimed, Error>> {
        Box::pin(async move { Ok(self.claim_sync(queue, req)) })
    }

    fn wait_for_work<'a>(
        &'a self,
        queue: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let notify = self.with_queue(queue, |q| q.notify.clone());
        Box::pin(async move {
            Ok(tokio::time::timeout(timeout, notify.notified())
                .await
                .is_ok())
        })
    }

    fn renew<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let now = now_ms();
        let lost = self.with_queue(queue, |q| {
            let deadline = now.saturating_add(ms(lease));
            let mut lost = Vec::new();
            for id in ids {
                if q.take_lease(&id, token) {
                    if let Some(j) = q.jobs.get_mut(&id) {
                        j.lease = Some((token.to_owned(), deadline));
                    }
                    q.active.insert((deadline, id));
                } else {
                    lost.push(id);
                }
            }
            lost
        });
        Box::pin(async move { Ok(lost) })
    }

    fn progress<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        id: &'a str,
        progress: String,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let held = self.with_queue(queue, |q| match q.jobs.get_mut(id) {
            Some(j)
                if j.state == JobState::Active
                    && j.lease.as_ref().is_some_and(|(t, _)| t == token) =>
            {
                j.progress = Some(progress);
                true
            }
            _ => false,
        });
        Box::pin(async move { Ok(held) })
    }

    fn recover_stalled<'a>(
        &'a self,
        queue: &'a str,
        max_stalled: u32,
        dead_letter: bool,
    ) -> BoxFuture<'a, Result<Recovered, Error>> {
        let now = now_ms();
        let out = self.with_queue(queue, |q| {
            let mut out = Recovered::default();
            while let Some((deadline, _)) = q.active.first() {
                if *deadline > now {
                    break;
                }
                let Some((_, id)) = q.active.pop_first() else {
                    break;
                };
                let Some(j) = q.jobs.get_mut(&id) else {
                    continue;
                };
                j.lease = None;
                j.stalled += 1;
                out.jobs.push(LeasedJob::new(
                    id.clone(),
                    j.data.clone(),
                    j.attempts,
                    j.stalled,
                    j.created,
                ));
                if j.stalled > max_stalled {
                    j.error = Some(format!("job stalled more than {max_stalled} times"));
                    let state = if dead_letter {
                        JobState::Dead
                    } else {
                        JobState::Failed
                    };
                    q.finish(&id, state, now);
                    out.failed.push(id);
                } else {
                    q.enqueue_wait(&id);
                    out.requeued.push(id);
                }
            }
            out
        });
        Box::pin(async move { Ok(out) })
    }
}
