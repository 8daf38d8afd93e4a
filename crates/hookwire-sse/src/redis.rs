//! Redis pub/sub fan-out: a publish on any node reaches the subscribers of every node, in
//! version order per stream.
//!
//! Each publish runs one Lua script (`lua/publish.lua`) that accepts it only when its version
//! is newer than the version stored in Redis, stores version and state, and `PUBLISH`es an
//! envelope carrying the node id, the stream, the full state and the patches. The origin
//! node then publishes locally; every other node receives the envelope (pattern
//! subscription) and publishes it to its own [`BroadcastChannel`]. Because Redis serializes
//! the scripts, versions reach every node in increasing order; a node that missed envelopes
//! (e.g. while Redis restarted) still holds a correct state after the next one, and its
//! clients see a version gap and refetch — they resync, they never diverge.
//!
//! Keys use a hash tag per stream (`<prefix>:{<stream>}:v`, `…:state`) so they stay on one
//! slot of a cluster. The full state travels with every envelope: this favours correctness
//! and simplicity over bandwidth; keep states small or shard streams.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::{BroadcastChannel, BroadcastState};
use crate::frame::Frame;

mod presence;

pub use presence::{DEFAULT_PRESENCE_TTL, SharedPresence};

const PUBLISH_LUA: &str = include_str!("../lua/publish.lua");

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

/// How long a publish waits for this node to receive the versions Redis ordered before it.
const CATCH_UP: Duration = Duration::from_secs(2);

/// One node's link between its [`BroadcastChannel`] and Redis.
///
/// Dropping it stops receiving from other nodes.
///
/// ```no_run
/// use hookwire_sse::{BroadcastChannel, redis::SseRedisFanOut};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let channel: BroadcastChannel = BroadcastChannel::new();
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let fan = SseRedisFanOut::start(channel.clone(), client, "hookwire:sse").await?;
/// fan.publish("board", serde_json::json!({"_v": 1, "n": 1}), vec![serde_json::json!({"n": 1})]).await?;
/// # Ok(()) }
/// ```
pub struct SseRedisFanOut<S = Value> {
    channel: BroadcastChannel<S>,
    conn: ConnectionManager,
    node: Arc<str>,
    prefix: Arc<str>,
    script: redis::Script,
    task: tokio::task::JoinHandle<()>,
}

