//! The event gateway: SSE and WebSocket behind one configuration, over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use hookwire_core::Event;
use hookwire_ws::{DemoAuthenticator, EventGateway, EventGatewayBuilder, WsGateway};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// An open SSE response: the status and the connection to read the body from.
pub async fn sse_get(addr: SocketAddr, path: &str) -> (u16, TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    (status, s, text)
}

/// Reads from an SSE connection until `needle` has been seen `times` times (or 5 s pass).
pub async fn read_until(s: &mut TcpStream, seen: String, needle: &str, times: usize) -> String {
    read_within(s, seen, needle, times, Duration::from_secs(5)).await
}

/// Like [`read_until`] with an explicit time limit (short when `times` is one more than
/// expected, to prove nothing else arrives).
async fn read_within(
    s: &mut TcpStream,
    mut seen: String,
    needle: &str,
    times: usize,
    within: Duration,
) -> String {
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    while seen.matches(needle).count() < times {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.push_str(&String::from_utf8_lossy(&chunk[..n])),
            _ => break,
        }
    }
    seen
}

fn builder() -> EventGatewayBuilder {
    EventGateway::builder()
        .authenticator(DemoAuthenticator)
        .room_policy(|who, room| room != "admin" || who.user_id() == Some("root"))
        .ws_options(WsGateway::builder().resources(["order"]))
}

async fn serve_event_gw(gw: &EventGateway) -> SocketAddr {
    serve(gw.router()).await
}

