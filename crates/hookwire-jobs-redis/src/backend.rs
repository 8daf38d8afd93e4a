//! [`RedisBackend`]: the [`JobBackend`] on Redis.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::BoxFuture;
use hookwire_jobs::{
    Added, ClaimRequest, Claimed, Counts, JobBackend, JobRecord, JobState, JobsError, LeasedJob,
    MAX_BULK, MAX_CLAIM, MAX_CLEAN, NewJob, Outcome, Recovered, StoredSchedule, TickOutcome,
    validate_clean_state, validate_queue_name,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value};

use crate::keys::{MARK, PAUSED, keys};
use crate::scripts;
use crate::value::{array, bad, int, opt_string, string, strings, u32_of, u64_of};

type Factory<C> = Arc<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;

/// The Redis job backend. Cheap to clone (clones share connections).
///
/// `C` is the command connection: [`ConnectionManager`] (reconnects by itself) for one server,
/// or a cluster connection (feature `cluster`). Blocking waits (`BLPOP` on the queue's wake-up
/// marker) use separate pooled connections so they never hold up commands.
///
/// ```no_run
/// # async fn demo() -> Result<(), hookwire_jobs::JobsError> {
/// use hookwire_jobs::{Jobs, JobDef};
/// let backend = hookwire_jobs_redis::RedisBackend::connect("redis://127.0.0.1:6379/").await?;
/// let jobs = Jobs::builder(backend)
///     .job(JobDef::new("ping", |_: u8, _| async { Ok::<_, std::io::Error>(()) }))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
pub struct RedisBackend<C = ConnectionManager> {
    conn: C,
    prefix: String,
    blocking: Factory<C>,
    idle: Arc<Mutex<Vec<C>>>,
}

impl<C: Clone> Clone for RedisBackend<C> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            blocking: self.blocking.clone(),
            idle: self.idle.clone(),
        }
    }
}

impl<C> fmt::Debug for RedisBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend_err(e: redis::RedisError) -> JobsError {
    JobsError::backend(e)
}

/// Timeouts for command connections: long enough for a 1000-job script on a busy server.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Jobs one drain script call deletes; a drain repeats calls until a short batch.
const DRAIN_BATCH: u64 = 1000;
/// The longest blocking wait; the response timeout of blocking connections is above it.
pub(crate) const BLOCK_MAX: Duration = Duration::from_secs(5);

fn manager_config(response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl RedisBackend<ConnectionManager> {
    /// Connects to one Redis server (`redis://[:password@]host:port/[db]`, or `rediss://` when
    /// the redis crate is built with TLS). Connections reconnect by themselves after a failure.
    pub async fn connect(url: &str) -> Result<Self, JobsError> {
        let client = redis::Client::open(url).map_err(backend_err)?;
        let conn = client
            .get_connection_manager_with_config(manager_config(RESPONSE_TIMEOUT))
            .await
            .map_err(backend_err)?;
        let factory: Factory<ConnectionManager> = Arc::new(move || {
            let client = client.clone();
            Box::pin(async move {
                client
                    .get_connection_manager_with_config(manager_config(
                        BLOCK_MAX + Duration::from_secs(5),
                    ))
                    .await
            })
        });
        Ok(Self::from_parts(conn, factory))
    }
}

impl<C> RedisBackend<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A backend over an existing command connection and a factory for blocking connections
    /// (each must be a separate connection whose response timeout exceeds 5 s).
    pub fn from_parts(
        conn: C,
        blocking: Arc<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>,
    ) -> Self {
        Self {
            conn,
            prefix: "hw:".to_owned(),
            blocking,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Sets the key prefix (default `hw:`), e.g. to share one Redis between environments.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn keys(&self, queue: &str) -> Result<Vec<String>, JobsError> {
        validate_queue_name(queue)?;
        Ok(keys(&self.prefix, queue))
    }

    async fn run(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: Vec<Vec<u8>>,
    ) -> Result<Value, JobsError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(backend_err)
    }

    fn take_blocking(&self) -> Option<C> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn put_blocking(&self, c: C) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < 64 {
            idle.push(c);
        }
    }
}

