//! Backoff strategies and retry policies.
//!
//! One implementation serves the sender's retry driver, the jobs runtime and the receiver's
//! idempotency TTL sizing ([`RetryPolicy::min_safe_ttl`]), so the three can never disagree about
//! how long a delivery may keep coming back.

use std::time::Duration;

/// How a delay is randomized.
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::{Backoff, Jitter};
/// let b = Backoff::fixed(Duration::from_secs(10)).with_jitter(Jitter::Proportional(0.2));
/// // ±20 %: the unit value 0.0 gives the lowest delay, 1.0 (exclusive) the highest.
/// assert_eq!(b.delay_with_unit(0, 0.0), Duration::from_secs(8));
/// assert_eq!(b.delay_with_unit(0, 0.5), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomization.
    #[default]
    None,
    /// "Full jitter": uniform in `[0, d]`.
    Full,
    /// Uniform in `[d·(1−f), d·(1+f))`, applied before the cap (±20 % is `Proportional(0.2)`).
    Proportional(f64),
    /// The common runtime rule: uniform factor in `[0.5, 1.5)` applied *after* the cap, so
    /// a delay may reach 1.5 × max. Kept for wire-compatible retry profiles.
    Reference,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Fixed,
    Linear,
    Exponential,
    Schedule(Vec<Duration>),
}

