//! Shared helpers: a Redis per test, a bus per node, waiting for a condition.

use std::future::Future;
use std::time::{Duration, Instant};

use hookwire_core::Backoff;
use hookwire_events::{Bus, BusBuilder, RedisStreams};
use hookwire_testkit::RedisServer;

/// Polls `cond` every 20 ms until it holds or `limit` passes; true when it held.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

pub(crate) fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server")
}

/// A Redis Streams transport for node `node` with a short claim idle time.
pub(crate) async fn streams(server: &RedisServer, node: &str) -> RedisStreams {
    RedisStreams::connect(&server.url())
        .await
        .expect("connect")
        .node_id(node)
        .claim_idle(Duration::from_secs(1))
}

/// A bus builder with fast retries.
pub(crate) fn fast(t: RedisStreams) -> BusBuilder {
    Bus::builder(t).retry(Backoff::fixed(Duration::from_millis(10)))
}

pub(crate) async fn node(server: &RedisServer, name: &str) -> Bus {
    fast(streams(server, name).await).build().expect("bus")
}

/// A raw connection for poking at Redis state.
pub(crate) async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap()
}

pub(crate) const STREAM: &str = "hw:{events}:s";

/// Entries `group` has delivered but not acknowledged.
pub(crate) async fn pending(r: &mut redis::aio::MultiplexedConnection, group: &str) -> i64 {
    let v: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(group)
        .query_async(r)
        .await
        .unwrap();
    match v.first() {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}
