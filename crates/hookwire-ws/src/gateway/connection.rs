//! The per-connection protocol state machine a driver feeds with frames and ticks, and what it answers (`Reaction`, `Close`).

use crate::Identity;
use crate::frame::{self, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_TOO_BIG, ErrorCode};
use crate::room::{KillSignal, Member, Outbound};
use bytes::Bytes;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::*;

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

/// What an inbound text frame needs: nothing more, or a room decision.
enum Step {
    Done(Reaction),
    Join(String),
}

/// One client's protocol state: subscriptions, heartbeat bookkeeping and its outbound queue.
/// Sans-IO: a driver (the axum integration, or your own) feeds it inbound frames and ticks and
/// writes what it returns.
pub struct Connection {
    pub(crate) gw: WsGateway,
    pub(crate) member: Arc<Member>,
    pub(crate) subs: Vec<Arc<str>>,
    pub(crate) missed_pongs: u8,
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
    ///
    /// Scopes are re-checked too: when the identity now lacks the scope of a room it holds (a
    /// revoked grant), it gets an `insufficient-scope` error and close 4003.
    pub fn on_reauth(&mut self, now: Option<&Identity>) -> Reaction {
        match now {
            Some(who) if who.organization_id() == self.identity().organization_id() => {
                let rules = &self.gw.inner.cfg.admission.rules;
                let lost = self.subs.iter().find_map(|room| {
                    rules
                        .missing_for_room(room, who.scopes())
                        .map(|scope| (room, scope))
                });
                match lost {
                    None => Reaction::default(),
                    Some((room, scope)) => Reaction {
                        reply: Some(frame::error(
                            ErrorCode::InsufficientScope,
                            &format!("scope {scope} was revoked"),
                            Some(room),
                        )),
                        close: Some(Close::for_code(frame::CLOSE_SESSION_EXPIRED)),
                    },
                }
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
    ///
    /// With an asynchronous room policy a `subscribe` cannot be decided here and is refused
    /// with `policy-unavailable`: drive such a gateway with
    /// [`on_text_async`](Self::on_text_async) (the axum integration does).
    pub fn on_text(&mut self, text: &str) -> Reaction {
        match self.step(text) {
            Step::Done(r) => r,
            Step::Join(room) => {
                let decision = self
                    .gw
                    .inner
                    .cfg
                    .admission
                    .decide_now(self.identity(), &room);
                self.finish_join(&room, decision)
            }
        }
    }

    /// An inbound text frame, awaiting an asynchronous room policy for a `subscribe` (at most
    /// its `room_policy_timeout`; an error or no answer refuses the join with
    /// `policy-unavailable`). Other frames are answered at once, as by
    /// [`on_text`](Self::on_text). Cancel safe: a cancelled join leaves no subscription.
    ///
    /// ```
    /// use hookwire_ws::{Identity, WsGateway};
    /// let gw = WsGateway::builder()
    ///     .auth(false)
    ///     .room_policy_async(|_who: Identity, room: String| async move {
    ///         if room == "broken" { Err("lookup failed") } else { Ok(room != "secret") }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let mut c = gw.connect(Identity::new());
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let code = |r: hookwire_ws::Reaction| {
    ///     let v: serde_json::Value = serde_json::from_slice(&r.reply.unwrap()).unwrap();
    ///     v["code"].as_str().map(str::to_owned)
    /// };
    /// let ok = rt.block_on(c.on_text_async(r#"{"type":"subscribe","resource":"lobby"}"#));
    /// assert_eq!(code(ok), None);
    /// let no = rt.block_on(c.on_text_async(r#"{"type":"subscribe","resource":"secret"}"#));
    /// assert_eq!(code(no).as_deref(), Some("forbidden"));
    /// let err = rt.block_on(c.on_text_async(r#"{"type":"subscribe","resource":"broken"}"#));
    /// assert_eq!(code(err).as_deref(), Some("policy-unavailable"));
    /// ```
    pub async fn on_text_async(&mut self, text: &str) -> Reaction {
        match self.step(text) {
            Step::Done(r) => r,
            Step::Join(room) => {
                let admission = self.gw.inner.cfg.admission.clone();
                let decision = admission.decide(self.identity(), &room).await;
                self.finish_join(&room, decision)
            }
        }
    }

    /// Everything of an inbound text frame that needs no room policy; a subscribe that passed
    /// the name and limit checks comes back as [`Step::Join`].
    fn step(&mut self, text: &str) -> Step {
        if text.len() > self.gw.inner.cfg.max_message_bytes {
            return Step::Done(self.on_too_large());
        }
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Step::Done(Reaction::error(
                ErrorCode::BadJson,
                "expected a JSON object",
                None,
            ));
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let room = msg
            .get("resource")
            .or_else(|| msg.get("channel"))
            .and_then(Value::as_str);
        Step::Done(match kind {
            "subscribe" => return self.subscribe(room),
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
        })
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

    fn subscribe(&mut self, room: Option<&str>) -> Step {
        let room = match Self::valid_room(room) {
            Ok(r) => r,
            Err(o) => return Step::Done(o),
        };
        let held = self.subs.iter().any(|s| &**s == room);
        if !held && self.subs.len() >= self.gw.inner.cfg.max_subscriptions {
            return Step::Done(Reaction::error(
                ErrorCode::TooManySubscriptions,
                "subscription limit reached",
                Some(room),
            ));
        }
        Step::Join(room.to_owned())
    }

    /// Completes a subscribe once scope rules and the room policy have decided.
    fn finish_join(&mut self, room: &str, decision: Result<(), Refusal>) -> Reaction {
        if let Err(refusal) = decision {
            let (code, msg) = refusal.frame();
            return Reaction::error(code, &msg, Some(room));
        }
        let held = self.subs.iter().any(|s| &**s == room);
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
