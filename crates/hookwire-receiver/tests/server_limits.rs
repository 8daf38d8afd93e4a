//! The built-in server's connection limits over real sockets: connections that never finish
//! their head are closed after the header-read timeout and the connection cap keeps slots
//! coming for real requests; a body that stops arriving is refused after the body timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookwire_receiver::server::{ServerConfig, serve_with_config};
use http::Response;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(config: ServerConfig) -> (SocketAddr, hookwire_receiver::Server) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = serve_with_config(l, config, |req: http::Request<_>| async move {
        match hookwire_receiver::read_limited(req.into_body(), 1024).await {
            Ok(b) => Response::new(Full::new(b)),
            Err(r) => r.to_response(),
        }
    })
    .unwrap();
    (addr, server)
}

fn limits() -> ServerConfig {
    ServerConfig::builder()
        .header_read_timeout(Duration::from_millis(400))
        .body_timeout(Duration::from_millis(400))
        .max_connections(8)
        .build()
        .unwrap()
}

/// Sends `req` on a new connection and reads until the server closes it (or 8 s pass).
async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_heads_are_closed_and_real_requests_get_past_them() {
    let (addr, server) = start(limits()).await;
    let mut stalled = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let got = exchange(
        addr,
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(8));
    for s in &mut stalled {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a connection that never finished its head is still open"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_refused_after_the_body_timeout() {
    let (addr, server) = start(limits()).await;
    let started = Instant::now();
    let got = exchange(
        addr,
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

/// An idle kept-alive connection is closed after the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let (addr, server) = start(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    server.shutdown().await;
}

#[test]
fn the_default_cap_stays_below_the_open_file_limit() {
    let limits = ServerConfig::default();
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: usize = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l["Max open files".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(
        limits.max_connections(),
        soft.saturating_sub(hookwire_receiver::server::FD_RESERVE)
            .max(64)
    );
}
