//! The extractors: `WebhookEvent<T>` parses after the layer, `Json<T>` still works, and both fail
//! closed without the layer.

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use hookwire_receiver::Gate;
use hookwire_receiver_axum::{HookwireLayer, Idempotency, WebhookEvent};
use tower_service::Service;

#[derive(Debug, serde::Deserialize)]
struct Ev {
    n: u32,
}

async fn call(app: &mut Router, key: &str, body: &'static str) -> (u16, String) {
    let req = http::Request::post("/")
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.call(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn verified_parses_and_a_bad_body_is_422_and_released() {
    let mut app = Router::new()
        .route(
            "/",
            post(|v: WebhookEvent<Ev>| async move { format!("{} {:?}", v.event.n, v.info.key) }),
        )
        .layer(HookwireLayer::new(Gate::new()));
    assert_eq!(
        call(&mut app, "a", r#"{"n":7}"#).await,
        (200, r#"7 Some("a")"#.to_owned())
    );
    let (s, b) = call(&mut app, "b", r#"{"n":"x"}"#).await;
    assert_eq!(s, 422);
    assert!(
        b.starts_with(r#"{"error":"validation-failed","detail":"#),
        "{b}"
    );
    // The 422 released the claim: the corrected retry with the same key is processed.
    assert_eq!(
        call(&mut app, "b", r#"{"n":8}"#).await,
        (200, r#"8 Some("b")"#.to_owned())
    );
}

#[tokio::test]
async fn json_after_the_layer_and_fail_closed_without_it() {
    let mut app = Router::new()
        .route(
            "/",
            post(
                |i: Idempotency, axum::Json(v): axum::Json<serde_json::Value>| async move {
                    format!("{:?} {v}", i.key)
                },
            ),
        )
        .layer(HookwireLayer::new(Gate::new()));
    assert_eq!(
        call(&mut app, "k", r#"{"a":1}"#).await,
        (200, r#"Some("k") {"a":1}"#.to_owned())
    );

    let mut bare = Router::new().route("/", post(|_: Idempotency| async { "processed" }));
    assert_eq!(
        call(&mut bare, "k", "{}").await,
        (500, r#"{"error":"receiver-not-configured"}"#.to_owned())
    );
}