/// A backoff strategy: the delay before retry number `r` (0-based: `r = 0` is the first retry).
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::Backoff;
/// let s = Duration::from_secs(1);
/// assert_eq!(Backoff::fixed(s).delay_with_unit(3, 0.0), s);
/// assert_eq!(Backoff::linear(s).delay_with_unit(2, 0.0), 3 * s);
/// let exp = Backoff::exponential(s).with_max(Duration::from_secs(5));
/// assert_eq!(exp.delay_with_unit(2, 0.0), 4 * s);
/// assert_eq!(exp.delay_with_unit(10, 0.0), 5 * s);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    kind: Kind,
    base: Duration,
    max: Option<Duration>,
    min: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// Always `base`.
    pub fn fixed(base: Duration) -> Self {
        Self::new(Kind::Fixed, base)
    }
    /// `base × (r + 1)`.
    pub fn linear(base: Duration) -> Self {
        Self::new(Kind::Linear, base)
    }
    /// `base × 2^r`.
    pub fn exponential(base: Duration) -> Self {
        Self::new(Kind::Exponential, base)
    }
    /// An explicit list of delays; retries past its end reuse the last entry.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookwire_core::Backoff::schedule(vec![Duration::from_secs(5), Duration::from_secs(300)]);
    /// assert_eq!(b.delay_with_unit(0, 0.0), Duration::from_secs(5));
    /// assert_eq!(b.delay_with_unit(9, 0.0), Duration::from_secs(300));
    /// ```
    pub fn schedule(delays: Vec<Duration>) -> Self {
        let base = delays.first().copied().unwrap_or(Duration::ZERO);
        Self::new(Kind::Schedule(delays), base)
    }

    fn new(kind: Kind, base: Duration) -> Self {
        Self {
            kind,
            base,
            max: None,
            min: Duration::ZERO,
            jitter: Jitter::None,
        }
    }

    /// Caps every delay (all strategies, not only exponential, so no delay ever exceeds it).
    #[must_use]
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }
    /// Floors every delay after jitter.
    #[must_use]
    pub fn with_min(mut self, min: Duration) -> Self {
        self.min = min;
        self
    }
    /// Sets the jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }
    /// The configured jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry `r` without jitter, after the cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookwire_core::Backoff::exponential(Duration::from_millis(200));
    /// assert_eq!(b.nominal(3), Duration::from_millis(1600));
    /// ```
    pub fn nominal(&self, r: u32) -> Duration {
        let d = match &self.kind {
            Kind::Fixed => self.base,
            Kind::Linear => self.base.saturating_mul(r.saturating_add(1)),
            Kind::Exponential => {
                let factor = 1u32.checked_shl(r.min(31)).unwrap_or(u32::MAX);
                self.base.saturating_mul(factor)
            }
            Kind::Schedule(list) => list
                .get(r as usize)
                .or(list.last())
                .copied()
                .unwrap_or(Duration::ZERO),
        };
        self.cap(d)
    }

    fn cap(&self, d: Duration) -> Duration {
        match self.max {
            Some(m) => d.min(m),
            None => d,
        }
    }

    /// The delay before retry `r`, with `unit` ∈ `[0, 1)` as the random draw (tests pass a fixed
    /// value; [`Backoff::delay`] draws one).
    pub fn delay_with_unit(&self, r: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let n = self.nominal(r);
        let d = match self.jitter {
            Jitter::None => n,
            Jitter::Full => n.mul_f64(unit),
            Jitter::Proportional(f) => {
                let f = if f.is_finite() {
                    f.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                self.cap(n.mul_f64(1.0 - f + 2.0 * f * unit))
            }
            Jitter::Reference => n.mul_f64(0.5 + unit),
        };
        d.max(self.min)
    }

    /// The delay before retry `r`, with a fresh random draw.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookwire_core::Backoff::fixed(Duration::from_secs(1)).with_jitter(hookwire_core::Jitter::Full);
    /// assert!(b.delay(0) <= Duration::from_secs(1));
    /// ```
    pub fn delay(&self, r: u32) -> Duration {
        self.delay_with_unit(r, crate::id::random_unit())
    }

    /// The largest delay jitter can produce for retry `r` (used for envelopes and TTLs).
    pub fn upper_bound(&self, r: u32) -> Duration {
        let n = self.nominal(r);
        let d = match self.jitter {
            Jitter::None | Jitter::Full => n,
            Jitter::Proportional(f) => {
                let f = if f.is_finite() {
                    f.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                self.cap(n.mul_f64(1.0 + f))
            }
            Jitter::Reference => n.mul_f64(1.5),
        };
        d.max(self.min)
    }

    /// The largest delay jitter can produce over retries `0..retries` (zero for no retries).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookwire_core::Backoff;
    /// let s = Duration::from_secs(1);
    /// assert_eq!(Backoff::exponential(s).max_upper_bound(3), 4 * s);
    /// assert_eq!(Backoff::schedule(vec![5 * s, 60 * s, 2 * s]).max_upper_bound(9), 60 * s);
    /// ```
    pub fn max_upper_bound(&self, retries: u32) -> Duration {
        let Some(last) = retries.checked_sub(1) else {
            return Duration::ZERO;
        };
        match &self.kind {
            // A schedule may go down again; past its end the last entry repeats.
            Kind::Schedule(list) => {
                let n = u32::try_from(list.len()).unwrap_or(u32::MAX).min(retries);
                (0..n)
                    .map(|r| self.upper_bound(r))
                    .max()
                    .unwrap_or_else(|| self.upper_bound(0))
            }
            // Fixed, linear and exponential never decrease (the cap and the jitter factor are
            // the same for every retry).
            _ => self.upper_bound(last),
        }
    }
}

/// When to retry and when to give up.
///
/// `max_retries` counts retries *after* the first attempt: `max_retries = 3` means at most four
/// attempts. A `Block` outcome stops at once unless `block_on_error` is false. `max_window`, when
/// set, also stops retrying once the next attempt would start later than the window after the
/// first one (whichever limit comes first).
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::{Backoff, RetryPolicy};
/// let p = RetryPolicy::new(5).with_backoff(Backoff::exponential(Duration::from_millis(200)).with_max(Duration::from_secs(30)));
/// assert_eq!(p.max_attempts(), 6);
/// // A worked example: (6 200 ms + 6 × 2 000 ms) × 4 = 72 800 ms.
/// assert_eq!(p.min_safe_ttl(Duration::from_secs(2), 4), Duration::from_millis(72_800));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay between attempts; `None` retries immediately.
    pub backoff: Option<Backoff>,
    /// When false, `Block` outcomes are retried like `Retry` ones (the operator's "retry forever").
    pub block_on_error: bool,
    /// Stop once the next attempt would start this long after the first.
    pub max_window: Option<Duration>,
    /// Upper clamp for a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Three retries, exponential from 1 s capped at 1 h with ±20 % jitter, block on error.
    fn default() -> Self {
        Self::new(3).with_backoff(
            Backoff::exponential(Duration::from_secs(1))
                .with_max(Duration::from_secs(3600))
                .with_jitter(Jitter::Proportional(0.2)),
        )
    }
}

