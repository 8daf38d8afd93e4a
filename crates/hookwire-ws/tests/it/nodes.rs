//! Two gateway nodes on loopback, each with its own event bus (Redis Streams) on one real
//! redis-server: the WebSocket fan-out rides on bus broadcasts.

use std::net::SocketAddr;

use hookwire_core::Event;
use hookwire_testkit::RedisServer;
use hookwire_ws::{BusFanOut, DemoAuthenticator, WsGateway};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn over_the_bus_broadcasts_reach_every_node_exactly_once_and_stay_in_their_org() {
    let redis = RedisServer::start().unwrap();
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let bus = redis_bus(&redis.url(), id).await;
        let gw = WsGateway::builder()
            .authenticator(DemoAuthenticator)
            .resources(["order"])
            .fan_out(BusFanOut::new(&bus).await.unwrap())
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

/// Clients of `redis` blocked in `XREAD` (the bus's broadcast readers).
fn broadcast_readers(redis: &RedisServer) -> usize {
    let list = redis.command("CLIENT LIST").unwrap();
    list.lines().filter(|l| l.contains("cmd=xread")).count()
}

/// The fan-out's bus subscription belongs to it: dropping the gateway ends the broadcast
/// reader at once (the bus itself lives on), so a dropped gateway neither keeps a Redis
/// connection nor receives anything.
#[tokio::test]
async fn dropping_the_gateway_ends_its_bus_subscription() {
    let redis = RedisServer::start().unwrap();
    let bus = redis_bus(&redis.url(), "n1").await;
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order"])
        .fan_out(BusFanOut::new(&bus).await.unwrap())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while broadcast_readers(&redis) != 1 {
        assert!(std::time::Instant::now() < deadline, "no broadcast reader");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while broadcast_readers(&redis) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bus subscription outlived its gateway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(bus);
}
