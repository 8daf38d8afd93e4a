//! [`RedisIdempotencyStore`]: idempotency claims in Redis, shared by every receiver node.

use std::fmt;
use std::time::Duration;

use hookwire_core::idempotency::BoxFuture;
use hookwire_core::{Claim, FencingToken, IdempotencyConfig, IdempotencyStore, StoreError};
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

// Values: `i:<token>` while in flight (expires with the lease), `d` once done (expires with the
// TTL), or `v<bytes>` once done with a committed value (an HTTP API's stored response). Each script touches exactly one key, so it is cluster-safe.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], 'i:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'i:' .. ARGV[1], 'PX', ARGV[2])
  return {1, 0}
end
if v == 'd' or string.sub(v, 1, 1) == 'v' then return {3, 0} end
return {2, redis.call('PTTL', KEYS[1])}
";
const COMMIT: &str = r"
if redis.call('GET', KEYS[1]) == 'i:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'd', 'PX', ARGV[2])
  return 1
end
return 0
";
const COMMIT_VALUE: &str = r"
if redis.call('GET', KEYS[1]) == 'i:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'v' .. ARGV[3], 'PX', ARGV[2])
  return 1
end
return 0
";
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == 'i:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == 'i:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// An [`IdempotencyStore`] in Redis (feature `redis`).
///
/// A claim is `SET key i:<token> NX PX <lease>`; commit and release are compare-and-set Lua
/// scripts that act only while the key still holds the caller's token (fencing), so a request
/// whose lease expired can never commit or delete a newer claim; `renew` is the same
/// compare-and-set around `PEXPIRE <lease>`. Committed keys expire after the
/// TTL. Keys are `<prefix>:{<key>}`: the hash tag keeps everything about one key on one Redis
/// Cluster slot; `{`, `}` and `%` in keys are percent-encoded so a key cannot break the tag.
///
/// The connection is made on first use and re-established automatically.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use hookwire_core::{IdempotencyConfig, IdempotencyStore, Claim};
/// use hookwire_receiver::RedisIdempotencyStore;
/// let store = RedisIdempotencyStore::open("redis://127.0.0.1:6379", IdempotencyConfig::default())?;
/// let Claim::Fresh(token) = store.claim("evt_1").await? else { return Ok(()) };
/// store.commit("evt_1", &token).await?;
/// # Ok(()) }
/// ```
pub struct RedisIdempotencyStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    config: IdempotencyConfig,
    prefix: String,
    claim: redis::Script,
    commit: redis::Script,
    commit_value: redis::Script,
    release: redis::Script,
    renew: redis::Script,
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show only the prefix and timings.
        f.debug_struct("RedisIdempotencyStore")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// A store at `url` (`redis://host:port/db`) with key prefix `hookwire:idem`.
    pub fn open(url: &str, config: IdempotencyConfig) -> crate::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| crate::Error::new(crate::ErrorKind::Store, e))?;
        Ok(Self::new(client, config))
    }

    /// A store on `client`.
    pub fn new(client: redis::Client, config: IdempotencyConfig) -> Self {
        Self {
            client,
            conn: OnceCell::new(),
            config,
            prefix: "hookwire:idem".to_owned(),
            claim: redis::Script::new(CLAIM),
            commit: redis::Script::new(COMMIT),
            commit_value: redis::Script::new(COMMIT_VALUE),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
        }
    }

    /// Sets the key prefix (separate applications or tests sharing one Redis).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The configuration.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// The Redis key for an idempotency key.
    pub fn redis_key(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.len() + 3);
        out.push_str(&self.prefix);
        out.push_str(":{");
        for c in key.chars() {
            match c {
                '%' => out.push_str("%25"),
                '{' => out.push_str("%7B"),
                '}' => out.push_str("%7D"),
                c => out.push(c),
            }
        }
        out.push('}');
        out
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        // Fail fast: a request waiting on a dead Redis should become a 503 the sender retries,
        // not a hung connection.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(StoreError::unavailable)
    }

    async fn finish(
        &self,
        script: &redis::Script,
        key: &str,
        token: &FencingToken,
        px: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: i64 = script
            .key(self.redis_key(key))
            .arg(token.as_str())
            .arg(millis(px))
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(n == 1)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl IdempotencyStore for RedisIdempotencyStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let token = FencingToken::random();
            let (kind, pttl): (i64, i64) = self
                .claim
                .key(self.redis_key(key))
                .arg(token.as_str())
                .arg(millis(self.config.lease))
                .invoke_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(match kind {
                1 => Claim::Fresh(token),
                3 => Claim::Done,
                _ => Claim::InFlight {
                    retry_after: Duration::from_millis(u64::try_from(pttl).unwrap_or(0))
                        .max(Duration::from_secs(1)),
                },
            })
        })
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.finish(&self.commit, key, token, self.config.ttl))
    }

    fn commit_value<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let n: i64 = self
                .commit_value
                .key(self.redis_key(key))
                .arg(token.as_str())
                .arg(millis(self.config.ttl))
                .arg(value)
                .invoke_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(n == 1)
        })
    }

    fn value<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.redis_key(key))
                .query_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(raw.and_then(|mut v| {
                (v.first() == Some(&b'v')).then(|| {
                    v.remove(0);
                    v
                })
            }))
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let n: i64 = redis::cmd("DEL")
                .arg(self.redis_key(key))
                .query_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(n == 1)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.finish(&self.release, key, token, self.config.ttl))
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.config.lease)
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.finish(&self.renew, key, token, self.config.lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hash_tagged_and_escaped() {
        let s = RedisIdempotencyStore::open("redis://127.0.0.1:1", IdempotencyConfig::default())
            .unwrap();
        assert_eq!(s.redis_key("evt_1"), "hookwire:idem:{evt_1}");
        assert_eq!(s.redis_key("a}b{%"), "hookwire:idem:{a%7Db%7B%25}");
        assert_ne!(s.redis_key("a%7D"), s.redis_key("a}"));
    }
}
