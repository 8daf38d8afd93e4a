//! The demo's domain: a small order board and the generator that feeds it events.
//!
//! The board is deliberately tiny and deterministic so the browser test can assert on it: it
//! keeps the newest [`MAX_ORDERS`] orders, each with a status that advances
//! `created → paid → shipped` as events arrive.

use serde_json::{Map, Value, json};

/// How many orders the board keeps; older ones fall off so the state (and each patch) stays small.
pub(crate) const MAX_ORDERS: usize = 8;

/// The three event names of the demo (`cli.md`), in the order an order goes through them.
pub(crate) const STEPS: [&str; 3] = ["order.created", "order.paid", "order.shipped"];

/// One event the generator emits: name, organization and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DemoEvent {
    pub(crate) name: &'static str,
    pub(crate) organization: &'static str,
    pub(crate) payload: Value,
}

/// Emits a plausible stream of order events: a new order, then its payment, then its shipment,
/// interleaved so several orders are in flight at once.
#[derive(Debug)]
pub(crate) struct Generator {
    prefix: String,
    next_order: u64,
    /// Orders in flight with the index of their next step.
    open: Vec<(u64, usize, &'static str)>,
    tick: u64,
}

impl Generator {
    /// `prefix` keeps order ids from two demo processes sharing one Redis apart.
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next_order: 1,
            open: Vec::new(),
            tick: 0,
        }
    }

    /// The next event. Every third order belongs to `globex`, the rest to `acme` (`cli.md`).
    pub(crate) fn next_event(&mut self) -> DemoEvent {
        self.tick += 1;
        // Open a new order when fewer than three are in flight or on every third tick, otherwise
        // advance the oldest one: several orders are always in flight, none waits forever.
        if self.open.len() < 3 || self.tick.is_multiple_of(3) {
            let id = self.next_order;
            self.next_order += 1;
            let org = if id.is_multiple_of(3) {
                "globex"
            } else {
                "acme"
            };
            self.open.push((id, 1, org));
            return self.event(id, 0, org);
        }
        let (id, step, org) = self.open.remove(0);
        if step + 1 < STEPS.len() {
            self.open.push((id, step + 1, org));
        }
        self.event(id, step, org)
    }

    fn event(&self, id: u64, step: usize, organization: &'static str) -> DemoEvent {
        let order_id = format!("{}{}", self.prefix, id);
        let amount = 10 + (id * 37) % 190;
        DemoEvent {
            name: STEPS[step],
            organization,
            payload: json!({ "order": order_id, "amount": amount, "organization": organization }),
        }
    }
}

/// Applies one order event to the board state and returns the new state (with the same `_v`;
/// the caller bumps it). Unknown events and malformed payloads leave the board unchanged:
/// the demo's receiver only routes `order.*`, but a board must never be corrupted by input.
pub(crate) fn apply(board: &Value, name: &str, payload: &Value) -> Value {
    let Some(order) = payload.get("order").and_then(Value::as_str) else {
        return board.clone();
    };
    let status = match name {
        "order.created" => "created",
        "order.paid" => "paid",
        "order.shipped" => "shipped",
        _ => return board.clone(),
    };
    let mut orders: Vec<Value> = board
        .get("orders")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = orders
        .iter()
        .position(|o| o.get("id").and_then(Value::as_str) == Some(order));
    match existing {
        Some(i) => orders[i]["status"] = Value::from(status),
        None => {
            orders.insert(
                0,
                json!({
                    "id": order,
                    "status": status,
                    "amount": payload.get("amount").cloned().unwrap_or(Value::Null),
                    "organization": payload.get("organization").cloned().unwrap_or(Value::Null),
                }),
            );
            orders.truncate(MAX_ORDERS);
        }
    }
    let processed = board.get("processed").and_then(Value::as_u64).unwrap_or(0) + 1;
    // Keep every other key (the `_v` the channel owns, the presence overlay's `online`): the
    // patch to browsers then carries only what this event changed.
    let mut out = board.as_object().cloned().unwrap_or_else(Map::new);
    out.insert("orders".to_owned(), Value::Array(orders));
    out.insert("processed".to_owned(), Value::from(processed));
    out.insert("last".to_owned(), json!({ "event": name, "order": order }));
    Value::Object(out)
}

/// The board before any event.
pub(crate) fn empty() -> Value {
    json!({ "orders": [], "processed": 0, "last": null })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_walks_each_order_through_every_step_in_order() {
        let mut g = Generator::new("t-");
        let mut seen: std::collections::HashMap<String, Vec<&str>> = Default::default();
        for _ in 0..300 {
            let e = g.next_event();
            let id = e.payload["order"].as_str().unwrap().to_owned();
            let org_ok = e.organization
                == if id[2..].parse::<u64>().unwrap() % 3 == 0 {
                    "globex"
                } else {
                    "acme"
                };
            assert!(org_ok, "{id} has organization {}", e.organization);
            seen.entry(id).or_default().push(e.name);
        }
        assert!(seen.len() > 50, "only {} orders in 300 events", seen.len());
        for (id, steps) in &seen {
            assert_eq!(&STEPS[..steps.len()], &steps[..], "order {id}");
        }
    }

    #[test]
    fn board_keeps_the_newest_orders_and_advances_status() {
        let mut board = empty();
        for i in 0..(MAX_ORDERS + 3) {
            board = apply(
                &board,
                "order.created",
                &json!({ "order": format!("o{i}"), "amount": 5 }),
            );
        }
        board = apply(
            &board,
            "order.paid",
            &json!({ "order": format!("o{}", MAX_ORDERS + 2) }),
        );
        let orders = board["orders"].as_array().unwrap();
        assert_eq!(orders.len(), MAX_ORDERS);
        assert_eq!(orders[0]["id"], format!("o{}", MAX_ORDERS + 2));
        assert_eq!(orders[0]["status"], "paid");
        assert_eq!(board["processed"], (MAX_ORDERS + 4) as u64);
    }

    #[test]
    fn malformed_or_unknown_input_leaves_the_board_alone() {
        let board = apply(&empty(), "order.created", &json!({ "order": "a" }));
        assert_eq!(
            apply(&board, "order.refunded", &json!({ "order": "a" })),
            board
        );
        assert_eq!(apply(&board, "order.paid", &json!({ "order": 7 })), board);
        assert_eq!(apply(&board, "order.paid", &json!("x")), board);
    }
}
