//! One black-box suite for every way to receive webhooks: the typed receiver and the axum, actix
//! and warp adapters. Each target serves the same app on 127.0.0.1; the suite signs requests,
//! sends them over real HTTP and asserts status, body and how often the handler ran.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookwire_core::signing::{Scheme, SchemeChoice, SignInput, sign};
use hookwire_core::{IdempotencyConfig, MemoryStore, Secret};
use hookwire_receiver::Gate;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LIMIT: usize = 2048;

type Headers = [(String, String)];

/// The event every target's handler parses with its framework's own JSON extractor.
#[derive(Debug, Deserialize)]
struct Ev {
    id: String,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    panic: bool,
}

/// What the handler does and what it saw; shared by the four apps.
#[derive(Default)]
struct Probe {
    processed: std::sync::Mutex<Vec<String>>,
    calls: AtomicUsize,
    failures_left: AtomicUsize,
    entered: AtomicUsize,
    go: Notify,
}

impl Probe {
    async fn handle(&self, ev: Ev, key: Option<String>) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if ev.wait {
            self.entered.fetch_add(1, Ordering::SeqCst);
            self.go.notified().await;
        }
        if ev.panic
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("handler panics on {}", ev.id);
        }
        if ev.fail
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(format!("failing {}", ev.id));
        }
        self.processed
            .lock()
            .unwrap()
            .push(format!("{}:{}", key.unwrap_or_default(), ev.id));
        Ok(())
    }
    fn processed(&self) -> Vec<String> {
        self.processed.lock().unwrap().clone()
    }
}

fn gate() -> Gate {
    let store = MemoryStore::new(IdempotencyConfig::default().with_lease(Duration::from_secs(30)));
    Gate::new()
        .secret(SECRET)
        .scheme(SchemeChoice::Auto)
        .max_body(LIMIT)
        .store(Arc::new(store))
}

type Stop = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Running {
    addr: SocketAddr,
    stop: Stop,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Builder,
    Axum,
    Actix,
    Warp,
}

const TARGETS: [Target; 4] = [Target::Builder, Target::Axum, Target::Actix, Target::Warp];

fn status_of(r: &Result<(), String>) -> u16 {
    if r.is_ok() { 204 } else { 500 }
}

async fn start(target: Target, probe: Arc<Probe>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match target {
        Target::Builder => {
            let server = hookwire_receiver::receiver()
                .gate(gate())
                .on("webhook", move |ev: Ev, ctx: hookwire_receiver::Context| {
                    let p = probe.clone();
                    async move { p.handle(ev, ctx.key).await }
                })
                .build()
                .serve(listener)
                .unwrap();
            Running {
                addr,
                stop: Box::new(move || Box::pin(server.shutdown())),
            }
        }
        Target::Axum => {
            use axum::extract::{Json, State};
            use hookwire_receiver_axum::{HookwireLayer, Idempotency};
            async fn h(
                State(p): State<Arc<Probe>>,
                idem: Idempotency,
                Json(ev): Json<Ev>,
            ) -> axum::http::StatusCode {
                let r = p.handle(ev, idem.key).await;
                axum::http::StatusCode::from_u16(status_of(&r)).unwrap()
            }
            let app = axum::Router::new()
                .route("/webhook", axum::routing::post(h))
                .with_state(probe)
                .layer(HookwireLayer::new(gate()));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
            Running {
                addr,
                stop: Box::new(move || {
                    Box::pin(async move {
                        let _ = tx.send(());
                        let _ = task.await;
                    })
                }),
            }
        }
        Target::Actix => {
            use actix_web::{App, HttpResponse, web};
            use hookwire_receiver_actix::{HookwireLayer, Idempotency};
            async fn h(
                p: web::Data<Arc<Probe>>,
                idem: Idempotency,
                ev: web::Json<Ev>,
            ) -> HttpResponse {
                let r = p.handle(ev.into_inner(), idem.key).await;
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status_of(&r)).unwrap())
                    .finish()
            }
            let std_listener = listener.into_std().unwrap();
            std_listener.set_nonblocking(true).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            // One gate (one store) for every worker, including restarted ones.
            let g = gate();
            let thread = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = actix_web::HttpServer::new(move || {
                        App::new()
                            .app_data(web::Data::new(probe.clone()))
                            .wrap(HookwireLayer::new(g.clone()))
                            .route("/webhook", web::post().to(h))
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(std_listener)
                    .unwrap()
                    .run();
                    tx.send(server.handle()).unwrap();
                    server.await.unwrap();
                });
            });
            let handle = rx.recv().unwrap();
            Running {
                addr,
                stop: Box::new(move || {
                    Box::pin(async move {
                        handle.stop(true).await;
                        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                    })
                }),
            }
        }
        Target::Warp => {
            use hookwire_receiver_warp::{WebhookRequest, recover, webhook};
            use warp::Filter;
            let route = warp::post()
                .and(warp::path("webhook"))
                .and(warp::path::end())
                .and(webhook(gate()))
                .and_then(move |w: WebhookRequest| {
                    let p = probe.clone();
                    async move {
                        let ev: Ev = w.json()?;
                        let r = p.handle(ev, w.key.clone()).await;
                        let status = warp::http::StatusCode::from_u16(status_of(&r)).unwrap();
                        Ok::<_, warp::Rejection>(w.finish(status).await)
                    }
                })
                .recover(recover);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(
                warp::serve(route)
                    .incoming(listener)
                    .graceful(async {
                        let _ = rx.await;
                    })
                    .run(),
            );
            Running {
                addr,
                stop: Box::new(move || {
                    Box::pin(async move {
                        let _ = tx.send(());
                        let _ = task.await;
                    })
                }),
            }
        }
    }
}

