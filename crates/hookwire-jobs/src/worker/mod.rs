//! One worker loop per job definition, in small steps: collect finished attempts, keep the
//! leases, exchange acknowledgements for new jobs in one backend call, then wait.

mod finish;
mod waker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::Backoff;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::backend::WorkerBackend;
use crate::def::{HandlerFailure, JobDef, JobMeta};
use crate::error::Error;
use crate::model::{Ack, ClaimRequest, JobOutcome, LeasedJob};
use crate::progress::Progress;
use crate::runtime::Inner;

use self::waker::{Waker, retry_delay};

/// One running job, until its ack is stored.
struct Running {
    abort: AbortHandle,
    job: LeasedJob,
    started: Instant,
}

type TaskOut = (String, std::result::Result<String, HandlerFailure>);

/// The worker of one job definition; its settings are resolved once from the definition and
/// the runtime defaults.
pub(crate) struct Worker {
    inner: Arc<Inner>,
    /// The worker's view of the store: only what a worker needs.
    backend: Arc<dyn WorkerBackend>,
    def: JobDef,
    token: String,
    retries: u32,
    backoff: Option<Backoff>,
    timeout: Option<Duration>,
    lease: Duration,
    max_stalled: u32,
}

/// Everything the loop owns between two steps.
struct State {
    set: JoinSet<TaskOut>,
    running: HashMap<String, Running>,
    task_ids: HashMap<tokio::task::Id, String>,
    /// Finished attempts whose outcome is not stored yet.
    acks: Vec<Ack>,
    /// The last claim filled its batch (or a wake-up came): claim again before waiting.
    want_more: bool,
    next_due: Option<Instant>,
    rate_until: Option<Instant>,
    next_stall: Instant,
    next_renew: Instant,
    grace_until: Option<Instant>,
    /// Consecutive failed backend exchanges (for the backoff).
    failures: u32,
}

/// What the loop does after one exchange with the backend.
enum Next {
    /// More can be done at once (a full batch came, or acks are left).
    Again,
    /// Nothing to do until a job finishes, a wake-up or a timer.
    Wait,
    /// The backend failed and is unreachable past the shutdown grace: stop.
    GiveUp,
}

impl Worker {
    pub(crate) fn new(inner: Arc<Inner>, def: JobDef) -> Self {
        let d = &inner.defaults;
        Self {
            token: hookwire_core::id::new_id("lease"),
            retries: def.retries.unwrap_or(d.retries),
            backoff: def.backoff.clone().or_else(|| d.backoff.clone()),
            timeout: def.timeout.or(d.timeout),
            lease: def.lease.unwrap_or(d.lease),
            max_stalled: def.max_stalled.unwrap_or(d.max_stalled),
            backend: inner.backend.clone(),
            inner,
            def,
        }
    }

