//! [`RedisStore`]: subscriptions in one Redis hash, shared by every node (feature `redis`).

use hookwire_core::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{StoreError, Subscription, WebhookStore};

/// Subscriptions as JSON values in the Redis hash `<prefix>subscriptions`, field = id.
///
/// Secrets are stored with the subscriptions: restrict access to the Redis instance (ACLs, TLS,
/// a private network) as you would for any secret store.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use hookwire_webhook_sender::RedisStore;
/// let store = RedisStore::connect("redis://127.0.0.1/", "myapp:webhooks:").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    conn: C,
    key: String,
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisStore<ConnectionManager> {
    /// Connects to `url` with a reconnecting connection manager.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::new)?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(StoreError::new)?;
        Ok(Self::with_connection(conn, prefix))
    }
}

impl<C> RedisStore<C> {
    /// A store over any async connection (cluster, sentinel, a test double).
    pub fn with_connection(conn: C, prefix: &str) -> Self {
        Self {
            conn,
            key: format!("{prefix}subscriptions"),
        }
    }
}

impl<C> WebhookStore for RedisStore<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "redis"
    }

    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, StoreError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let raw: Vec<(String, String)> =
                conn.hgetall(&self.key).await.map_err(StoreError::new)?;
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

    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let json = serde_json::to_string(&sub).map_err(StoreError::new)?;
            let _: () = conn
                .hset(&self.key, &sub.id, json)
                .await
                .map_err(StoreError::new)?;
            Ok(())
        })
    }

    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let n: i64 = conn.hdel(&self.key, &id).await.map_err(StoreError::new)?;
            Ok(n > 0)
        })
    }
}
