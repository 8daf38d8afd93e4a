//! The memory transport, the registry, correlation and the inbox.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, Event, MemoryStore};
use hookwire_events::{
    Bus, ErrorKind, Group, HandlerError, Inbox, MemoryTransport, NonRetryable, Registry,
    ValidateMode,
};
use serde_json::json;

use crate::support::eventually;

fn bus() -> Bus {
    Bus::builder(MemoryTransport::new())
        .retry(Backoff::fixed(Duration::from_millis(5)))
        .max_deliveries(3)
        .build()
        .unwrap()
}

fn recorder(
    log: &Arc<Mutex<Vec<String>>>,
    tag: &'static str,
) -> impl Fn(Event) -> std::future::Ready<Result<(), HandlerError>> + use<> {
    let log = log.clone();
    move |e: Event| {
        log.lock().unwrap().push(format!("{tag}:{}", e.name));
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn memory_publish_runs_handlers_in_subscription_order_before_returning() {
    let bus = bus();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let _a = bus.broadcast("*", recorder(&log, "all")).await.unwrap();
    let _b = bus
        .subscribe(Group::at_end("g"), "order.*", recorder(&log, "group"))
        .await
        .unwrap();
    let _c = bus
        .broadcast("order.created", recorder(&log, "exact"))
        .await
        .unwrap();
    bus.publish(Event::new("order.created", json!(1)))
        .await
        .unwrap();
    bus.publish(Event::new("user.created", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "all:order.created",
            "group:order.created",
            "exact:order.created",
            "all:user.created"
        ]
    );
}

#[tokio::test]
async fn memory_groups_deliver_once_across_buses_on_one_transport() {
    let t = MemoryTransport::new();
    let n = Arc::new(AtomicU32::new(0));
    let mut subs = Vec::new();
    let mut buses = Vec::new();
    for _ in 0..3 {
        let bus = Bus::builder(t.clone()).build().unwrap();
        let c = n.clone();
        subs.push(
            bus.subscribe(Group::at_end("g"), "*", move |_e: Event| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), HandlerError>(()) }
            })
            .await
            .unwrap(),
        );
        buses.push(bus);
    }
    for i in 0..30 {
        buses[i % 3]
            .publish(Event::new("a", json!(i)))
            .await
            .unwrap();
    }
    assert_eq!(n.load(Ordering::SeqCst), 30);
}

#[tokio::test]
async fn memory_retries_after_the_backoff_then_parks_and_redrives() {
    let bus = bus();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let _s = bus
        .subscribe(Group::at_end("g"), "*", move |_e: Event| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err::<(), HandlerError>("boom".into())
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    let e = Event::new("a", json!({"x": 1}));
    bus.publish(e.clone()).await.unwrap();
    // publish returned after the first attempt; the retries run in the background.
    assert!(calls.load(Ordering::SeqCst) >= 1);
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(5), || async {
            dl.list(10).await.unwrap().len() == 1
        })
        .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let d = dl.list(10).await.unwrap().remove(0);
    assert_eq!((d.attempts, d.failures.len()), (3, 3));
    assert_eq!(d.event_bytes, e.to_json_bytes());
    dl.redrive(&d.id).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(dl.list(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn limits_are_enforced_with_typed_errors() {
    let bus = Bus::builder(MemoryTransport::new())
        .max_event_bytes(100)
        .max_batch(2)
        .build()
        .unwrap();
    let big = Event::new("a", json!("é".repeat(60)));
    let err = bus.publish(big).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::TooLarge,
        "the limit counts bytes, not characters"
    );
    let err = bus
        .publish_many(vec![Event::new("a", json!(1)); 3])
        .await
        .unwrap_err();
    assert!(err.is_invalid());
    assert!(
        bus.publish(Event::new("$x", json!(1)))
            .await
            .unwrap_err()
            .is_invalid()
    );
    assert!(
        bus.publish(Event::new("", json!(1)))
            .await
            .unwrap_err()
            .is_invalid()
    );
    assert!(
        Bus::builder(MemoryTransport::new())
            .max_batch(0)
            .build()
            .is_err()
    );
    assert!(
        Bus::builder(MemoryTransport::new())
            .handler_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        Bus::builder(MemoryTransport::new())
            .concurrency(8)
            .max_in_flight(4)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_handler_that_overruns_its_timeout_is_a_failed_delivery() {
    let bus = Bus::builder(MemoryTransport::new())
        .handler_timeout(Duration::from_millis(20))
        .max_deliveries(1)
        .build()
        .unwrap();
    let _s = bus
        .subscribe(Group::at_end("g"), "*", |_e: Event| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), HandlerError>(())
        })
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1))).await.unwrap();
    let d = bus.dead_letters().list(1).await.unwrap();
    assert!(
        d[0].failures[0].chain[0].contains("timed out"),
        "{:?}",
        d[0].failures
    );
}

#[tokio::test]
async fn non_retryable_errors_are_parked_at_once() {
    let bus = bus();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let _s = bus
        .subscribe(Group::at_end("g"), "*", move |_e: Event| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), HandlerError>(NonRetryable::new("invalid card").into()) }
        })
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(bus.dead_letters().list(5).await.unwrap()[0].attempts, 1);
}

