//! [`RedisPubSub`]: ephemeral broadcast over Redis `PUBLISH`/`SUBSCRIBE`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hookwire_core::{Backoff, BoxFuture, Event};
use redis::aio::ConnectionManager;

use super::keys::Keys;
use super::{RESPONSE_TIMEOUT, manager_config};
use crate::dead::DeadLetter;
use crate::error::{Error, ErrorKind, Result};
use crate::runner::Outcome;
use crate::transport::{
    Control, Driver, Encoded, Mode, SubSpec, Transport, sleep_or_stop, stopped,
};

/// Broadcast over Redis pub/sub: every node with a broadcast subscription receives each event
/// published while it is connected — **at most once**: nothing is stored, an event published
/// while a node is disconnected (or has no subscription) is never delivered to it, and a failed
/// handler is not retried. Publishers receive their own events like everyone else.
///
/// `publish` fails only when Redis cannot be reached. A group subscription is refused with
/// [`ErrorKind::Unsupported`]: use [`RedisStreams`](crate::RedisStreams) for those.
pub struct RedisPubSub {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
}

impl fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSub")
            .field("channel", &self.keys.channel)
            .finish_non_exhaustive()
    }
}

impl RedisPubSub {
    /// Connects to one Redis server; the channel is `hw:{events}:ps`.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(Error::transport)?;
        let conn = client
            .get_connection_manager_with_config(manager_config(RESPONSE_TIMEOUT))
            .await
            .map_err(Error::transport)?;
        Ok(Self {
            conn,
            client,
            keys: Keys::new("hw:", "events", 0),
        })
    }

    /// Uses the channel `<prefix>{<name>}:ps` instead.
    #[must_use]
    pub fn channel(mut self, prefix: &str, name: &str) -> Self {
        self.keys = Keys::new(prefix, name, 0);
        self
    }
}

impl From<RedisPubSub> for Transport {
    fn from(t: RedisPubSub) -> Self {
        Transport::new(Arc::new(PubSubDriver { inner: t }))
    }
}

#[derive(Debug)]
struct PubSubDriver {
    inner: RedisPubSub,
}

impl Driver for PubSubDriver {
    fn name(&self) -> &'static str {
        "redis-pubsub"
    }

    fn publish<'a>(&'a self, batch: &'a [Encoded]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for e in batch {
                pipe.publish(&self.inner.keys.channel, &e.bytes).ignore();
            }
            let mut c = self.inner.conn.clone();
            pipe.query_async::<()>(&mut c)
                .await
                .map_err(Error::transport)
        })
    }

    fn subscribe(&self, spec: SubSpec) -> BoxFuture<'_, Result<Arc<Control>>> {
        Box::pin(async move {
            if let Mode::Group { name, .. } = &spec.mode {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "Redis pub/sub has no consumer groups (group {name}); use RedisStreams"
                    ),
                ));
            }
            let channel = self.inner.keys.channel.clone();
            let mut ps = self
                .inner
                .client
                .get_async_pubsub()
                .await
                .map_err(Error::transport)?;
            ps.subscribe(&channel).await.map_err(Error::transport)?;
            let (control, mut stop) = Control::new();
            let client = self.inner.client.clone();
            control.set_task(tokio::spawn(async move {
                let backoff = Backoff::exponential(Duration::from_millis(100))
                    .with_max(Duration::from_secs(5));
                let mut ps = Some(ps);
                let mut failures = 0u32;
                loop {
                    let conn = match ps.take() {
                        Some(p) => Ok(p),
                        None => match client.get_async_pubsub().await {
                            Ok(mut p) => p.subscribe(&channel).await.map(|()| p),
                            Err(e) => Err(e),
                        },
                    };
                    let conn = match conn {
                        Ok(c) => c,
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(error = %e, "pub/sub subscriber cannot connect");
                            if sleep_or_stop(&mut stop, backoff.delay(failures - 1)).await {
                                return;
                            }
                            continue;
                        }
                    };
                    failures = 0;
                    let mut msgs = conn.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            m = msgs.next() => m,
                            () = stopped(&mut stop) => return,
                        };
                        let Some(msg) = msg else { break };
                        let Ok(event) = serde_json::from_slice::<Event>(msg.get_payload_bytes())
                        else {
                            tracing::warn!("pub/sub message is not an event; ignored");
                            continue;
                        };
                        if !spec.pattern.matches(&event.name) {
                            continue;
                        }
                        if let Outcome::Retry(c) | Outcome::Dead(c) = spec.runner.run(event).await {
                            tracing::warn!(error = ?c, "pub/sub handler failed");
                        }
                    }
                    tracing::warn!(
                        "pub/sub connection lost; events published meanwhile are missed"
                    );
                }
            }));
            Ok(control)
        })
    }

    fn dl_list(&self, _limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn dl_get<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<Option<DeadLetter>>> {
        Box::pin(async { Ok(None) })
    }

    fn dl_redrive<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    fn dl_discard<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    fn overruns<'a>(&'a self, _group: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async { Ok(0) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
