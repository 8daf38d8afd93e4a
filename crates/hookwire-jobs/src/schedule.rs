//! Cron schedules: a job enqueued at every tick of a cron expression in an explicit time zone,
//! between optional start and end dates, up to an optional number of runs. Every runtime that
//! declares a schedule wakes at each tick; the backend lets exactly one of them enqueue it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::backend::JobBackend;
use crate::error::{Error, ErrorKind};
use crate::model::{NewJob, TickOutcome, validate_job_id, validate_queue_name};
use crate::runtime::Jobs;

/// Longest schedule id, in bytes (its tick job ids add the tick time to it).
pub const MAX_SCHEDULE_ID: usize = 200;

/// A cron schedule of one job, built with [`Schedule::builder`] and declared with
/// [`crate::JobsBuilder::schedule`].
///
/// Ticks are computed in the schedule's time zone with daylight-saving rules: a local time that
/// occurs twice when clocks go back runs once (the first time), and a fixed local time skipped
/// when clocks go forward runs right after the gap, so no tick is doubled or lost. Ticks that
/// pass while no runtime declaring the schedule runs are skipped, not caught up.
///
/// ```
/// use hookwire_jobs::Schedule;
/// let s = Schedule::builder("nightly-report", "report", "0 30 2 * * *")
///     .timezone("Europe/Berlin")
///     .data(&serde_json::json!({"kind": "daily"}))
///     .limit(365)
///     .build()
///     .unwrap();
/// assert_eq!(s.id(), "nightly-report");
/// assert!(Schedule::builder("x", "report", "0 2 * * *").build().is_err(), "a time zone is required");
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    id: String,
    name: String,
    pattern: String,
    cron: Cron,
    tz: Tz,
    data: String,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
    limit: Option<u32>,
}

/// Builds a [`Schedule`]; every bad option is reported by [`ScheduleBuilder::build`].
#[derive(Debug)]
#[must_use]
pub struct ScheduleBuilder {
    id: String,
    name: String,
    pattern: String,
    tz: Option<String>,
    data: Result<String, String>,
    start: Option<SystemTime>,
    end: Option<SystemTime>,
    limit: Option<u32>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ScheduleBuilder {
    /// The IANA time zone the expression is read in (`Europe/Berlin`, `UTC`…). Required: a
    /// schedule never silently follows the host's zone.
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        self.tz = Some(tz.into());
        self
    }
    /// The payload of every enqueued job (default `null`).
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = serde_json::to_string(data).map_err(|e| e.to_string());
        self
    }
    /// No tick before this time.
    pub fn start_at(mut self, t: SystemTime) -> Self {
        self.start = Some(t);
        self
    }
    /// No tick after this time.
    pub fn end_at(mut self, t: SystemTime) -> Self {
        self.end = Some(t);
        self
    }
    /// At most `n` runs in total, counted in the backend across every runtime and restart.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Checks every option: the id (a valid job id of at most [`MAX_SCHEDULE_ID`] bytes), the
    /// job name, a cron expression of 5 fields (minute first) or 6 (second first), a known time
    /// zone, the payload, `start_at` before `end_at`, a limit of at least 1.
    pub fn build(self) -> Result<Schedule, Error> {
        validate_job_id(&self.id)?;
        if self.id.len() > MAX_SCHEDULE_ID {
            return Err(Error::invalid(format!(
                "schedule id must be at most {MAX_SCHEDULE_ID} bytes"
            )));
        }
        validate_queue_name(&self.name)?;
        let fields = self.pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(Error::invalid(format!(
                "cron expression {:?} has {fields} fields; use 5 (minute hour day month weekday) \
                 or 6 (second first)",
                self.pattern
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&self.pattern)
            .map_err(|e| Error::invalid(format!("cron expression {:?}: {e}", self.pattern)))?;
        let tz_name = self
            .tz
            .ok_or_else(|| Error::invalid("a schedule needs an explicit time zone"))?;
        let tz: Tz = tz_name
            .parse()
            .map_err(|_| Error::invalid(format!("unknown time zone {tz_name:?}")))?;
        let data = self.data.map_err(|e| Error::new(ErrorKind::Serialize, e))?;
        let start_ms = self.start.map(unix_ms);
        let end_ms = self.end.map(unix_ms);
        if let (Some(s), Some(e)) = (start_ms, end_ms)
            && e <= s
        {
            return Err(Error::invalid("a schedule must end after it starts"));
        }
        if self.limit == Some(0) {
            return Err(Error::invalid("a schedule limit must be at least 1"));
        }
        Ok(Schedule {
            id: self.id,
            name: self.name,
            pattern: self.pattern,
            cron,
            tz,
            data,
            start_ms,
            end_ms,
            limit: self.limit,
        })
    }
}

/// What is stored about a schedule (JSON), for listing.
#[derive(Serialize, Deserialize)]
struct Spec {
    cron: String,
    timezone: String,
    start_at_ms: Option<u64>,
    end_at_ms: Option<u64>,
    limit: Option<u32>,
}

/// A stored schedule, from [`Jobs::schedules`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The schedule id.
    pub id: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// No tick before this time (Unix ms).
    pub start_at_ms: Option<u64>,
    /// No tick after this time (Unix ms).
    pub end_at_ms: Option<u64>,
    /// Most runs in total.
    pub limit: Option<u32>,
    /// Ticks enqueued so far.
    pub runs: u32,
    /// The last enqueued tick (Unix ms).
    pub last_tick_ms: Option<u64>,
}

