//! The event gateway's scope rules and asynchronous room policy on the SSE side, over real
//! HTTP (and the WebSocket side of the same gateway).

use std::time::Duration;

use hookwire_core::Event;
use hookwire_ws::{EventGateway, Identity, WsGateway};
use serde_json::json;

use crate::gateway::{read_until, sse_get};
use crate::scopes::identify;
use crate::support::*;

fn gateway() -> EventGateway {
    EventGateway::builder()
        .authenticator(identify)
        .require_scope("audit.*", "audit:read")
        .ws_options(WsGateway::builder().resources(["audit", "order"]))
        .build()
        .unwrap()
}

#[tokio::test]
async fn sse_refuses_filters_and_streams_a_service_lacks_the_scope_for() {
    let gw = gateway();
    let addr = serve(gw.router()).await;
    let etl = "token=svc:etl:acme:orders:read";
    for path in [
        format!("/events?filter=audit.*&{etl}"),
        format!("/events?filter=audit.login&{etl}"),
        // `*` covers every resource, so it needs every rule's scope.
        format!("/events?filter=*&{etl}"),
        format!("/events?{etl}"),
        format!("/events/audit?{etl}"),
        format!("/state/audit?{etl}"),
    ] {
        let (status, _, head) = sse_get(addr, &path).await;
        assert_eq!(status, 403, "{path}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(
                r#"www-authenticate: bearer error="insufficient_scope", scope="audit:read""#
            ),
            "{path}: {head}"
        );
    }
    assert_eq!(
        sse_get(addr, &format!("/events?filter=order.*&{etl}"))
            .await
            .0,
        200
    );
    // The same rule on the WebSocket side of the same gateway.
    let (mut ws, _) = connect(addr, "svc:etl:acme:orders:read").await;
    send(&mut ws, &json!({"type":"subscribe","resource":"audit"})).await;
    assert_eq!(recv_no_ping(&mut ws).await["code"], "insufficient-scope");
}

#[tokio::test]
async fn a_scoped_service_reads_only_its_organizations_events_over_sse() {
    let gw = gateway();
    let addr = serve(gw.router()).await;
    let (status, mut sse, head) = sse_get(
        addr,
        "/events?filter=audit.*&token=svc:auditor:acme:audit:read",
    )
    .await;
    assert_eq!(status, 200);
    assert!(eventually(|| gw.sse().unwrap().events().subscriber_count() == 1).await);
    // A service account without organization is a platform client: no tenant's events.
    let (status, _, _) =
        sse_get(addr, "/events?filter=audit.*&token=svc:auditor::audit:read").await;
    assert_eq!(status, 403);
    for org in ["acme", "globex", "acme"] {
        gw.publish(&Event::new("audit.login", json!({"org": org})).with_organization(org));
    }
    gw.publish(&Event::new("audit.login", json!({"org": "none"})));
    let body = read_until(&mut sse, head, "event: audit.login", 2).await;
    assert_eq!(body.matches("event: audit.login").count(), 2, "{body}");
    assert!(
        !body.contains("globex") && !body.contains(r#""org":"none""#),
        "{body}"
    );
}

#[tokio::test]
async fn an_async_policy_refuses_sse_with_403_and_fails_closed_with_503() {
    let gw = EventGateway::builder()
        .authenticator(identify)
        .room_policy_async(|who: Identity, room: String| async move {
            match room.as_str() {
                "broken" => Err("directory unreachable"),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(true)
                }
                "vip" => Ok(who.user_id() == Some("root")),
                _ => Ok(true),
            }
        })
        .room_policy_timeout(Duration::from_millis(300))
        .ws_options(WsGateway::builder().resources(["order"]))
        .build()
        .unwrap();
    let addr = serve(gw.router()).await;
    let t = "token=ann@acme";
    assert_eq!(sse_get(addr, &format!("/events/board?{t}")).await.0, 200);
    assert_eq!(sse_get(addr, &format!("/events/vip?{t}")).await.0, 403);
    assert_eq!(sse_get(addr, "/events/vip?token=root@acme").await.0, 200);
    assert_eq!(sse_get(addr, &format!("/events/broken?{t}")).await.0, 503);
    assert_eq!(sse_get(addr, &format!("/state/slow?{t}")).await.0, 503);
    assert_eq!(
        sse_get(addr, &format!("/events?filter=order.*,broken.x&{t}"))
            .await
            .0,
        503
    );
    assert_eq!(
        sse_get(addr, &format!("/events?filter=order.*&{t}"))
            .await
            .0,
        200
    );
    // The WebSocket side of the same gateway awaits the same policy.
    let (mut ws, _) = connect(addr, "ann@acme").await;
    send(&mut ws, &json!({"type":"subscribe","resource":"broken"})).await;
    assert_eq!(recv_no_ping(&mut ws).await["code"], "policy-unavailable");
    subscribe(&mut ws, "order").await;
}
