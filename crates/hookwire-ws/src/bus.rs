//! The gateways on the event bus (feature `events`): the event gateway as a broadcast
//! subscriber (every node sees every event and hands it to its own browsers, SSE and WebSocket,
//! org-scoped exactly as [`EventGateway::publish`] does), and [`BusFanOut`], the WebSocket
//! fan-out carried by bus broadcasts: one mechanism between nodes, shared with the event gateway
//! and `hookwire-sse`'s `SseBusFanOut`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use hookwire_core::Event;
use hookwire_events::{Bus, BusSubscription, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fanout::{Envelope, FanOut, RemoteSink};
use crate::{Error, EventGateway};

/// The event type of fan-out envelopes on the bus, unless [`BusFanOut::with_event_type`] says
/// otherwise.
pub const DEFAULT_FAN_OUT_EVENT: &str = "hookwire.ws.envelope";

/// Envelopes waiting to be published before new ones are dropped (and counted).
const PUBLISH_QUEUE: usize = 10_000;

/// Envelopes per `publish_many`.
const BATCH: usize = 100;

#[derive(Serialize, Deserialize)]
struct Wire {
    node: String,
    env: Envelope,
}

/// A [`FanOut`] over the event bus: each envelope is published as one event
/// (`hookwire.ws.envelope`, `{node, env}`) and every node's broadcast subscription delivers the
/// envelopes of the *other* nodes to its members. At most once across nodes (the bus's broadcast
/// mode), never blocking a broadcaster (a bounded queue of 10 000 envelopes to one
/// publishing task; overflow is dropped and counted), org scoping carried as data.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_events::{Bus, MemoryTransport};
/// use hookwire_ws::{BusFanOut, DemoAuthenticator, WsGateway};
/// let bus = Bus::builder(MemoryTransport::new()).build().unwrap();
/// let gw = WsGateway::builder()
///     .authenticator(DemoAuthenticator)
///     .fan_out(BusFanOut::new(&bus).await.unwrap())
///     .build()
///     .unwrap();
/// # let _ = gw;
/// # });
/// ```
pub struct BusFanOut {
    node: String,
    tx: mpsc::Sender<Event>,
    event_type: Arc<str>,
    sink: Arc<OnceLock<RemoteSink>>,
    dropped: Arc<AtomicU64>,
    _sub: BusSubscription,
}

impl std::fmt::Debug for BusFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusFanOut")
            .field("node", &self.node)
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

impl BusFanOut {
    /// A fan-out on `bus` with events of type [`DEFAULT_FAN_OUT_EVENT`]. The broadcast
    /// subscription is in place when this returns, so nothing published afterwards is missed.
    ///
    /// # Errors
    /// [`ErrorKind::Bus`](crate::ErrorKind::Bus) when the bus cannot start the subscription.
    pub async fn new(bus: &Bus) -> Result<Self, Error> {
        Self::with_event_type(bus, DEFAULT_FAN_OUT_EVENT).await
    }

    /// Like [`new`](Self::new) with another event type (the same on every node of a cluster).
    ///
    /// # Errors
    /// As [`new`](Self::new); also an event type that is not a valid pattern.
    pub async fn with_event_type(bus: &Bus, event_type: &str) -> Result<Self, Error> {
        let node = hookwire_core::id::new_id("node");
        let sink: Arc<OnceLock<RemoteSink>> = Arc::default();
        let sub = {
            let (node, sink) = (node.clone(), Arc::clone(&sink));
            bus.broadcast(event_type, move |e: Event| {
                receive(&node, sink.get(), e);
                std::future::ready(Ok::<(), HandlerError>(()))
            })
            .await?
        };
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(bus.clone(), rx));
        Ok(Self {
            node,
            tx,
            event_type: Arc::from(event_type),
            sink,
            dropped: Arc::default(),
            _sub: sub,
        })
    }

    /// This node's id (envelopes carrying it are skipped on receipt).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Envelopes dropped because the publish queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Delivers another node's envelope to this node's members.
fn receive(node: &str, sink: Option<&RemoteSink>, e: Event) {
    let Ok(wire) = serde_json::from_value::<Wire>(e.data) else {
        tracing::debug!("hookwire-ws: ignoring a malformed fan-out event");
        return;
    };
    if wire.node != node
        && let Some(sink) = sink
    {
        sink.deliver(&wire.env);
    }
}

async fn publisher(bus: Bus, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = bus.publish_many(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %e, "hookwire-ws: bus publish failed; envelopes lost");
        }
    }
}

impl FanOut for BusFanOut {
    fn publish(&self, env: &Envelope) {
        let wire = Wire {
            node: self.node.clone(),
            env: env.clone(),
        };
        let Ok(data) = serde_json::to_value(&wire) else {
            tracing::debug!("hookwire-ws: an envelope that is not UTF-8 JSON was not fanned out");
            return;
        };
        if self
            .tx
            .try_send(Event::new(&*self.event_type, data))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn start(&self, sink: RemoteSink) {
        let _ = self.sink.set(sink);
    }
}

impl EventGateway {
    /// Forwards every event matching `pattern` published on `bus` (by any node) to this node's
    /// clients: the SSE event stream (`/events?filter=…`) and the WebSocket room of the event's
    /// resource, each scoped to the event's organization. Keep the returned subscription: dropping
    /// it stops the forwarding.
    ///
    /// Publish application events to the bus (`bus.publish`), not with [`EventGateway::publish`],
    /// and give the WebSocket options no fan-out: the bus already reaches every node, and a
    /// fan-out would deliver each event twice. Broadcast delivery is at most once per node
    /// (a node that is down misses events), like any live feed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use hookwire_core::Event;
    /// use hookwire_events::{Bus, MemoryTransport};
    /// use hookwire_ws::{EventGateway, Identity, WsGateway};
    /// let gw = EventGateway::builder()
    ///     .auth(false)
    ///     .ws_options(WsGateway::builder().resources(["order"]))
    ///     .build()
    ///     .unwrap();
    /// let bus = Bus::builder(MemoryTransport::new()).build().unwrap();
    /// let _feed = gw.subscribe_bus(&bus, "order.*").await.unwrap();
    /// let mut c = gw.ws().unwrap().connect(Identity::new().with_organization("acme"));
    /// c.on_text(r#"{"type":"subscribe","resource":"order"}"#);
    /// bus.publish(Event::new("order.paid", serde_json::json!({})).with_organization("acme")).await.unwrap();
    /// bus.publish(Event::new("order.paid", serde_json::json!({})).with_organization("globex")).await.unwrap();
    /// assert!(c.try_next_outbound().unwrap().starts_with(br#"{"type":"order.paid""#));
    /// assert!(c.try_next_outbound().is_none(), "globex's event is not acme's");
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`Error`] of kind [`ErrorKind::Bus`](crate::ErrorKind::Bus) when the pattern is invalid,
    /// the bus is shut down or its transport cannot start the subscription.
    pub async fn subscribe_bus(&self, bus: &Bus, pattern: &str) -> Result<BusSubscription, Error> {
        let gw = self.clone();
        let sub = bus
            .broadcast(pattern, move |e: Event| {
                gw.deliver_local(&e);
                std::future::ready(Ok::<(), HandlerError>(()))
            })
            .await?;
        Ok(sub)
    }

    /// Hands an event to this node's clients of both sides, never to a fan-out.
    fn deliver_local(&self, e: &Event) {
        if let Some(sse) = self.sse() {
            sse.events().publish(e);
        }
        if let Some(ws) = self.ws() {
            ws.publish_local(e);
        }
    }
}