impl ScheduleInfo {
    pub(crate) fn from_stored(s: crate::model::StoredSchedule) -> Result<Self, Error> {
        let spec: Spec = serde_json::from_str(&s.spec)
            .map_err(|e| Error::backend(format!("stored schedule {:?}: {e}", s.id)))?;
        Ok(Self {
            id: s.id,
            cron: spec.cron,
            timezone: spec.timezone,
            start_at_ms: spec.start_at_ms,
            end_at_ms: spec.end_at_ms,
            limit: spec.limit,
            runs: s.runs,
            last_tick_ms: s.last_tick_ms,
        })
    }
}

impl Schedule {
    /// A schedule `id` enqueueing job `name` at every tick of the cron expression `cron`.
    pub fn builder(
        id: impl Into<String>,
        name: impl Into<String>,
        cron: impl Into<String>,
    ) -> ScheduleBuilder {
        ScheduleBuilder {
            id: id.into(),
            name: name.into(),
            pattern: cron.into(),
            tz: None,
            data: Ok("null".to_owned()),
            start: None,
            end: None,
            limit: None,
        }
    }

    /// The schedule id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first tick strictly after `after_ms` (Unix ms) within the start and end dates;
    /// `None` once the schedule has ended.
    ///
    /// ```
    /// let s = hookwire_jobs::Schedule::builder("s", "job", "0 12 * * *").timezone("UTC").build().unwrap();
    /// // 2026-01-01T00:00:00Z → 2026-01-01T12:00:00Z
    /// assert_eq!(s.next_tick_after(1_767_225_600_000), Some(1_767_268_800_000));
    /// ```
    pub fn next_tick_after(&self, after_ms: u64) -> Option<u64> {
        let from = match self.start_ms {
            Some(s) if s > after_ms => s - 1,
            _ => after_ms,
        };
        let at = Utc
            .timestamp_millis_opt(i64::try_from(from).ok()?)
            .single()?
            .with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        let ms = u64::try_from(next.timestamp_millis()).ok()?;
        match self.end_ms {
            Some(end) if ms > end => None,
            _ => Some(ms),
        }
    }

    fn spec(&self) -> String {
        let spec = Spec {
            cron: self.pattern.clone(),
            timezone: self.tz.name().to_owned(),
            start_at_ms: self.start_ms,
            end_at_ms: self.end_ms,
            limit: self.limit,
        };
        // ok: a struct of strings and integers always serializes.
        serde_json::to_string(&spec).unwrap_or_default()
    }

    fn tick_job(&self, jobs: &Jobs, tick_ms: u64) -> NewJob {
        let mut j = jobs.new_job_raw(self.data.clone());
        j.id = Some(format!("sched:{}:{tick_ms}", self.id));
        j
    }
}

/// Ticks older than this when finally reachable are skipped rather than enqueued late.
const STALE_TICK: Duration = Duration::from_secs(60);

