//! The event gateway as a broadcast subscriber of the event bus (feature `events`): every node
//! subscribes in broadcast mode, so each node sees every event and hands it to its own browsers
//! (SSE and WebSocket), org-scoped exactly as [`EventGateway::publish`] does. No fan-out is
//! involved: the bus is the one mechanism that carries events between nodes.

use hookwire_core::Event;
use hookwire_events::{Bus, BusSubscription, HandlerError};

use crate::{Error, EventGateway};

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
