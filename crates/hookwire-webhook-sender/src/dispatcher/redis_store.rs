//! [`RedisSubscriptionStore`]: subscriptions in one Redis hash, shared by every node (feature
//! `redis`). No Lua and no background task: each operation is one command.

use hookwire_core::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Subscription, WebhookStore};
use crate::error::Error;

/// Subscriptions as JSON values in the Redis hash `<prefix>subscriptions`, field = id.
///
/// Secrets are stored with the subscriptions: restrict access to the Redis instance (ACLs, TLS,
/// a private network) as you would for any secret store.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use hookwire_webhook_sender::RedisSubscriptionStore;
/// let store = RedisSubscriptionStore::connect("redis://127.0.0.1/")
///     .await?
///     .with_prefix("myapp:webhooks:");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSubscriptionStore<C = ConnectionManager> {
    conn: C,
    key: String,
}

impl<C> std::fmt::Debug for RedisSubscriptionStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscriptionStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The key prefix used unless [`RedisSubscriptionStore::with_prefix`] says otherwise.
const DEFAULT_PREFIX: &str = "hookwire:webhooks:";

impl RedisSubscriptionStore<ConnectionManager> {
    /// Connects to `url` with a reconnecting [`ConnectionManager`] (prefix
    /// `hookwire:webhooks:`).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(Error::store)?;
        let conn = ConnectionManager::new(client).await.map_err(Error::store)?;
        Ok(Self::new(conn))
    }
}

impl<C> RedisSubscriptionStore<C> {
    /// A store on an existing connection (any [`redis::aio::ConnectionLike`] that is `Clone`;
    /// default [`ConnectionManager`]), prefix `hookwire:webhooks:`.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            key: format!("{DEFAULT_PREFIX}subscriptions"),
        }
    }

    /// Keeps the subscriptions in the hash `<prefix>subscriptions`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}subscriptions");
        self
    }
}

impl<C> WebhookStore for RedisSubscriptionStore<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "redis"
    }

    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, Error>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let raw: Vec<(String, String)> = conn.hgetall(&self.key).await.map_err(Error::store)?;
            let mut out = Vec::with_capacity(raw.len());
            for (id, json) in raw {
                // One corrupt entry must not hide every other subscription: skip it loudly.
                match serde_json::from_str::<Subscription>(&json) {
                    Ok(s) => out.push(s),
                    Err(e) => tracing::warn!(%id, error = %e, "skipping unreadable subscription"),
                }
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
    }

    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), Error>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let json = serde_json::to_string(&sub).map_err(Error::store)?;
            let _: () = conn
                .hset(&self.key, &sub.id, json)
                .await
                .map_err(Error::store)?;
            Ok(())
        })
    }

    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, Error>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let n: i64 = conn.hdel(&self.key, &id).await.map_err(Error::store)?;
            Ok(n > 0)
        })
    }
}