impl RetryPolicy {
    /// `max_retries` retries, no backoff, blocking on non-retryable errors.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            backoff: None,
            block_on_error: true,
            max_window: None,
            max_retry_after: Duration::from_secs(3600),
        }
    }

    /// No retries at all.
    ///
    /// ```
    /// assert_eq!(hookwire_core::RetryPolicy::none().max_attempts(), 1);
    /// ```
    pub fn none() -> Self {
        Self::new(0)
    }

    /// The Standard Webhooks example schedule: immediately, then 5 s, 5 m, 30 m, 2 h, 5 h, 10 h,
    /// 14 h, 20 h, 24 h (≈ 75 h 35 m), with ±20 % jitter.
    ///
    /// ```
    /// let p = hookwire_core::RetryPolicy::standard_webhooks();
    /// assert_eq!(p.max_retries, 9);
    /// assert_eq!(p.delay_nominal_sum().as_secs(), 272_105);
    /// ```
    pub fn standard_webhooks() -> Self {
        Self::from_schedule(&[5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400])
    }

    /// Svix's schedule: immediately, then 5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 10 h (≈ 27 h 35 m),
    /// with ±20 % jitter.
    ///
    /// ```
    /// let p = hookwire_core::RetryPolicy::svix();
    /// assert_eq!(p.max_retries, 7);
    /// assert_eq!(p.delay_nominal_sum().as_secs(), 99_305);
    /// ```
    pub fn svix() -> Self {
        Self::from_schedule(&[5, 300, 1800, 7200, 18_000, 36_000, 36_000])
    }

    fn from_schedule(secs: &[u64]) -> Self {
        let list: Vec<Duration> = secs.iter().map(|s| Duration::from_secs(*s)).collect();
        let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
        Self::new(n).with_backoff(Backoff::schedule(list).with_jitter(Jitter::Proportional(0.2)))
    }

    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }
    /// Sets `block_on_error`.
    #[must_use]
    pub fn with_block_on_error(mut self, block: bool) -> Self {
        self.block_on_error = block;
        self
    }
    /// Sets the maximum retry window.
    #[must_use]
    pub fn with_max_window(mut self, window: Duration) -> Self {
        self.max_window = Some(window);
        self
    }
    /// Sets the `Retry-After` clamp.
    #[must_use]
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Attempts in total (`max_retries + 1`, saturating).
    pub fn max_attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// The delay before retry `r` (0-based), jittered.
    pub fn delay(&self, r: u32) -> Duration {
        self.backoff.as_ref().map_or(Duration::ZERO, |b| b.delay(r))
    }

    /// The delay before retry `r`, honouring a server's `Retry-After` when it asks for longer
    /// (clamped to [`RetryPolicy::max_retry_after`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookwire_core::RetryPolicy::new(3).with_max_retry_after(Duration::from_secs(60));
    /// assert_eq!(p.delay_after(0, Some(Duration::from_secs(5))), Duration::from_secs(5));
    /// assert_eq!(p.delay_after(0, Some(Duration::from_secs(999))), Duration::from_secs(60));
    /// ```
    pub fn delay_after(&self, r: u32, retry_after: Option<Duration>) -> Duration {
        let d = self.delay(r);
        match retry_after {
            Some(ra) => d.max(ra.min(self.max_retry_after)),
            None => d,
        }
    }

    /// The longest delay the backoff itself can ask for over this policy's retries (jitter
    /// included); `None` without a backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookwire_core::RetryPolicy::default();
    /// // 1 s, 2 s, 4 s, each +20 % at most.
    /// assert_eq!(p.max_delay(), Some(Duration::from_millis(4800)));
    /// assert_eq!(hookwire_core::RetryPolicy::new(3).max_delay(), None);
    /// ```
    pub fn max_delay(&self) -> Option<Duration> {
        self.backoff
            .as_ref()
            .map(|b| b.max_upper_bound(self.max_retries))
    }

    /// This policy with `Retry-After` also capped by [`RetryPolicy::max_delay`]: a server cannot
    /// make a delivery wait longer than the policy's own longest delay. Unchanged without a
    /// backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookwire_core::RetryPolicy::default().cap_retry_after_at_max_delay();
    /// assert_eq!(p.delay_after(0, Some(Duration::from_secs(3600))), Duration::from_millis(4800));
    /// ```
    #[must_use]
    pub fn cap_retry_after_at_max_delay(mut self) -> Self {
        if let Some(d) = self.max_delay() {
            self.max_retry_after = self.max_retry_after.min(d);
        }
        self
    }

    /// Sum of the nominal (un-jittered) delays over every retry.
    pub fn delay_nominal_sum(&self) -> Duration {
        let Some(b) = &self.backoff else {
            return Duration::ZERO;
        };
        (0..self.max_retries).fold(Duration::ZERO, |acc, r| acc.saturating_add(b.nominal(r)))
    }

    /// The longest time a delivery can keep arriving: every delay at its jittered maximum plus
    /// every attempt running to `timeout`. Capped by `max_window` plus one timeout when set.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookwire_core::RetryPolicy::new(2).with_backoff(hookwire_core::Backoff::fixed(Duration::from_secs(1)));
    /// assert_eq!(p.envelope(Duration::from_secs(5)), Duration::from_secs(2 + 3 * 5));
    /// ```
    pub fn envelope(&self, timeout: Duration) -> Duration {
        let delays = match &self.backoff {
            None => Duration::ZERO,
            Some(b) => (0..self.max_retries).fold(Duration::ZERO, |acc, r| {
                acc.saturating_add(b.upper_bound(r))
            }),
        };
        let total = delays.saturating_add(timeout.saturating_mul(self.max_attempts()));
        match self.max_window {
            Some(w) => total.min(w.saturating_add(timeout)),
            None => total,
        }
    }

    /// The smallest idempotency TTL that still catches every retry: `minSafeTtl` in other webhook toolkits
    /// (`(backoff sum [×1.5 with ±50 % jitter] + attempts × timeout) × safety_factor`),
    /// generalized to every jitter mode through the jittered upper bound.
    pub fn min_safe_ttl(&self, timeout: Duration, safety_factor: u32) -> Duration {
        self.envelope(timeout).saturating_mul(safety_factor.max(1))
    }

    /// Whether attempt number `attempt` (1-based, counting the first) may run `elapsed` after the
    /// first attempt started.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookwire_core::RetryPolicy::new(1).with_max_window(Duration::from_secs(10));
    /// assert!(p.allows_attempt(2, Duration::from_secs(9)));
    /// assert!(!p.allows_attempt(2, Duration::from_secs(11)));
    /// assert!(!p.allows_attempt(3, Duration::ZERO));
    /// ```
    pub fn allows_attempt(&self, attempt: u32, elapsed: Duration) -> bool {
        attempt <= self.max_attempts() && self.max_window.is_none_or(|w| elapsed <= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn retry_after_is_capped_by_the_longest_delay_of_the_policy() {
        // A schedule that goes down again, repeated past its end, with ±20 %.
        let p = RetryPolicy::new(5).with_backoff(
            Backoff::schedule(vec![100 * MS, 900 * MS, 300 * MS])
                .with_jitter(Jitter::Proportional(0.2)),
        );
        assert_eq!(p.max_delay(), Some(1080 * MS));
        let capped = p.clone().cap_retry_after_at_max_delay();
        assert_eq!(capped.max_retry_after, 1080 * MS);
        assert_eq!(
            capped.delay_after(0, Some(Duration::from_secs(3600))),
            1080 * MS
        );
        // Linear grows with every retry; no retries means no delay at all.
        let l = Backoff::linear(100 * MS);
        assert_eq!(l.max_upper_bound(4), 400 * MS);
        assert_eq!(l.max_upper_bound(0), Duration::ZERO);
        // A smaller explicit clamp stays; no backoff leaves the clamp alone.
        let small = p
            .with_max_retry_after(50 * MS)
            .cap_retry_after_at_max_delay();
        assert_eq!(small.max_retry_after, 50 * MS);
        let none = RetryPolicy::new(2).cap_retry_after_at_max_delay();
        assert_eq!(none.max_retry_after, Duration::from_secs(3600));
    }

    #[test]
    fn reference_backoff_cases() {
        // fixed → base; linear → base·(r+1); exponential → base·2^r capped.
        assert_eq!(Backoff::fixed(100 * MS).nominal(5), 100 * MS);
        assert_eq!(Backoff::linear(100 * MS).nominal(0), 100 * MS);
        assert_eq!(Backoff::linear(100 * MS).nominal(4), 500 * MS);
        let e = Backoff::exponential(200 * MS).with_max(30_000 * MS);
        let seq: Vec<_> = (0..9).map(|r| e.nominal(r).as_millis()).collect();
        assert_eq!(seq, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
    }

    #[test]
    fn reference_jitter_is_applied_after_the_cap() {
        let b = Backoff::exponential(MS * 1000)
            .with_max(MS * 1000)
            .with_jitter(Jitter::Reference);
        assert_eq!(b.delay_with_unit(4, 0.0), 500 * MS);
        assert_eq!(b.upper_bound(4), 1500 * MS);
    }

    #[test]
    fn proportional_jitter_stays_under_the_cap() {
        let b = Backoff::fixed(MS * 1000)
            .with_max(MS * 1000)
            .with_jitter(Jitter::Proportional(0.2));
        assert_eq!(b.delay_with_unit(0, 0.999_999), 1000 * MS);
        assert_eq!(b.delay_with_unit(0, 0.0), 800 * MS);
    }

    #[test]
    fn huge_retry_numbers_saturate_instead_of_overflowing() {
        let e = Backoff::exponential(Duration::from_secs(u64::MAX / 2));
        assert!(e.nominal(u32::MAX) >= Duration::from_secs(u64::MAX / 2));
        let l = Backoff::linear(Duration::MAX);
        assert_eq!(l.nominal(u32::MAX), Duration::MAX);
        assert_eq!(
            RetryPolicy::new(u32::MAX).max_attempts(),
            u32::MAX,
            "saturates"
        );
    }

    #[test]
    fn random_delays_stay_within_bounds() {
        let b = Backoff::exponential(MS * 100).with_jitter(Jitter::Full);
        for r in 0..10 {
            for _ in 0..50 {
                assert!(b.delay(r) <= b.upper_bound(r));
            }
        }
    }

    #[test]
    fn min_safe_ttl_matches_reference_jitter_rule() {
        // Reference: backoff sum × 1.5 when jitter is on.
        let p = RetryPolicy::new(2)
            .with_backoff(Backoff::fixed(MS * 1000).with_jitter(Jitter::Reference));
        assert_eq!(p.min_safe_ttl(MS * 100, 4), (MS * 3000 + MS * 300) * 4);
        assert_eq!(RetryPolicy::none().min_safe_ttl(MS * 100, 4), MS * 400);
    }
}