    fn stall_every(&self) -> Duration {
        (self.lease / 2).max(Duration::from_millis(20))
    }

    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(10))
    }

    /// The loop: until shutdown has handed every job back and stored every ack.
    pub(crate) async fn run(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let now = Instant::now();
        let mut st = State {
            set: JoinSet::new(),
            running: HashMap::new(),
            task_ids: HashMap::new(),
            acks: Vec::new(),
            want_more: true,
            next_due: None,
            rate_until: None,
            next_stall: now,
            next_renew: now + self.renew_every(),
            grace_until: None,
            failures: 0,
        };
        // The waker blocks on the backend while the loop is idle, so an idle worker costs one
        // blocked connection, not a poll. Dropping it stops its task.
        let mut waker = Waker::spawn(self.backend.clone(), self.def.name.clone());
        loop {
            while let Some(r) = st.set.try_join_next_with_id() {
                self.collect(r, &mut st);
            }
            let stopping = *shutdown.borrow();
            let now = Instant::now();
            if stopping && self.wind_down(&mut st, now) {
                break;
            }
            self.keep_leases(&mut st, now, stopping).await;
            let want = self.wanted(&mut st, now, stopping);
            if !st.acks.is_empty() || want > 0 {
                match self.exchange(&mut st, want, stopping, &mut shutdown).await {
                    Next::Again => continue,
                    // During shutdown the acks just stored may have been the last thing the
                    // loop waited for: check again before sleeping (until the grace is over).
                    Next::Wait if stopping => continue,
                    Next::Wait => {}
                    Next::GiveUp => break,
                }
            }
            self.wait(&mut st, &mut waker, stopping, &mut shutdown)
                .await;
        }
        drop(waker);
        st.set.shutdown().await;
    }

    /// During shutdown: once the grace is over, stops the stragglers and queues their jobs'
    /// release. Returns whether the loop is done (nothing running, nothing to store).
    fn wind_down(&self, st: &mut State, now: Instant) -> bool {
        let until = *st
            .grace_until
            .get_or_insert(now + self.inner.defaults.shutdown_grace);
        if now >= until && !st.running.is_empty() {
            for (id, r) in st.running.drain() {
                r.abort.abort();
                st.acks.push(Ack::new(id, JobOutcome::Release));
            }
        }
        st.running.is_empty() && st.acks.is_empty()
    }

    /// The periodic lease work, inline (each is a single backend call): the stalled check and
    /// the renewal of this worker's leases.
    async fn keep_leases(&self, st: &mut State, now: Instant, stopping: bool) {
        if now >= st.next_stall && !stopping {
            st.next_stall = now + self.stall_every();
            // Finished jobs must be recorded before this worker looks for expired leases:
            // after an outage longer than the lease, its own finished jobs have expired
            // leases too, and recovering them would run them again (issue 14).
            if let Err(e) = self.flush_acks(st).await {
                tracing::warn!(queue = %self.def.name, error = %e, "ack flush failed; stalled check postponed");
            } else {
                self.check_stalled(&mut st.want_more).await;
            }
        }
        if now >= st.next_renew {
            st.next_renew = now + self.renew_every();
            self.renew(st).await;
        }
    }

    /// Renews the leases of the running jobs; stops the attempts whose lease was lost.
    async fn renew(&self, st: &mut State) {
        if st.running.is_empty() {
            return;
        }
        let queue = &self.def.name;
        let ids: Vec<String> = st.running.keys().cloned().collect();
        match self
            .backend
            .renew(queue, &self.token, ids, self.lease)
            .await
        {
            Ok(lost) => {
                for id in lost {
                    if let Some(r) = st.running.remove(&id) {
                        tracing::warn!(queue = %queue, job = %id, "lease lost; stopping the attempt");
                        r.abort.abort();
                    }
                }
            }
            Err(e) => tracing::warn!(queue = %queue, error = %e, "lease renewal failed"),
        }
    }

    /// How many jobs to claim now. The slots of jobs whose ack goes out in the same call count
    /// as free, so one call stores finished jobs and claims their successors (issue 19).
    fn wanted(&self, st: &mut State, now: Instant, stopping: bool) -> usize {
        if st.rate_until.is_some_and(|t| t <= now) {
            st.rate_until = None;
            st.want_more = true;
        }
        if st.next_due.is_some_and(|t| t <= now) {
            st.next_due = None;
            st.want_more = true;
        }
        if stopping || st.rate_until.is_some() || !st.want_more {
            return 0;
        }
        self.free_slots(st).min(self.def.batch)
    }

    /// Slots free once the acks of the next call are stored.
    fn free_slots(&self, st: &State) -> usize {
        let finishing = st.acks[..Self::ack_batch(st)]
            .iter()
            .filter(|a| st.running.contains_key(&a.id))
            .count();
        let busy = st.running.len().saturating_sub(finishing);
        self.def.concurrency.saturating_sub(busy)
    }

    /// Acks per call, bounded so a script never unpacks more than Lua's stack allows.
    fn ack_batch(st: &State) -> usize {
        st.acks.len().min(crate::MAX_CLAIM)
    }

    /// One backend call: stores the buffered acks and claims up to `want` jobs, then starts
    /// them.
    async fn exchange(
        &self,
        st: &mut State,
        want: usize,
        stopping: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Next {
        let n_sent = Self::ack_batch(st);
        let req = ClaimRequest::new(
            self.token.clone(),
            st.acks[..n_sent].to_vec(),
            want,
            self.lease,
        )
        .with_rate_limit(self.def.rate_limit);
        let c = match self.backend.claim(&self.def.name, req).await {
            Ok(c) => c,
            Err(e) => return self.backed_off(st, &e, stopping, shutdown).await,
        };
        st.failures = 0;
        let sent: Vec<Ack> = st.acks.drain(..n_sent).collect();
        self.after_claim(&c, sent, &mut st.running);
        let got = c.jobs.len();
        let now = Instant::now();
        st.rate_until = c.rate_limited_for.map(|d| now + d);
        st.next_due = c.next_delayed_in.map(|d| now + d);
        for job in c.jobs {
            self.start_job(st, job);
        }
        if want > 0 {
            st.want_more = got == want;
        }
        let more_work =
            st.want_more && st.rate_until.is_none() && st.running.len() < self.def.concurrency;
        if more_work || !st.acks.is_empty() {
            Next::Again
        } else {
            Next::Wait
        }
    }

    /// After a failed call: waits the backoff (or until shutdown); gives up only when the
    /// backend stays unreachable well past the shutdown grace (the leases then expire and a
    /// stalled check elsewhere recovers the jobs).
    async fn backed_off(
        &self,
        st: &mut State,
        e: &Error,
        stopping: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Next {
        tracing::warn!(queue = %self.def.name, error = %e, "claim failed; backing off");
        let delay = retry_delay(st.failures);
        st.failures = st.failures.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
        let past_grace = st
            .grace_until
            .is_some_and(|g| Instant::now() > g + Duration::from_secs(5));
        if stopping && past_grace {
            Next::GiveUp
        } else {
            Next::Again
        }
    }

    /// Starts one claimed job and tracks it.
    fn start_job(&self, st: &mut State, job: LeasedJob) {
        let abort = self.spawn_job(&mut st.set, &job);
        st.task_ids.insert(abort.id(), job.id.clone());
        let id = job.id.clone();
        let run = Running {
            abort,
            job,
            started: Instant::now(),
        };
        if let Some(old) = st.running.insert(id, run) {
            // This worker got the job back after losing its lease unnoticed: the old attempt
            // is superseded and must not ack the new lease.
            old.abort.abort();
        }
    }

    /// Sleeps until a job finishes, a wake-up arrives, a timer is due or shutdown starts.
    async fn wait(
        &self,
        st: &mut State,
        waker: &mut Waker,
        stopping: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let free = self.def.concurrency.saturating_sub(st.running.len());
        if !stopping && !st.want_more && st.rate_until.is_none() && free > 0 {
            waker.arm();
        }
        let mut wake_at = st.next_stall.min(st.next_renew);
        for t in [st.next_due, st.rate_until, st.grace_until]
            .into_iter()
            .flatten()
        {
            wake_at = wake_at.min(t);
        }
        tokio::select! {
            r = st.set.join_next_with_id(), if !st.set.is_empty() => {
                if let Some(r) = r {
                    self.collect(r, st);
                }
            }
            () = waker.woken() => st.want_more = true,
            () = tokio::time::sleep_until(wake_at) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Records every buffered ack (in chunks of [`crate::MAX_CLAIM`], claiming nothing). On
    /// error the unsent acks stay buffered for the next round.
    async fn flush_acks(&self, st: &mut State) -> Result<(), Error> {
        while !st.acks.is_empty() {
            let n = Self::ack_batch(st);
            let req = ClaimRequest::new(self.token.clone(), st.acks[..n].to_vec(), 0, self.lease);
            let c = self.backend.claim(&self.def.name, req).await?;
            let sent: Vec<Ack> = st.acks.drain(..n).collect();
            self.after_claim(&c, sent, &mut st.running);
        }
        Ok(())
    }

    /// One stalled-job check; sets `want_more` so the loop claims at least once per check even
    /// when no wake-up came (a cheap safety net).
    async fn check_stalled(&self, want_more: &mut bool) {
        let queue = &self.def.name;
        match self
            .backend
            .recover_stalled(queue, self.max_stalled, self.def.dead_letter)
            .await
        {
            Ok(r) => {
                if !r.requeued.is_empty() || !r.failed.is_empty() {
                    tracing::info!(queue = %queue, requeued = r.requeued.len(), failed = r.failed.len(), "recovered stalled jobs");
                }
                *want_more = true;
                if self.inner.events_wanted() {
                    self.emit_recovered(&r);
                }
            }
            Err(e) => tracing::warn!(queue = %queue, error = %e, "stalled check failed"),
        }
    }

    fn spawn_job(&self, set: &mut JoinSet<TaskOut>, job: &LeasedJob) -> AbortHandle {
        let meta = JobMeta {
            id: job.id.clone(),
            name: self.def.name.clone(),
            attempt: job.attempts_made.saturating_add(1),
            stalled: job.stalled,
            created_at_ms: job.created_at_ms,
            progress: Progress::new(
                self.inner.clone(),
                self.def.name.clone(),
                self.token.clone(),
                Arc::new(job.clone()),
            ),
        };
        let fut = (self.def.handler)(job.data.clone(), meta);
        let id = job.id.clone();
        let timeout = self.timeout;
        set.spawn(async move {
            let res = match timeout {
                // Dropping the future on timeout is the cancellation: the handler stops at
                // its next await point.
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(HandlerFailure {
                        message: format!("timed out after {} ms", t.as_millis()),
                        retryable: true,
                    }),
                },
                None => fut.await,
            };
            (id, res)
        })
    }
}
