//! Each protocol message of spec `ws.md` over a real socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::SinkExt;
use hookwire_core::Event;
use hookwire_ws::{DemoAuthenticator, ExposeStats, HookReply, WsGateway};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

fn gateway() -> WsGateway {
    WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["product", "order"])
        .build()
        .unwrap()
}

#[tokio::test]
async fn connected_frame_names_client_and_resources() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (_ws, hello) = connect(addr, "ann@acme").await;
    assert!(hello["clientId"].as_str().unwrap().starts_with("ws_"));
    assert_eq!(hello["resources"], json!(["product", "order"]));
    assert!(eventually(|| gw.rooms().client_count() == 1).await);
}

#[tokio::test]
async fn subscribe_receive_unsubscribe() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    subscribe(&mut ws, "product").await;
    let e = Event::new("product.created", json!({"sku": "a-1"}))
        .with_organization("acme")
        .with_user("bob");
    assert_eq!(gw.publish(&e), 1);
    let v = recv_no_ping(&mut ws).await;
    assert_eq!(v["type"], "product.created");
    assert_eq!(v["data"], json!({"sku": "a-1"}));
    assert_eq!(v["meta"]["organizationId"], "acme");
    assert_eq!(v["meta"]["userId"], "bob");
    assert!(v["meta"]["timestamp"].is_string());

    send(&mut ws, &json!({"type":"unsubscribe","resource":"product"})).await;
    assert_eq!(
        recv_no_ping(&mut ws).await,
        json!({"type":"unsubscribed","channel":"product"})
    );
    assert_eq!(gw.publish(&e), 0);
    expect_silence(&mut ws, 200).await;
}

#[tokio::test]
async fn broadcast_frames_and_client_ping() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    subscribe(&mut ws, "lobby").await;
    assert_eq!(gw.broadcast("lobby", &json!({"hello": 1})), 1);
    assert_eq!(
        recv_no_ping(&mut ws).await,
        json!({"type":"broadcast","channel":"lobby","data":{"hello":1}})
    );
    send(&mut ws, &json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type":"pong"}));
}

/// A gateway pinging every `ms` and one connected client.
async fn heartbeat_client(ms: u64) -> (WsGateway, Client) {
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .heartbeat_interval(Duration::from_millis(ms))
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    let (ws, _) = connect(addr, "ann@acme").await;
    (gw, ws)
}

#[tokio::test]
async fn heartbeat_pings_and_answered_pongs_keep_the_client() {
    // A longer interval here, so a slow test machine cannot make an answered ping look missed.
    let (gw, mut ws) = heartbeat_client(250).await;
    // Five intervals answered: still connected (two misses would have closed it by the third).
    for _ in 0..5 {
        assert_eq!(recv(&mut ws).await, json!({"type":"ping"}));
        send(&mut ws, &json!({"type":"pong"})).await;
    }
    assert_eq!(gw.rooms().client_count(), 1);
}

#[tokio::test]
async fn two_missed_pongs_drop_the_client() {
    let (gw, mut ws) = heartbeat_client(100).await;
    assert_eq!(recv(&mut ws).await, json!({"type":"ping"}));
    assert_eq!(recv(&mut ws).await, json!({"type":"ping"}));
    let close = recv_close(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(u16::from(close.code), hookwire_ws::CLOSE_HEARTBEAT_TIMEOUT);
    assert!(eventually(|| gw.rooms().client_count() == 0).await);
}

#[tokio::test]
async fn malformed_unknown_and_binary_frames_get_errors_and_the_socket_stays() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    for bad in ["{nope", "42", "[1]", "null"] {
        send_raw(&mut ws, bad).await;
        assert_eq!(recv(&mut ws).await["code"], "bad-json", "{bad}");
    }
    send(&mut ws, &json!({"type":"dance"})).await;
    assert_eq!(recv(&mut ws).await["code"], "unknown-type");
    send(&mut ws, &json!({"type":"subscribe"})).await;
    assert_eq!(recv(&mut ws).await["code"], "bad-request");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(recv(&mut ws).await["code"], "binary-not-supported");
    subscribe(&mut ws, "order").await;
}

#[tokio::test]
async fn unauthenticated_upgrade_is_refused_with_401_before_upgrading() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    for token in [None, Some("no-org-separator"), Some("@acme")] {
        match try_connect(addr, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{token:?}");
            }
            other => panic!("expected a 401 refusal, got {:?}", other.map(|_| ())),
        }
    }
    // The same request over plain HTTP: 401 and no 101.
    let (status, body) = http_get(
        addr,
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("unauthorized"));
    assert_eq!(gw.rooms().client_count(), 0);
    // The bearer header works as well as the query token.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/ws"),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer ann@acme".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

