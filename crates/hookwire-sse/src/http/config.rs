//! The configuration of the SSE routes.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Connection settings shared by the hyper/axum body and the lean acceptor.
#[derive(Clone)]
#[non_exhaustive]
pub struct SseConfig {
    /// Interval of keep-alive comments on idle connections (default 15 s).
    pub keep_alive: Duration,
    /// Base reconnect delay sent as `retry:` (default 1 s).
    pub retry: Duration,
    /// Random extra reconnect delay per connection, so a restart does not cause a reconnect
    /// storm (default 3 s).
    pub retry_jitter: Duration,
    /// The authorization hook. There is no silent default: until one is chosen with
    /// [`SseConfig::auth`] (a hook, or [`Public`] for public streams), every stream and state
    /// request answers 401.
    pub auth: Arc<dyn Authorize>,
}

impl fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseConfig")
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .field("retry_jitter", &self.retry_jitter)
            .finish_non_exhaustive()
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(1),
            retry_jitter: Duration::from_secs(3),
            auth: Arc::new(Unchosen),
        }
    }
}

impl SseConfig {
    /// Sets the keep-alive interval.
    #[must_use]
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Sets the reconnect hint (base and jitter).
    #[must_use]
    pub fn retry(mut self, base: Duration, jitter: Duration) -> Self {
        self.retry = base;
        self.retry_jitter = jitter;
        self
    }

    /// Sets the authorization hook.
    #[must_use]
    pub fn auth(mut self, auth: impl Authorize) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The first bytes of every stream: a jittered `retry:` and an opening comment.
    pub(crate) fn preamble(&self) -> Bytes {
        let jitter = u64::try_from(self.retry_jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter == 0 {
            0
        } else {
            hookwire_core::id::random_u64() % jitter
        };
        let ms = u64::try_from(self.retry.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(extra);
        Bytes::from(format!("retry: {ms}\n: hookwire\n\n"))
    }
}
