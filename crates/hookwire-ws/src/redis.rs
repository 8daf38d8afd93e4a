//! Cross-node fan-out over Redis pub/sub (feature `redis`; spec `ws.md`, "Several nodes").
//!
//! Every node publishes the envelopes of its broadcasts to one channel and subscribes to it.
//! A node delivers its own broadcasts locally (before publishing) and skips its own envelopes
//! when they come back, so each subscriber on any node gets a frame exactly once. The audience
//! (all / one organization / no organization) travels as structured JSON, so org scoping holds
//! on every node and no organization or room name is ever parsed out of a string.
//!
//! Redis pub/sub is at most once: a node that is disconnected from Redis misses what was
//! published meanwhile (it reconnects and resubscribes by itself). Publishing never blocks a
//! broadcaster: envelopes go through a bounded queue (10 000) to one publishing task, in order;
//! when Redis is slower than that, the overflow is dropped and counted.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fanout::{Envelope, FanOut, RemoteSink};

/// The default pub/sub channel.
pub const DEFAULT_CHANNEL: &str = "hookwire-ws";

/// Envelopes waiting to be published before new ones are dropped.
const PUBLISH_QUEUE: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Wire<N, E> {
    node: N,
    env: E,
}

/// A [`FanOut`] over Redis pub/sub. Pass it to [`crate::WsGatewayBuilder::fan_out`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use hookwire_ws::{DemoAuthenticator, WsGateway, redis::RoomRedisFanOut};
/// let fan_out = RoomRedisFanOut::connect("redis://127.0.0.1:6379/").await?;
/// let gw = WsGateway::builder().authenticator(DemoAuthenticator).fan_out(fan_out).build()?;
/// # Ok(()) }
/// ```
pub struct RoomRedisFanOut {
    node: String,
    channel: String,
    client: redis::Client,
    tx: mpsc::Sender<Vec<u8>>,
    first_sub: Mutex<Option<redis::aio::PubSub>>,
    dropped: Arc<AtomicU64>,
    /// The subscriber task `start` spawned: it holds a Redis subscription (and reconnects
    /// forever while Redis is down), so it ends with this fan-out, not at the next message.
    subscriber: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for RoomRedisFanOut {
    fn drop(&mut self) {
        if let Some(h) = self
            .subscriber
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl fmt::Debug for RoomRedisFanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomRedisFanOut")
            .field("node", &self.node)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RoomRedisFanOut {
    /// Connects to `url` on [`DEFAULT_CHANNEL`]. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// The URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str) -> crate::Result<Self> {
        Self::connect_with_channel(url, DEFAULT_CHANNEL).await
    }

    /// Connects to `url` on `channel` (nodes of one cluster share a channel). The subscription
    /// is in place when this returns, so nothing published afterwards is missed.
    ///
    /// # Errors
    /// The URL is invalid or Redis cannot be reached.
    pub async fn connect_with_channel(url: &str, channel: &str) -> crate::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut sub = client.get_async_pubsub().await?;
        sub.subscribe(channel).await?;
        let conn = client.get_connection_manager().await?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(conn, channel.to_owned(), rx));
        Ok(Self {
            node: hookwire_core::id::new_id("node"),
            channel: channel.to_owned(),
            client,
            tx,
            first_sub: Mutex::new(Some(sub)),
            dropped: Arc::default(),
            subscriber: Mutex::new(None),
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

async fn publisher(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(payload) = rx.recv().await {
        let r: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "hookwire-ws: redis publish failed; envelope lost");
        }
    }
}

async fn subscriber(
    client: redis::Client,
    channel: String,
    node: String,
    mut first: Option<redis::aio::PubSub>,
    sink: RemoteSink,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let sub = match first.take() {
            Some(s) => s,
            None => match resubscribe(&client, &channel).await {
                Ok(s) => {
                    backoff = Duration::from_millis(50);
                    s
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hookwire-ws: redis resubscribe failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut stream = sub.into_on_message();
        while let Some(msg) = stream.next().await {
            let Ok(wire) =
                serde_json::from_slice::<Wire<String, Envelope>>(msg.get_payload_bytes())
            else {
                tracing::debug!("hookwire-ws: ignoring a malformed fan-out message");
                continue;
            };
            if wire.node == node {
                continue;
            }
            if sink.deliver(&wire.env).is_none() {
                return; // the gateway is gone
            }
        }
        tracing::warn!("hookwire-ws: redis subscription lost; reconnecting");
        tokio::time::sleep(backoff).await;
    }
}

async fn resubscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut s = client.get_async_pubsub().await?;
    s.subscribe(channel).await?;
    Ok(s)
}

impl FanOut for RoomRedisFanOut {
    fn publish(&self, env: &Envelope) {
        let wire = Wire {
            node: self.node.as_str(),
            env,
        };
        let Ok(payload) = serde_json::to_vec(&wire) else {
            return;
        };
        if self.tx.try_send(payload).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn start(&self, sink: RemoteSink) {
        let first = self
            .first_sub
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let task = tokio::spawn(subscriber(
            self.client.clone(),
            self.channel.clone(),
            self.node.clone(),
            first,
            sink,
        ));
        let old = self
            .subscriber
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task.abort_handle());
        // A second `start` replaces the first subscriber instead of running two.
        if let Some(old) = old {
            old.abort();
        }
    }
}
