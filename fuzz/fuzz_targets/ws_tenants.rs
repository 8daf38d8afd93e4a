//! The WebSocket protocol state machine with several tenants on one gateway.
//!
//! Clients of `acme`, `globex`, the empty-named organization and no organization send any text
//! frames (subscribe/unsubscribe to shared room names, junk), come and go, while events and
//! broadcasts are published for each tenant. After every step each client's queue is drained
//! and checked against a model: a frame reaches exactly the clients subscribed to its room in
//! its audience, never another tenant's client, and the publish count matches. Replies to a
//! client's own frames are protocol frames only.
#![no_main]

use std::collections::BTreeSet;

use hookwire_core::Event;
use hookwire_fuzz::short_string;
use hookwire_ws::{Connection, Identity, WsGateway};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const ORGS: [Option<&str>; 4] = [Some("acme"), Some("globex"), Some(""), None];
const ROOMS: [&str; 4] = ["order", "order.item", "chat", "acme"];

/// Who should get a frame.
#[derive(Clone, Copy)]
enum Aud<'a> {
    All,
    Org(&'a str),
    NoOrg,
}

impl Aud<'_> {
    fn admits(self, org: Option<&str>) -> bool {
        match self {
            Aud::All => true,
            Aud::Org(o) => org == Some(o),
            Aud::NoOrg => org.is_none(),
        }
    }
}

fn client_frame(u: &mut Unstructured<'_>) -> Result<String> {
    let room = if u.ratio(3, 4)? {
        Value::from(*u.choose(&ROOMS)?)
    } else {
        Value::from(short_string(u, 12)?)
    };
    let key = *u.choose(&["resource", "channel", "room"])?;
    Ok(match u.int_in_range(0u8..=5)? {
        0 => json!({"type": "subscribe", key: room}).to_string(),
        1 => json!({"type": "unsubscribe", key: room}).to_string(),
        2 => json!({"type": *u.choose(&["ping", "pong", "broadcast", "publish", ""])?, key: room, "data": {"n": 0}}).to_string(),
        3 => json!({"type": "subscribe", key: room, "organization": "globex", "organizationId": "globex"}).to_string(),
        _ => short_string(u, 60)?,
    })
}

struct World {
    gw: WsGateway,
    clients: Vec<Option<Connection>>,
    next: u64,
}

impl World {
    /// Publishes through `send`, then checks who received frame number `n`.
    fn publish(&mut self, room: &str, aud: Aud<'_>, send: impl FnOnce(&WsGateway, Value) -> usize) {
        let n = self.next;
        self.next += 1;
        let expected: BTreeSet<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| {
                c.subscriptions().any(|s| s == room) && aud.admits(c.identity().organization_id())
            })
            .map(|(i, _)| i)
            .collect();
        let count = send(&self.gw, json!({ "n": n }));
        let mut got = BTreeSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let Some(c) = c else { continue };
            while let Some(frame) = c.try_next_outbound() {
                let v: Value = serde_json::from_slice(&frame).expect("queued frame is not JSON");
                assert_eq!(
                    v["data"]["n"],
                    json!(n),
                    "stale or foreign frame queued: {v}"
                );
                if let Some(org) = v["meta"]["organizationId"].as_str() {
                    assert_eq!(
                        c.identity().organization_id(),
                        Some(org),
                        "cross-tenant event: {v}"
                    );
                }
                if v["type"] == "broadcast" {
                    assert_eq!(v["channel"], json!(room));
                }
                assert!(got.insert(i), "client {i} got frame {n} twice");
            }
        }
        assert_eq!(
            got, expected,
            "frame {n} to room {room:?} reached the wrong clients"
        );
        assert_eq!(count, expected.len(), "publish count is wrong");
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let gw = WsGateway::builder()
        .auth(false)
        .resources(["order", "order.item", "chat"])
        .build()
        .expect("gateway builds");
    let connect = |org: Option<&str>| {
        let who = org.map_or_else(Identity::new, |o| Identity::new().with_organization(o));
        Some(gw.connect(who))
    };
    let clients = vec![
        connect(ORGS[0]),
        connect(ORGS[0]),
        connect(ORGS[1]),
        connect(ORGS[2]),
        connect(ORGS[3]),
    ];
    let mut w = World {
        gw: gw.clone(),
        clients,
        next: 0,
    };
    for _ in 0..u.int_in_range(1..=48)? {
        let i = u.int_in_range(0..=w.clients.len() - 1)?;
        let org = *u.choose(&ORGS)?;
        let room = *u.choose(&ROOMS)?;
        match u.int_in_range(0u8..=9)? {
            0..=3 => {
                let Some(c) = w.clients[i].as_mut() else {
                    continue;
                };
                let text = client_frame(u)?;
                let out = c.on_text(&text);
                if let Some(reply) = out.reply {
                    let v: Value = serde_json::from_slice(&reply).expect("reply is not JSON");
                    let kind = v["type"].as_str().unwrap_or_default();
                    assert!(
                        ["subscribed", "unsubscribed", "error", "pong"].contains(&kind),
                        "unexpected reply to {text}: {v}"
                    );
                    assert!(v.get("data").is_none(), "a reply carried data: {v}");
                }
                assert!(
                    c.try_next_outbound().is_none(),
                    "a client frame queued something"
                );
            }
            // Events: `publish` and `publish_global` route `<room>.x` to `<room>` (there is
            // no resource named `acme`); `publish_to` names the room.
            4..=6 => {
                let op = u.int_in_range(4u8..=6)?;
                if room == "acme" && op != 5 {
                    continue;
                }
                let unscoped = if op == 6 { Aud::All } else { Aud::NoOrg };
                let aud = org.map_or(unscoped, Aud::Org);
                w.publish(room, aud, |gw, data| {
                    let e = Event::new(format!("{room}.changed"), data);
                    let e = org.map_or(e.clone(), |o| e.with_organization(o));
                    match op {
                        4 => gw.publish(&e),
                        5 => gw.publish_to(room, &e),
                        _ => gw.publish_global(&e),
                    }
                });
            }
            7 => {
                let o = org.unwrap_or("acme");
                w.publish(room, Aud::Org(o), |gw, data| {
                    gw.broadcast_to_org(o, room, &data)
                });
            }
            8 => w.publish(room, Aud::All, |gw, data| gw.broadcast(room, &data)),
            _ => {
                // Disconnect, or reconnect the slot as another tenant.
                w.clients[i] = if w.clients[i].is_some() {
                    None
                } else {
                    connect(org)
                };
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
