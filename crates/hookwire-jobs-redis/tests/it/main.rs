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

#[cfg(feature = "cluster")]
mod cluster;
mod fault;
mod idle;
mod pause;
mod round_trips;
mod schedule;
