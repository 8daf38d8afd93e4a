//! Connection limits over real sockets, for the hyper server (`serve_fn_with`, the loop behind
//! `serve` and `serve_fn`) and the lean acceptor: connections that never finish their head are
//! closed after the header-read timeout, the connection cap keeps the server below its file
//! limit, a body that stops arriving fails after the body timeout, and a graceful shutdown
//! ends open streams.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookwire_sse::BroadcastChannel;
use hookwire_sse::http::{Public, SseApp, SseConfig};
use hookwire_sse::server::{RequestBody, ServerConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Client;

const STALLED: usize = 24;
const CAP: usize = 8;

fn limits() -> ServerConfig {
    ServerConfig::builder()
        .header_read_timeout(Duration::from_millis(400))
        .body_timeout(Duration::from_millis(400))
        .max_connections(CAP)
        .build()
        .unwrap()
}

fn cap(n: usize) -> ServerConfig {
    ServerConfig::builder().max_connections(n).build().unwrap()
}

fn board() -> BroadcastChannel {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("board", json!({"_v": 1}), vec![]).unwrap();
    ch
}

async fn start_hyper(ch: &BroadcastChannel, limits: ServerConfig) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = SseApp::new(ch.clone(), SseConfig::default().auth(Public));
    tokio::spawn(hookwire_sse::http::serve_fn_with(
        l,
        limits,
        move |m, p, q, h| app.handle(m, p, q, h),
        std::future::pending(),
    ));
    addr
}

async fn start_lean(ch: &BroadcastChannel, limits: ServerConfig) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor =
        hookwire_sse::lean::LeanAcceptor::new(ch.clone(), SseConfig::default().auth(Public))
            .config(limits);
    tokio::spawn(acceptor.serve(l));
    addr
}

/// Opens `n` connections that send half a request head and then nothing.
async fn stall(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /events/board HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        v.push(s);
    }
    v
}

/// Whether the server closed `s` (EOF or reset) within `within`.
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

async fn stalled_heads_are_closed_and_real_requests_get_through(addr: SocketAddr) {
    let mut stalled = stall(addr, STALLED).await;
    // Three times the cap of stalled heads: a real request still gets its answer once the
    // timeout frees the slots (before: the stalled connections were held forever).
    let started = Instant::now();
    let c = Client::connect(addr, "/state/board", None).await;
    assert_eq!(c.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    for s in &mut stalled {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a connection that never finished its head is still open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_closes_stalled_heads_and_serves_real_requests_past_them() {
    let ch = board();
    let addr = start_hyper(&ch, limits()).await;
    stalled_heads_are_closed_and_real_requests_get_through(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_closes_stalled_heads_and_serves_real_requests_past_them() {
    let ch = board();
    let addr = start_lean(&ch, limits()).await;
    stalled_heads_are_closed_and_real_requests_get_through(addr).await;
}

/// At the cap nothing more is accepted (so descriptors never run out); a slot that frees up
/// is taken by the next connection in the backlog.
async fn the_cap_holds_and_frees(addr: SocketAddr, ch: &BroadcastChannel) {
    let a = Client::connect(addr, "/events/board", None).await;
    let _b = Client::connect(addr, "/events/board", None).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /state/board HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served past a cap of two"
    );
    assert_eq!(ch.subscriber_count("board"), 2);
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_connection_cap_holds_and_frees() {
    let ch = board();
    let addr = start_hyper(&ch, cap(2)).await;
    the_cap_holds_and_frees(addr, &ch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_connection_cap_holds_and_frees() {
    let ch = board();
    let addr = start_lean(&ch, cap(2)).await;
    the_cap_holds_and_frees(addr, &ch).await;
}

/// A service that reads the body sees `BodyTimeout` once the body stops arriving; the
/// connection is then closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_fails_after_the_body_timeout() {
    use http_body_util::BodyExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = hyper::service::service_fn(|req: http::Request<RequestBody>| async move {
        let status = match req.into_body().collect().await {
            Ok(_) => 200,
            Err(e) if e.is::<hookwire_sse::server::BodyTimeout>() => 408,
            Err(_) => 400,
        };
        let mut r = http::Response::new(String::new());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(r)
    });
    tokio::spawn(async move { limits().serve(l, svc, std::future::pending()).await });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A complete body is unaffected.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
}

/// `serve_fn_with`'s shutdown ends: the channel's shutdown ends the open stream, the server
/// stops accepting and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_returns_once_streams_are_ended() {
    let ch = board();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = SseApp::new(ch.clone(), SseConfig::default().auth(Public));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let on_stop = ch.clone();
    let server = tokio::spawn(hookwire_sse::http::serve_fn_with(
        l,
        ServerConfig::default(),
        move |m, p, q, h| app.handle(m, p, q, h),
        async move {
            let _ = rx.await;
            on_stop.shutdown();
        },
    ));
    let mut c = Client::connect(addr, "/events/board", None).await;
    assert_eq!(
        c.next(Duration::from_secs(5)).await.unwrap().event,
        "snapshot"
    );
    tx.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "the server did not stop");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// A connection cap of 0 would never accept anything: the configuration both servers take
/// refuses it when it is built (`InvalidInput` as an I/O error) instead of serving with
/// another cap.
#[test]
fn a_zero_connection_cap_is_refused_when_the_configuration_is_built() {
    let zero = ServerConfig::builder()
        .max_connections(0)
        .build()
        .unwrap_err();
    assert_eq!(zero.option(), "max_connections");
    assert_eq!(
        std::io::Error::from(zero).kind(),
        std::io::ErrorKind::InvalidInput
    );
}
