//! WebSocket rooms for hookwire: clients subscribe to rooms over a small JSON protocol and
//! receive the events you publish, scoped to their organization.
//!
//! Use this crate to push live events to browsers and services over WebSocket; use
//! `hookwire-sse` for one-way state streams (version-keyed patches) over plain HTTP. The
//! `EventGateway` (feature `sse`) mounts both behind one configuration: shared auth, org scoping
//! and room policy.
//!
//! # Example
//!
//! ```
//! use hookwire_core::Event;
//! use hookwire_ws::{Identity, WsGateway};
//!
//! // Fail-closed: without `.auth(false)` this needs an authenticator.
//! let gw = WsGateway::builder().auth(false).resources(["order"]).build()?;
//!
//! // A framework-free connection (the axum integration drives the same state machine).
//! let mut conn = gw.connect(Identity::new().with_organization("acme"));
//! conn.on_text(r#"{"type":"subscribe","resource":"order"}"#);
//!
//! // Only acme's clients get acme's events.
//! assert_eq!(gw.publish(&Event::new("order.paid", serde_json::json!({"id": 7})).with_organization("acme")), 1);
//! assert_eq!(gw.publish(&Event::new("order.paid", serde_json::json!({"id": 8})).with_organization("globex")), 0);
//! let frame = conn.try_next_outbound().unwrap();
//! assert!(frame.starts_with(br#"{"type":"order.paid","data":{"id":7}"#));
//! # Ok::<(), hookwire_ws::Error>(())
//! ```
//!
//! # Concepts
//! - **Protocol** (JSON text frames): `connected`, `subscribe`/`subscribed`,
//!   `unsubscribe`/`unsubscribed`, event frames `{"type":"order.paid","data":…,"meta":…}`,
//!   `broadcast`, `ping`/`pong`, and `error` frames with a [`ErrorCode`].
//! - **[`WsGateway`]**: configuration (built by [`WsGatewayBuilder`], fail-closed auth), publishing
//!   ([`WsGateway::publish`], [`WsGateway::broadcast`], [`WsGateway::broadcast_to_org`]), stats.
//! - **[`Connection`]**: the sans-IO per-client state machine a driver feeds with frames and ticks.
//! - **[`RoomManager`]**: rooms indexed by organization; delivery never waits on a client, a full
//!   outbound queue closes that client with 1013.
//! - **Org scoping** (on by default): an event with an organization reaches only that
//!   organization's clients; one without reaches only clients without organization unless it is
//!   published with [`WsGateway::publish_global`].
//! - **Service accounts and scopes**: an [`Authenticator`] may return
//!   [`Identity::service`] (a client id with scopes); `require_scope` rules refuse a room to an
//!   identity without its scope (`insufficient-scope`), on both sides of the event gateway.
//! - **Room policies**: synchronous, or asynchronous (`room_policy_async`, a lookup) under a time
//!   limit; an error or no answer refuses the join (`policy-unavailable`).
//! - **Clients**: [`WsGateway::client`] looks a connected client up by id,
//!   [`WsGateway::send_to`] writes to it alone, [`WsGateway::broadcast_from`] relays to its room
//!   except itself, inside its organization.
//! - **Several nodes**: a [`FanOut`] (bus broadcasts in `BusFanOut`, feature `events`) carries
//!   every broadcast to the other nodes; each subscriber receives it once.
//!
//! # Limits (defaults)
//! | Limit | Default | On overflow |
//! | --- | --- | --- |
//! | `max_message_bytes` | 16 KiB | `error` frame, close 1009 |
//! | `max_subscriptions_per_client` | 100 | `error` `too-many-subscriptions` |
//! | `max_clients_per_room` | 10 000 | `error` `room-full` |
//! | `outbound_queue` | 256 frames | close 1013 |
//! | `heartbeat_interval` | 30 s | two unanswered pings: close 4000 |
//! | room name | 256 bytes | `error` `bad-request` |
//! | `room_policy_timeout` | 5 s | `error` `policy-unavailable` |
//! | scopes per identity | 64 of ≤ 128 bytes | surplus dropped (never granted) |
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `axum` | `axum::ws_router`: the WebSocket route and `<path>/stats` on axum | no |
//! | `sse` | `EventGateway`: SSE (`hookwire-sse`) and WebSocket behind one configuration (implies `axum`) | no |
//! | `events` | `EventGateway::subscribe_bus`: the gateway as a broadcast subscriber of the `hookwire-events` bus; `BusFanOut`: the cross-node fan-out as bus broadcasts (implies `sse`) | no |
//!
//! MSRV: Rust 1.88.
//!
//! ---
//!
// The guide (`docs/hookwire-ws.md`) is the rest of this page; its examples use the `events`
// feature (which implies `sse`), so it is included (and its examples compiled as doctests) with
// it: docs.rs builds with all features.
#![cfg_attr(feature = "events", doc = include_str!("../../../docs/hookwire-ws.md"))]
#![cfg_attr(
    not(feature = "events"),
    doc = "The guide, `docs/hookwire-ws.md`, follows here when built with feature `events`."
)]

mod auth;
mod error;
mod fanout;
mod frame;
mod gateway;
mod room;

pub use auth::{AuthRequest, Authenticator, DemoAuthenticator, Identity};
pub use error::{Error, ErrorKind, Result};
pub use fanout::{Envelope, FanOut, RemoteSink};
pub use frame::{
    CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_SESSION_EXPIRED, CLOSE_SLOW_CLIENT,
    CLOSE_TOO_BIG, ErrorCode,
};
pub use gateway::{
    ClientInfo, Close, Connection, DEFAULT_POLICY_TIMEOUT, ExposeStats, HookReply,
    MAX_ROOM_NAME_BYTES, Reaction, WsGateway, WsGatewayBuilder,
};
pub use room::{Audience, KillSignal, Member, Outbound, Outbox, RoomManager, Stats};

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "events")]
mod bus;
#[cfg(feature = "sse")]
mod event_gateway;
#[cfg(feature = "events")]
pub use bus::{BusFanOut, DEFAULT_FAN_OUT_EVENT};
#[cfg(feature = "sse")]
pub use event_gateway::{EventGateway, EventGatewayBuilder, SseSide};
