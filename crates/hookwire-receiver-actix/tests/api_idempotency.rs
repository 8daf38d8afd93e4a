//! `ApiIdempotencyTransform` on a real actix `HttpServer` on 127.0.0.1, driven over raw
//! HTTP/1.1: one run per key, replay, 422 on a reused key, 409 while in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, web};
use hookwire_receiver::{ApiIdempotencyLayer, IdempotencyConfig};
use hookwire_receiver_actix::ApiIdempotencyTransform;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// How often the handler ran, and a gate that holds a `wait` request until released.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    go: Notify,
}

async fn order(p: web::Data<Arc<Probe>>, body: web::Bytes) -> HttpResponse {
    let n = p.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if body.as_ref() == b"wait" {
        p.go.notified().await;
    }
    HttpResponse::Created().body(format!("order {n}: {}", String::from_utf8_lossy(&body)))
}

/// Serves `POST /orders` behind the middleware on its own actix system thread.
fn serve(probe: Arc<Probe>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = ApiIdempotencyLayer::memory(IdempotencyConfig::default());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(probe.clone()))
                    .wrap(ApiIdempotencyTransform::new(layer.clone()))
                    .route("/orders", web::post().to(order))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    addr
}

/// One `POST /orders` on a fresh connection; the raw response, read to the end.
async fn post(addr: SocketAddr, key: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&raw).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_handler_runs_once_per_key_and_replays_the_stored_response() {
    let probe = Arc::new(Probe::default());
    let addr = serve(probe.clone());
    let first = post(addr, "k1", "{\"qty\":1}").await;
    assert!(first.starts_with("http/1.1 201"), "{first}");
    assert!(first.ends_with("order 1: {\"qty\":1}"), "{first}");
    assert!(!first.contains("idempotent-replayed"), "{first}");
    let again = post(addr, "k1", "{\"qty\":1}").await;
    assert!(again.starts_with("http/1.1 201"), "{again}");
    assert!(again.contains("idempotent-replayed: true"), "{again}");
    assert!(again.ends_with("order 1: {\"qty\":1}"), "{again}");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_key_reused_with_another_body_is_422() {
    let probe = Arc::new(Probe::default());
    let addr = serve(probe.clone());
    assert!(post(addr, "k2", "a").await.starts_with("http/1.1 201"));
    let other = post(addr, "k2", "b").await;
    assert!(other.starts_with("http/1.1 422"), "{other}");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_duplicate_while_in_flight_is_409_with_retry_after() {
    let probe = Arc::new(Probe::default());
    let addr = serve(probe.clone());
    let first = tokio::spawn(post(addr, "k3", "wait"));
    while probe.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dup = post(addr, "k3", "wait").await;
    assert!(dup.starts_with("http/1.1 409"), "{dup}");
    assert!(dup.contains("retry-after: "), "{dup}");
    probe.go.notify_one();
    assert!(first.await.unwrap().starts_with("http/1.1 201"));
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}
