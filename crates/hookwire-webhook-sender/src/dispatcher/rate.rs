//! A token bucket per subscription, enforced before each delivery.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::EndpointRateLimit;

#[derive(Debug)]
pub(crate) struct Bucket {
    limit: EndpointRateLimit,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(mut limit: EndpointRateLimit) -> Self {
        // Registration refuses an unusable limit; this only keeps a zero, negative or NaN rate
        // that reached here some other way from a division or `Duration` conversion.
        if limit.check().is_err() {
            limit.per_second = 1.0;
            limit.burst = 1;
        }
        Self {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    /// Takes one token, or says how long to wait for the next one.
    pub(crate) fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *g;
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.limit.per_second;
        *tokens = (*tokens + refill).min(f64::from(self.limit.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.limit.per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)))
        }
    }

    /// Waits until a token is available and takes it.
    pub(crate) async fn take(&self) {
        while let Err(wait) = self.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_limits_from_a_store_cannot_panic() {
        for json in [
            r#"{"per_second":0,"burst":0}"#,
            r#"{"per_second":-5,"burst":1}"#,
            r#"{"per_second":1e-300,"burst":1}"#,
        ] {
            let limit: EndpointRateLimit = serde_json::from_str(json).unwrap();
            let b = Bucket::new(limit);
            let t = Instant::now();
            assert!(b.try_take(t).is_ok(), "{json}: burst is at least 1");
            let wait = b.try_take(t).unwrap_err();
            assert!(wait > Duration::ZERO, "{json}");
        }
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let b = Bucket::new(EndpointRateLimit::new(10.0, 2).unwrap());
        let t = Instant::now();
        assert!(b.try_take(t).is_ok());
        assert!(b.try_take(t).is_ok());
        let wait = b.try_take(t).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::from_millis(90),
            "{wait:?}"
        );
        assert!(b.try_take(t + Duration::from_millis(100)).is_ok());
    }
}
