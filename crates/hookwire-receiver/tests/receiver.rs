//! The typed receiver: every status, two-phase idempotency through the handler, pattern routes,
//! the body limit enforced while reading, garbage headers, bind errors and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hookwire_core::Pattern;
use hookwire_core::signing::{Scheme, SignInput, sign};
use hookwire_receiver::{Context, Receiver, receiver};
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const SECRET: &str = "s3cret";

#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    wait: bool,
}

#[derive(Default)]
struct World {
    handled: AtomicUsize,
    failures_left: AtomicUsize,
    entered: AtomicUsize,
    gate: Notify,
}

fn build(world: &Arc<World>) -> Receiver {
    let w = world.clone();
    let w2 = world.clone();
    receiver()
        .secret(SECRET)
        .max_body(1024)
        .on("OrderPlaced", move |o: Order, ctx: Context| {
            let w = w.clone();
            async move {
                assert_eq!(ctx.event_type, "OrderPlaced");
                if o.wait {
                    w.entered.fetch_add(1, Ordering::SeqCst);
                    w.gate.notified().await;
                }
                if o.panic {
                    panic!("boom {}", o.id);
                }
                if o.fail
                    && w.failures_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    return Err(format!("db down for {}", o.id));
                }
                w.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .on_pattern(
            Pattern::parse("order.*").unwrap(),
            move |v: serde_json::Value, ctx: Context| {
                let w = w2.clone();
                async move {
                    assert!(ctx.event_type.starts_with("order."), "{v}");
                    w.handled.fetch_add(100, Ordering::SeqCst);
                    Ok::<_, String>(())
                }
            },
        )
        .build()
}

fn request(path: &str, key: Option<&str>, body: &str) -> http::request::Builder {
    let headers = sign(
        Scheme::Hookwire,
        &hookwire_core::Secret::new(SECRET),
        &SignInput::new(body.as_bytes(), hookwire_core::time::unix_now()),
    )
    .unwrap();
    let mut b = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers.iter() {
        b = b.header(k, v);
    }
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b
}

async fn send(
    r: &Receiver,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String, http::HeaderMap) {
    let req = request(path, key, body)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = r.handle(req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

#[tokio::test]
async fn every_status() {
    let world = Arc::new(World::default());
    let r = build(&world);
    let ok = r#"{"id":"o1"}"#;
    let (s, b, h) = send(&r, "/OrderPlaced", Some("k1"), ok).await;
    assert_eq!((s, b.as_str()), (204, ""));
    assert!(h.get("idempotent-replayed").is_none());
    let (s, _, h) = send(&r, "/OrderPlaced", Some("k1"), ok).await;
    assert_eq!(s, 204);
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(
        world.handled.load(Ordering::SeqCst),
        1,
        "the replay skipped the handler"
    );

    assert_eq!(send(&r, "/Nope", Some("k2"), ok).await.0, 404);
    assert_eq!(
        send(&r, "/Nope", Some("k2"), ok).await.1,
        r#"{"error":"unknown-event"}"#
    );
    let (s, b, _) = send(&r, "/OrderPlaced", None, ok).await;
    assert_eq!((s, b.as_str()), (400, r#"{"error":"missing-key"}"#));
    let (s, b, _) = send(&r, "/OrderPlaced", Some("k3"), r#"{"nope":1}"#).await;
    assert_eq!(s, 422);
    assert!(
        b.starts_with(r#"{"error":"validation-failed","detail":"missing field `id`"#),
        "{b}"
    );
    // The 422 released the key: a corrected retry with the same key is processed.
    assert_eq!(send(&r, "/OrderPlaced", Some("k3"), ok).await.0, 204);

    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(2000));
    let (s, b, _) = send(&r, "/OrderPlaced", Some("k4"), &big).await;
    assert_eq!((s, b.as_str()), (413, r#"{"error":"body-too-large"}"#));

    for types in [
        &["application/xml"][..],
        &["application/json", "text/plain"],
    ] {
        let mut xml = request("/OrderPlaced", Some("k5"), "<a/>")
            .body(Full::new(Bytes::from_static(b"<a/>")))
            .unwrap();
        xml.headers_mut().remove("content-type");
        for t in types {
            xml.headers_mut().append("content-type", t.parse().unwrap());
        }
        let resp = r.handle(xml).await;
        assert_eq!(resp.status(), 415, "{types:?}");
    }

    // Unsigned / tampered.
    let req = Request::post("/OrderPlaced")
        .header("idempotency-key", "k6")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = r.handle(req).await;
    assert_eq!(resp.status(), 401);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"missing-signature"}"#);
    let req = request("/OrderPlaced", Some("k6"), ok)
        .body(Full::new(Bytes::from_static(br#"{"id":"o2"}"#)))
        .unwrap();
    assert_eq!(r.handle(req).await.status(), 401);
    let get = Request::get("/OrderPlaced")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(r.handle(get).await.status(), 404);
}

#[tokio::test]
async fn handler_failure_then_retry_is_processed_not_deduped() {
    let world = Arc::new(World::default());
    world.failures_left.store(1, Ordering::SeqCst);
    let r = build(&world);
    let body = r#"{"id":"o1","fail":true}"#;
    let (s, b, _) = send(&r, "/OrderPlaced", Some("f1"), body).await;
    assert_eq!((s, b.as_str()), (500, r#"{"error":"handler-failed"}"#));
    assert_eq!(send(&r, "/OrderPlaced", Some("f1"), body).await.0, 204);
    assert_eq!(world.handled.load(Ordering::SeqCst), 1);
    let (s, _, h) = send(&r, "/OrderPlaced", Some("f1"), body).await;
    assert_eq!(
        (s, &h["idempotent-replayed"]),
        (204, &http::HeaderValue::from_static("true"))
    );

    // A panicking handler is a 500 and releases the key too.
    let p = r#"{"id":"o2","panic":true}"#;
    assert_eq!(send(&r, "/OrderPlaced", Some("p1"), p).await.0, 500);
    assert_eq!(
        send(&r, "/OrderPlaced", Some("p1"), r#"{"id":"o2"}"#)
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn in_flight_duplicate_gets_409_with_retry_after() {
    let world = Arc::new(World::default());
    let r = build(&world);
    let body = r#"{"id":"o1","wait":true}"#;
    let first = tokio::spawn({
        let r = r.clone();
        async move { send(&r, "/OrderPlaced", Some("w1"), body).await.0 }
    });
    // Wait until the first request is inside its handler, holding the claim.
    while world.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dup = send(&r, "/OrderPlaced", Some("w1"), body).await;
    assert_eq!((dup.0, dup.1.as_str()), (409, r#"{"error":"in-flight"}"#));
    let ra: u64 = dup.2["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra >= 1);
    world.gate.notify_one();
    assert_eq!(first.await.unwrap(), 204);
    assert_eq!(world.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pattern_route_reads_the_type_from_header_or_body() {
    let world = Arc::new(World::default());
    let r = build(&world);
    let (s, _, _) = send(&r, "/", Some("p1"), r#"{"type":"order.created","x":1}"#).await;
    assert_eq!(s, 204);
    let req = request("/", Some("p2"), "{}")
        .header("webhook-event", "order.paid")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(r.handle(req).await.status(), 204);
    assert_eq!(world.handled.load(Ordering::SeqCst), 200);
    let (s, b, _) = send(&r, "/", Some("p3"), r#"{"type":"user.created"}"#).await;
    assert_eq!((s, b.as_str()), (404, r#"{"error":"unknown-event"}"#));
    // The unknown type released its claim.
    assert_eq!(
        send(&r, "/", Some("p3"), r#"{"type":"order.x"}"#).await.0,
        204
    );
    assert_eq!(send(&r, "/", Some("p4"), "not json").await.0, 422);
}

async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("server answered in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_to_a_one_mib_limit_is_413_without_buffering_it() {
    let r = receiver()
        .on("E", |_: serde_json::Value, _| async { Ok::<_, String>(()) })
        .build();
    let server = r.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    // Declared length: refused before a byte of the body is read.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /E HTTP/1.1\r\nhost: x\r\nidempotency-key: a\r\ncontent-length: 10485760\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Chunked, no length: the client sends 2 MiB of its 10 MiB and then waits. A server that
    // buffered the whole body would wait forever; this one answers once the limit is passed.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /E HTTP/1.1\r\nhost: x\r\nidempotency-key: b\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    let mut answered = String::new();
    while sent < 10 * 1024 * 1024 {
        if sent < 2 * 1024 * 1024 {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            if s.write_all(&frame).await.is_err() {
                break;
            }
            sent += chunk.len();
        } else {
            answered = read_response(&mut s).await;
            break;
        }
    }
    if answered.is_empty() {
        answered = read_response(&mut s).await;
    }
    assert!(
        answered.starts_with("HTTP/1.1 413"),
        "{answered:?} after {sent} bytes"
    );
    assert!(sent <= 2 * 1024 * 1024);
    server.shutdown().await;
}

#[tokio::test]
async fn bind_errors_are_returned() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = receiver().build().listen(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let world = Arc::new(World::default());
    let server = build(&world)
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let body = r#"{"id":"o1","wait":true}"#;
    let req = request("/OrderPlaced", Some("g1"), body).body(()).unwrap();
    let mut raw = format!(
        "POST /OrderPlaced HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in req.headers() {
        raw.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    world.gate.notify_one();
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_wire_never_takes_the_server_down() {
    let world = Arc::new(World::default());
    let server = build(&world)
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..150 {
        let mut raw = b"POST /OrderPlaced HTTP/1.1\r\nhost: x\r\n".to_vec();
        for _ in 0..(i % 7) {
            let mut line = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                line.push((seed & 0xff) as u8);
            }
            let name: &[u8] = match i % 4 {
                0 => b"x-webhook-signature: ",
                1 => b"x-webhook-timestamp: ",
                2 => b"idempotency-key: ",
                _ => b"",
            };
            raw.extend_from_slice(name);
            raw.extend(line.into_iter().filter(|b| *b != b'\r' && *b != b'\n'));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"content-length: 2\r\n\r\n{}");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&raw).await;
        let head = read_response(&mut s).await;
        assert!(
            head.is_empty() || head.starts_with("HTTP/1.1 4"),
            "case {i}: {head:?}"
        );
    }
    // Still serving.
    let body = r#"{"id":"ok"}"#;
    let req = request("/OrderPlaced", Some("after"), body)
        .body(())
        .unwrap();
    let mut raw = format!(
        "POST /OrderPlaced HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in req.headers() {
        raw.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 204"));
    server.shutdown().await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Arbitrary header values on every header the receiver reads: always a clean 4xx.
    #[test]
    fn arbitrary_header_values_get_a_4xx_never_a_panic(
        sig in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        ts in proptest::collection::vec(proptest::num::u8::ANY, 0..30),
        key in proptest::collection::vec(proptest::num::u8::ANY, 0..30),
        ct in proptest::collection::vec(proptest::num::u8::ANY, 0..30),
        ev in proptest::collection::vec(proptest::num::u8::ANY, 0..30),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        path in "/[a-zA-Z.]{0,12}",
    ) {
        let world = Arc::new(World::default());
        let r = build(&world);
        let mut req = Request::post(path.as_str()).body(Full::new(Bytes::from(body))).unwrap();
        for (name, v) in [
            ("x-webhook-signature", sig), ("x-webhook-timestamp", ts), ("idempotency-key", key),
            ("content-type", ct), ("webhook-event", ev),
        ] {
            if let Ok(v) = http::HeaderValue::from_bytes(&v) {
                req.headers_mut().insert(name, v);
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let status = rt.block_on(r.handle(req)).status().as_u16();
        proptest::prop_assert!((400..500).contains(&status), "status {}", status);
        proptest::prop_assert_eq!(world.handled.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_captured_request_resent_with_a_new_key_is_still_a_duplicate() {
    let body = r#"{"id":"o1"}"#;
    let signed = request("/OrderPlaced", None, body).body(()).unwrap();
    let resend = |r: Receiver, key: &'static str| {
        let mut req = Request::post("/OrderPlaced")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        *req.headers_mut() = signed.headers().clone();
        req.headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
        async move { r.handle(req).await }
    };
    let world = Arc::new(World::default());
    let r = build(&world);
    assert_eq!(resend(r.clone(), "orig").await.status(), 204);
    let replay = resend(r.clone(), "attacker-key").await;
    assert_eq!(replay.status(), 204);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        world.handled.load(Ordering::SeqCst),
        1,
        "the resend was not processed"
    );

    // With the protection off, the unsigned key is all there is (this is what the cache stops).
    let world = Arc::new(World::default());
    let w = world.clone();
    let open = receiver()
        .gate(
            hookwire_receiver::Gate::new()
                .secret(SECRET)
                .replay_protection(false),
        )
        .on("OrderPlaced", move |_: Order, _| {
            let w = w.clone();
            async move {
                w.handled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        })
        .build();
    assert_eq!(resend(open.clone(), "orig").await.status(), 204);
    assert_eq!(resend(open, "attacker-key").await.status(), 204);
    assert_eq!(world.handled.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused() {
    let server = receiver()
        .on("E", |_: serde_json::Value, _| async { Ok::<_, String>(()) })
        .build()
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let huge = "a".repeat(100 * 1024);
    let req =
        format!("POST /E HTTP/1.1\r\nhost: x\r\nx-junk: {huge}\r\ncontent-length: 2\r\n\r\n{{}}");
    let _ = s.write_all(req.as_bytes()).await;
    let head = read_response(&mut s).await;
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "a 100 KiB header is over the 64 KiB head limit: {head:?}"
    );
    server.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backed_receiver_fails_closed_when_redis_goes_away() {
    let mut redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let store =
        hookwire_receiver::RedisIdempotencyStore::open(&redis.url(), Default::default()).unwrap();
    let world = Arc::new(World::default());
    let w = world.clone();
    let r = receiver()
        .secret(SECRET)
        .store(Arc::new(store))
        .on("OrderPlaced", move |_: Order, _| {
            let w = w.clone();
            async move {
                w.handled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        })
        .build();
    let ok = r#"{"id":"o1"}"#;
    assert_eq!(send(&r, "/OrderPlaced", Some("r1"), ok).await.0, 204);
    let (s, _, h) = send(&r, "/OrderPlaced", Some("r1"), ok).await;
    assert_eq!(
        (s, &h["idempotent-replayed"]),
        (204, &http::HeaderValue::from_static("true"))
    );
    redis.kill();
    let (s, b, h) = send(&r, "/OrderPlaced", Some("r2"), ok).await;
    assert_eq!((s, b.as_str()), (503, r#"{"error":"store-unavailable"}"#));
    assert_eq!(&h["retry-after"], "1");
    assert_eq!(
        world.handled.load(Ordering::SeqCst),
        1,
        "nothing processed unprotected"
    );
}
