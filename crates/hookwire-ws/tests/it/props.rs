//! Property tests of the protocol state machine: any input is answered without panicking and
//! the rooms always agree with the connections' subscriptions.

use hookwire_ws::{Identity, WsGateway};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize, u8),
    Unsubscribe(usize, u8),
    Raw(usize, String),
    Heartbeat(usize),
    Drop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..6u8).prop_map(|(c, r)| Op::Subscribe(c, r)),
        (0..4usize, 0..6u8).prop_map(|(c, r)| Op::Unsubscribe(c, r)),
        (0..4usize, any::<String>()).prop_map(|(c, s)| Op::Raw(c, s)),
        (
            0..4usize,
            r#"\{"type":"(subscribe|unsubscribe|pong|ping|x)"(,"resource":".{0,3}")?\}"#
        )
            .prop_map(|(c, s)| Op::Raw(c, s)),
        (0..4usize).prop_map(Op::Heartbeat),
        (0..4usize).prop_map(Op::Drop),
    ]
}

proptest! {
    #[test]
    fn rooms_match_subscriptions_under_any_input(ops in proptest::collection::vec(op(), 1..60)) {
        let gw = WsGateway::builder()
            .auth(false)
            .max_subscriptions_per_client(3)
            .max_clients_per_room(2)
            .max_message_bytes(64)
            .build()
            .unwrap();
        let orgs = [Some("a"), Some("a:b"), None, Some("b")];
        let mut conns: Vec<Option<hookwire_ws::Connection>> = orgs
            .iter()
            .map(|o| {
                let id = o.map_or_else(Identity::new, |o| Identity::new().with_organization(o));
                Some(gw.connect(id))
            })
            .collect();
        for op in ops {
            match op {
                Op::Subscribe(c, r) => {
                    if let Some(conn) = conns[c].as_mut() {
                        conn.on_text(&format!(r#"{{"type":"subscribe","resource":"r{r}"}}"#));
                    }
                }
                Op::Unsubscribe(c, r) => {
                    if let Some(conn) = conns[c].as_mut() {
                        conn.on_text(&format!(r#"{{"type":"unsubscribe","resource":"r{r}"}}"#));
                    }
                }
                Op::Raw(c, s) => {
                    if let Some(conn) = conns[c].as_mut() {
                        let out = conn.on_text(&s);
                        if s.len() > 64 {
                            prop_assert_eq!(out.close.map(|c| c.code), Some(1009));
                        }
                    }
                }
                Op::Heartbeat(c) => {
                    if let Some(conn) = conns[c].as_mut() {
                        conn.on_heartbeat();
                    }
                }
                Op::Drop(c) => conns[c] = None,
            }
            // Invariants after every step.
            let mut per_room = std::collections::HashMap::new();
            for conn in conns.iter().flatten() {
                let subs: Vec<&str> = conn.subscriptions().collect();
                prop_assert!(subs.len() <= 3);
                for r in subs {
                    *per_room.entry(r.to_owned()).or_insert(0usize) += 1;
                }
            }
            let expected: std::collections::BTreeMap<String, usize> = per_room.into_iter().collect();
            let stats = gw.rooms().stats(|_| true);
            prop_assert!(expected.values().all(|&n| n <= 2), "room over capacity");
            prop_assert_eq!(stats.rooms, expected.len());
            prop_assert_eq!(stats.subscriptions, expected);
            prop_assert_eq!(gw.rooms().client_count(), conns.iter().flatten().count());
        }
    }
}
