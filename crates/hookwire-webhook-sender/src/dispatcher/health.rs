//! Endpoint health: a circuit breaker and time/count-based auto-disable per subscription.
//!
//! A delivery (all its retries) counts once. Consecutive failed deliveries open the breaker (the
//! workspace's one breaker, `hookwire_core::breaker`) for a cool-down, after which one probe
//! delivery is let through (half-open): success closes it, failure re-opens it. Failing for
//! long enough (a count, or a period since the first failure of the streak) disables the
//! subscription until an operator re-enables it. Any success resets the streak. Modelled on
//! Convoy's breaker and Svix's time-based disable; the thresholds are in the crate guide
//! ("Many endpoints").

use std::time::{Duration, Instant};

use hookwire_core::breaker::{CircuitBreaker, Permit, State};

/// Thresholds of the health tracker.
///
/// ```
/// let h = hookwire_webhook_sender::HealthConfig::default();
/// assert_eq!(h.breaker_threshold, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Consecutive failed deliveries that open the breaker (0 = no breaker).
    pub breaker_threshold: u32,
    /// How long an open breaker short-circuits deliveries before a probe.
    pub breaker_cooldown: Duration,
    /// Consecutive failed deliveries that disable the subscription (0 = never by count).
    pub disable_after_failures: u32,
    /// A failure streak this long disables the subscription (`None` = never by time).
    pub disable_after: Option<Duration>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            disable_after_failures: 100,
            disable_after: Some(Duration::from_secs(5 * 24 * 3600)),
        }
    }
}

impl HealthConfig {
    /// Sets the breaker threshold and cool-down.
    #[must_use]
    pub fn with_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cooldown = cooldown;
        self
    }
    /// Sets the auto-disable limits.
    #[must_use]
    pub fn with_disable(mut self, after_failures: u32, after: Option<Duration>) -> Self {
        self.disable_after_failures = after_failures;
        self.disable_after = after;
        self
    }
}

/// A health transition, broadcast by the dispatcher ([`crate::Dispatcher::health_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEventKind {
    /// The breaker opened after this many consecutive failures.
    CircuitOpened {
        /// The failure streak.
        consecutive_failures: u32,
    },
    /// A probe succeeded; deliveries flow again.
    CircuitClosed,
    /// The subscription was disabled.
    Disabled {
        /// Why.
        reason: String,
    },
    /// The subscription was re-enabled by an operator.
    Enabled,
}

/// One transition of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthEvent {
    /// The subscription.
    pub subscription_id: String,
    /// What happened.
    pub kind: HealthEventKind,
}

/// Whether a delivery may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Pass,
    /// Short-circuited; the breaker allows a probe after this long.
    Open(Duration),
}

/// `now + d`, saturating at a far future instead of panicking on overflow (the thresholds are
/// public fields, so `Duration::MAX` must be harmless).
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// One subscription's health: the circuit breaker (`hookwire_core::breaker`) and the failure
/// streak the auto-disable counts.
///
/// The breaker is built at the first failure (before it, it would be closed anyway). A gate
/// that admits a half-open probe keeps its permit until the next outcome, so only one probe
/// runs at a time; a gate that admits a call while closed keeps nothing (every outcome counts
/// through a permit taken when it is recorded).
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: u32,
    failing_since: Option<Instant>,
    breaker: Option<CircuitBreaker>,
    probe: Option<Permit>,
}

/// What [`Health::record`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) events: Vec<HealthEventKind>,
    pub(crate) disable: Option<String>,
}

/// Wait suggested to a caller refused while the one probe runs.
const PROBE_BUSY_WAIT: Duration = Duration::from_millis(100);

impl Health {
    fn breaker(&mut self, cfg: &HealthConfig) -> Option<&CircuitBreaker> {
        if cfg.breaker_threshold == 0 {
            return None;
        }
        if self.breaker.is_none() {
            // The core breaker refuses a zero cool-down; here zero means "probe at once".
            let cool_down = cfg.breaker_cooldown.max(Duration::from_nanos(1));
            self.breaker = CircuitBreaker::builder()
                .failure_threshold(cfg.breaker_threshold)
                .cool_down(cool_down)
                .build()
                .ok();
        }
        self.breaker.as_ref()
    }

    pub(crate) fn gate(&mut self, _now: Instant) -> Gate {
        let Some(b) = &self.breaker else {
            return Gate::Pass;
        };
        match b.try_acquire() {
            Ok(permit) => {
                if b.state() == State::HalfOpen {
                    self.probe = Some(permit);
                }
                Gate::Pass
            }
            Err(open) => Gate::Open(open.retry_after.unwrap_or(PROBE_BUSY_WAIT)),
        }
    }

