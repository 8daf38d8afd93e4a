//! Org scoping: a tenant never receives another tenant's event.

use hookwire_core::Event;
use hookwire_ws::{DemoAuthenticator, WsGateway};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn events_reach_only_their_organization() {
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order"])
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    let (mut acme, _) = connect(addr, "ann@acme").await;
    let (mut acme2, _) = connect(addr, "al@acme").await;
    let (mut globex, _) = connect(addr, "gil@globex").await;
    for ws in [&mut acme, &mut acme2, &mut globex] {
        subscribe(ws, "order").await;
    }
    for i in 0..30 {
        let org = if i % 3 == 2 { "globex" } else { "acme" };
        let e = Event::new("order.created", json!({"i": i, "org": org})).with_organization(org);
        assert_eq!(gw.publish(&e), if org == "acme" { 2 } else { 1 });
    }
    // An event without organization is not a tenant's event: no scoped client gets it.
    assert_eq!(
        gw.publish(&Event::new("order.created", json!({"org": null}))),
        0
    );
    // An org broadcast stays in the org; a plain broadcast goes to all.
    assert_eq!(
        gw.broadcast_to_org("globex", "order", &json!({"org": "globex"})),
        1
    );
    assert_eq!(gw.broadcast("order", &json!({"org": "all"})), 3);

    for (ws, org, n) in [
        (&mut acme, "acme", 20),
        (&mut acme2, "acme", 20),
        (&mut globex, "globex", 11),
    ] {
        for _ in 0..n {
            let v = recv_no_ping(ws).await;
            let got = v["data"]["org"].as_str().unwrap();
            assert_eq!(got, org, "{org} client received {v}");
        }
        assert_eq!(recv_no_ping(ws).await["data"]["org"], "all");
        expect_silence(ws, 100).await;
    }
}

#[tokio::test]
async fn org_named_like_a_room_prefix_cannot_leak() {
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    // Orgs and rooms chosen so that "org:room" concatenation would collide.
    let (mut a, _) = connect(addr, "u@a:b").await;
    let (mut b, _) = connect(addr, "u@a").await;
    subscribe(&mut a, "c").await;
    subscribe(&mut b, "b:c").await;
    assert_eq!(gw.broadcast_to_org("a", "c", &json!(1)), 0);
    assert_eq!(gw.broadcast_to_org("a:b", "b:c", &json!(2)), 0);
    expect_silence(&mut a, 100).await;
    expect_silence(&mut b, 100).await;
}
