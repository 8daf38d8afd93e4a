//! The SSE fan-out on the event bus (feature `events`): a publish on any node reaches the
//! subscribers of every node, in version order per stream, carried by a broadcast subscription
//! of the `hookwire-events` [`Bus`] — the same mechanism as the WebSocket fan-out and the event
//! gateway, not a pub/sub connection of its own.
//!
//! Two parts, because the bus carries events but does not arbitrate between writers:
//! - a **version store** in Redis: one Lua script (`lua/publish.lua`) accepts a publish only when
//!   its version is newer than the stored one and stores version and state (so a stale writer
//!   is refused everywhere, and a restarted node can [`load`](SseBusFanOut::load) the state);
//! - the **envelope** (node id, stream, full state, patches) as one bus event, delivered by each
//!   node's broadcast subscription to its [`BroadcastChannel`] through a sequencer that keeps
//!   version order: an envelope whose patches start past the node's version waits for the
//!   missing versions, and becomes a snapshot when they do not arrive within the catch-up time.
//!
//! Keys use a hash tag per stream (`<prefix>:{<stream>}:v`, `…:state`). The full state travels
//! in every envelope: keep states small (below the bus's `max_event_bytes`) or shard streams.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::Event;
use hookwire_events::{Bus, BusSubscription, HandlerError};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::{BroadcastChannel, BroadcastState};

mod order;

use order::{Change, Sequencer};

const PUBLISH_LUA: &str = include_str!("../lua/publish.lua");
const ROLLBACK_LUA: &str = include_str!("../lua/rollback.lua");

/// The event type of SSE fan-out envelopes on the bus, unless
/// [`SseBusFanOutBuilder::event_type`] says otherwise.
pub const DEFAULT_SSE_FAN_OUT_EVENT: &str = "hookwire.sse.envelope";

/// How long a node holds an envelope whose base version it has not seen, by default.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    o: String,
    s: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    st: Option<S>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    p: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ov: Option<Value>,
}

/// One node's link between its [`BroadcastChannel`], the event bus and the Redis version store.
///
/// Dropping it stops receiving from other nodes (its broadcast subscription ends).
///
/// ```no_run
/// use hookwire_events::{Bus, RedisStreams};
/// use hookwire_sse::{BroadcastChannel, SseBusFanOut};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "redis://127.0.0.1/";
/// let bus = Bus::builder(RedisStreams::connect(url).await?.node_id("web-1")).build()?;
/// let channel: BroadcastChannel = BroadcastChannel::new();
/// let fan = SseBusFanOut::start(channel.clone(), &bus, redis::Client::open(url)?, "hookwire:sse").await?;
/// fan.load("board").await?; // a restarted node serves the stored state at once
/// fan.publish("board", serde_json::json!({"_v": 1, "n": 1}), vec![serde_json::json!({"n": 1})]).await?;
/// # Ok(()) }
/// ```
pub struct SseBusFanOut<S = Value> {
    seq: Arc<Sequencer<S>>,
    bus: Bus,
    conn: ConnectionManager,
    node: Arc<str>,
    prefix: Arc<str>,
    event_type: Arc<str>,
    catch_up: Duration,
    publish: redis::Script,
    rollback: redis::Script,
    _sub: BusSubscription,
}

impl<S> std::fmt::Debug for SseBusFanOut<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBusFanOut")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

/// Options of an [`SseBusFanOut`]; every node of a cluster uses the same prefix and event type.
#[derive(Debug)]
pub struct SseBusFanOutBuilder<S = Value> {
    channel: BroadcastChannel<S>,
    bus: Bus,
    client: redis::Client,
    prefix: String,
    event_type: String,
    catch_up: Duration,
}

