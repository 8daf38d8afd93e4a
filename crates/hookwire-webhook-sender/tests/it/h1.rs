//! The plain-http exchange against hand-written responses: framing (chunked, Content-Length,
//! read-to-close), interim 1xx, connection reuse and its limits, malformed responses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, Event, RetryPolicy};
use hookwire_webhook_sender::{DeliveryOutcome, Webhook};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request (head + Content-Length body); `None` at end of stream.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= pos + 4 + len {
                let req: Vec<u8> = buf.drain(..pos + 4 + len).collect();
                return Some(req);
            }
        }
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// A server answering the n-th request (over all connections) with `script[n]` (the last one
/// repeats); closes the connection after a reply when `close` says so for that reply.
struct Raw {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn raw(script: Vec<(&'static [u8], bool)>) -> Raw {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let script = Arc::new(script);
    let (c, r) = (Arc::clone(&conns), Arc::clone(&requests));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (r, script) = (Arc::clone(&r), Arc::clone(&script));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut s, &mut buf).await {
                    let n = {
                        let mut g = r.lock().unwrap();
                        g.push(req);
                        g.len() - 1
                    };
                    let (reply, close) = script[n.min(script.len() - 1)];
                    if s.write_all(reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Raw {
        addr,
        conns,
        requests,
    }
}

fn hook(addr: SocketAddr) -> Webhook {
    Webhook::builder()
        .url(format!("http://{addr}/in?x=1"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn ev() -> Event {
    Event::new("h1.test", serde_json::json!({"k": "v"}))
}

#[tokio::test]
async fn chunked_error_body_is_decoded_and_the_connection_reused() {
    let s = raw(vec![(
        b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: x\r\n\r\n",
        false,
    )])
    .await;
    let h = hook(s.addr);
    for _ in 0..3 {
        let e = h.deliver(&ev()).await.unwrap_err();
        assert_eq!(e.status(), 500);
        assert_eq!(e.response_body(), Some("hello world"));
    }
    assert_eq!(s.conns.load(Ordering::SeqCst), 1);
    let first = String::from_utf8(s.requests.lock().unwrap()[0].clone()).unwrap();
    assert!(first.starts_with("POST /in?x=1 HTTP/1.1\r\n"), "{first}");
    assert!(first.contains(&format!("host: {}\r\n", s.addr)), "{first}");
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let s = raw(vec![(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        false,
    )])
    .await;
    assert_eq!(hook(s.addr).deliver(&ev()).await.unwrap().status, 202);
}

#[tokio::test]
async fn connection_close_and_http10_are_not_reused() {
    let s = raw(vec![(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        false,
    )])
    .await;
    let h = hook(s.addr);
    h.deliver(&ev()).await.unwrap();
    h.deliver(&ev()).await.unwrap();
    assert_eq!(s.conns.load(Ordering::SeqCst), 2);

    let s = raw(vec![(
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        false,
    )])
    .await;
    let h = hook(s.addr);
    h.deliver(&ev()).await.unwrap();
    h.deliver(&ev()).await.unwrap();
    assert_eq!(s.conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn body_without_length_is_read_to_close() {
    let s = raw(vec![(b"HTTP/1.1 404 Not Found\r\n\r\nno such hook", true)]).await;
    let e = hook(s.addr).deliver(&ev()).await.unwrap_err();
    assert_eq!(e.status(), 404);
    assert_eq!(e.response_body(), Some("no such hook"));
}

#[tokio::test]
async fn a_server_closing_idle_connections_costs_no_retry() {
    // Every reply closes the connection after sending; the next delivery finds its pooled
    // connection dead and must transparently use a fresh one.
    let s = raw(vec![(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        true,
    )])
    .await;
    let h = hook(s.addr);
    let policy = RetryPolicy::none();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(20)).await; // let the close arrive
        let d = h.deliver_with_retry(&ev(), &policy).await;
        assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
        assert_eq!(d.attempts, 1);
    }
    assert_eq!(s.requests.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn malformed_responses_are_retryable_errors_not_panics() {
    let cases: [&'static [u8]; 6] = [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 500 X\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 500 X\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ];
    for reply in cases {
        let s = raw(vec![(reply, true)]).await;
        let policy = RetryPolicy::new(1).with_backoff(Backoff::fixed(Duration::from_millis(1)));
        let d = hook(s.addr).deliver_with_retry(&ev(), &policy).await;
        let DeliveryOutcome::Exhausted(e) = &d.outcome else {
            panic!("{:?} for {:?}", d.outcome, String::from_utf8_lossy(reply))
        };
        assert_eq!(e.status(), 0, "{e}");
        assert_eq!(d.attempts, 2);
    }
}

#[tokio::test]
async fn oversized_chunked_and_length_bodies_are_capped() {
    let big = format!(
        "HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        100_000,
        "y".repeat(100_000)
    );
    let s = raw(vec![(
        Box::leak(big.into_bytes().into_boxed_slice()),
        false,
    )])
    .await;
    let h = hook(s.addr);
    let e = h.deliver(&ev()).await.unwrap_err();
    assert_eq!(e.response_body().map(str::len), Some(4096));
    h.deliver(&ev()).await.unwrap_err();
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        2,
        "a cut-short connection is not reused"
    );

    let big = format!(
        "HTTP/1.1 500 X\r\ncontent-length: 200000\r\n\r\n{}",
        "z".repeat(200_000)
    );
    let s = raw(vec![(
        Box::leak(big.into_bytes().into_boxed_slice()),
        false,
    )])
    .await;
    let e = hook(s.addr).deliver(&ev()).await.unwrap_err();
    assert_eq!(e.status(), 500);
}

#[tokio::test]
async fn a_huge_response_head_is_refused() {
    let head = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n", "a".repeat(70_000));
    let s = raw(vec![(
        Box::leak(head.into_bytes().into_boxed_slice()),
        true,
    )])
    .await;
    let e = hook(s.addr).deliver(&ev()).await.unwrap_err();
    assert!(e.is_retryable());
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn pooled_connections_from_a_finished_runtime_are_replaced() {
    // The default client is process-wide; a connection pooled under one runtime must not break
    // deliveries made from the next one (tests, CLIs and short-lived runtimes do this).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let s = raw(vec![(
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                false,
            )])
            .await;
            tx.send((s.addr, Arc::clone(&s.conns))).unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
    });
    let (addr, conns) = rx.recv().unwrap();
    let hook = Webhook::builder()
        .url(format!("http://{addr}/shared"))
        .build()
        .unwrap();
    for _ in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = rt.block_on(hook.deliver_with_retry(&ev(), &RetryPolicy::none()));
        assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
        assert_eq!(d.attempts, 1);
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "the dead runtime's connection was replaced"
    );
}

#[tokio::test]
async fn plain_http_through_hyper_when_the_lean_exchange_is_off() {
    let s = raw(vec![
        (b"HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\nretry-after: 0\r\n\r\n4\r\nbusy\r\n0\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false),
    ])
    .await;
    let client = hookwire_webhook_sender::HyperClient::builder()
        .lean_http(false)
        .build()
        .unwrap();
    let h = Webhook::builder()
        .url(format!("http://{}/in", s.addr))
        .client(Arc::new(client))
        .build()
        .unwrap();
    let e = h.deliver(&ev()).await.unwrap_err();
    assert_eq!((e.status(), e.response_body()), (503, Some("busy")));
    assert_eq!(h.deliver(&ev()).await.unwrap().status, 200);
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "hyper keeps the connection alive too"
    );
}

/// The sender over the lean exchange, or over hyper (`lean_http(false)`).
fn hook_via(addr: SocketAddr, lean: bool, timeout: Duration) -> Webhook {
    let client = hookwire_webhook_sender::HyperClient::builder()
        .lean_http(lean)
        .build()
        .unwrap();
    Webhook::builder()
        .url(format!("http://{addr}/in"))
        .client(Arc::new(client))
        .timeout(timeout)
        .build()
        .unwrap()
}

/// A hostile endpoint: reads the request, then writes `100 Continue` heads without end.
/// Returns its address and the bytes it managed to write (the socket buffers included).
async fn endless_continue() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&written);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let w = Arc::clone(&w);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut s, &mut buf).await.is_none() {
                    return;
                }
                let block = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(2048);
                while s.write_all(&block).await.is_ok() {
                    w.fetch_add(block.len(), Ordering::SeqCst);
                }
            });
        }
    });
    (addr, written)
}

