//! Repeatable jobs: one job per interval slot, scheduled by every runtime that declares it and
//! de-duplicated by a slot job id, so N processes still start each slot once.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::model::{DispatchOptions, validate_queue_name};
use crate::runtime::Jobs;

/// A job dispatched every `every`, aligned to multiples of `every` since the Unix epoch.
///
/// ```
/// use std::time::Duration;
/// let r = hookwire_jobs::Repeat::every("cleanup", Duration::from_secs(60), &serde_json::json!({"older_than_days": 30})).unwrap();
/// assert_eq!(r.name(), "cleanup");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    name: String,
    every: Duration,
    data: String,
}

/// The shortest repeat interval.
pub const MIN_REPEAT: Duration = Duration::from_millis(100);

impl Repeat {
    /// A repeat of job `name` with payload `data` every `every` (at least [`MIN_REPEAT`]).
    pub fn every<T: serde::Serialize + ?Sized>(
        name: impl Into<String>,
        every: Duration,
        data: &T,
    ) -> Result<Self, Error> {
        let name = name.into();
        validate_queue_name(&name)?;
        if every < MIN_REPEAT {
            return Err(Error::invalid(format!(
                "repeat interval must be at least {} ms",
                MIN_REPEAT.as_millis()
            )));
        }
        let data =
            serde_json::to_string(data).map_err(|e| Error::new(crate::ErrorKind::Serialize, e))?;
        Ok(Self { name, every, data })
    }

    /// The job name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job id of the slot starting at `slot_ms`: the de-duplication key across processes.
    fn slot_id(&self, slot_ms: u64) -> String {
        format!("repeat-{}-{slot_ms}", self.every.as_millis())
    }
}

/// Dispatches the next slot's job (delayed until the slot starts), sleeps until then, repeats.
/// Dispatch errors are logged and retried; a slot missed while every process was down is
/// skipped, not caught up.
pub(crate) async fn run(jobs: Jobs, r: Repeat, mut shutdown: watch::Receiver<bool>) {
    let every = u64::try_from(r.every.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = hookwire_core::time::unix_millis();
        let slot = (now / every + 1).saturating_mul(every);
        let opts = DispatchOptions::new()
            .job_id(r.slot_id(slot))
            .delay(Duration::from_millis(slot - now));
        let wait = match jobs.dispatch_raw(&r.name, r.data.clone(), opts).await {
            Ok(_) => Duration::from_millis(slot.saturating_sub(hookwire_core::time::unix_millis())),
            Err(e) => {
                tracing::warn!(job = %r.name, error = %e, "repeat dispatch failed; retrying");
                Duration::from_millis(500)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
