//! Two gateway nodes on loopback sharing one real redis-server.

use std::net::SocketAddr;

use hookwire_core::Event;
use hookwire_testkit::RedisServer;
use hookwire_ws::redis::RoomRedisFanOut;
use hookwire_ws::{DemoAuthenticator, WsGateway};
use serde_json::json;

use crate::support::*;

async fn node(url: &str) -> (WsGateway, SocketAddr) {
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order"])
        .fan_out(RoomRedisFanOut::connect(url).await.unwrap())
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    (gw, addr)
}

#[tokio::test]
async fn broadcasts_reach_every_node_exactly_once_and_stay_in_their_org() {
    let redis = RedisServer::start().unwrap();
    let (a, addr_a) = node(&redis.url()).await;
    let (b, addr_b) = node(&redis.url()).await;
    exactly_once_in_their_org((a, addr_a), (b, addr_b)).await;
}

/// The same with the fan-out carried by the event bus (Redis Streams broadcast) instead of the
/// WebSocket crate's own pub/sub channel.
#[cfg(feature = "events")]
#[tokio::test]
async fn over_the_bus_broadcasts_reach_every_node_exactly_once_and_stay_in_their_org() {
    use hookwire_events::{Bus, RedisStreams};
    let redis = RedisServer::start().unwrap();
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let t = RedisStreams::connect(&redis.url())
            .await
            .unwrap()
            .node_id(id);
        let bus = Bus::builder(t).build().unwrap();
        let gw = WsGateway::builder()
            .authenticator(DemoAuthenticator)
            .resources(["order"])
            .fan_out(hookwire_ws::BusFanOut::new(&bus).await.unwrap())
            .build()
            .unwrap();
        let addr = serve_gw(&gw).await;
        nodes.push((gw, addr));
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    exactly_once_in_their_org(a, b).await;
}

async fn exactly_once_in_their_org(
    (a, addr_a): (WsGateway, SocketAddr),
    (b, addr_b): (WsGateway, SocketAddr),
) {
    let mut clients = Vec::new();
    for (addr, token) in [
        (addr_a, "a1@acme"),
        (addr_a, "g1@globex"),
        (addr_b, "a2@acme"),
        (addr_b, "g2@globex"),
    ] {
        let (mut ws, _) = connect(addr, token).await;
        subscribe(&mut ws, "order").await;
        clients.push((ws, token.split_once('@').unwrap().1));
    }
    // Events from both nodes, both tenants, interleaved.
    for i in 0..20 {
        let (gw, org) = match i % 4 {
            0 => (&a, "acme"),
            1 => (&b, "acme"),
            2 => (&a, "globex"),
            _ => (&b, "globex"),
        };
        let local = gw.publish(
            &Event::new("order.created", json!({"i": i, "org": org})).with_organization(org),
        );
        assert_eq!(local, 1, "one local member of {org}");
    }
    b.broadcast_to_org(
        "acme",
        "order",
        &json!({"org": "acme", "i": "org-broadcast"}),
    );
    a.broadcast("order", &json!({"org": "all", "i": "all"}));

    for (ws, org) in &mut clients {
        let mut seen = Vec::new();
        let want = if *org == "acme" { 12 } else { 11 };
        for _ in 0..want {
            let v = recv_no_ping(ws).await;
            assert!(
                v["data"]["org"] == *org || v["data"]["org"] == "all",
                "{org} client received {v}"
            );
            seen.push(v["data"]["i"].to_string());
        }
        let mut dedup = seen.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len(), "duplicates: {seen:?}");
        // Exactly once: nothing more arrives.
        expect_silence(ws, 300).await;
    }
}

/// How many subscribers Redis counts on `channel`.
fn subscribers(redis: &RedisServer, channel: &str) -> u64 {
    let reply = redis.command(&format!("PUBSUB NUMSUB {channel}")).unwrap();
    reply
        .rsplit(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected reply {reply:?}"))
}

/// The fan-out's subscriber task belongs to it: dropping the gateway ends the Redis
/// subscription at once (before, the task ran on until the next message arrived, and
/// reconnected forever while Redis was down).
#[tokio::test]
async fn dropping_the_gateway_ends_its_redis_subscription() {
    let redis = RedisServer::start().unwrap();
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order"])
        .fan_out(
            RoomRedisFanOut::connect_with_channel(&redis.url(), "owned-sub")
                .await
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(subscribers(&redis, "owned-sub"), 1);
    drop(gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while subscribers(&redis, "owned-sub") != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription outlived its gateway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