/// Stores the schedule, then sleeps until each tick and asks the backend to enqueue it; the
/// backend lets one runtime per tick succeed. Ends when the schedule ends, reaches its limit,
/// is removed, or the runtime shuts down.
pub(crate) async fn run(
    jobs: Jobs,
    backend: std::sync::Arc<dyn JobBackend>,
    s: Schedule,
    mut shutdown: watch::Receiver<bool>,
) {
    let pause = |d: Duration, shutdown: &mut watch::Receiver<bool>| {
        let mut shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep(d) => false,
                _ = shutdown.changed() => true,
            }
        }
    };
    while let Err(e) = backend.save_schedule(&s.name, &s.id, s.spec()).await {
        tracing::warn!(schedule = %s.id, error = %e, "saving the schedule failed; retrying");
        if pause(Duration::from_millis(500), &mut shutdown).await {
            return;
        }
    }
    let mut after = hookwire_core::time::unix_millis();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(tick) = s.next_tick_after(after) else {
            return;
        };
        let now = hookwire_core::time::unix_millis();
        if tick > now && pause(Duration::from_millis(tick - now), &mut shutdown).await {
            return;
        }
        let now = hookwire_core::time::unix_millis();
        if now.saturating_sub(tick) > crate::model::ms(STALE_TICK) {
            after = tick;
            continue;
        }
        let job = s.tick_job(&jobs, tick);
        match backend
            .enqueue_tick(&s.name, &s.id, tick, s.limit, job)
            .await
        {
            Ok(TickOutcome::Enqueued | TickOutcome::AlreadyEnqueued) => after = tick,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(schedule = %s.id, error = %e, "enqueueing a tick failed; retrying");
                if pause(Duration::from_millis(500), &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time");
        u64::try_from(t.timestamp_millis()).expect("after 1970")
    }

    fn ticks(s: &Schedule, from: &str, to: &str) -> Vec<u64> {
        let (mut at, end) = (ms(from), ms(to));
        let mut out = Vec::new();
        while let Some(t) = s.next_tick_after(at) {
            if t > end {
                break;
            }
            out.push(t);
            at = t;
        }
        out
    }

    fn daily(cron: &str, tz: &str) -> Schedule {
        Schedule::builder("s", "job", cron)
            .timezone(tz)
            .build()
            .expect("schedule")
    }

    #[test]
    fn a_local_time_repeated_when_clocks_go_back_runs_once() {
        // New York leaves daylight time on 2026-11-01 at 02:00 EDT (01:00 EST): 01:30 occurs
        // twice that night.
        for cron in ["30 1 * * *", "0 30 1 * * *"] {
            let s = daily(cron, "America/New_York");
            let got = ticks(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
            assert_eq!(
                got,
                [ms("2026-11-01T05:30:00Z"), ms("2026-11-02T06:30:00Z")],
                "{cron}"
            );
        }
    }

    #[test]
    fn a_local_time_skipped_when_clocks_go_forward_runs_once_after_the_gap() {
        // Berlin skips 02:00–03:00 on 2026-03-29: the 02:30 tick runs once, at 03:00 CEST.
        for cron in ["30 2 * * *", "0 30 2 * * *"] {
            let s = daily(cron, "Europe/Berlin");
            let got = ticks(&s, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z");
            assert_eq!(got.len(), 2, "{cron}: one tick per day: {got:?}");
            assert_eq!(
                got[0],
                ms("2026-03-29T01:00:00Z"),
                "{cron}: right after the gap"
            );
            assert_eq!(got[1], ms("2026-03-30T00:30:00Z"), "{cron}");
        }
    }

    #[test]
    fn start_and_end_bound_the_ticks() {
        let start = UNIX_EPOCH + Duration::from_millis(ms("2026-01-03T00:00:00Z"));
        let end = UNIX_EPOCH + Duration::from_millis(ms("2026-01-05T12:00:00Z"));
        let s = Schedule::builder("s", "job", "0 12 * * *")
            .timezone("UTC")
            .start_at(start)
            .end_at(end)
            .build()
            .expect("schedule");
        let got = ticks(&s, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
        assert_eq!(
            got,
            [
                ms("2026-01-03T12:00:00Z"),
                ms("2026-01-04T12:00:00Z"),
                ms("2026-01-05T12:00:00Z")
            ]
        );
    }

    #[test]
    fn bad_options_are_reported_by_build() {
        let b = || Schedule::builder("s", "job", "0 12 * * *").timezone("UTC");
        let now = SystemTime::now();
        let cases = [
            Schedule::builder("s", "job", "0 12 * * *").build(),
            b().timezone("Mars/Olympus").build(),
            Schedule::builder("s", "job", "0 12 * *")
                .timezone("UTC")
                .build(),
            Schedule::builder("s", "job", "0 0 12 * * * 2030")
                .timezone("UTC")
                .build(),
            Schedule::builder("s", "job", "61 * * * *")
                .timezone("UTC")
                .build(),
            Schedule::builder("has space", "job", "0 12 * * *")
                .timezone("UTC")
                .build(),
            Schedule::builder("s", "bad{name}", "0 12 * * *")
                .timezone("UTC")
                .build(),
            b().limit(0).build(),
            b().start_at(now).end_at(now).build(),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let e = c.expect_err(&format!("case {i} accepted"));
            assert_eq!(e.kind(), ErrorKind::Invalid, "case {i}: {e}");
        }
    }
}
