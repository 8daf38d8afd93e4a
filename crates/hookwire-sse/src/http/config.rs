//! The configuration of the SSE routes.

use bytes::Bytes;
use hookwire_core::scope::ScopeRules;
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
    /// Which streams and event filters need which scope (default: none). Checked after the
    /// hook against [`Access::scopes`]: a stream name is a room (rules matching `name` or
    /// `name.<…>` apply), an event filter needs the scope of every rule it overlaps (`*` needs
    /// them all). A refusal is 403 with `WWW-Authenticate: Bearer error="insufficient_scope"`.
    pub scope_rules: ScopeRules,
}

impl fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseConfig")
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .field("retry_jitter", &self.retry_jitter)
            .field("scope_rules", &self.scope_rules)
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
            scope_rules: ScopeRules::new(),
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

    /// Sets the scope rules (see [`SseConfig::scope_rules`](Self#structfield.scope_rules)).
    ///
    /// ```
    /// use hookwire_core::scope::ScopeRules;
    /// use hookwire_sse::http::{Access, SseConfig};
    /// let mut rules = ScopeRules::new();
    /// rules.require("audit.*", "audit:read").unwrap();
    /// let config = SseConfig::default()
    ///     .auth(|_: &hookwire_sse::http::RequestInfo<'_>| Ok(Access::organization("acme").with_service("etl", ["orders:read"])))
    ///     .scope_rules(rules);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn scope_rules(mut self, rules: ScopeRules) -> Self {
        self.scope_rules = rules;
        self
    }

    /// Runs the hook for `info`, then the scope rules for its stream (the event stream's
    /// filters are checked by [`SseConfig::admit_filter`]).
    pub(crate) fn admit(&self, info: &RequestInfo<'_>) -> Result<Access, Refused> {
        let access = self.auth.authorize(info).map_err(Refused::Status)?;
        if !info.stream.is_empty()
            && let Some(s) = self
                .scope_rules
                .missing_for_room(info.stream, &access.scopes)
        {
            return Err(Refused::Scope(s.to_owned()));
        }
        Ok(access)
    }

    /// The scope rules for an event stream's filter patterns.
    pub(crate) fn admit_filter<'a>(
        &self,
        patterns: impl IntoIterator<Item = &'a hookwire_core::Pattern>,
        access: &Access,
    ) -> Result<(), Refused> {
        for p in patterns {
            if let Some(s) = self.scope_rules.missing_for_pattern(p, &access.scopes) {
                return Err(Refused::Scope(s.to_owned()));
            }
        }
        Ok(())
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
