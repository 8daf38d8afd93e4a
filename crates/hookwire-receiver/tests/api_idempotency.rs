//! `ApiIdempotencyLayer` in an axum app served on 127.0.0.1, spoken to over raw sockets: replay,
//! 422 on a reused key, 409 while in flight, 5xx never stored, GET untouched, key limits and
//! invalidation; on the memory store and (feature `redis`) on a real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hookwire_core::IdempotencyConfig;
use hookwire_receiver::ApiIdempotencyLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Headers that a replay must reproduce (everything but per-connection ones and the
    /// replay marker).
    fn stable(&self) -> (u16, Vec<(String, String)>, String) {
        let mut h: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "date" | "idempotent-replayed"))
            .cloned()
            .collect();
        h.sort();
        (self.status, h, self.body.clone())
    }
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let key = key.map_or(String::new(), |k| format!("idempotency-key: {k}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n{key}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Counters of how often each handler ran.
#[derive(Default)]
struct Runs {
    create: AtomicUsize,
    flaky: AtomicUsize,
    slow: AtomicUsize,
    list: AtomicUsize,
}

async fn serve(layer: ApiIdempotencyLayer) -> (std::net::SocketAddr, Arc<Runs>) {
    let runs = Arc::new(Runs::default());
    let (r1, r2, r3, r4) = (runs.clone(), runs.clone(), runs.clone(), runs.clone());
    let app = Router::new()
        .route(
            "/orders",
            post(move |body: String| {
                let n = r1.create.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        StatusCode::CREATED,
                        [
                            ("location", format!("/orders/{n}")),
                            ("x-run", n.to_string()),
                        ],
                        format!("{{\"order\":{n},\"echo\":{body}}}"),
                    )
                }
            }),
        )
        .route(
            "/flaky",
            post(move || {
                let n = r2.flaky.fetch_add(1, Ordering::SeqCst) + 1;
                async move { (StatusCode::SERVICE_UNAVAILABLE, format!("fail {n}")) }
            }),
        )
        .route(
            "/slow",
            post(move || {
                r3.slow.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    "done"
                }
            }),
        )
        .route(
            "/list",
            get(move || {
                let n = r4.list.fetch_add(1, Ordering::SeqCst) + 1;
                async move { n.to_string() }
            }),
        )
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, runs)
}

/// A layer on a fresh memory store (nothing to keep alive beside it).
fn memory_layer() -> (ApiIdempotencyLayer, ()) {
    (
        ApiIdempotencyLayer::memory(IdempotencyConfig::default()),
        (),
    )
}

async fn replay_returns_the_identical_response_with_the_replayed_header(
    layer: ApiIdempotencyLayer,
) {
    let (addr, runs) = serve(layer).await;
    let first = send(addr, "POST", "/orders", Some("k-1"), r#"{"a":1}"#).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send(addr, "POST", "/orders", Some("k-1"), r#"{"a":1}"#).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), Some("/orders/1"));
    // `x-run` is not a stored header: the replay carries only the selected ones.
    assert_eq!(again.header("x-run"), None);
    let mut expected = first.stable();
    expected.1.retain(|(n, _)| n != "x-run");
    assert_eq!(again.stable(), expected);
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
}

async fn reused_key_with_another_body_is_422(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer).await;
    assert_eq!(
        send(addr, "POST", "/orders", Some("k-2"), r#"{"a":1}"#)
            .await
            .status,
        201
    );
    let other = send(addr, "POST", "/orders", Some("k-2"), r#"{"a":2}"#).await;
    assert_eq!(other.status, 422);
    assert!(other.body.contains("validation-failed"), "{}", other.body);
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
}

async fn duplicate_while_in_flight_is_409_with_retry_after(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer).await;
    let first = tokio::spawn(async move { send(addr, "POST", "/slow", Some("k-3"), "{}").await });
    // Wait until the first request is inside its handler.
    while runs.slow.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dup = send(addr, "POST", "/slow", Some("k-3"), "{}").await;
    assert_eq!(dup.status, 409);
    assert!(
        dup.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
    );
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(runs.slow.load(Ordering::SeqCst), 1);
}

async fn server_errors_are_not_stored_and_a_retry_runs(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer.clone()).await;
    let a = send(addr, "POST", "/flaky", Some("k-4"), "{}").await;
    let b = send(addr, "POST", "/flaky", Some("k-4"), "{}").await;
    assert_eq!((a.status, b.status), (503, 503));
    assert_eq!(b.body, "fail 2");
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_eq!(runs.flaky.load(Ordering::SeqCst), 2);
    assert!(!layer.has("k-4").await.unwrap());
}