fn registry(mode: ValidateMode) -> Registry {
    Registry::new(mode)
        .schema("user.created", 1, json!({
            "type": "object", "required": ["first"],
            "properties": {"first": {"type": "string"}, "age": {"type": "integer"}}
        }))
        .unwrap()
        .schema("user.created", 2, json!({
            "type": "object", "required": ["name", "address"],
            "properties": {"name": {"type": "string"},
                "address": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
        }))
        .unwrap()
        .upcaster("user.created", 1, |mut d| {
            let first = d["first"].take();
            Ok(json!({"name": first, "address": {"city": "unknown"}}))
        })
}

#[tokio::test]
async fn reject_mode_validates_each_event_against_its_own_version_and_upcasts_on_read() {
    let bus = Bus::builder(MemoryTransport::new())
        .registry(registry(ValidateMode::Reject))
        .build()
        .unwrap();
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let g = got.clone();
    let _s = bus
        .broadcast("user.*", move |e: Event| {
            g.lock().unwrap().push(e);
            async { Ok::<(), HandlerError>(()) }
        })
        .await
        .unwrap();
    // A v1 producer and a v2 producer at once: each checked against its own schema.
    bus.publish(
        Event::new("user.created", json!({"first": "Ada", "age": 36})).with_schema_version(1),
    )
    .await
    .unwrap();
    bus.publish(
        Event::new(
            "user.created",
            json!({"name": "Bob", "address": {"city": "Oslo"}}),
        )
        .with_schema_version(2),
    )
    .await
    .unwrap();
    let err = bus
        .publish(
            Event::new("user.created", json!({"first": "Ada", "age": 36.5})).with_schema_version(1),
        )
        .await
        .unwrap_err();
    assert!(err.is_schema(), "integer is checked: {err}");
    let err = bus
        .publish(
            Event::new("user.created", json!({"name": "Bob", "address": {}}))
                .with_schema_version(2),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("city"),
        "nested objects are checked: {err}"
    );
    // Unversioned events are stamped with the latest version and checked against it.
    assert!(
        bus.publish(Event::new("user.created", json!({"first": "Ada"})))
            .await
            .unwrap_err()
            .is_schema()
    );
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].data,
        json!({"name": "Ada", "address": {"city": "unknown"}})
    );
    assert_eq!(got[0].meta.schema_version, Some(2));
}

#[tokio::test]
async fn warn_mode_publishes_invalid_events() {
    let bus = Bus::builder(MemoryTransport::new())
        .registry(registry(ValidateMode::Warn))
        .build()
        .unwrap();
    bus.publish(Event::new("user.created", json!({"nope": 1})).with_schema_version(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn events_published_inside_a_handler_inherit_correlation_and_name_their_cause() {
    let bus = bus();
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let g = got.clone();
    let _log = bus
        .broadcast("*", move |e: Event| {
            g.lock().unwrap().push(e);
            async { Ok::<(), HandlerError>(()) }
        })
        .await
        .unwrap();
    let b = bus.clone();
    let _chain = bus
        .subscribe(Group::at_end("g"), "order.created", move |e: Event| {
            let b = b.clone();
            async move {
                b.publish(Event::new("order.billed", json!(null))).await?;
                let mut own = Event::new("order.audited", json!(null));
                own.meta.correlation_id = Some("mine".into());
                b.publish(own).await?;
                let _ = e;
                Ok::<(), HandlerError>(())
            }
        })
        .await
        .unwrap();
    let root = Event::new("order.created", json!(1)).with_id("root");
    hookwire_events::with_correlation("req-7", bus.publish(root))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    let by = |n: &str| got.iter().find(|e| e.name == n).unwrap().clone();
    assert_eq!(
        by("order.created").meta.correlation_id.as_deref(),
        Some("req-7")
    );
    assert_eq!(by("order.created").meta.causation_id, None);
    let billed = by("order.billed");
    assert_eq!(billed.meta.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(billed.meta.causation_id.as_deref(), Some("root"));
    assert_eq!(
        by("order.audited").meta.correlation_id.as_deref(),
        Some("mine")
    );
}

#[tokio::test]
async fn the_inbox_runs_an_effect_once_however_often_the_event_is_redelivered() {
    let inbox = Arc::new(Inbox::new(MemoryStore::new(
        hookwire_core::IdempotencyConfig::default(),
    )));
    let effects = Arc::new(AtomicU32::new(0));
    let deliveries = Arc::new(AtomicU32::new(0));
    let bus = bus();
    let (i, f, d) = (inbox.clone(), effects.clone(), deliveries.clone());
    let _s = bus
        .subscribe(Group::at_end("billing"), "*", move |e: Event| {
            let (i, f, d) = (i.clone(), f.clone(), d.clone());
            async move {
                i.once("billing", &e, || async {
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(())
                })
                .await?;
                // The effect happened, but the handler fails afterwards: the event is redelivered.
                if d.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err::<(), HandlerError>("ack lost".into());
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1))).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            deliveries.load(Ordering::SeqCst) == 3
        })
        .await
    );
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_outbox_relay_publishes_committed_rows_onto_the_bus() {
    use hookwire_events::outbox::{MemoryOutbox, OutboxStore, Relay};
    let bus = Bus::builder(MemoryTransport::new())
        .max_batch(10)
        .build()
        .unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let _sub = bus
        .broadcast("order.*", recorder(&log, "bus"))
        .await
        .unwrap();
    let store = Arc::new(MemoryOutbox::new());
    // A relay claim larger than the bus's batch limit is published in chunks.
    let relay = Relay::builder()
        .batch_size(50)
        .poll_interval(Duration::from_millis(20))
        .spawn(store.clone(), bus.clone())
        .unwrap();
    let events: Vec<Event> = (0..120)
        .map(|i| Event::new("order.created", json!({ "i": i })))
        .collect();
    store.enqueue_many(&events).await.unwrap();
    let all = eventually(Duration::from_secs(10), || {
        let n = log.lock().unwrap().len();
        async move { n == 120 }
    })
    .await;
    assert!(
        all,
        "{} of 120 events reached the bus",
        log.lock().unwrap().len()
    );
    assert!(store.is_empty(), "every published row is acknowledged");
    relay.shutdown().await;
}