#[tokio::test]
async fn an_endless_stream_of_100_continue_is_cut_off_on_both_http_paths() {
    for lean in [true, false] {
        let (addr, written) = endless_continue().await;
        let e = hook_via(addr, lean, Duration::from_secs(20))
            .deliver(&ev())
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "lean={lean}: {e}");
        assert!(
            e.to_string().contains("interim (1xx) responses"),
            "lean={lean}: not cut off by the interim limit: {e}"
        );
        // The sender stopped reading: the server's writes stall once the socket buffers are full
        // (a few MiB on loopback) and fail when the connection closes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = written.load(Ordering::SeqCst);
        assert!(n < 32 << 20, "lean={lean}: the server wrote {n} bytes");
    }
}

#[tokio::test]
async fn up_to_four_interim_responses_are_skipped_and_a_fifth_is_refused() {
    const FOUR: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
    const FIVE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
    for lean in [true, false] {
        let s = raw(vec![(FOUR, false)]).await;
        let h = hook_via(s.addr, lean, Duration::from_secs(5));
        for _ in 0..2 {
            assert_eq!(h.deliver(&ev()).await.unwrap().status, 202, "lean={lean}");
        }
        assert_eq!(s.conns.load(Ordering::SeqCst), 1, "lean={lean}: reused");
        let s = raw(vec![(FIVE, false)]).await;
        let e = hook_via(s.addr, lean, Duration::from_secs(5))
            .deliver(&ev())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("more than 4 interim"),
            "lean={lean}: {e}"
        );
    }
}

#[tokio::test]
async fn interim_heads_count_toward_the_response_head_limit() {
    // Two 40 KiB Early Hints and a small final head: each fits 64 KiB, together they do not.
    let hint = format!(
        "HTTP/1.1 103 Early Hints\r\nlink: <{}>\r\n\r\n",
        "a".repeat(40_000)
    );
    let reply = format!("{hint}{hint}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let s = raw(vec![(
        Box::leak(reply.into_bytes().into_boxed_slice()),
        false,
    )])
    .await;
    let e = hook(s.addr).deliver(&ev()).await.unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");

    // Through hyper each head is held to 64 KiB: one 70 KiB Early Hints is refused.
    let hint = format!(
        "HTTP/1.1 103 Early Hints\r\nlink: <{}>\r\n\r\n",
        "a".repeat(70_000)
    );
    let reply = format!("{hint}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let s = raw(vec![(
        Box::leak(reply.into_bytes().into_boxed_slice()),
        false,
    )])
    .await;
    let r = hook_via(s.addr, false, Duration::from_secs(5))
        .deliver(&ev())
        .await;
    let e = r.expect_err("a 70 KiB interim head through hyper");
    assert!(e.is_retryable() && e.status() == 0, "{e}");
}
