//! The gateway: configuration (fail-closed at build time), publishing, and the per-connection
//! protocol state machine [`Connection`], free of any web framework.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookwire_core::Event;
use serde_json::Value;

use crate::auth::SharedAuth;
use crate::fanout::{Envelope, FanOut, RemoteSink};
use crate::frame::{self, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_TOO_BIG, ErrorCode};
use crate::room::{Audience, KillSignal, Member, Outbound, RoomManager, Stats};
use crate::{AuthRequest, Authenticator, Error, Identity};

/// Who may read `GET <path>/stats`.
///
/// ```
/// assert_eq!(hookwire_ws::ExposeStats::default(), hookwire_ws::ExposeStats::Off);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExposeStats {
    /// No stats route (404).
    #[default]
    Off,
    /// Anyone.
    On,
    /// Only requests the authenticator accepts (401 otherwise).
    Authenticated,
}

/// What an `on_message` hook did with a custom frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HookReply {
    /// Handled; nothing to send back.
    Handled,
    /// Handled; send this JSON frame back to the client.
    Reply(Value),
    /// Not a frame this application knows: the client gets an `unknown-type` error.
    Unknown,
}

/// The client a hook is called for.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The protocol client id (`ws_…`).
    pub client_id: &'a str,
    /// Who the client is.
    pub identity: &'a Identity,
}