/// A response as seen on the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
async fn post(addr: SocketAddr, headers: &[(String, String)], body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A server may answer (413) before reading the body and close: ignore write errors.
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .ok();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn now() -> i64 {
    hookwire_core::time::unix_now()
}

fn signed(scheme: Scheme, body: &[u8], ts: i64, id: &str) -> Vec<(String, String)> {
    // One `whsec_` secret for every scheme: `standard` decodes it, the others use its bytes.
    let mut h = sign(
        scheme,
        &Secret::new(SECRET),
        &SignInput::new(body, ts).id(id),
    )
    .unwrap()
    .to_vec();
    if scheme != Scheme::Standard {
        h.push(("Idempotency-Key".to_owned(), id.to_owned()));
    }
    h
}

fn ev(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

async fn every_reason_and_status(target: Target) {
    let probe = Arc::new(Probe::default());
    let run = start(target, probe.clone()).await;
    let a = run.addr;
    let t = now();
    let body = ev("e1");

    // Accepted, then replayed without running the handler again (standard: webhook-id is the key).
    let h = signed(Scheme::Standard, &body, t, "msg_1");
    let r = post(a, &h, &body).await;
    assert_eq!(r.status, 204, "{target:?} first delivery: {r:?}");
    assert_eq!(r.header("idempotent-replayed"), None);
    let r = post(a, &h, &body).await;
    assert_eq!(r.status, 204, "{target:?} replay: {r:?}");
    assert_eq!(r.header("idempotent-replayed"), Some("true"), "{target:?}");
    assert_eq!(probe.processed(), vec!["msg_1:e1".to_owned()], "{target:?}");

    // Issue 14: the same signed message re-spelled (uppercase hex) under a new unsigned key is
    // a replay of the first, on every adapter.
    let body2 = ev("e2");
    let r = post(a, &signed(Scheme::Hookwire, &body2, t, "k-orig"), &body2).await;
    assert_eq!(r.status, 204, "{target:?} hookwire delivery: {r:?}");
    let mut respelled = signed(Scheme::Hookwire, &body2, t, "k-attacker");
    let hex = respelled[0].1.trim_start_matches("sha256=").to_uppercase();
    respelled[0].1 = format!("sha256={hex}");
    let r = post(a, &respelled, &body2).await;
    assert_eq!(
        r.header("idempotent-replayed"),
        Some("true"),
        "{target:?}: {r:?}"
    );

    let stale = signed(Scheme::Hookwire, &body, t - 600, "k-stale");
    let future = signed(Scheme::Hookwire, &body, t + 600, "k-future");
    let mut bad_sig = signed(Scheme::Hookwire, &body, t, "k-bad");
    bad_sig[0].1 = format!("sha256={}", "0".repeat(64));
    let mut dup_ts = signed(Scheme::Hookwire, &body, t, "k-dup");
    dup_ts.push(("X-Webhook-Timestamp".to_owned(), t.to_string()));
    let no_ts: Vec<_> = signed(Scheme::Hookwire, &body, t, "k-nots")
        .into_iter()
        .filter(|(k, _)| k != "X-Webhook-Timestamp")
        .collect();
    let mut no_key = signed(Scheme::Hookwire, &body, t, "unused");
    no_key.retain(|(k, _)| k != "Idempotency-Key");
    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(LIMIT));
    let big_h = signed(Scheme::Hookwire, big.as_bytes(), t, "k-big");
    let empty_h = signed(Scheme::Hookwire, b"", t, "k-empty");
    let no_sig = vec![("Idempotency-Key".to_owned(), "k-nosig".to_owned())];
    let long_key = signed(Scheme::Hookwire, &body, t, &"k".repeat(256));

    let cases: Vec<(&str, &Headers, &[u8], u16, &str)> = vec![
        ("empty body", &empty_h, b"", 400, "empty-body"),
        ("no signature", &no_sig, &body, 401, "missing-signature"),
        ("no timestamp", &no_ts, &body, 401, "missing-timestamp"),
        ("stale", &stale, &body, 401, "stale"),
        ("future", &future, &body, 401, "future"),
        ("bad signature", &bad_sig, &body, 401, "bad-signature"),
        ("repeated header", &dup_ts, &body, 401, "malformed-header"),
        ("no key", &no_key, &body, 400, "missing-key"),
        ("key too long", &long_key, &body, 400, "key-too-long"),
        ("too large", &big_h, big.as_bytes(), 413, "body-too-large"),
    ];
    for (what, h, b, status, reason) in cases {
        let r = post(a, h, b).await;
        assert_eq!(r.status, status, "{target:?} {what}: {r:?}");
        assert_eq!(
            r.body,
            format!(r#"{{"error":"{reason}"}}"#),
            "{target:?} {what}"
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{target:?} {what}: {r:?}"
        );
    }
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        2,
        "{target:?}: refused requests and replays never reach the handler"
    );
    (run.stop)().await;
}

async fn handler_failure_then_retry_is_processed(target: Target) {
    let probe = Arc::new(Probe::default());
    probe.failures_left.store(1, Ordering::SeqCst);
    let run = start(target, probe.clone()).await;
    let body = br#"{"id":"f1","fail":true}"#;
    let r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kf"), body).await;
    assert_eq!(r.status, 500, "{target:?}: {r:?}");
    // The sender retries (re-signed, same key): processed, not deduped.
    let r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kf"), body).await;
    assert_eq!(r.status, 204, "{target:?}: {r:?}");
    assert_eq!(r.header("idempotent-replayed"), None, "{target:?}");
    assert_eq!(probe.processed(), vec!["kf:f1".to_owned()], "{target:?}");
    let r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kf"), body).await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"), "{target:?}");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2, "{target:?}");
    (run.stop)().await;
}