#[tokio::test]
async fn one_publish_reaches_both_sides_and_stays_in_its_org() {
    let gw = builder().build().unwrap();
    let addr = serve_event_gw(&gw).await;
    let (mut ws_acme, _) = connect(addr, "ann@acme").await;
    let (mut ws_globex, _) = connect(addr, "gil@globex").await;
    subscribe(&mut ws_acme, "order").await;
    subscribe(&mut ws_globex, "order").await;
    let (status, mut sse_acme, head) = sse_get(addr, "/events?filter=order.*&token=ann@acme").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/event-stream"));
    // Let the SSE subscription register before publishing.
    assert!(eventually(|| gw.sse().unwrap().events().subscriber_count() == 1).await);

    for i in 0..6 {
        let org = if i % 2 == 0 { "acme" } else { "globex" };
        gw.publish(&Event::new("order.created", json!({"i": i})).with_organization(org));
    }
    gw.publish(&Event::new("order.created", json!({"no": "org"})));
    gw.publish(&Event::new("user.created", json!({})).with_organization("acme"));

    let body = read_until(&mut sse_acme, head, "event: order.created", 3).await;
    assert_eq!(body.matches("event: order.created").count(), 3, "{body}");
    assert!(
        !body.contains("globex"),
        "cross-tenant SSE delivery: {body}"
    );
    assert!(!body.contains("user.created"), "filter ignored: {body}");
    assert!(
        !body.contains(r#""no":"org""#),
        "event without org reached a tenant: {body}"
    );

    for (ws, org) in [(&mut ws_acme, "acme"), (&mut ws_globex, "globex")] {
        for _ in 0..3 {
            let v = recv_no_ping(ws).await;
            assert_eq!(v["meta"]["organizationId"], org);
        }
        expect_silence(ws, 150).await;
    }
}

#[tokio::test]
async fn shared_auth_refuses_both_sides_with_401() {
    let gw = builder().build().unwrap();
    let addr = serve_event_gw(&gw).await;
    assert_eq!(sse_get(addr, "/events?filter=order.*").await.0, 401);
    assert_eq!(sse_get(addr, "/events/board").await.0, 401);
    assert_eq!(http_get(addr, "/state/board", &[]).await.0, 401);
    match try_connect(addr, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // The browser client script is public.
    assert_eq!(http_get(addr, "/hookwire-sse.js", &[]).await.0, 200);
}

#[tokio::test]
async fn shared_room_policy_applies_to_rooms_streams_and_event_filters() {
    let gw = builder().build().unwrap();
    let addr = serve_event_gw(&gw).await;
    let (mut ws, _) = connect(addr, "ann@acme").await;
    send(&mut ws, &json!({"type":"subscribe","resource":"admin"})).await;
    assert_eq!(recv(&mut ws).await["code"], "forbidden");
    assert_eq!(
        sse_get(addr, "/events?filter=admin.*&token=ann@acme")
            .await
            .0,
        403
    );
    assert_eq!(
        sse_get(addr, "/events?filter=order.*,admin.x&token=ann@acme")
            .await
            .0,
        403
    );
    assert_eq!(sse_get(addr, "/events/admin?token=ann@acme").await.0, 403);
    assert_eq!(
        sse_get(addr, "/events?filter=admin.*&token=root@acme")
            .await
            .0,
        200
    );
    // A state stream the policy allows.
    gw.sse()
        .unwrap()
        .channel()
        .publish("board", json!({"_v": 0, "cards": []}), vec![])
        .unwrap();
    let (status, body) = http_get(addr, "/state/board?token=ann@acme", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("cards"));
}

#[tokio::test]
async fn clients_without_organization_are_refused_the_event_stream_under_org_scoping() {
    let gw = EventGateway::builder()
        .auth(false)
        .ws_options(WsGateway::builder().resources(["order"]))
        .build()
        .unwrap();
    let addr = serve_event_gw(&gw).await;
    // Anonymous SSE would otherwise see every tenant's events.
    assert_eq!(sse_get(addr, "/events?filter=order.*").await.0, 403);
    let open = EventGateway::builder()
        .auth(false)
        .org_scoping(false)
        .build()
        .unwrap();
    let addr = serve_event_gw(&open).await;
    assert_eq!(sse_get(addr, "/events?filter=order.*").await.0, 200);
}

#[tokio::test]
async fn either_side_can_be_turned_off() {
    let no_sse = builder().sse(false).build().unwrap();
    let addr = serve_event_gw(&no_sse).await;
    assert_eq!(http_get(addr, "/events?token=ann@acme", &[]).await.0, 404);
    let (_ws, _) = connect(addr, "ann@acme").await;

    let no_ws = builder().ws(false).build().unwrap();
    assert!(no_ws.ws().is_none());
    let addr = serve_event_gw(&no_ws).await;
    assert_eq!(http_get(addr, "/ws?token=ann@acme", &[]).await.0, 404);
    assert_eq!(
        sse_get(addr, "/events?filter=order.*&token=ann@acme")
            .await
            .0,
        200
    );
}

#[test]
fn building_the_gateway_with_auth_on_and_no_authenticator_fails() {
    assert!(
        EventGateway::builder()
            .build()
            .unwrap_err()
            .is_missing_authenticator()
    );
}

#[cfg(feature = "events")]
#[tokio::test]
async fn with_a_bus_fan_out_both_sides_of_every_node_get_the_event_once() {
    let redis = hookwire_testkit::RedisServer::start().unwrap();
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let bus = redis_bus(&redis.url(), id).await;
        let fan_out = hookwire_ws::BusFanOut::new(&bus).await.unwrap();
        let gw = EventGateway::builder()
            .authenticator(DemoAuthenticator)
            .ws_options(WsGateway::builder().resources(["order"]).fan_out(fan_out))
            .build()
            .unwrap();
        let addr = serve_event_gw(&gw).await;
        nodes.push((gw, addr));
    }
    let (a, _) = &nodes[0];
    let (b, addr_b) = &nodes[1];
    let (_, mut sse_acme, head_acme) =
        sse_get(*addr_b, "/events?filter=order.*&token=ann@acme").await;
    let (_, mut sse_globex, head_globex) =
        sse_get(*addr_b, "/events?filter=order.*&token=gil@globex").await;
    let (mut ws_acme, _) = connect(*addr_b, "al@acme").await;
    subscribe(&mut ws_acme, "order").await;
    assert!(eventually(|| b.sse().unwrap().events().subscriber_count() == 2).await);

    a.publish(&Event::new("order.created", json!({"n": "first"})).with_organization("acme"));
    a.publish(&Event::new("order.created", json!({"n": "second"})).with_organization("globex"));
    a.publish(&Event::new("order.created", json!({"n": "third"})).with_organization("acme"));

    // Ask for one more frame than expected, for a while: duplicates would show up.
    let extra = Duration::from_millis(700);
    let acme = read_within(&mut sse_acme, head_acme, "event: order.created", 3, extra).await;
    assert_eq!(acme.matches("event: order.created").count(), 2, "{acme}");
    assert!(acme.contains("first") && acme.contains("third") && !acme.contains("second"));
    let globex = read_within(
        &mut sse_globex,
        head_globex,
        "event: order.created",
        2,
        extra,
    )
    .await;
    assert_eq!(
        globex.matches("event: order.created").count(),
        1,
        "{globex}"
    );
    assert!(globex.contains("second"));
    for want in ["first", "third"] {
        assert_eq!(recv_no_ping(&mut ws_acme).await["data"]["n"], want);
    }
    expect_silence(&mut ws_acme, 200).await;
}

/// A graceful shutdown of a server mounting the gateway ends every SSE stream (the `/events`
/// event stream and a state stream) and WebSocket client, so the server stops; before
/// `EventGateway::shutdown` an open `/events` stream kept it waiting forever.
#[tokio::test]
async fn graceful_shutdown_ends_every_stream_including_events() {
    let gw = builder().build().unwrap();
    gw.sse()
        .unwrap()
        .channel()
        .publish("board", json!({"_v": 1}), vec![])
        .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let on_stop = gw.clone();
    let server = tokio::spawn(async move {
        axum::serve(l, gw_router(&on_stop))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
                on_stop.shutdown();
            })
            .await
    });
    let (status, mut events, head) = sse_get(addr, "/events?filter=order.*&token=ann@acme").await;
    assert_eq!(status, 200);
    let (status, mut board, _) = sse_get(addr, "/events/board?token=ann@acme").await;
    assert_eq!(status, 200);
    let (mut ws, _) = connect(addr, "ann@acme").await;
    assert!(eventually(|| gw.sse().unwrap().events().subscriber_count() == 1).await);
    gw.publish(&Event::new("order.created", json!({"i": 1})).with_organization("acme"));
    let _ = read_until(&mut events, head, "event: order.created", 1).await;

    stop_tx.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(
        stopped.is_ok(),
        "the server kept waiting for an open stream"
    );
    for s in [&mut events, &mut board] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "stream still open");
    }
    assert_eq!(
        recv_close(&mut ws, Duration::from_secs(5))
            .await
            .map(|c| u16::from(c.code)),
        Some(1001)
    );
    // A stream opened after the shutdown ends at once.
    let mut late = gw
        .sse()
        .unwrap()
        .events()
        .subscribe(hookwire_sse::EventFilter::parse("*").unwrap(), None);
    assert!(late.try_next().is_none());
    assert_eq!(gw.sse().unwrap().events().subscriber_count(), 0);
}