    pub(crate) fn record(&mut self, ok: bool, now: Instant, cfg: &HealthConfig) -> Verdict {
        let mut v = Verdict::default();
        if !ok {
            self.failures = self.failures.saturating_add(1);
            self.failing_since.get_or_insert(now);
        }
        let probe = self.probe.take();
        if let Some(b) = self.breaker(cfg).cloned() {
            let before = b.state();
            // An outcome while open (a delivery admitted before it opened) moves nothing.
            if let Some(permit) = probe.or_else(|| b.try_acquire().ok()) {
                if ok {
                    permit.success();
                } else {
                    permit.failure();
                }
            }
            // A failed probe re-opens without a second "opened" event, as an open breaker
            // that stays open does.
            match (before, b.state()) {
                (State::Closed, State::Open) => v.events.push(HealthEventKind::CircuitOpened {
                    consecutive_failures: self.failures,
                }),
                (State::Open | State::HalfOpen, State::Closed) => {
                    v.events.push(HealthEventKind::CircuitClosed);
                }
                _ => {}
            }
        }
        if ok {
            self.failures = 0;
            self.failing_since = None;
            return v;
        }
        let since = self.failing_since.unwrap_or(now);
        if cfg.disable_after_failures > 0 && self.failures >= cfg.disable_after_failures {
            v.disable = Some(format!("{} consecutive failed deliveries", self.failures));
        } else if let Some(limit) = cfg.disable_after
            && self.failures > 1
            && now.duration_since(since) >= limit
        {
            v.disable = Some(format!(
                "failing for {}s ({} consecutive failed deliveries)",
                now.duration_since(since).as_secs(),
                self.failures
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The breaker runs on the real clock: cool-downs here are short and waited out.
    const COOL: Duration = Duration::from_millis(40);

    fn after_cool_down() -> Instant {
        std::thread::sleep(COOL + Duration::from_millis(20));
        Instant::now()
    }

    #[test]
    fn breaker_opens_probes_once_and_closes_on_success() {
        let cfg = HealthConfig::default().with_breaker(2, COOL);
        let mut h = Health::default();
        let t0 = Instant::now();
        assert!(h.record(false, t0, &cfg).events.is_empty());
        let v = h.record(false, t0, &cfg);
        assert_eq!(
            v.events,
            [HealthEventKind::CircuitOpened {
                consecutive_failures: 2
            }]
        );
        assert!(matches!(h.gate(Instant::now()), Gate::Open(_)));
        let later = after_cool_down();
        assert_eq!(h.gate(later), Gate::Pass, "one probe");
        assert!(
            matches!(h.gate(later), Gate::Open(_)),
            "only one probe at a time"
        );
        assert_eq!(
            h.record(true, later, &cfg).events,
            [HealthEventKind::CircuitClosed]
        );
        assert_eq!(h.gate(later), Gate::Pass);
    }

    #[test]
    fn an_endless_cooldown_does_not_overflow() {
        let cfg = HealthConfig::default().with_breaker(1, Duration::MAX);
        let mut h = Health::default();
        let t = Instant::now();
        h.record(false, t, &cfg);
        assert!(matches!(
            h.gate(t + Duration::from_secs(3600)),
            Gate::Open(_)
        ));
    }

    #[test]
    fn failed_probe_reopens_without_a_second_open_event() {
        let cfg = HealthConfig::default().with_breaker(1, COOL);
        let mut h = Health::default();
        let t0 = Instant::now();
        h.record(false, t0, &cfg);
        let t1 = after_cool_down();
        assert_eq!(h.gate(t1), Gate::Pass);
        assert!(h.record(false, t1, &cfg).events.is_empty());
        assert!(matches!(h.gate(t1), Gate::Open(_)));
    }

    #[test]
    fn a_zero_cooldown_probes_at_once() {
        let cfg = HealthConfig::default().with_breaker(1, Duration::ZERO);
        let mut h = Health::default();
        h.record(false, Instant::now(), &cfg);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(h.gate(Instant::now()), Gate::Pass);
        assert_eq!(
            h.record(true, Instant::now(), &cfg).events,
            [HealthEventKind::CircuitClosed]
        );
    }

    #[test]
    fn disables_by_count_and_by_time() {
        let cfg = HealthConfig::default()
            .with_breaker(0, Duration::ZERO)
            .with_disable(3, None);
        let mut h = Health::default();
        let t = Instant::now();
        assert!(h.record(false, t, &cfg).disable.is_none());
        assert!(h.record(false, t, &cfg).disable.is_none());
        assert!(h.record(false, t, &cfg).disable.is_some());

        let cfg = HealthConfig::default()
            .with_breaker(0, Duration::ZERO)
            .with_disable(0, Some(Duration::from_secs(60)));
        let mut h = Health::default();
        assert!(h.record(false, t, &cfg).disable.is_none());
        assert!(
            h.record(false, t + Duration::from_secs(30), &cfg)
                .disable
                .is_none()
        );
        assert!(
            h.record(false, t + Duration::from_secs(61), &cfg)
                .disable
                .is_some()
        );
        // A success resets the streak.
        h.record(true, t + Duration::from_secs(62), &cfg);
        assert!(
            h.record(false, t + Duration::from_secs(200), &cfg)
                .disable
                .is_none()
        );
    }
}