fn arg(s: impl ToString) -> Vec<u8> {
    s.to_string().into_bytes()
}

fn ms(d: Duration) -> u64 {
    let m = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if m == 0 && !d.is_zero() { 1 } else { m }
}

fn duration_of(v: &Value) -> Result<Option<Duration>, JobsError> {
    let n = int(v)?;
    Ok(u64::try_from(n).ok().map(Duration::from_millis))
}

/// Jobs sent by a script as a flat array: id, data, attempts, stalled, created per job.
fn leased_jobs(v: Value) -> Result<Vec<LeasedJob>, JobsError> {
    array(v)?
        .chunks(5)
        .map(|j| {
            let [id, data, att, stall, created] = j else {
                return Err(bad("job fields"));
            };
            Ok(LeasedJob::new(
                string(id)?,
                string(data)?,
                u32_of(att)?,
                u32_of(stall)?,
                u64_of(created)?,
            ))
        })
        .collect()
}

fn record(id: &str, v: Value) -> Result<Option<JobRecord>, JobsError> {
    let f = array(v)?;
    let state = match f.first().map(string).transpose()?.as_deref() {
        None | Some("") => return Ok(None),
        Some("waiting") => JobState::Waiting,
        Some("active") => JobState::Active,
        Some("delayed") => JobState::Delayed,
        Some("completed") => JobState::Completed,
        Some("failed") => JobState::Failed,
        Some("dead") => JobState::Dead,
        Some(_) => return Err(bad("unknown job state")),
    };
    if f.len() < 9 {
        return Err(bad("short job record"));
    }
    let mut r = JobRecord::new(id, state, string(&f[1])?);
    let meta = string(&f[2])?;
    let mut parts = meta.split('|');
    r.priority = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("meta"))?;
    r.created_at_ms = parts
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("meta"))?;
    r.attempts_made = u32_of(&f[3])?;
    r.stalled = u32_of(&f[4])?;
    r.error = opt_string(&f[5])?;
    r.result = opt_string(&f[6])?;
    r.finished_at_ms = opt_string(&f[7])?.and_then(|s| s.parse().ok());
    r.progress = opt_string(&f[8])?;
    Ok(Some(r))
}

impl<C> RedisBackend<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn records(
        &self,
        keys: &[String],
        ids: Vec<String>,
    ) -> Result<Vec<JobRecord>, JobsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let args = ids.iter().map(arg).collect();
        let out = array(self.run(&scripts::GET, keys, args).await?)?;
        let mut recs = Vec::with_capacity(ids.len());
        for (id, v) in ids.iter().zip(out) {
            if let Some(r) = record(id, v)? {
                recs.push(r);
            }
        }
        Ok(recs)
    }
}

