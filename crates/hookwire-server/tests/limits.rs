//! Every limit of the accept loop over real sockets on 127.0.0.1: stalled heads, idle
//! keep-alives, slow bodies, the connection cap, graceful shutdown with its grace period, and
//! the owning handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_server::{BodyTimeout, Continuation, RequestBody, Server, ServerConfig};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes the body; 408 when it stopped arriving, 400 on any other body error. `/hang`
/// never answers.
async fn echo(req: Request<RequestBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/hang" {
        std::future::pending::<()>().await;
    }
    let (status, body) = match req.into_body().collect().await {
        Ok(b) => (StatusCode::OK, b.to_bytes()),
        Err(e) if e.is::<BodyTimeout>() => (StatusCode::REQUEST_TIMEOUT, Bytes::new()),
        Err(_) => (StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    Ok(r)
}

fn config(cap: usize) -> ServerConfig {
    ServerConfig::builder()
        .header_read_timeout(Duration::from_millis(400))
        .body_timeout(Duration::from_millis(400))
        .max_connections(cap)
        .build()
        .unwrap()
}

async fn start(config: ServerConfig) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.spawn(l, hyper::service::service_fn(echo)).unwrap()
}

/// Sends `req` on a new connection and reads until the server closes it (or 8 s pass).
async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
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

const CLOSE_OK: &[u8] =
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// 1 100 connections that never finish their head (half a head, nothing at all, or the start
/// of an HTTP/2 preface) fill a cap of 256 four times over; a legitimate request behind all of
/// them is still answered, and every stalled connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_stalled_heads_do_not_lock_out_a_real_request() {
    let server = start(config(256)).await;
    let addr = server.local_addr();
    let mut stalled = Vec::new();
    for i in 0..1100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let part: &[u8] = match i % 3 {
            0 => b"POST / HTTP/1.1\r\nHost: x\r\n",
            1 => b"",
            _ => b"PRI * HTTP/2",
        };
        s.write_all(part).await.unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let got = exchange(addr, CLOSE_OK).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("ok"), "{got}");
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
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start(config(8)).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive after the answer, then closed once idle for the header-read timeout.
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_cut_after_the_body_timeout() {
    let server = start(config(8)).await;
    let started = Instant::now();
    let got = exchange(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // A complete body is unaffected.
    let got = exchange(server.local_addr(), CLOSE_OK).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    server.shutdown().await;
}

/// At the cap nothing more is accepted; a slot that frees up goes to the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_frees() {
    let server = start(ServerConfig::builder().max_connections(2).build().unwrap()).await;
    let addr = server.local_addr();
    let hang = b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(hang).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(hang).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(CLOSE_OK).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served past a cap of two"
    );
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    drop(b);
    server.shutdown().await;
}

/// A graceful shutdown lets a request in flight finish, stops accepting, and closes a
/// connection that never finishes once the grace period is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_what_is_left_after_the_grace_period() {
    let config = ServerConfig::builder()
        .shutdown_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let server = start(config).await;
    let addr = server.local_addr();
    let mut hung = TcpStream::connect(addr).await.unwrap();
    hung.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A slow body still being sent when the shutdown starts is answered.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nok")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.write_all(b"ok").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut got)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(closed_within(&mut hung, Duration::from_secs(5)).await);
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown returns after the grace")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// Dropping the handle stops the server and closes its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_stops_it() {
    let server = start(config(8)).await;
    let addr = server.local_addr();
    let mut hung = TcpStream::connect(addr).await.unwrap();
    hung.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(server);
    assert!(closed_within(&mut hung, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// `serve_tcp` applies the same cap to a protocol handler of its own (its continuation keeps
/// the slot) and returns on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tcp_keeps_the_cap_and_stops() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig::builder()
        .max_connections(1)
        .shutdown_grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let serving = tokio::spawn(async move {
        config
            .serve_tcp(
                l,
                |mut tcp: TcpStream| async move {
                    let _ = tcp.write_all(b"hi").await;
                    // The rest in a fresh task: it keeps the connection's slot.
                    Some(Continuation::new(async move {
                        let mut buf = [0u8; 8];
                        let _ = tcp.read(&mut buf).await; // until the client closes
                    }))
                },
                async {
                    let _ = rx.await;
                },
            )
            .await
    });
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 2];
    a.read_exact(&mut buf).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(400), b.read_exact(&mut buf))
            .await
            .is_err(),
        "a second connection was handled past a cap of one"
    );
    drop(a);
    tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut buf))
        .await
        .expect("handled once the slot is free")
        .unwrap();
    tx.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "serve_tcp did not stop");
    assert!(closed_within(&mut b, Duration::from_secs(5)).await);
}

#[test]
fn the_default_cap_stays_below_the_open_file_limit() {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: usize = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l["Max open files".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(
        ServerConfig::default().max_connections(),
        soft.saturating_sub(hookwire_server::FD_RESERVE).max(64)
    );
}
