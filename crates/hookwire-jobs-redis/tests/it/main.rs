//! The conformance suite against a real redis-server, plus fault tests.

use std::sync::Arc;

use hookwire_jobs::conformance::Backend;
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

async fn backend() -> (Backend, RedisServer) {
    let server = RedisServer::start().expect("redis-server");
    let b = RedisBackend::connect(&server.url()).await.expect("connect");
    (Arc::new(b) as Backend, server)
}

mod conformance {
    hookwire_jobs::jobs_conformance!(super::backend());
}

/// Lifecycle events of jobs on Redis, published on a Redis Streams bus on the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_a_redis_streams_bus() {
    let (b, server) = backend().await;
    let t = hookwire_events::RedisStreams::connect(&server.url())
        .await
        .expect("bus");
    let bus = hookwire_events::Bus::builder(t).build().expect("bus");
    hookwire_jobs::conformance::lifecycle_events_reach_the_bus(b, bus).await;
}

#[cfg(feature = "cluster")]
mod cluster;
mod fault;
mod idle;
mod pause;
mod round_trips;
mod schedule;