fn gw_router(gw: &EventGateway) -> axum::Router {
    gw.router()
}

/// Two gateways on one Redis, each a broadcast subscriber of its node's bus: an event
/// published on either bus reaches the browsers of both nodes, SSE and WebSocket, once each and
/// only in its organization.
#[cfg(feature = "events")]
#[tokio::test]
async fn as_bus_broadcast_subscribers_both_sides_of_every_node_get_each_event_once() {
    let redis = hookwire_testkit::RedisServer::start().unwrap();
    let mut nodes = Vec::new();
    for node in ["n1", "n2"] {
        let bus = redis_bus(&redis.url(), node).await;
        let gw = EventGateway::builder()
            .authenticator(DemoAuthenticator)
            .ws_options(WsGateway::builder().resources(["order"]))
            .build()
            .unwrap();
        let feed = gw.subscribe_bus(&bus, "order.*").await.unwrap();
        let addr = serve_event_gw(&gw).await;
        nodes.push((bus, gw, addr, feed));
    }
    let mut clients = Vec::new();
    for (_, gw, addr, _) in &nodes {
        let (_, acme, acme_head) = sse_get(*addr, "/events?filter=order.*&token=ann@acme").await;
        let (_, globex, globex_head) =
            sse_get(*addr, "/events?filter=order.*&token=gil@globex").await;
        let (mut ws, _) = connect(*addr, "al@acme").await;
        subscribe(&mut ws, "order").await;
        assert!(eventually(|| gw.sse().unwrap().events().subscriber_count() == 2).await);
        clients.push(((acme, acme_head), (globex, globex_head), ws));
    }
    let (bus1, bus2) = (&nodes[0].0, &nodes[1].0);
    let ev = |n: &str, org: &str| {
        Event::new("order.created", json!({ "n": n })).with_organization(org.to_owned())
    };
    bus1.publish(ev("first", "acme")).await.unwrap();
    bus2.publish(ev("second", "globex")).await.unwrap();
    bus2.publish(ev("third", "acme")).await.unwrap();
    // Not an `order.*` event: no gateway forwards it.
    bus1.publish(Event::new("user.created", json!({})).with_organization("acme"))
        .await
        .unwrap();

    let extra = Duration::from_millis(700);
    for ((mut acme, acme_head), (mut globex, globex_head), mut ws) in clients {
        let acme = read_within(&mut acme, acme_head, "event: order.created", 3, extra).await;
        assert_eq!(acme.matches("event: order.created").count(), 2, "{acme}");
        assert!(acme.contains("first") && acme.contains("third") && !acme.contains("second"));
        let globex = read_within(&mut globex, globex_head, "event: order.created", 2, extra).await;
        assert_eq!(
            globex.matches("event: order.created").count(),
            1,
            "{globex}"
        );
        assert!(globex.contains("second"));
        for want in ["first", "third"] {
            assert_eq!(recv_no_ping(&mut ws).await["data"]["n"], want);
        }
        expect_silence(&mut ws, 200).await;
    }
}