async fn in_flight_duplicate_gets_409(target: Target) {
    let probe = Arc::new(Probe::default());
    let run = start(target, probe.clone()).await;
    let addr = run.addr;
    let body = br#"{"id":"w1","wait":true}"#;
    let h = signed(Scheme::Hookwire, body, now(), "kw");
    let first = tokio::spawn({
        let h = h.clone();
        async move { post(addr, &h, body).await }
    });
    while probe.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dup = post(addr, &h, body).await;
    assert_eq!(dup.status, 409, "{target:?}: {dup:?}");
    assert_eq!(dup.body, r#"{"error":"in-flight"}"#, "{target:?}");
    let ra: u64 = dup.header("retry-after").unwrap().parse().unwrap();
    assert!(ra >= 1, "{target:?}");
    probe.go.notify_one();
    assert_eq!(first.await.unwrap().status, 204, "{target:?}");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1, "{target:?}");
    (run.stop)().await;
}

async fn handler_panic_releases_the_key(target: Target) {
    let probe = Arc::new(Probe::default());
    probe.failures_left.store(1, Ordering::SeqCst);
    let run = start(target, probe.clone()).await;
    let body = br#"{"id":"p1","panic":true}"#;
    let r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kp"), body).await;
    // Frameworks differ in how a panic reaches the wire (500 or a dropped connection); none
    // may commit the key.
    assert!(matches!(r.status, 0 | 500), "{target:?}: {r:?}");
    // Where the panic drops the connection, the client can see it close before the server has
    // unwound and released the key: a retry in that gap is told "in flight" (409), as a sender
    // honouring Retry-After would be, and goes through once the key is released.
    let mut r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kp"), body).await;
    for _ in 0..100 {
        if r.status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = post(run.addr, &signed(Scheme::Hookwire, body, now(), "kp"), body).await;
    }
    assert_eq!(
        r.status, 204,
        "{target:?}: the retry after a panic is processed: {r:?}"
    );
    assert_eq!(r.header("idempotent-replayed"), None, "{target:?}");
    assert_eq!(probe.processed(), vec!["kp:p1".to_owned()], "{target:?}");
    (run.stop)().await;
}

macro_rules! per_target {
    ($($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            for t in TARGETS {
                super::$case(t).await;
            }
        }
    )*};
}

mod all_targets {
    use super::*;
    per_target!(
        every_reason_and_status,
        handler_failure_then_retry_is_processed,
        in_flight_duplicate_gets_409,
        handler_panic_releases_the_key
    );
}