type ConnectHook = Arc<dyn Fn(ClientInfo<'_>) + Send + Sync>;
type MessageHook = Arc<dyn Fn(ClientInfo<'_>, &Value) -> HookReply + Send + Sync>;
pub(crate) type RoomPolicy = Arc<dyn Fn(&Identity, &str) -> bool + Send + Sync>;

/// Longest accepted room name, in bytes.
pub const MAX_ROOM_NAME_BYTES: usize = 256;

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
    path: String,
    auth: bool,
    authenticator: Option<SharedAuth>,
    resources: Vec<String>,
    heartbeat: Duration,
    reauth: Duration,
    max_clients_per_room: usize,
    max_subscriptions: usize,
    max_message_bytes: usize,
    queue: usize,
    expose_stats: ExposeStats,
    org_scoping: bool,
    room_policy: Option<RoomPolicy>,
    on_connect: Option<ConnectHook>,
    on_disconnect: Option<ConnectHook>,
    on_message: Option<MessageHook>,
    fan_out: Option<Arc<dyn FanOut>>,
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
            room_policy: None,
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
    /// Whether `identity` may join `room` (default: allow).
    pub fn room_policy(
        mut self,
        f: impl Fn(&Identity, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.room_policy = Some(Arc::new(f));
        self
    }
    /// Applies the event gateway's shared settings (they win over the WebSocket-only ones).
    #[cfg(feature = "sse")]
    pub(crate) fn shared(
        mut self,
        auth: bool,
        authenticator: Option<SharedAuth>,
        policy: Option<RoomPolicy>,
        org_scoping: bool,
    ) -> Self {
        self.auth = auth;
        self.authenticator = authenticator;
        self.room_policy = policy;
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
    /// A cross-node fan-out (for example `redis::RoomRedisFanOut`).
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
    /// [`ExposeStats::Authenticated`] with auth off.
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

/// Receives events relayed from other nodes (set by the event gateway for its SSE side).
pub(crate) type EventRelay = Box<dyn Fn(&Bytes) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) rooms: RoomManager,
    authenticator: Option<SharedAuth>,
    cfg: WsGatewayBuilder,
    pub(crate) event_relay: std::sync::OnceLock<EventRelay>,
}

/// A WebSocket room gateway: authenticate upgrades, run connections, publish events.
/// Cheap to clone (shared state).
///
/// ```
/// use hookwire_ws::WsGateway;
/// let gw = WsGateway::builder().auth(false).resources(["order"]).build().unwrap();
/// let ev = hookwire_core::Event::new("order.created", serde_json::json!({"id": 1}))
///     .with_organization("acme");
/// assert_eq!(gw.publish(&ev), 0); // nobody connected yet
/// ```
#[derive(Clone)]
pub struct WsGateway {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for WsGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsGateway")
            .field("path", &self.inner.cfg.path)
            .field("clients", &self.inner.rooms.client_count())
            .finish_non_exhaustive()
    }
}

impl WsGateway {
    /// A builder with the defaults of spec `ws.md`.
    pub fn builder() -> WsGatewayBuilder {
        WsGatewayBuilder::default()
    }

    /// The WebSocket route.
    pub fn path(&self) -> &str {
        &self.inner.cfg.path
    }
    /// The stats mode.
    pub fn expose_stats(&self) -> ExposeStats {
        self.inner.cfg.expose_stats
    }
    /// Largest accepted inbound frame in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.cfg.max_message_bytes
    }
    /// The heartbeat period, `None` when disabled.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        (!self.inner.cfg.heartbeat.is_zero()).then_some(self.inner.cfg.heartbeat)
    }
    /// The re-authentication period, `None` when off (or auth is off).
    pub fn reauth_interval(&self) -> Option<Duration> {
        (self.inner.authenticator.is_some() && !self.inner.cfg.reauth.is_zero())
            .then_some(self.inner.cfg.reauth)
    }
    /// The room manager of this node.
    pub fn rooms(&self) -> &RoomManager {
        &self.inner.rooms
    }
    /// Whether org scoping is on.
    pub fn org_scoping(&self) -> bool {
        self.inner.cfg.org_scoping
    }
    /// Whether `identity` may join `room` under the configured room policy.
    pub fn may_join(&self, identity: &Identity, room: &str) -> bool {
        self.inner
            .cfg
            .room_policy
            .as_ref()
            .is_none_or(|p| p(identity, room))
    }

    /// Authenticates an upgrade request: the authenticator's answer when auth is on, an
    /// anonymous identity when it is off. `None` means refuse with 401 *before* upgrading.
    /// Cancel safe if the authenticator's future is.
    ///
    /// ```
    /// use hookwire_ws::{AuthRequest, DemoAuthenticator, WsGateway};
    /// let gw = WsGateway::builder().authenticator(DemoAuthenticator).build().unwrap();
    /// let (uri, h): (http::Uri, _) = ("/ws".parse().unwrap(), http::HeaderMap::new());
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert!(rt.block_on(gw.authenticate(AuthRequest::new(&uri, &h))).is_none());
    /// ```
    pub async fn authenticate(&self, req: AuthRequest<'_>) -> Option<Identity> {
        SharedAuth::identify(self.inner.authenticator.as_ref(), req).await
    }

    /// Authenticates a stats request according to [`ExposeStats`]: `Ok(Some(stats))` to
    /// answer 200, `Ok(None)` for 404 (off), `Err(())` for 401. Cancel safe if the
    /// authenticator's future is.
    ///
    /// ```
    /// use hookwire_ws::{AuthRequest, ExposeStats, WsGateway};
    /// let gw = WsGateway::builder().auth(false).expose_stats(ExposeStats::On).build().unwrap();
    /// let (uri, h): (http::Uri, _) = ("/ws/stats".parse().unwrap(), http::HeaderMap::new());
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(gw.stats_for(AuthRequest::new(&uri, &h))).unwrap().unwrap().clients, 0);
    /// ```
    #[allow(clippy::result_unit_err, reason = "the only failure is 'unauthorized'")]
    pub async fn stats_for(&self, req: AuthRequest<'_>) -> Result<Option<Stats>, ()> {
        match self.inner.cfg.expose_stats {
            ExposeStats::Off => Ok(None),
            ExposeStats::On => Ok(Some(self.stats())),
            ExposeStats::Authenticated => match &self.inner.authenticator {
                Some(a) if a.0.authenticate(req).await.is_some() => Ok(Some(self.stats())),
                // Authenticated stats with auth off has nobody to authenticate: refuse.
                _ => Err(()),
            },
        }
    }

    /// Closes every client of this node with 1001 ("going away"), for a graceful shutdown or
    /// deploy: clients reconnect (to another node). New upgrades are still accepted; stop the
    /// listener first. Returns how many clients were asked to close.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let c = gw.connect(Identity::new());
    /// assert_eq!(gw.close_all(), 1);
    /// assert!(c.kill_signal().is_killed());
    /// ```
    pub fn close_all(&self) -> usize {
        self.inner.rooms.close_all(frame::CLOSE_GOING_AWAY)
    }

    /// Counts of this node; only configured resource rooms are listed by name.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).resources(["order"]).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// c.on_text(r#"{"type":"subscribe","resource":"order"}"#);
    /// c.on_text(r#"{"type":"subscribe","resource":"my-private-room"}"#);
    /// let s = gw.stats();
    /// assert_eq!((s.clients, s.rooms, s.subscriptions.len()), (1, 2, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let res = &self.inner.cfg.resources;
        self.inner.rooms.stats(|r| res.iter().any(|x| x == r))
    }

    /// Registers an authenticated client and returns its protocol state machine. Drop the
    /// [`Connection`] when the socket is gone: that leaves its rooms and runs `on_disconnect`.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let c = gw.connect(Identity::new());
    /// assert!(c.client_id().starts_with("ws_"));
    /// assert_eq!(gw.rooms().client_count(), 1);
    /// drop(c);
    /// assert_eq!(gw.rooms().client_count(), 0);
    /// ```
    pub fn connect(&self, identity: Identity) -> Connection {
        let client_id = hookwire_core::id::new_id("ws");
        let member = self
            .inner
            .rooms
            .register(client_id, identity, self.inner.cfg.queue);
        if let Some(h) = &self.inner.cfg.on_connect {
            h(ClientInfo {
                client_id: member.client_id(),
                identity: member.identity(),
            });
        }
        Connection {
            gw: self.clone(),
            member,
            subs: Vec::new(),
            missed_pongs: 0,
        }
    }

    fn room_for(&self, name: &str) -> Option<&str> {
        // The longest resource that prefixes the event name followed by '.' wins, so
        // `order.item.created` goes to `order.item` when both `order` and `order.item` exist.
        self.inner
            .cfg
            .resources
            .iter()
            .filter(|r| {
                name.len() > r.len()
                    && name.starts_with(r.as_str())
                    && name.as_bytes()[r.len()] == b'.'
            })
            .max_by_key(|r| r.len())
            .map(String::as_str)
    }

    fn scoped_audience(&self, e: &Event, global: bool) -> Audience {
        match e.organization_id() {
            Some(org) => Audience::Org(Arc::from(org)),
            None if global || !self.inner.cfg.org_scoping => Audience::All,
            None => Audience::NoOrg,
        }
    }

    fn send(&self, room: &str, audience: Audience, frame: Bytes) -> usize {
        let n = self.inner.rooms.deliver(room, &audience, frame.clone());
        if let Some(f) = &self.inner.cfg.fan_out {
            f.publish(&Envelope::new(room, audience, frame));
        }
        n
    }

    /// Sets where events relayed from other nodes go (once; the event gateway's SSE side).
    #[cfg(feature = "sse")]
    pub(crate) fn set_event_relay(&self, f: EventRelay) {
        let _ = self.inner.event_relay.set(f);
    }

    /// Sends an event's JSON to the other nodes' event relays, if there is a fan-out.
    #[cfg(feature = "sse")]
    pub(crate) fn fan_out_event(&self, json: Bytes) {
        if let Some(f) = &self.inner.cfg.fan_out {
            f.publish(&Envelope::event(json));
        }
    }

    /// Publishes a resource event to the room of its resource (`order.created` → `order`);
    /// returns the local clients it was queued for (0 when no resource matches). An event with
    /// an organization reaches only that organization's clients.
    pub fn publish(&self, e: &Event) -> usize {
        match self.room_for(&e.name) {
            Some(room) => {
                let room = room.to_owned();
                self.publish_to(&room, e)
            }
            None => 0,
        }
    }

    /// Publishes an event to an explicit room, org-scoped like [`WsGateway::publish`].
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new().with_organization("acme"));
    /// c.on_text(r#"{"type":"subscribe","resource":"dashboard"}"#);
    /// let e = hookwire_core::Event::new("kpi.updated", serde_json::json!(1)).with_organization("acme");
    /// assert_eq!(gw.publish_to("dashboard", &e), 1);
    /// ```
    pub fn publish_to(&self, room: &str, e: &Event) -> usize {
        self.send(room, self.scoped_audience(e, false), frame::event(e))
    }

    /// Publishes an event without organization to *every* member of its resource room, all
    /// tenants included (an explicit global event). An event with an organization stays
    /// scoped to it.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).resources(["status"]).build().unwrap();
    /// let mut c = gw.connect(Identity::new().with_organization("acme"));
    /// c.on_text(r#"{"type":"subscribe","resource":"status"}"#);
    /// let e = hookwire_core::Event::new("status.maintenance", serde_json::json!({}));
    /// assert_eq!(gw.publish(&e), 0); // no organization: not a tenant's event
    /// assert_eq!(gw.publish_global(&e), 1);
    /// ```
    pub fn publish_global(&self, e: &Event) -> usize {
        match self.room_for(&e.name) {
            Some(room) => {
                let room = room.to_owned();
                self.send(&room, self.scoped_audience(e, true), frame::event(e))
            }
            None => 0,
        }
    }

    /// Sends `{"type":"broadcast","channel":room,"data":data}` to every member of `room`.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new().with_organization("acme"));
    /// c.on_text(r#"{"type":"subscribe","resource":"lobby"}"#);
    /// assert_eq!(gw.broadcast("lobby", &serde_json::json!({"hi": 1})), 1);
    /// assert_eq!(&c.try_next_outbound().unwrap()[..], br#"{"type":"broadcast","channel":"lobby","data":{"hi":1}}"#);
    /// ```
    pub fn broadcast(&self, room: &str, data: &Value) -> usize {
        self.send(room, Audience::All, frame::broadcast(room, data))
    }

    /// Sends the broadcast frame only to members of `room` in organization `org`.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new().with_organization("acme"));
    /// c.on_text(r#"{"type":"subscribe","resource":"lobby"}"#);
    /// assert_eq!(gw.broadcast_to_org("globex", "lobby", &serde_json::json!(1)), 0);
    /// assert_eq!(gw.broadcast_to_org("acme", "lobby", &serde_json::json!(1)), 1);
    /// ```
    pub fn broadcast_to_org(&self, org: &str, room: &str, data: &Value) -> usize {
        self.send(
            room,
            Audience::Org(Arc::from(org)),
            frame::broadcast(room, data),
        )
    }
}