async fn get_is_untouched(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer).await;
    let a = send(addr, "GET", "/list", Some("k-5"), "").await;
    let b = send(addr, "GET", "/list", Some("k-5"), "").await;
    assert_eq!((a.body.as_str(), b.body.as_str()), ("1", "2"));
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_eq!(runs.list.load(Ordering::SeqCst), 2);
}

async fn key_too_long_is_400(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer.max_key_len(16)).await;
    let long = "k".repeat(17);
    let r = send(addr, "POST", "/orders", Some(&long), "{}").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("key-too-long"), "{}", r.body);
    assert_eq!(
        send(addr, "POST", "/orders", Some(&long[..16]), "{}")
            .await
            .status,
        201
    );
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
}

async fn invalidate_lets_the_same_key_run_again(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer.clone()).await;
    assert_eq!(
        send(addr, "POST", "/orders", Some("k-6"), "{}")
            .await
            .status,
        201
    );
    assert!(layer.has("k-6").await.unwrap());
    assert!(layer.invalidate("k-6").await.unwrap());
    assert!(!layer.has("k-6").await.unwrap());
    let again = send(addr, "POST", "/orders", Some("k-6"), "{}").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_eq!(again.header("location"), Some("/orders/2"));
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
}

async fn keys_are_scoped_per_caller_identity(layer: ApiIdempotencyLayer) {
    let layer = layer.identity(|p| p.uri.query().map(str::to_owned));
    let (addr, runs) = serve(layer).await;
    assert_eq!(
        send(addr, "POST", "/orders?alice", Some("k-7"), "{}")
            .await
            .status,
        201
    );
    // Another caller with the same key is a different request: it runs, no 422, no leak.
    let bob = send(addr, "POST", "/orders?bob", Some("k-7"), "{}").await;
    assert_eq!(bob.status, 201);
    assert_eq!(bob.header("idempotent-replayed"), None);
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
}

async fn oversized_response_is_sent_but_not_stored(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer.max_stored_body(8)).await;
    let a = send(addr, "POST", "/orders", Some("k-8"), "{}").await;
    let b = send(addr, "POST", "/orders", Some("k-8"), "{}").await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_eq!(runs.create.load(Ordering::SeqCst), 2);
}