impl<S> std::fmt::Debug for SseRedisFanOut<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseRedisFanOut")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for SseRedisFanOut<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: BroadcastState + Clone> SseRedisFanOut<S> {
    /// Connects, subscribes to the envelopes of `prefix`, and starts delivering them to
    /// `channel`. Returns once the subscription is active.
    pub async fn start(
        channel: BroadcastChannel<S>,
        client: redis::Client,
        prefix: &str,
    ) -> crate::Result<Self> {
        let conn = client
            .get_connection_manager()
            .await
            .map_err(crate::Error::redis)?;
        let node: Arc<str> = Arc::from(format!("{:016x}", hookwire_core::id::random_u64()));
        let prefix: Arc<str> = Arc::from(prefix);
        let pattern = format!("{prefix}:ch:*");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(crate::Error::redis)?;
        pubsub
            .psubscribe(&pattern)
            .await
            .map_err(crate::Error::redis)?;
        let task = tokio::spawn(receive_loop(
            client,
            pubsub,
            pattern,
            channel.clone(),
            Arc::clone(&node),
        ));
        Ok(Self {
            channel,
            conn,
            node,
            prefix,
            script: redis::Script::new(PUBLISH_LUA),
            task,
        })
    }

    /// This node's id (echo suppression).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The local channel.
    pub fn channel(&self) -> &BroadcastChannel<S> {
        &self.channel
    }

    /// Publishes on every node: accepted by Redis only when the version is newer than the
    /// stored one, then delivered locally and to the other nodes.
    pub async fn publish(
        &self,
        stream: &str,
        state: S,
        patches: Vec<Value>,
    ) -> crate::Result<Frame> {
        let v = state.version();
        let snapshot = patches.is_empty();
        let state_json = serde_json::to_string(&state).map_err(crate::Error::serialize)?;
        let env = Envelope {
            o: self.node.to_string(),
            s: stream.to_owned(),
            st: Some(state.clone()),
            p: patches.clone(),
            ov: None,
        };
        let env = serde_json::to_string(&env).map_err(crate::Error::serialize)?;
        let mut conn = self.conn.clone();
        let r: i64 = self
            .script
            .key(format!("{}:{{{stream}}}:v", self.prefix))
            .key(format!("{}:{{{stream}}}:state", self.prefix))
            .arg(v)
            .arg(state_json)
            .arg(format!("{}:ch:{stream}", self.prefix))
            .arg(env)
            .arg(if snapshot { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        if r >= 0 {
            return Err(crate::Error::not_newer(
                u64::try_from(r).unwrap_or_default(),
                v,
            ));
        }
        // Redis ordered this version after every version it stored before; other nodes'
        // envelopes for those may still be in flight to this node. Deliver locally only once
        // this node's channel has caught up to the version these patches start from, so local
        // subscribers see versions in order; if it does not catch up in time, send a snapshot
        // (clients refetch) rather than a patch out of order.
        let base = v.saturating_sub(patches.len() as u64);
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while !snapshot
            && self.channel.version(stream).is_some_and(|cur| cur < base)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !snapshot && self.channel.version(stream).is_some_and(|cur| cur < base) {
            tracing::debug!(
                stream,
                version = v,
                "local channel behind Redis; sending a snapshot"
            );
            return self
                .channel
                .reset(stream, state)
                .map_err(crate::Error::from);
        }
        self.channel
            .publish(stream, state, patches)
            .map_err(crate::Error::from)
    }

    /// Sends an overlay to every node (not versioned; applied on each node's cached state).
    pub async fn overlay(&self, stream: &str, patch: Value) -> crate::Result<Option<Frame>> {
        let env: Envelope<S> = Envelope {
            o: self.node.to_string(),
            s: stream.to_owned(),
            st: None,
            p: Vec::new(),
            ov: Some(patch.clone()),
        };
        let env = serde_json::to_string(&env).map_err(crate::Error::serialize)?;
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(format!("{}:ch:{stream}", self.prefix))
            .arg(env)
            .exec_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        self.channel
            .overlay(stream, patch)
            .map_err(crate::Error::from)
    }

    /// Loads the state stored in Redis into the local channel (e.g. after a node restart,
    /// before serving `GET /state`). Returns false when Redis has none.
    pub async fn load(&self, stream: &str) -> crate::Result<bool> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(format!("{}:{{{stream}}}:state", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        let Some(json) = json else { return Ok(false) };
        let state: S = serde_json::from_str(&json).map_err(crate::Error::serialize)?;
        if self
            .channel
            .version(stream)
            .is_some_and(|v| v >= state.version())
        {
            return Ok(true);
        }
        self.channel
            .reset(stream, state)
            .map_err(crate::Error::from)?;
        Ok(true)
    }
}

async fn next_msg(stream: &mut redis::aio::PubSubStream) -> Option<redis::Msg> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *stream), cx)).await
}

/// Delivers other nodes' envelopes; resubscribes with backoff when the connection drops.
async fn receive_loop<S: BroadcastState + Clone>(
    client: redis::Client,
    first: redis::aio::PubSub,
    pattern: String,
    channel: BroadcastChannel<S>,
    node: Arc<str>,
) {
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(50);
    loop {
        let ps = match pubsub.take() {
            Some(p) => p,
            None => {
                let attempt = async {
                    let mut p = client.get_async_pubsub().await?;
                    p.psubscribe(&pattern).await?;
                    Ok::<_, redis::RedisError>(p)
                };
                match attempt.await {
                    Ok(p) => {
                        backoff = Duration::from_millis(50);
                        p
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis fan-out resubscribe failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
        };
        let mut stream = ps.into_on_message();
        while let Some(msg) = next_msg(&mut stream).await {
            let Ok(payload) = msg.get_payload::<Vec<u8>>() else {
                continue;
            };
            let env: Envelope<S> = match serde_json::from_slice(&payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed fan-out envelope ignored");
                    continue;
                }
            };
            if *env.o == *node {
                continue;
            }
            // Already at or past this version (a local catch-up snapshot or a reload got
            // here first): nothing to deliver, and no reason to make clients refetch.
            if let Some(st) = &env.st
                && channel
                    .version(&env.s)
                    .is_some_and(|cur| cur >= st.version())
            {
                continue;
            }
            let r = match (env.st, env.ov) {
                (Some(state), _) => channel.publish(&env.s, state, env.p).map(|_| ()),
                (None, Some(ov)) => channel.overlay(&env.s, ov).map(|_| ()),
                (None, None) => Ok(()),
            };
            if let Err(e) = r {
                // Out of order or already applied (e.g. after a reload): tell this node's
                // subscribers to refetch rather than risk a wrong state.
                tracing::debug!(stream = %env.s, error = %e, "fan-out envelope not applied; resync");
                channel.resync(&env.s);
            }
        }
        tracing::warn!("redis fan-out subscription ended; reconnecting");
    }
}
