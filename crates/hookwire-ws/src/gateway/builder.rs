//! Building a gateway

use crate::auth::SharedAuth;
use crate::fanout::{FanOut, RemoteSink};
use crate::room::RoomManager;
use crate::{Authenticator, Error, Identity};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Builds a [`WsGateway`]; every setter is infallible and [`WsGatewayBuilder::build`] checks
/// the whole configuration.
///
/// ```
/// use hookwire_ws::{DemoAuthenticator, WsGateway};
/// use std::time::Duration;
/// let gw = WsGateway::builder()
///     .authenticator(DemoAuthenticator)
///     .resources(["order", "product"])
///     .heartbeat_interval(Duration::from_secs(15))
///     .max_subscriptions_per_client(20)
///     .build()
///     .unwrap();
/// assert_eq!(gw.path(), "/ws");
/// ```
#[must_use]
pub struct WsGatewayBuilder {
    pub(crate) path: String,
    pub(crate) auth: bool,
    pub(crate) authenticator: Option<SharedAuth>,
    pub(crate) resources: Vec<String>,
    pub(crate) heartbeat: Duration,
    pub(crate) reauth: Duration,
    pub(crate) max_clients_per_room: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) queue: usize,
    pub(crate) expose_stats: ExposeStats,
    pub(crate) org_scoping: bool,
    pub(crate) admission: Admission,
    /// The first refused [`WsGatewayBuilder::require_scope`] rule, reported by `build`.
    pub(crate) scope_error: Option<String>,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_disconnect: Option<ConnectHook>,
    pub(crate) on_message: Option<MessageHook>,
    pub(crate) fan_out: Option<Arc<dyn FanOut>>,
}

impl fmt::Debug for WsGatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsGatewayBuilder")
            .field("path", &self.path)
            .field("auth", &self.auth)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl Default for WsGatewayBuilder {
    fn default() -> Self {
        Self {
            path: "/ws".to_owned(),
            auth: true,
            authenticator: None,
            resources: Vec::new(),
            heartbeat: Duration::from_secs(30),
            reauth: Duration::ZERO,
            max_clients_per_room: 10_000,
            max_subscriptions: 100,
            max_message_bytes: 16 * 1024,
            queue: 256,
            expose_stats: ExposeStats::Off,
            org_scoping: true,
            admission: Admission::default(),
            scope_error: None,
            on_connect: None,
            on_disconnect: None,
            on_message: None,
            fan_out: None,
        }
    }
}