async fn invalidate_is_exact_not_a_prefix(layer: ApiIdempotencyLayer) {
    let (addr, _runs) = serve(layer.clone()).await;
    assert_eq!(
        send(addr, "POST", "/orders", Some("abc:def"), "{}")
            .await
            .status,
        201
    );
    // Forgetting `abc` must not clear `abc:def` (a prefix match would).
    assert!(!layer.invalidate("abc").await.unwrap());
    assert!(layer.has("abc:def").await.unwrap());
    let again = send(addr, "POST", "/orders", Some("abc:def"), "{}").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

/// The claim's lease in the slow-handler case: the `/slow` handler (700 ms) outlives three.
const SHORT_LEASE: Duration = Duration::from_millis(200);

async fn a_handler_slower_than_the_lease_runs_once_per_key(layer: ApiIdempotencyLayer) {
    let (addr, runs) = serve(layer).await;
    let first =
        tokio::spawn(async move { send(addr, "POST", "/slow", Some("k-slow"), "{}").await });
    while runs.slow.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Duplicates across several leases while the handler still runs: each one is refused.
    let mut refused = 0;
    while !first.is_finished() {
        let dup = send(addr, "POST", "/slow", Some("k-slow"), "{}").await;
        if dup.status != 409 {
            // The first request finished on the server (its client may not have read the
            // answer yet): a duplicate now replays the stored response, it never runs again.
            assert_eq!(dup.header("idempotent-replayed"), Some("true"), "{dup:?}");
            break;
        }
        assert_eq!(dup.status, 409, "{dup:?}");
        assert!(dup.header("retry-after").is_some(), "{dup:?}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        refused >= 3,
        "only {refused} duplicates were sent while the handler ran"
    );
    assert_eq!(first.await.unwrap().status, 200);
    let after = send(addr, "POST", "/slow", Some("k-slow"), "{}").await;
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        runs.slow.load(Ordering::SeqCst),
        1,
        "the handler ran twice for one key"
    );
}

macro_rules! suite {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn replay_returns_the_identical_response_with_the_replayed_header() {
            let (layer, _server) = $make;
            super::replay_returns_the_identical_response_with_the_replayed_header(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reused_key_with_another_body_is_422() {
            let (layer, _server) = $make;
            super::reused_key_with_another_body_is_422(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn duplicate_while_in_flight_is_409_with_retry_after() {
            let (layer, _server) = $make;
            super::duplicate_while_in_flight_is_409_with_retry_after(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn server_errors_are_not_stored_and_a_retry_runs() {
            let (layer, _server) = $make;
            super::server_errors_are_not_stored_and_a_retry_runs(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn get_is_untouched() {
            let (layer, _server) = $make;
            super::get_is_untouched(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn key_too_long_is_400() {
            let (layer, _server) = $make;
            super::key_too_long_is_400(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn invalidate_lets_the_same_key_run_again() {
            let (layer, _server) = $make;
            super::invalidate_lets_the_same_key_run_again(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn keys_are_scoped_per_caller_identity() {
            let (layer, _server) = $make;
            super::keys_are_scoped_per_caller_identity(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn invalidate_is_exact_not_a_prefix() {
            let (layer, _server) = $make;
            super::invalidate_is_exact_not_a_prefix(layer).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn oversized_response_is_sent_but_not_stored() {
            let (layer, _server) = $make;
            super::oversized_response_is_sent_but_not_stored(layer).await;
        }
    };
}

mod memory {
    suite!(super::memory_layer());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_slower_than_the_lease_runs_once_per_key() {
        let config = super::IdempotencyConfig::default().with_lease(super::SHORT_LEASE);
        let layer = super::ApiIdempotencyLayer::memory(config);
        super::a_handler_slower_than_the_lease_runs_once_per_key(layer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_releases_its_key_for_the_retry() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let app = Router::new()
        .route(
            "/boom",
            post(move || {
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    assert!(n > 1, "first run dies");
                    (StatusCode::CREATED, "ok")
                }
            }),
        )
        .layer(memory_layer().0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The first connection dies with its handler; no answer comes back.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /boom HTTP/1.1\r\nhost: x\r\nconnection: close\r\nidempotency-key: p-1\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    // Not a 409 for the lease's 30 s: the dropped request released its claim.
    let retry = send(addr, "POST", "/boom", Some("p-1"), "{}").await;
    assert_eq!(retry.status, 201);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_key_header_is_400_not_ignored() {
    let (addr, runs) = serve(memory_layer().0).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /orders HTTP/1.1\r\nhost: x\r\nconnection: close\r\nidempotency-key: a\r\nidempotency-key: b\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(runs.create.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_structured_field_key_is_the_same_key() {
    let (addr, runs) = serve(memory_layer().0).await;
    assert_eq!(
        send(addr, "POST", "/orders", Some("\"k-9\""), "{}")
            .await
            .status,
        201
    );
    let again = send(addr, "POST", "/orders", Some("k-9"), "{}").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(runs.create.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "redis")]
mod redis {
    use hookwire_receiver::RedisIdempotencyStore;
    use hookwire_testkit::RedisServer;

    /// A layer on a fresh redis-server, returned with the server so the test owns it (and
    /// stops it when it ends).
    fn layer() -> (super::ApiIdempotencyLayer, RedisServer) {
        let server = RedisServer::start().expect("redis-server");
        let store = RedisIdempotencyStore::open(&server.url(), super::IdempotencyConfig::default())
            .expect("url");
        (super::ApiIdempotencyLayer::new(store), server)
    }

    suite!(layer());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_slower_than_the_lease_runs_once_per_key() {
        let server = RedisServer::start().expect("redis-server");
        let config = super::IdempotencyConfig::default().with_lease(super::SHORT_LEASE);
        let store = RedisIdempotencyStore::open(&server.url(), config).expect("url");
        let layer = super::ApiIdempotencyLayer::new(store);
        super::a_handler_slower_than_the_lease_runs_once_per_key(layer).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_store_is_503_and_the_handler_never_runs() {
        let port = hookwire_testkit::free_port();
        let store = RedisIdempotencyStore::open(
            &format!("redis://127.0.0.1:{port}"),
            super::IdempotencyConfig::default(),
        )
        .expect("url");
        let (addr, runs) = super::serve(super::ApiIdempotencyLayer::new(store)).await;
        let r = super::send(addr, "POST", "/orders", Some("k-10"), "{}").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("store-unavailable"), "{}", r.body);
        assert_eq!(runs.create.load(super::Ordering::SeqCst), 0);
    }
}
