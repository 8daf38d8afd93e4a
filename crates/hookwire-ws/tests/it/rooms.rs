//! Rooms: asynchronous room policies (and their failure paths), client lookup and
//! broadcasts that skip the sender, over real sockets.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hookwire_ws::{DemoAuthenticator, HookReply, Identity, WsGateway};
use serde_json::json;

use crate::support::*;

/// A policy that looks the room up: `ok-*` after 50 ms, `no-*` refused, `broken` fails,
/// `slow` never answers in time.
fn async_gateway(timeout: Duration) -> WsGateway {
    WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .room_policy_async(|_who: Identity, room: String| async move {
            match room.as_str() {
                "broken" => Err(std::io::Error::other("directory unreachable")),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(true)
                }
                r => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(r.starts_with("ok-"))
                }
            }
        })
        .room_policy_timeout(timeout)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_async_policy_that_fails_or_times_out_refuses_the_join() {
    let gw = async_gateway(Duration::from_millis(300));
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;

    subscribe(&mut ws, "ok-lobby").await;
    send(&mut ws, &json!({"type":"subscribe","resource":"no-vip"})).await;
    let v = recv_no_ping(&mut ws).await;
    assert_eq!(
        (v["code"].as_str(), v["channel"].as_str()),
        (Some("forbidden"), Some("no-vip"))
    );

    send(&mut ws, &json!({"type":"subscribe","resource":"broken"})).await;
    let v = recv_no_ping(&mut ws).await;
    assert_eq!(v["code"], "policy-unavailable", "{v}");
    assert_eq!(v["channel"], "broken");

    let started = Instant::now();
    send(&mut ws, &json!({"type":"subscribe","resource":"slow"})).await;
    let v = recv_no_ping(&mut ws).await;
    assert_eq!(v["code"], "policy-unavailable", "{v}");
    assert!(v["message"].as_str().unwrap().contains("in time"), "{v}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "refused before the limit: {took:?}"
    );
    // Only the admitted room was joined, and the socket still works.
    assert_eq!(gw.rooms().room_len("ok-lobby"), 1);
    for room in ["no-vip", "broken", "slow"] {
        assert_eq!(gw.rooms().room_len(room), 0, "{room}");
    }
    send(&mut ws, &json!({"type":"ping"})).await;
    assert_eq!(recv_no_ping(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn outbound_frames_flow_and_later_frames_keep_their_order_while_a_policy_runs() {
    let gw = async_gateway(Duration::from_secs(1));
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    subscribe(&mut ws, "ok-lobby").await;

    // A join the policy takes its whole limit over, then a ping right behind it.
    send(&mut ws, &json!({"type":"subscribe","resource":"slow"})).await;
    send(&mut ws, &json!({"type":"ping"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Published meanwhile: delivered at once, not after the policy.
    assert_eq!(gw.broadcast("ok-lobby", &json!({"n": 1})), 1);
    let started = Instant::now();
    let first = recv_no_ping(&mut ws).await;
    assert_eq!(first["type"], "broadcast", "{first}");
    assert!(started.elapsed() < Duration::from_millis(600));
    assert_eq!(recv_no_ping(&mut ws).await["code"], "policy-unavailable");
    assert_eq!(recv_no_ping(&mut ws).await["type"], "pong");

    // A subscribe then an unsubscribe sent back to back are answered in that order.
    send(&mut ws, &json!({"type":"subscribe","resource":"ok-b"})).await;
    send(&mut ws, &json!({"type":"unsubscribe","resource":"ok-b"})).await;
    assert_eq!(recv_no_ping(&mut ws).await["type"], "subscribed");
    assert_eq!(recv_no_ping(&mut ws).await["type"], "unsubscribed");
    assert_eq!(gw.rooms().room_len("ok-b"), 0);
}

#[tokio::test]
async fn a_client_closed_while_its_policy_runs_joins_nothing() {
    let gw = async_gateway(Duration::from_secs(5));
    let addr = serve_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    send(&mut ws, &json!({"type":"subscribe","resource":"slow"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.close_all(), 1);
    let close = recv_close(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(u16::from(close.code), hookwire_ws::CLOSE_GOING_AWAY);
    assert!(eventually(|| gw.rooms().client_count() == 0).await);
    assert_eq!(gw.rooms().room_len("slow"), 0);
}

#[tokio::test]
async fn a_relayed_message_skips_the_sender_and_other_tenants() {
    // The hook relays `{"type":"say","room":…,"text":…}` through the gateway it belongs to.
    let handle: Arc<OnceLock<WsGateway>> = Arc::default();
    let h = Arc::clone(&handle);
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .on_message(move |client, msg| {
            let (Some(gw), Some(room)) = (h.get(), msg["room"].as_str()) else {
                return HookReply::Unknown;
            };
            let n = gw.broadcast_from(client.client_id, room, &msg["text"]);
            HookReply::Reply(json!({"type":"said","to":n}))
        })
        .build()
        .unwrap();
    handle.set(gw.clone()).unwrap();
    let addr = serve_gw(&gw).await;
    let (mut ann, hello) = connect(addr, "ann@acme").await;
    let (mut bob, _) = connect(addr, "bob@acme").await;
    let (mut gil, _) = connect(addr, "gil@globex").await;
    let (mut eve, _) = connect(addr, "eve@acme").await;
    for ws in [&mut ann, &mut bob, &mut gil] {
        subscribe(ws, "chat").await;
    }

    send(&mut ann, &json!({"type":"say","room":"chat","text":"hi"})).await;
    assert_eq!(recv_no_ping(&mut ann).await, json!({"type":"said","to":1}));
    assert_eq!(
        recv_no_ping(&mut bob).await,
        json!({"type":"broadcast","channel":"chat","data":"hi"})
    );
    // A client cannot speak into a room it has not joined.
    send(&mut eve, &json!({"type":"say","room":"chat","text":"spam"})).await;
    assert_eq!(recv_no_ping(&mut eve).await, json!({"type":"said","to":0}));
    for ws in [&mut ann, &mut bob, &mut gil] {
        expect_silence(ws, 150).await;
    }

    // Looking a client up by the id it was given, and sending to it alone.
    let id = hello["clientId"].as_str().unwrap();
    assert_eq!(gw.client(id).unwrap().identity().user_id(), Some("ann"));
    assert!(gw.send_to(id, &json!({"type":"notice"})));
    assert_eq!(recv_no_ping(&mut ann).await["type"], "notice");
    expect_silence(&mut bob, 100).await;
    drop(ann);
    assert!(eventually(|| gw.client(id).is_none()).await);
    assert!(!gw.send_to(id, &json!({"type":"notice"})));
}