impl WsGatewayBuilder {
    /// The WebSocket route (default `/ws`); stats live at `<path>/stats`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    /// Whether clients must authenticate (default `true`, fail-closed: building with auth on
    /// and no [`WsGatewayBuilder::authenticator`] is an error).
    pub fn auth(mut self, on: bool) -> Self {
        self.auth = on;
        self
    }
    /// The authenticator run on every upgrade (and on stats requests in
    /// [`ExposeStats::Authenticated`] mode).
    pub fn authenticator(mut self, a: impl Authenticator) -> Self {
        self.authenticator = Some(SharedAuth(Arc::new(a)));
        self
    }
    /// Resource rooms: an event `<resource>.<op>` published with [`WsGateway::publish`] goes to
    /// room `<resource>`. Also the rooms the stats endpoint lists by name.
    pub fn resources<I, S>(mut self, r: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.resources = r.into_iter().map(Into::into).collect();
        self
    }
    /// Interval between server pings (default 30 s; zero disables heartbeats). A client that
    /// leaves two pings unanswered is closed with 4000.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat = d;
        self
    }
    /// Re-runs the authenticator on the upgrade request's URI and headers every `d` (default
    /// zero: off; only with auth on). A socket whose credentials no longer authenticate, or now
    /// belong to another organization, gets a `session-expired` error and is closed with 4003.
    pub fn reauth_interval(mut self, d: Duration) -> Self {
        self.reauth = d;
        self
    }
    /// Room capacity on this node (default 10 000).
    pub fn max_clients_per_room(mut self, n: usize) -> Self {
        self.max_clients_per_room = n;
        self
    }
    /// Rooms one client may hold (default 100).
    pub fn max_subscriptions_per_client(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }
    /// Largest inbound frame in bytes (default 16 KiB); larger ones close the socket with 1009.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }
    /// Frames a client's outbound queue holds (default 256); overflow closes it with 1013.
    pub fn outbound_queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }
    /// Who may read `<path>/stats` (default [`ExposeStats::Off`]).
    pub fn expose_stats(mut self, mode: ExposeStats) -> Self {
        self.expose_stats = mode;
        self
    }
    /// Org scoping (default on): events without organization reach only clients without
    /// organization unless published with [`WsGateway::publish_global`]. Off, they reach every
    /// member (events *with* an organization still reach only that organization).
    pub fn org_scoping(mut self, on: bool) -> Self {
        self.org_scoping = on;
        self
    }
    /// Whether `identity` may join `room` (default: allow). Replaces any
    /// [`room_policy_async`](Self::room_policy_async).
    pub fn room_policy(
        mut self,
        f: impl Fn(&Identity, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.admission.policy = Some(RoomPolicy::sync(f));
        self
    }
    /// An asynchronous room policy (it may look something up): `Ok(true)` admits the join,
    /// `Ok(false)` refuses it with `forbidden`; an `Err`, or no answer within
    /// [`room_policy_timeout`](Self::room_policy_timeout), refuses it with
    /// `policy-unavailable` (fail closed). While it runs, the client's later frames wait (so
    /// they keep their order) and its outbound frames keep flowing. Replaces any
    /// [`room_policy`](Self::room_policy).
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder()
    ///     .auth(false)
    ///     .room_policy_async(|who: Identity, room: String| async move {
    ///         // e.g. a database lookup of the room's members
    ///         Ok::<_, std::io::Error>(room.starts_with("team-") && who.organization_id().is_some())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = gw;
    /// ```
    pub fn room_policy_async<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(Identity, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<bool, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + 'static,
    {
        self.admission.policy = Some(RoomPolicy::from_async(f));
        self
    }
    /// Longest an asynchronous room policy may take before the join is refused (default
    /// [`DEFAULT_POLICY_TIMEOUT`], 5 s; must be > 0).
    pub fn room_policy_timeout(mut self, d: Duration) -> Self {
        self.admission.timeout = d;
        self
    }
    /// Rooms whose events overlap `pattern` (event-pattern grammar: `audit`, `audit.*`, `*`)
    /// need `scope`: an identity without it is refused with `insufficient-scope`, whatever the
    /// room policy says. See [`hookwire_core::scope::ScopeRules`]. Rules are checked by
    /// [`build`](Self::build).
    pub fn require_scope(mut self, pattern: &str, scope: &str) -> Self {
        if let Err(e) = self.admission.rules.require(pattern, scope) {
            self.scope_error.get_or_insert(e.to_string());
        }
        self
    }
    /// Applies the event gateway's shared settings (they win over the WebSocket-only ones).
    #[cfg(feature = "sse")]
    pub(crate) fn shared(
        mut self,
        auth: bool,
        authenticator: Option<SharedAuth>,
        admission: Admission,
        org_scoping: bool,
    ) -> Self {
        self.auth = auth;
        self.authenticator = authenticator;
        self.admission = admission;
        self.org_scoping = org_scoping;
        self
    }
    /// Called once a client is registered, before its `connected` frame.
    pub fn on_connect(mut self, f: impl Fn(ClientInfo<'_>) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }
    /// Called once when a client is gone, after it left its rooms.
    pub fn on_disconnect(mut self, f: impl Fn(ClientInfo<'_>) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }
    /// Called for frames whose `type` is not part of the protocol.
    pub fn on_message(
        mut self,
        f: impl Fn(ClientInfo<'_>, &Value) -> HookReply + Send + Sync + 'static,
    ) -> Self {
        self.on_message = Some(Arc::new(f));
        self
    }
    /// A cross-node fan-out (for example `BusFanOut`, feature `events`).
    pub fn fan_out(mut self, f: impl FanOut) -> Self {
        self.fan_out = Some(Arc::new(f));
        self
    }

    #[cfg(feature = "sse")]
    pub(crate) fn path_str(&self) -> &str {
        &self.path
    }

    /// Checks the configuration and builds the gateway.
    ///
    /// # Errors
    /// [`Error::is_missing_authenticator`] when auth is on without an authenticator;
    /// [`Error::is_invalid_option`] for a path not starting with `/` or containing route
    /// syntax (`{`, `}`, `*`), a zero
    /// `max_message_bytes`, `outbound_queue` or `max_subscriptions_per_client`, and
    /// [`ExposeStats::Authenticated`] with auth off, a zero `room_policy_timeout`, and a
    /// refused [`require_scope`](Self::require_scope) rule.
    pub fn build(self) -> Result<WsGateway, Error> {
        if self.auth && self.authenticator.is_none() {
            return Err(Error::missing_authenticator());
        }
        if !self.path.starts_with('/') {
            return Err(Error::invalid("path must start with '/'"));
        }
        if self.path.contains(['{', '}', '*']) {
            // Routers would read these as parameters or wildcards, not as the literal path.
            return Err(Error::invalid("path must not contain '{', '}' or '*'"));
        }
        if self.max_message_bytes == 0 {
            return Err(Error::invalid("max_message_bytes must be > 0"));
        }
        if self.queue == 0 {
            return Err(Error::invalid("outbound_queue must be > 0"));
        }
        if self.max_subscriptions == 0 {
            return Err(Error::invalid("max_subscriptions_per_client must be > 0"));
        }
        if let Some(e) = &self.scope_error {
            return Err(Error::invalid(e));
        }
        if self.admission.timeout.is_zero() {
            return Err(Error::invalid("room_policy_timeout must be > 0"));
        }
        if self.expose_stats == ExposeStats::Authenticated && !self.auth {
            // Nobody could ever be authenticated: say so now instead of answering 401 forever.
            return Err(Error::invalid(
                "expose_stats(Authenticated) needs auth on and an authenticator",
            ));
        }
        let inner = Arc::new(Inner {
            event_relay: std::sync::OnceLock::new(),
            rooms: RoomManager::new(self.max_clients_per_room),
            authenticator: if self.auth {
                self.authenticator.clone()
            } else {
                None
            },
            cfg: self,
        });
        if let Some(f) = &inner.cfg.fan_out {
            f.start(RemoteSink::new(&inner));
        }
        Ok(WsGateway { inner })
    }
}
