//! [`RedisBackend`]: the [`JobBackend`] on Redis.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::BoxFuture;
use hookwire_jobs::{
    Added, ClaimRequest, Claimed, Counts, Error, JobAdmin, JobOutcome, JobRecord, JobState,
    LeasedJob, MAX_BULK, MAX_CLAIM, MAX_CLEAN, NewJob, Recovered, StoredSchedule, TickOutcome,
    WorkerBackend, validate_clean_state, validate_queue_name,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value};

use crate::keys::{MARK, PAUSED, keys};
use crate::scripts;
use crate::value::{array, bad, int, opt_string, string, strings, u32_of, u64_of};

mod admin;

type Factory<C> = Arc<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;

/// The Redis job backend. Cheap to clone (clones share connections).
///
/// `C` is the command connection: [`ConnectionManager`] (reconnects by itself) for one server,
/// or a cluster connection (feature `cluster`). Blocking waits (`BLPOP` on the queue's wake-up
/// marker) use separate pooled connections so they never hold up commands.
///
/// ```no_run
/// # async fn demo() -> Result<(), hookwire_jobs::Error> {
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
    /// Opens a connection for blocking waits; `None`: wait by checking the marker on `conn`.
    blocking: Option<Factory<C>>,
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

fn backend_err(e: redis::RedisError) -> Error {
    Error::backend(e)
}

/// Timeouts for command connections: long enough for a 1000-job script on a busy server.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Jobs one drain script call deletes; a drain repeats calls until a short batch.
const DRAIN_BATCH: u64 = 1000;
/// How often a backend built with [`RedisBackend::new`] checks an idle queue's wake-up marker.
pub const MARKER_CHECK: Duration = Duration::from_millis(50);
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
    pub async fn connect(url: &str) -> Result<Self, Error> {
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
            blocking: Some(blocking),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A backend over one command connection `conn` (any [`ConnectionLike`], e.g. a
    /// [`ConnectionManager`] or a `MultiplexedConnection` you configured yourself).
    ///
    /// A blocking `BLPOP` would hold up every command multiplexed on `conn`, so an idle worker
    /// of this backend checks its queue's wake-up marker every [`MARKER_CHECK`] instead (one
    /// `LPOP` per idle queue per check). For blocking waits on separate connections use
    /// [`RedisBackend::connect`] or [`RedisBackend::from_parts`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), hookwire_jobs::Error> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/").map_err(hookwire_jobs::Error::backend)?;
    /// let conn = client.get_multiplexed_async_connection().await.map_err(hookwire_jobs::Error::backend)?;
    /// let backend = hookwire_jobs_redis::RedisBackend::new(conn).with_prefix("staging:");
    /// # Ok(()) }
    /// ```
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            prefix: "hw:".to_owned(),
            blocking: None,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Sets the key prefix (default `hw:`), e.g. to share one Redis between environments.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn keys(&self, queue: &str) -> Result<Vec<String>, Error> {
        validate_queue_name(queue)?;
        Ok(keys(&self.prefix, queue))
    }

    async fn run(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: Vec<Vec<u8>>,
    ) -> Result<Value, Error> {
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

    /// The wait of a backend without blocking connections: `LPOP`s the marker every
    /// [`MARKER_CHECK`] until it held an entry or `timeout` passed.
    async fn check_marker(&self, mark: &str, timeout: Duration) -> Result<bool, Error> {
        let until = tokio::time::Instant::now() + timeout.min(BLOCK_MAX);
        loop {
            let mut conn = self.conn.clone();
            let v: Value = redis::cmd("LPOP")
                .arg(mark)
                .query_async(&mut conn)
                .await
                .map_err(backend_err)?;
            if !matches!(v, Value::Nil) {
                return Ok(true);
            }
            if tokio::time::Instant::now() + MARKER_CHECK > until {
                return Ok(false);
            }
            tokio::time::sleep(MARKER_CHECK).await;
        }
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

fn duration_of(v: &Value) -> Result<Option<Duration>, Error> {
    let n = int(v)?;
    Ok(u64::try_from(n).ok().map(Duration::from_millis))
}

/// Jobs sent by the claim script as a flat array: id, record, attempts, stalled per job.
fn leased_jobs(v: Value) -> Result<Vec<LeasedJob>, Error> {
    array(v)?
        .chunks(4)
        .map(|j| {
            let [id, rec, att, stall] = j else {
                return Err(bad("job fields"));
            };
            let (data, created) = split_record(string(rec)?)?;
            Ok(LeasedJob::new(
                string(id)?,
                data,
                u32_of(att)?,
                u32_of(stall)?,
                created,
            ))
        })
        .collect()
}

/// A job record `priority|seq|created_ms|rc|rf|data` split into its data and creation time, the
/// data moved to the front of the same buffer rather than copied. An empty record (the job was
/// deleted between its claim and this reply) reads as `null` data created at 0, as before.
fn split_record(mut rec: String) -> Result<(String, u64), Error> {
    if rec.is_empty() {
        return Ok(("null".to_owned(), 0));
    }
    let created = rec.split('|').nth(2).and_then(|c| c.parse().ok());
    let data_at = rec.match_indices('|').nth(4).map(|(i, _)| i + 1);
    let (Some(created), Some(at)) = (created, data_at) else {
        return Err(bad("job record"));
    };
    rec.replace_range(..at, "");
    Ok((rec, created))
}

fn record(id: &str, v: Value) -> Result<Option<JobRecord>, Error> {
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
    async fn records(&self, keys: &[String], ids: Vec<String>) -> Result<Vec<JobRecord>, Error> {
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

impl<C> WorkerBackend for RedisBackend<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn add<'a>(
        &'a self,
        queue: &'a str,
        jobs: Vec<NewJob>,
    ) -> BoxFuture<'a, Result<Vec<Added>, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            if jobs.len() > MAX_BULK {
                return Err(Error::invalid(format!(
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
    ) -> BoxFuture<'a, Result<Claimed, Error>> {
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
                    JobOutcome::Completed { result } => ("C", result, 0),
                    JobOutcome::Retry { delay, error } => ("R", clip(error), ms(delay)),
                    JobOutcome::Failed {
                        error,
                        dead_letter: true,
                    } => ("D", clip(error), 0),
                    JobOutcome::Failed { error, .. } => ("F", clip(error), 0),
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
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let Some(open) = &self.blocking else {
                return self.check_marker(&keys[MARK], timeout).await;
            };
            let mut conn = match self.take_blocking() {
                Some(c) => c,
                None => open().await.map_err(backend_err)?,
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
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
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
    ) -> BoxFuture<'a, Result<bool, Error>> {
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
    ) -> BoxFuture<'a, Result<Recovered, Error>> {
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

#[cfg(test)]
mod tests {
    use super::split_record;

    #[test]
    fn a_record_splits_into_its_data_and_creation_time() {
        let (data, created) =
            split_record("1000|7|1700000000123|0|-1|{\"a\":\"x|y\"}".into()).expect("record");
        assert_eq!(data, "{\"a\":\"x|y\"}");
        assert_eq!(created, 1_700_000_000_123);
        assert_eq!(split_record("5|1|2|3|4|".into()).expect("empty data").0, "");
        assert_eq!(
            split_record(String::new()).expect("gone"),
            ("null".into(), 0)
        );
        assert!(split_record("1000|7|1700000000123|0|-1".into()).is_err());
        assert!(split_record("1000|7|x|0|-1|{}".into()).is_err());
    }
}
