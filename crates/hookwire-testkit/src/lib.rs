//! Shared test support for hookwire: real services on free loopback ports, and conformance
//! suites that every implementation of a core trait must pass.
//!
//! - [`RedisServer`] starts a real `redis-server` on a free port in a temporary directory and
//!   kills it on drop. Tests that need Redis call [`RedisServer::start`]; when the binary is
//!   missing the error says which package to install.
//! - [`PostgresServer`] runs `initdb` and `postgres` (as the `postgres` user when the tests run
//!   as root) on a free port; [`PostgresServer::shared`] gives one server per test process with a
//!   fresh database per test.
//! - `outbox` (feature `outbox`) is the `OutboxStore` conformance suite of `hookwire-events`,
//!   expanded per store with `outbox_conformance!`.
//! - [`idempotency`] is the `IdempotencyStore` conformance suite, expanded per store with
//!   [`idempotency_conformance!`].
//!
//! ```no_run
//! let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
//! println!("{}", redis.url());
//! ```

pub mod bench;
#[cfg(feature = "browser")]
pub mod browser;
mod http;
pub mod idempotency;
#[cfg(feature = "outbox")]
pub mod outbox;
mod postgres_server;
mod redis_cluster;
mod redis_server;

pub use postgres_server::PostgresServer;

pub use http::http_exchange;
pub use redis_cluster::RedisCluster;
pub use redis_server::{RedisServer, RedisServerBuilder};

/// A TCP port that was free on 127.0.0.1 a moment ago.
///
/// The port is released before returning, so a race with another process is possible but
/// unlikely; servers under test should prefer binding port 0 themselves.
///
/// ```
/// assert!(hookwire_testkit::free_port() > 0);
/// ```
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A fresh empty directory under the system temp dir, removed by the caller (or left for
/// post-mortem on failure).
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookwire-{prefix}-{}-{}",
        std::process::id(),
        hookwire_core::id::random_u64()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