/// A close the driver must perform: send a close frame with `code` and `reason`, then stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// The close reason.
    pub reason: &'static str,
}

impl Close {
    /// The reason text for a close code this crate sends.
    pub fn for_code(code: u16) -> Self {
        let reason = match code {
            CLOSE_TOO_BIG => "message too large",
            frame::CLOSE_SLOW_CLIENT => "slow client",
            CLOSE_HEARTBEAT_TIMEOUT => "heartbeat timeout",
            frame::CLOSE_GOING_AWAY => "server going away",
            frame::CLOSE_SESSION_EXPIRED => "session expired",
            _ => "closing",
        };
        Self { code, reason }
    }
}

/// What the driver does after feeding one input to a [`Connection`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reaction {
    /// A frame to send to the client.
    pub reply: Option<Bytes>,
    /// Close the socket after sending the reply.
    pub close: Option<Close>,
}

impl Reaction {
    fn reply(b: Bytes) -> Self {
        Self {
            reply: Some(b),
            close: None,
        }
    }
    fn error(code: ErrorCode, msg: &str, room: Option<&str>) -> Self {
        Self::reply(frame::error(code, msg, room))
    }
}

/// One client's protocol state: subscriptions, heartbeat bookkeeping and its outbound queue.
/// Sans-IO: a driver (the axum integration, or your own) feeds it inbound frames and ticks and
/// writes what it returns.
pub struct Connection {
    gw: WsGateway,
    member: Arc<Member>,
    subs: Vec<Arc<str>>,
    missed_pongs: u8,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("client_id", &self.member.client_id())
            .field("subscriptions", &self.subs)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The protocol client id (`ws_…`).
    pub fn client_id(&self) -> &str {
        self.member.client_id()
    }
    /// Who the client is.
    pub fn identity(&self) -> &Identity {
        self.member.identity()
    }
    /// Rooms held.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subs.iter().map(|s| &**s)
    }
    /// The `connected` frame to send first.
    pub fn hello(&self) -> Bytes {
        frame::connected(self.client_id(), &self.gw.inner.cfg.resources)
    }
    /// The heartbeat period, `None` when disabled.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.gw.heartbeat_interval()
    }
    /// The signal a broadcaster (or shutdown) uses to close this connection.
    pub fn kill_signal(&self) -> Arc<KillSignal> {
        Arc::clone(self.member.kill_signal())
    }
    /// Waits for the next queued outbound frame, or for a close request (slow client,
    /// shutdown). Cancel safe.
    pub async fn next_outbound(&self) -> Outbound {
        self.member.outbox().recv().await
    }
    /// A queued outbound frame if one is ready (for coalescing writes).
    pub fn try_next_outbound(&self) -> Option<Bytes> {
        self.member.outbox().try_recv()
    }

    /// A heartbeat tick: a `ping` frame, or a 4000 close if two pings went unanswered.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// assert_eq!(&c.on_heartbeat().reply.unwrap()[..], br#"{"type":"ping"}"#);
    /// c.on_heartbeat();
    /// assert_eq!(c.on_heartbeat().close.unwrap().code, hookwire_ws::CLOSE_HEARTBEAT_TIMEOUT);
    /// ```
    pub fn on_heartbeat(&mut self) -> Reaction {
        if self.missed_pongs >= 2 {
            return Reaction {
                reply: None,
                close: Some(Close::for_code(CLOSE_HEARTBEAT_TIMEOUT)),
            };
        }
        self.missed_pongs += 1;
        Reaction::reply(Bytes::from_static(frame::PING))
    }

    /// The result of re-running the authenticator on the upgrade request: nothing while it
    /// still yields the same organization; otherwise a `session-expired` error and close 4003
    /// (the client's room memberships are indexed by organization, so it cannot change live).
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let acme = Identity::new().with_organization("acme");
    /// let mut c = gw.connect(acme.clone());
    /// assert!(c.on_reauth(Some(&acme)).close.is_none());
    /// let moved = Identity::new().with_organization("globex");
    /// assert_eq!(c.on_reauth(Some(&moved)).close.unwrap().code, hookwire_ws::CLOSE_SESSION_EXPIRED);
    /// assert_eq!(c.on_reauth(None).close.unwrap().code, 4003);
    /// ```
    pub fn on_reauth(&mut self, now: Option<&Identity>) -> Reaction {
        match now {
            Some(who) if who.organization_id() == self.identity().organization_id() => {
                Reaction::default()
            }
            _ => Reaction {
                reply: Some(frame::error(
                    ErrorCode::SessionExpired,
                    "session expired",
                    None,
                )),
                close: Some(Close::for_code(frame::CLOSE_SESSION_EXPIRED)),
            },
        }
    }

    /// An inbound frame over `max_message_bytes` (the transport noticed): an error frame, then
    /// close 1009.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// let out = c.on_too_large();
    /// assert!(out.reply.is_some());
    /// assert_eq!(out.close.unwrap().code, hookwire_ws::CLOSE_TOO_BIG);
    /// ```
    pub fn on_too_large(&mut self) -> Reaction {
        Reaction {
            reply: Some(frame::error(
                ErrorCode::MessageTooLarge,
                "message exceeds max_message_bytes",
                None,
            )),
            close: Some(Close::for_code(CLOSE_TOO_BIG)),
        }
    }

    /// An inbound binary frame: not part of the protocol.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// assert!(c.on_binary(3).close.is_none());
    /// assert!(c.on_binary(1 << 20).close.is_some()); // over max_message_bytes
    /// ```
    pub fn on_binary(&mut self, len: usize) -> Reaction {
        if len > self.gw.inner.cfg.max_message_bytes {
            return self.on_too_large();
        }
        Reaction::error(ErrorCode::BinaryNotSupported, "send JSON text frames", None)
    }

    /// An inbound text frame.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// let out = c.on_text(r#"{"type":"subscribe","resource":"order"}"#);
    /// assert_eq!(&out.reply.unwrap()[..], br#"{"type":"subscribed","channel":"order"}"#);
    /// assert!(c.on_text("not json").reply.is_some()); // an error frame, never a panic
    /// ```
    pub fn on_text(&mut self, text: &str) -> Reaction {
        if text.len() > self.gw.inner.cfg.max_message_bytes {
            return self.on_too_large();
        }
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Reaction::error(ErrorCode::BadJson, "expected a JSON object", None);
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let room = msg
            .get("resource")
            .or_else(|| msg.get("channel"))
            .and_then(Value::as_str);
        match kind {
            "subscribe" => self.subscribe(room),
            "unsubscribe" => self.unsubscribe(room),
            "pong" => {
                self.missed_pongs = 0;
                Reaction::default()
            }
            "ping" => Reaction::reply(Bytes::from_static(frame::PONG)),
            _ => {
                let info = ClientInfo {
                    client_id: self.member.client_id(),
                    identity: self.member.identity(),
                };
                let reply = match &self.gw.inner.cfg.on_message {
                    Some(h) => h(info, &Value::Object(msg)),
                    None => HookReply::Unknown,
                };
                match reply {
                    HookReply::Handled => Reaction::default(),
                    HookReply::Reply(v) => {
                        Reaction::reply(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
                    }
                    HookReply::Unknown => {
                        Reaction::error(ErrorCode::UnknownType, "unknown message type", None)
                    }
                }
            }
        }
    }

    fn valid_room(room: Option<&str>) -> Result<&str, Reaction> {
        match room {
            Some(r) if !r.is_empty() && r.len() <= MAX_ROOM_NAME_BYTES => Ok(r),
            Some(r) if !r.is_empty() => Err(Reaction::error(
                ErrorCode::BadRequest,
                "room name too long",
                None,
            )),
            _ => Err(Reaction::error(
                ErrorCode::BadRequest,
                "missing \"resource\"",
                None,
            )),
        }
    }

    fn subscribe(&mut self, room: Option<&str>) -> Reaction {
        let room = match Self::valid_room(room) {
            Ok(r) => r,
            Err(o) => return o,
        };
        let held = self.subs.iter().any(|s| &**s == room);
        if !held && self.subs.len() >= self.gw.inner.cfg.max_subscriptions {
            return Reaction::error(
                ErrorCode::TooManySubscriptions,
                "subscription limit reached",
                Some(room),
            );
        }
        if !self.gw.may_join(self.member.identity(), room) {
            return Reaction::error(ErrorCode::Forbidden, "subscription denied", Some(room));
        }
        if let Err(code) = self.gw.inner.rooms.subscribe(&self.member, room) {
            return Reaction::error(code, "room at capacity", Some(room));
        }
        if !held {
            self.subs.push(Arc::from(room));
        }
        Reaction::reply(frame::channel("subscribed", room))
    }

    fn unsubscribe(&mut self, room: Option<&str>) -> Reaction {
        let room = match Self::valid_room(room) {
            Ok(r) => r,
            Err(o) => return o,
        };
        if let Some(i) = self.subs.iter().position(|s| &**s == room) {
            self.subs.swap_remove(i);
            self.gw.inner.rooms.unsubscribe(&self.member, room);
        }
        Reaction::reply(frame::channel("unsubscribed", room))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let rooms = &self.gw.inner.rooms;
        rooms.remove(&self.member, self.subs.iter().map(|s| &**s));
        if let Some(h) = &self.gw.inner.cfg.on_disconnect {
            h(ClientInfo {
                client_id: self.member.client_id(),
                identity: self.member.identity(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gw(b: WsGatewayBuilder) -> WsGateway {
        b.auth(false).resources(["order"]).build().unwrap()
    }

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn build_fails_closed_without_authenticator() {
        let err = WsGateway::builder().build().unwrap_err();
        assert!(err.is_missing_authenticator());
        assert!(WsGateway::builder().auth(false).build().is_ok());
        assert!(
            WsGateway::builder()
                .auth(false)
                .expose_stats(ExposeStats::Authenticated)
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
        assert!(
            WsGateway::builder()
                .auth(false)
                .path("/ws/{x}")
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
        assert!(
            WsGateway::builder()
                .auth(false)
                .path("ws")
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
    }

    #[test]
    fn subscribe_limits_and_policy() {
        let g = gw(WsGateway::builder()
            .max_subscriptions_per_client(1)
            .room_policy(|_, room| room != "secret"));
        let mut c = g.connect(Identity::new());
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"secret"}"#)
                    .reply
                    .unwrap()
            )["code"],
            "forbidden"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"a"}"#)
                    .reply
                    .unwrap()
            ),
            json!({"type":"subscribed","channel":"a"})
        );
        // Re-subscribing to a held room is not a new subscription.
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","channel":"a"}"#)
                    .reply
                    .unwrap()
            )["type"],
            "subscribed"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"b"}"#)
                    .reply
                    .unwrap()
            )["code"],
            "too-many-subscriptions"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"unsubscribe","resource":"a"}"#)
                    .reply
                    .unwrap()
            ),
            json!({"type":"unsubscribed","channel":"a"})
        );
        assert_eq!(
            parse(&c.on_text(r#"{"type":"subscribe"}"#).reply.unwrap())["code"],
            "bad-request"
        );
    }

    #[test]
    fn bad_input_gets_error_frames() {
        let g = gw(WsGateway::builder().max_message_bytes(64));
        let mut c = g.connect(Identity::new());
        for bad in ["{", "123", "[]", "null", "\"x\""] {
            assert_eq!(
                parse(&c.on_text(bad).reply.unwrap())["code"],
                "bad-json",
                "{bad}"
            );
        }
        assert_eq!(
            parse(&c.on_text(r#"{"type":"dance"}"#).reply.unwrap())["code"],
            "unknown-type"
        );
        let big = format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(100));
        let o = c.on_text(&big);
        assert_eq!(o.close.unwrap().code, 1009);
    }

    #[test]
    fn two_missed_pongs_close() {
        let g = gw(WsGateway::builder());
        let mut c = g.connect(Identity::new());
        assert!(c.on_heartbeat().reply.is_some());
        c.on_text(r#"{"type":"pong"}"#);
        assert!(c.on_heartbeat().close.is_none());
        assert!(c.on_heartbeat().close.is_none());
        assert_eq!(c.on_heartbeat().close.unwrap().code, 4000);
    }

    #[test]
    fn drop_leaves_rooms_and_runs_hook() {
        let gone = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g2 = Arc::clone(&gone);
        let g = gw(WsGateway::builder().on_disconnect(move |_| {
            g2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let mut c = g.connect(Identity::new());
        c.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        assert_eq!(g.rooms().room_len("order"), 1);
        drop(c);
        assert_eq!(g.rooms().room_len("order"), 0);
        assert_eq!(g.rooms().client_count(), 0);
        assert_eq!(gone.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn events_route_by_resource_and_org() {
        let g = gw(WsGateway::builder());
        let mut acme = g.connect(Identity::new().with_organization("acme"));
        let mut none = g.connect(Identity::new());
        acme.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        none.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        let e = Event::new("order.paid", json!(1)).with_organization("acme");
        assert_eq!(g.publish(&e), 1);
        assert_eq!(
            parse(&acme.try_next_outbound().unwrap())["type"],
            "order.paid"
        );
        assert!(none.try_next_outbound().is_none());
        assert_eq!(g.publish(&Event::new("order.paid", json!(1))), 1);
        assert!(acme.try_next_outbound().is_none());
        assert_eq!(g.publish_global(&Event::new("order.paid", json!(1))), 2);
        assert_eq!(g.publish(&Event::new("orders.paid", json!(1))), 0);
    }
}
