//! Service accounts and scope rules on the WebSocket side, over real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookwire_core::Event;
use hookwire_ws::{AuthRequest, Identity, WsGateway};
use serde_json::json;

use crate::support::*;

/// `?token=svc:<client>:<org>:<scope>,<scope>` is a service account (an empty org: none);
/// `?token=user@org` a user.
pub fn identify(r: &AuthRequest<'_>) -> Option<Identity> {
    let t = r.query_param("token")?;
    if let Some(rest) = t.strip_prefix("svc:") {
        let mut parts = rest.splitn(3, ':');
        let client = parts.next()?;
        let org = parts.next()?;
        let scopes = parts.next().unwrap_or("");
        let id = Identity::service(client, scopes.split(',').filter(|s| !s.is_empty()));
        return Some(if org.is_empty() {
            id
        } else {
            id.with_organization(org)
        });
    }
    let (user, org) = t.split_once('@')?;
    Some(Identity::new().with_user(user).with_organization(org))
}

fn gateway() -> WsGateway {
    WsGateway::builder()
        .authenticator(identify)
        .resources(["audit", "order"])
        .require_scope("audit.*", "audit:read")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_service_account_without_the_scope_is_refused_the_room() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut etl, _) = connect(addr, "svc:etl:acme:orders:read").await;
    send(&mut etl, &json!({"type":"subscribe","resource":"audit"})).await;
    let refusal = recv_no_ping(&mut etl).await;
    assert_eq!(refusal["code"], "insufficient-scope", "{refusal}");
    assert_eq!(refusal["channel"], "audit");
    assert!(
        refusal["message"].as_str().unwrap().contains("audit:read"),
        "{refusal}"
    );
    // A user without scopes is refused the same way: rules apply to every identity.
    let (mut ann, _) = connect(addr, "ann@acme").await;
    send(&mut ann, &json!({"type":"subscribe","resource":"audit"})).await;
    assert_eq!(recv_no_ping(&mut ann).await["code"], "insufficient-scope");
    // Rooms no rule covers stay open to it, and the refusal joined nothing.
    subscribe(&mut etl, "order").await;
    assert_eq!(gw.rooms().room_len("audit"), 0);
    assert_eq!(
        gw.publish(&Event::new("audit.login", json!({})).with_organization("acme")),
        0
    );
    expect_silence(&mut etl, 100).await;
}

#[tokio::test]
async fn a_service_account_with_the_scope_gets_only_its_organizations_events() {
    let gw = gateway();
    let addr = serve_gw(&gw).await;
    let (mut acme, hello) = connect(addr, "svc:auditor:acme:audit:read").await;
    let (mut globex, _) = connect(addr, "svc:auditor:globex:audit:read").await;
    let (mut platform, _) = connect(addr, "svc:auditor::audit:read").await;
    for ws in [&mut acme, &mut globex, &mut platform] {
        subscribe(ws, "audit").await;
    }
    let found = gw.client(hello["clientId"].as_str().unwrap()).unwrap();
    assert_eq!(found.identity().client_id(), Some("auditor"));
    assert!(found.identity().has_scope("audit:read"));

    for org in ["acme", "globex", "acme"] {
        gw.publish(&Event::new("audit.login", json!({"org": org})).with_organization(org));
    }
    // Without organization: only the platform account (no organization) gets it.
    assert_eq!(
        gw.publish(&Event::new("audit.rotated", json!({"org": null}))),
        1
    );
    for _ in 0..2 {
        assert_eq!(recv_no_ping(&mut acme).await["data"]["org"], "acme");
    }
    assert_eq!(recv_no_ping(&mut globex).await["data"]["org"], "globex");
    assert_eq!(recv_no_ping(&mut platform).await["type"], "audit.rotated");
    for ws in [&mut acme, &mut globex, &mut platform] {
        expect_silence(ws, 100).await;
    }
}

#[tokio::test]
async fn a_revoked_scope_closes_the_socket_holding_its_room_with_4003() {
    let granted = Arc::new(AtomicBool::new(true));
    let g = Arc::clone(&granted);
    let gw = WsGateway::builder()
        .authenticator(move |r: &AuthRequest<'_>| {
            let scopes = if g.load(Ordering::SeqCst) {
                vec!["audit:read"]
            } else {
                vec![]
            };
            let who = identify(r)?;
            Some(who.with_scopes(scopes))
        })
        .require_scope("audit", "audit:read")
        .reauth_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = serve_gw(&gw).await;
    let (mut holder, _) = connect(addr, "svc:etl:acme:").await;
    let (mut other, _) = connect(addr, "svc:etl:acme:").await;
    subscribe(&mut holder, "audit").await;
    subscribe(&mut other, "order").await;
    // Several re-checks pass while the scope is granted.
    expect_silence(&mut holder, 300).await;
    granted.store(false, Ordering::SeqCst);
    let v = recv_no_ping(&mut holder).await;
    assert_eq!(v["code"], "insufficient-scope", "{v}");
    let close = recv_close(&mut holder, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(u16::from(close.code), hookwire_ws::CLOSE_SESSION_EXPIRED);
    // The socket without a covered room is unaffected.
    expect_silence(&mut other, 300).await;
    assert!(eventually(|| gw.rooms().client_count() == 1).await);
}

#[tokio::test]
async fn a_scope_rule_outside_the_pattern_grammar_is_a_build_error() {
    let err = WsGateway::builder()
        .auth(false)
        .require_scope("audit.*x", "audit:read")
        .build()
        .unwrap_err();
    assert!(err.is_invalid_option(), "{err}");
    let err = WsGateway::builder()
        .auth(false)
        .require_scope("audit", "")
        .build()
        .unwrap_err();
    assert!(err.is_invalid_option(), "{err}");
}