impl<S: BroadcastState + Clone> SseBusFanOutBuilder<S> {
    /// The Redis key prefix of the version store (default `hookwire:sse`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bus event type of the envelopes (default [`DEFAULT_SSE_FAN_OUT_EVENT`]).
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = event_type.into();
        self
    }

    /// How long a node holds an envelope that does not follow its version before it sends a
    /// snapshot instead (default [`DEFAULT_CATCH_UP`]; at least 1 ms).
    #[must_use]
    pub fn catch_up(mut self, d: Duration) -> Self {
        self.catch_up = d.max(Duration::from_millis(1));
        self
    }

    /// Connects to the version store and starts the broadcast subscription; returns once it is
    /// in place, so nothing published afterwards is missed.
    ///
    /// # Errors
    /// [`ErrorKind::Redis`](crate::ErrorKind::Redis) when Redis cannot be reached;
    /// [`ErrorKind::Bus`](crate::ErrorKind::Bus) when the bus cannot start the subscription
    /// (an invalid event type, a bus shut down).
    pub async fn start(self) -> crate::Result<SseBusFanOut<S>> {
        let conn = self
            .client
            .get_connection_manager()
            .await
            .map_err(crate::Error::redis)?;
        let node: Arc<str> = Arc::from(hookwire_core::id::new_id("node"));
        let seq = Sequencer::new(self.channel, self.catch_up);
        let sub = {
            let (seq, node) = (Arc::clone(&seq), Arc::clone(&node));
            self.bus
                .broadcast(&self.event_type, move |e: Event| {
                    receive(&seq, &node, e);
                    std::future::ready(Ok::<(), HandlerError>(()))
                })
                .await
                .map_err(crate::Error::bus)?
        };
        Ok(SseBusFanOut {
            seq,
            bus: self.bus,
            conn,
            node,
            prefix: Arc::from(self.prefix),
            event_type: Arc::from(self.event_type),
            catch_up: self.catch_up,
            publish: redis::Script::new(PUBLISH_LUA),
            rollback: redis::Script::new(ROLLBACK_LUA),
            _sub: sub,
        })
    }
}

/// Hands another node's envelope to this node's channel: overlays at once (they are
/// version-neutral), states through the sequencer.
fn receive<S: BroadcastState + Clone>(seq: &Arc<Sequencer<S>>, node: &str, e: Event) {
    let env: Envelope<S> = match serde_json::from_value(e.data) {
        Ok(env) => env,
        Err(err) => {
            tracing::warn!(error = %err, "malformed sse fan-out envelope ignored");
            return;
        }
    };
    if env.o == node {
        return;
    }
    match (env.st, env.ov) {
        (Some(state), _) => seq.offer(
            &env.s,
            Change {
                state,
                patches: env.p,
            },
        ),
        (None, Some(ov)) => {
            if let Err(err) = seq.channel().overlay(&env.s, ov) {
                tracing::debug!(stream = %env.s, error = %err, "fan-out overlay not applied; resync");
                seq.channel().resync(&env.s);
            }
        }
        (None, None) => {}
    }
}

impl<S: BroadcastState + Clone> SseBusFanOut<S> {
    /// Options for a fan-out of `channel` on `bus`, with `client` as the version store.
    pub fn builder(
        channel: BroadcastChannel<S>,
        bus: &Bus,
        client: redis::Client,
    ) -> SseBusFanOutBuilder<S> {
        SseBusFanOutBuilder {
            channel,
            bus: bus.clone(),
            client,
            prefix: "hookwire:sse".to_owned(),
            event_type: DEFAULT_SSE_FAN_OUT_EVENT.to_owned(),
            catch_up: DEFAULT_CATCH_UP,
        }
    }

    /// [`builder`](Self::builder) with `prefix` and the other defaults, started.
    ///
    /// # Errors
    /// As [`SseBusFanOutBuilder::start`].
    pub async fn start(
        channel: BroadcastChannel<S>,
        bus: &Bus,
        client: redis::Client,
        prefix: &str,
    ) -> crate::Result<Self> {
        Self::builder(channel, bus, client)
            .prefix(prefix)
            .start()
            .await
    }

    /// This node's id (its own envelopes are skipped on receipt).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The local channel.
    pub fn channel(&self) -> &BroadcastChannel<S> {
        self.seq.channel()
    }

    fn key(&self, stream: &str, what: &str) -> String {
        format!("{}:{{{stream}}}:{what}", self.prefix)
    }