#[test]
fn building_with_auth_on_and_no_authenticator_fails() {
    let err = WsGateway::builder()
        .resources(["order"])
        .build()
        .unwrap_err();
    assert!(err.is_missing_authenticator());
    assert!(err.to_string().contains("authenticator"));
    WsGateway::builder().auth(false).build().unwrap();
}

#[tokio::test]
async fn lifecycle_hooks_and_custom_frames() {
    let connects = Arc::new(AtomicUsize::new(0));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let (c, d) = (Arc::clone(&connects), Arc::clone(&disconnects));
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .on_connect(move |info| {
            assert_eq!(info.identity.organization_id(), Some("acme"));
            c.fetch_add(1, Ordering::SeqCst);
        })
        .on_disconnect(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .on_message(|info, msg| match msg["type"].as_str() {
            Some("whoami") => {
                HookReply::Reply(json!({"type":"you","user":info.identity.user_id()}))
            }
            Some("noop") => HookReply::Handled,
            _ => HookReply::Unknown,
        })
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    send(&mut ws, &json!({"type":"noop"})).await;
    send(&mut ws, &json!({"type":"whoami"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type":"you","user":"ann"}));
    send(&mut ws, &json!({"type":"other"})).await;
    assert_eq!(recv(&mut ws).await["code"], "unknown-type");
    ws.close(None).await.unwrap();
    // The server completes the closing handshake (its close frame comes back).
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    .unwrap();
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    assert!(eventually(|| disconnects.load(Ordering::SeqCst) == 1).await);
    assert_eq!(gw.rooms().client_count(), 0);
}

#[tokio::test]
async fn stats_endpoint_modes() {
    let off = gateway();
    let addr = serve_gw(&off).await;
    assert_eq!(http_get(addr, "/ws/stats", &[]).await.0, 404);

    let on = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order"])
        .expose_stats(ExposeStats::On)
        .build()
        .unwrap();
    let addr = serve_gw(&on).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    subscribe(&mut ws, "order").await;
    subscribe(&mut ws, "private-room-of-ann").await;
    let (status, body) = http_get(addr, "/ws/stats", &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Counts everything; names only the configured resources.
    assert_eq!(
        v,
        json!({"clients":1,"rooms":2,"subscriptions":{"order":1}})
    );

    let authed = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .expose_stats(ExposeStats::Authenticated)
        .build()
        .unwrap();
    let addr = serve_gw(&authed).await;
    assert_eq!(http_get(addr, "/ws/stats", &[]).await.0, 401);
    let (status, body) = http_get(addr, "/ws/stats", &[("Authorization", "Bearer ann@acme")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"clients\":0"));
}

#[tokio::test]
async fn an_expired_session_on_a_live_socket_is_closed_with_4003() {
    let revoked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let r = Arc::clone(&revoked);
    let gw = WsGateway::builder()
        .authenticator(move |req: &hookwire_ws::AuthRequest<'_>| {
            let token = req.query_param("token")?;
            let (user, org) = token.split_once('@')?;
            if r.lock().unwrap().iter().any(|u| u == user) {
                return None;
            }
            Some(
                hookwire_ws::Identity::new()
                    .with_user(user)
                    .with_organization(org),
            )
        })
        .reauth_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    let (mut ann, _) = connect(addr, "ann@acme").await;
    let (mut bob, _) = connect(addr, "bob@acme").await;
    subscribe(&mut ann, "order").await;
    revoked.lock().unwrap().push("ann".to_owned());
    assert_eq!(recv(&mut ann).await["code"], "session-expired");
    let close = recv_close(&mut ann, Duration::from_secs(2)).await.unwrap();
    assert_eq!(u16::from(close.code), hookwire_ws::CLOSE_SESSION_EXPIRED);
    // Bob's session is still valid after several re-checks.
    expect_silence(&mut bob, 400).await;
    subscribe(&mut bob, "order").await;
    assert!(eventually(|| gw.rooms().client_count() == 1).await);
}

#[tokio::test]
async fn close_all_sends_1001_to_every_client() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut a, _) = connect(addr, "ann@acme").await;
    let (mut b, _) = connect(addr, "bob@globex").await;
    subscribe(&mut a, "order").await;
    assert!(eventually(|| gw.rooms().client_count() == 2).await);
    assert_eq!(gw.close_all(), 2);
    for ws in [&mut a, &mut b] {
        let close = recv_close(ws, Duration::from_secs(2)).await.unwrap();
        assert_eq!(u16::from(close.code), hookwire_ws::CLOSE_GOING_AWAY);
    }
    assert!(eventually(|| gw.rooms().client_count() == 0).await);
}
