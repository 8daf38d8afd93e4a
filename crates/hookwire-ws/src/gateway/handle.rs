//! The built gateway

use crate::auth::SharedAuth;
use crate::fanout::Envelope;
use crate::frame::{self};
use crate::room::{Audience, RoomManager, Stats};
use crate::{AuthRequest, Identity};
use bytes::Bytes;
use hookwire_core::Event;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Receives events relayed from other nodes (set by the event gateway for its SSE side).
pub(crate) type EventRelay = Box<dyn Fn(&Bytes) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) rooms: RoomManager,
    pub(crate) authenticator: Option<SharedAuth>,
    pub(crate) cfg: WsGatewayBuilder,
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
    /// Whether `identity` may join `room` under the scope rules and a synchronous room policy.
    /// An asynchronous policy cannot answer here: `false` (fail closed); use
    /// [`may_join_async`](Self::may_join_async).
    pub fn may_join(&self, identity: &Identity, room: &str) -> bool {
        self.inner.cfg.admission.decide_now(identity, room).is_ok()
    }

    /// Whether `identity` may join `room`: scope rules, then the room policy, awaited under
    /// its time limit when asynchronous (an error or no answer is `false`).
    pub async fn may_join_async(&self, identity: &Identity, room: &str) -> bool {
        self.inner
            .cfg
            .admission
            .decide(identity, room)
            .await
            .is_ok()
    }

    /// The connected client `client_id` on this node (its identity, kill signal, queue), if
    /// any. Client ids are node-local: a client connected to another node is not found.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let c = gw.connect(Identity::service("etl", ["audit:read"]));
    /// let found = gw.client(c.client_id()).unwrap();
    /// assert_eq!(found.identity().client_id(), Some("etl"));
    /// drop(c);
    /// assert!(gw.client("ws_gone").is_none());
    /// ```
    pub fn client(&self, client_id: &str) -> Option<Arc<crate::Member>> {
        self.inner.rooms.client(client_id)
    }

    /// Sends the JSON frame `data` to one client of this node, without waiting; `false` when
    /// it is not connected here, closing, or its queue is full (which closes it with 1013).
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// assert!(gw.send_to(c.client_id(), &serde_json::json!({"type":"notice"})));
    /// assert_eq!(&c.try_next_outbound().unwrap()[..], br#"{"type":"notice"}"#);
    /// ```
    pub fn send_to(&self, client_id: &str, data: &Value) -> bool {
        let Some(m) = self.inner.rooms.client(client_id) else {
            return false;
        };
        m.offer(Bytes::from(serde_json::to_vec(data).unwrap_or_default()))
    }

    /// Relays `data` as a broadcast frame to the other members of `room` in the sender's
    /// organization (members without organization when it has none), never back to the sender
    /// and never to another tenant; through the fan-out to other nodes too. Returns the local
    /// clients it was queued for; 0 when `sender` is not connected here or does not hold
    /// `room` (a client cannot speak into a room it has not joined).
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder().auth(false).build().unwrap();
    /// let acme = || Identity::new().with_organization("acme");
    /// let (mut a, mut b) = (gw.connect(acme()), gw.connect(acme()));
    /// let mut other = gw.connect(Identity::new().with_organization("globex"));
    /// for c in [&mut a, &mut b, &mut other] {
    ///     c.on_text(r#"{"type":"subscribe","resource":"chat"}"#);
    /// }
    /// assert_eq!(gw.broadcast_from(a.client_id(), "chat", &serde_json::json!("hi")), 1);
    /// assert!(a.try_next_outbound().is_none() && other.try_next_outbound().is_none());
    /// assert!(b.try_next_outbound().is_some());
    /// ```
    pub fn broadcast_from(&self, sender: &str, room: &str, data: &Value) -> usize {
        let Some(m) = self.inner.rooms.client(sender) else {
            return 0;
        };
        if !self.inner.rooms.holds(&m, room) {
            return 0;
        }
        let audience = match m.identity().org_arc() {
            Some(org) => Audience::Org(org),
            None => Audience::NoOrg,
        };
        let frame = frame::broadcast(room, data);
        let n = self
            .inner
            .rooms
            .deliver_except(room, &audience, frame.clone(), Some(&m));
        if let Some(f) = &self.inner.cfg.fan_out {
            f.publish(&Envelope::new(room, audience, frame));
        }
        n
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

    /// Publishes a resource event to this node's clients only, never to the fan-out: for events
    /// every node receives anyway (a bus broadcast subscription).
    #[cfg(feature = "events")]
    pub(crate) fn publish_local(&self, e: &Event) -> usize {
        match self.room_for(&e.name) {
            Some(room) => {
                let audience = self.scoped_audience(e, false);
                self.inner.rooms.deliver(room, &audience, frame::event(e))
            }
            None => 0,
        }
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