    /// Publishes on every node: accepted by the version store only when the version is newer
    /// than the stored one, then sent on the bus and delivered to this node's channel in
    /// version order (after the versions before it, or as a snapshot after the catch-up time).
    ///
    /// # Errors
    /// [`ErrorKind::NotNewer`](crate::ErrorKind::NotNewer) (another node already published this
    /// or a newer version), [`ErrorKind::Redis`](crate::ErrorKind::Redis) or
    /// [`ErrorKind::Bus`](crate::ErrorKind::Bus) (the bus refused the envelope: the version is
    /// rolled back unless a newer one was stored meanwhile). In each case nothing was delivered.
    pub async fn publish(&self, stream: &str, state: S, patches: Vec<Value>) -> crate::Result<()> {
        let v = state.version();
        let snapshot = patches.is_empty();
        let state_json = serde_json::to_string(&state).map_err(crate::Error::serialize)?;
        let data = serde_json::to_value(Envelope {
            o: self.node.to_string(),
            s: stream.to_owned(),
            st: Some(&state),
            p: patches.clone(),
            ov: None,
        })
        .map_err(crate::Error::serialize)?;
        let mut conn = self.conn.clone();
        let (accepted, prev_v, prev_state): (i64, i64, String) = self
            .publish
            .key(self.key(stream, "v"))
            .key(self.key(stream, "state"))
            .arg(v)
            .arg(state_json)
            .arg(if snapshot { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        if accepted == 0 {
            return Err(crate::Error::not_newer(
                u64::try_from(prev_v).unwrap_or_default(),
                v,
            ));
        }
        let event = Event::new(&*self.event_type, data)
            .with_stream(stream, v)
            .with_partition_key(stream);
        if let Err(e) = self.bus.publish(event).await {
            let undo = self
                .rollback
                .key(self.key(stream, "v"))
                .key(self.key(stream, "state"))
                .arg(v)
                .arg(prev_v)
                .arg(prev_state)
                .invoke_async::<i64>(&mut conn)
                .await;
            if let Err(r) = undo {
                tracing::warn!(stream, version = v, error = %r, "version not rolled back after a bus failure");
            }
            return Err(crate::Error::bus(e));
        }
        self.seq.offer(stream, Change { state, patches });
        // Versions another node won before this one may still be on their way here: wait for
        // the sequencer to deliver this version (in order) or to snapshot past it.
        let deadline = tokio::time::Instant::now() + self.catch_up + Duration::from_millis(50);
        while self.channel().version(stream).is_none_or(|cur| cur < v)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Sends an overlay to every node (not versioned; applied on each node's cached state).
    ///
    /// # Errors
    /// [`ErrorKind::Bus`](crate::ErrorKind::Bus) when the bus refused it (nothing applied), or
    /// [`ErrorKind::Publish`](crate::ErrorKind::Publish) from the local channel.
    pub async fn overlay(&self, stream: &str, patch: Value) -> crate::Result<Option<crate::Frame>> {
        let data = serde_json::to_value(Envelope::<S> {
            o: self.node.to_string(),
            s: stream.to_owned(),
            st: None,
            p: Vec::new(),
            ov: Some(patch.clone()),
        })
        .map_err(crate::Error::serialize)?;
        self.bus
            .publish(Event::new(&*self.event_type, data).with_partition_key(stream))
            .await
            .map_err(crate::Error::bus)?;
        self.channel()
            .overlay(stream, patch)
            .map_err(crate::Error::from)
    }

    /// Loads the state stored in the version store into the local channel (e.g. after a node
    /// restart, before serving `GET /state`). Returns false when there is none.
    ///
    /// # Errors
    /// [`ErrorKind::Redis`](crate::ErrorKind::Redis), or a stored state that does not parse.
    pub async fn load(&self, stream: &str) -> crate::Result<bool> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(self.key(stream, "state"))
            .query_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        let Some(json) = json else { return Ok(false) };
        let state: S = serde_json::from_str(&json).map_err(crate::Error::serialize)?;
        if self
            .channel()
            .version(stream)
            .is_some_and(|v| v >= state.version())
        {
            return Ok(true);
        }
        self.channel()
            .reset(stream, state)
            .map_err(crate::Error::from)?;
        Ok(true)
    }
}