impl<C> JobBackend for RedisBackend<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn add<'a>(
        &'a self,
        queue: &'a str,
        jobs: Vec<NewJob>,
    ) -> BoxFuture<'a, Result<Vec<Added>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            if jobs.len() > MAX_BULK {
                return Err(JobsError::invalid(format!(
                    "at most {MAX_BULK} jobs per add call"
                )));
            }
            if jobs.is_empty() {
                return Ok(Vec::new());
            }
            let mut args = Vec::with_capacity(1 + jobs.len() * 6);
            args.push(arg(jobs.len()));
            for j in jobs {
                j.validate()?;
                args.push(j.id.unwrap_or_default().into_bytes());
                args.push(j.data.into_bytes());
                args.push(arg(j.priority));
                args.push(arg(ms(j.delay)));
                args.push(arg(j.remove_on_complete.encode()));
                args.push(arg(j.remove_on_fail.encode()));
            }
            let out = array(self.run(&scripts::ADD, &keys, args).await?)?;
            out.chunks(2)
                .map(|c| match c {
                    [id, created] => Ok(Added::new(string(id)?, int(created)? == 1)),
                    _ => Err(bad("add reply")),
                })
                .collect()
        })
    }

    fn claim<'a>(
        &'a self,
        queue: &'a str,
        req: ClaimRequest,
    ) -> BoxFuture<'a, Result<Claimed, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let (rate_max, rate_per) = req.rate_limit.map_or((0, 0), |r| (r.max, ms(r.per).max(1)));
            let mut args = Vec::with_capacity(6 + req.acks.len() * 4);
            args.push(req.token.into_bytes());
            args.push(arg(ms(req.lease).max(1)));
            args.push(arg(req.max.min(MAX_CLAIM)));
            args.push(arg(rate_max));
            args.push(arg(rate_per));
            args.push(arg(req.acks.len()));
            for a in req.acks {
                let (kind, text, delay) = match a.outcome {
                    Outcome::Completed { result } => ("C", result, 0),
                    Outcome::Retry { delay, error } => ("R", clip(error), ms(delay)),
                    Outcome::Failed {
                        error,
                        dead_letter: true,
                    } => ("D", clip(error), 0),
                    Outcome::Failed { error, .. } => ("F", clip(error), 0),
                    _ => ("L", String::new(), 0),
                };
                args.push(a.id.into_bytes());
                args.push(kind.as_bytes().to_vec());
                args.push(text.into_bytes());
                args.push(arg(delay));
            }
            let out = array(self.run(&scripts::CLAIM, &keys, args).await?)?;
            let [jobs, stale, next_due, limited] =
                <[Value; 4]>::try_from(out).map_err(|_| bad("claim reply"))?;
            let mut c = Claimed::default();
            c.jobs = leased_jobs(jobs)?;
            c.stale_acks = strings(stale)?;
            c.next_delayed_in = duration_of(&next_due)?;
            c.rate_limited_for = duration_of(&limited)?;
            Ok(c)
        })
    }

    fn wait_for_work<'a>(
        &'a self,
        queue: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut conn = match self.take_blocking() {
                Some(c) => c,
                None => (self.blocking)().await.map_err(backend_err)?,
            };
            let secs = timeout.min(BLOCK_MAX).as_secs_f64().max(0.01);
            let v: Value = redis::cmd("BLPOP")
                .arg(&keys[MARK])
                .arg(format!("{secs:.3}"))
                .query_async(&mut conn)
                .await
                .map_err(backend_err)?;
            self.put_blocking(conn);
            Ok(!matches!(v, Value::Nil))
        })
    }

    fn renew<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut lost = Vec::new();
            for chunk in ids.chunks(MAX_CLAIM) {
                let mut args = vec![arg(token), arg(ms(lease).max(1))];
                args.extend(chunk.iter().map(arg));
                lost.extend(strings(self.run(&scripts::RENEW, &keys, args).await?)?);
            }
            Ok(lost)
        })
    }

    fn progress<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        id: &'a str,
        progress: String,
    ) -> BoxFuture<'a, Result<bool, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = vec![arg(token), arg(id), progress.into_bytes()];
            Ok(int(&self.run(&scripts::PROGRESS, &keys, args).await?)? == 1)
        })
    }

    fn recover_stalled<'a>(
        &'a self,
        queue: &'a str,
        max_stalled: u32,
        dead_letter: bool,
    ) -> BoxFuture<'a, Result<Recovered, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = vec![arg(max_stalled), arg(u8::from(dead_letter))];
            let out = array(self.run(&scripts::RECOVER, &keys, args).await?)?;
            let [requeued, failed, jobs] =
                <[Value; 3]>::try_from(out).map_err(|_| bad("recover reply"))?;
            let mut r = Recovered::default();
            r.requeued = strings(requeued)?;
            r.failed = strings(failed)?;
            r.jobs = leased_jobs(jobs)?;
            Ok(r)
        })
    }

    fn counts<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Counts, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let out = array(self.run(&scripts::COUNTS, &keys, Vec::new()).await?)?;
            let n: Vec<u64> = out.iter().map(u64_of).collect::<Result<_, _>>()?;
            let [w, a, c, f, d, x] = <[u64; 6]>::try_from(n).map_err(|_| bad("counts reply"))?;
            Ok(Counts::new(w, a, c, f, d, x))
        })
    }

    fn get<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            Ok(self.records(&keys, vec![id.to_owned()]).await?.pop())
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = vec![arg(offset), arg(limit.min(1000))];
            let ids = strings(self.run(&scripts::DEAD, &keys, args).await?)?;
            self.records(&keys, ids).await
        })
    }

    fn redrive<'a>(
        &'a self,
        queue: &'a str,
        ids: Option<Vec<String>>,
    ) -> BoxFuture<'a, Result<usize, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = ids.unwrap_or_default().iter().map(arg).collect();
            let n = int(&self.run(&scripts::REDRIVE, &keys, args).await?)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn set_paused<'a>(
        &'a self,
        queue: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<(), JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            self.run(&scripts::PAUSE, &keys, vec![arg(u8::from(paused))])
                .await?;
            Ok(())
        })
    }

    fn is_paused<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut conn = self.conn.clone();
            let v: Value = redis::cmd("EXISTS")
                .arg(&keys[PAUSED])
                .query_async(&mut conn)
                .await
                .map_err(backend_err)?;
            Ok(int(&v)? == 1)
        })
    }

    fn drain<'a>(&'a self, queue: &'a str, delayed: bool) -> BoxFuture<'a, Result<u64, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut total = 0;
            loop {
                let args = vec![arg(u8::from(delayed)), arg(DRAIN_BATCH)];
                let n = u64_of(&self.run(&scripts::DRAIN, &keys, args).await?)?;
                total += n;
                if n < DRAIN_BATCH {
                    return Ok(total);
                }
            }
        })
    }

    fn clean<'a>(
        &'a self,
        queue: &'a str,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            validate_clean_state(state)?;
            let limit = limit.min(MAX_CLEAN);
            if limit == 0 {
                return Ok(Vec::new());
            }
            let args = vec![arg(state.as_str()), arg(ms(older_than)), arg(limit)];
            strings(self.run(&scripts::CLEAN, &keys, args).await?)
        })
    }

    fn save_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        spec: String,
    ) -> BoxFuture<'a, Result<(), JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            self.run(
                &scripts::SCHEDULE_SAVE,
                &keys,
                vec![arg(id), spec.into_bytes()],
            )
            .await?;
            Ok(())
        })
    }

    fn schedules<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredSchedule>, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let out = array(self.run(&scripts::SCHEDULE_LIST, &keys, Vec::new()).await?)?;
            out.chunks(4)
                .map(|c| {
                    let [id, spec, runs, last] = c else {
                        return Err(bad("schedule fields"));
                    };
                    let last = u64::try_from(int(last)?).ok();
                    Ok(StoredSchedule::new(
                        string(id)?,
                        string(spec)?,
                        u32_of(runs)?,
                        last,
                    ))
                })
                .collect()
        })
    }

    fn remove_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let n = int(&self
                .run(&scripts::SCHEDULE_REMOVE, &keys, vec![arg(id)])
                .await?)?;
            Ok(n == 1)
        })
    }

    fn enqueue_tick<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        tick_ms: u64,
        limit: Option<u32>,
        job: NewJob,
    ) -> BoxFuture<'a, Result<TickOutcome, JobsError>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            job.validate()?;
            let job_id = job
                .id
                .ok_or_else(|| JobsError::invalid("a tick job needs an id"))?;
            let args = vec![
                arg(id),
                arg(tick_ms),
                arg(limit.unwrap_or(0)),
                job_id.into_bytes(),
                job.data.into_bytes(),
                arg(job.priority),
                arg(job.remove_on_complete.encode()),
                arg(job.remove_on_fail.encode()),
            ];
            match string(&self.run(&scripts::TICK, &keys, args).await?)?.as_str() {
                "enqueued" => Ok(TickOutcome::Enqueued),
                "done" => Ok(TickOutcome::AlreadyEnqueued),
                "limit" => Ok(TickOutcome::LimitReached),
                "removed" => Ok(TickOutcome::Removed),
                _ => Err(bad("tick reply")),
            }
        })
    }
}

/// Error texts are bounded before they reach Redis (the memory backend clips the same way).
fn clip(mut s: String) -> String {
    let max = hookwire_jobs::MAX_ERROR_TEXT;
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
