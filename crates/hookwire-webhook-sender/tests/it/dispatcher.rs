//! `Dispatcher`: fan-out, health, SSRF guard, durable mode and the Redis store, over real sockets.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, Event, RetryPolicy};
use hookwire_webhook_sender::ssrf::SsrfPolicy;
use hookwire_webhook_sender::{
    Dispatcher, EndpointRateLimit, ErrorKind, HealthConfig, HealthEventKind, MemoryTaskQueue,
    Subscription,
};

use crate::support::{Reply, Sink};

fn local() -> SsrfPolicy {
    SsrfPolicy::default().allow("127.0.0.1/32".parse().unwrap())
}

fn fast(retries: u32) -> RetryPolicy {
    RetryPolicy::new(retries).with_backoff(Backoff::fixed(Duration::from_millis(10)))
}

fn sub(id: &str, url: &str, patterns: &[&str]) -> Subscription {
    Subscription::new(id, url, patterns).unwrap()
}

#[tokio::test]
async fn fan_out_reaches_exactly_the_matching_subscriptions() {
    let (a, b, c, d) = (
        Sink::always(200).await,
        Sink::always(200).await,
        Sink::always(200).await,
        Sink::always(200).await,
    );
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .build()
        .unwrap();
    disp.register(sub("a", &a.url(), &["order.*"]).with_secret("sa"))
        .await
        .unwrap();
    disp.register(sub("b", &b.url(), &["order.created"]))
        .await
        .unwrap();
    disp.register(sub("c", &c.url(), &["user.*"]))
        .await
        .unwrap();
    disp.register(sub("d", &d.url(), &["*"])).await.unwrap();

    let e = Event::new("order.created", serde_json::json!({"n": 1})).with_id("e1");
    let r = disp.publish(&e).await.unwrap();
    assert_eq!(r.matched, 3);
    assert!(r.records.iter().all(|x| x.success && x.attempts == 1));
    assert_eq!((a.count(), b.count(), c.count(), d.count()), (1, 1, 0, 1));

    let hit = &a.hits()[0];
    let v: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(v["type"], "order.created");
    assert_eq!(v["payload"]["n"], 1);
    assert_eq!(v["meta"]["id"], "e1");
    assert_eq!(hit.headers["x-webhook-id"], "e1");
    assert_eq!(hit.headers["x-webhook-event"], "order.created");
    assert!(
        hit.headers.contains_key("x-webhook-signature"),
        "a is signed"
    );
    assert!(
        !b.hits()[0].headers.contains_key("x-webhook-signature"),
        "b is not"
    );
    // The log holds the exact bytes the sink received.
    let log = disp.delivery_log(10);
    assert_eq!(log.len(), 3);
    let rec = log.iter().find(|r| r.subscription_id == "a").unwrap();
    assert_eq!(rec.body, hit.body);
    assert_eq!(rec.event_id, "e1");

    // `order` alone matches only the global pattern (`order.*` needs a segment after the dot).
    let r = disp
        .publish(&Event::new("order", serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(r.matched, 1);
    assert_eq!(d.count(), 2);

    assert!(disp.unregister("d").await.unwrap());
    assert_eq!(
        disp.list()
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
}

#[tokio::test]
async fn sustained_failures_disable_and_explicit_enable_restores() {
    let status = Arc::new(AtomicU16::new(500));
    let s2 = Arc::clone(&status);
    let sink = Sink::start(move |_, _| Reply::status(s2.load(Ordering::SeqCst))).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(1))
        .health(
            HealthConfig::default()
                .with_breaker(0, Duration::ZERO)
                .with_disable(2, None),
        )
        .build()
        .unwrap();
    let mut events = disp.health_events();
    disp.register(sub("s", &sink.url(), &["*"])).await.unwrap();
    let e = Event::new("a.b", serde_json::Value::Null);
    for _ in 0..2 {
        let r = disp.publish(&e).await.unwrap();
        assert!(!r.records[0].success);
        assert_eq!(r.records[0].attempts, 2);
    }
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.subscription_id, "s");
    assert!(
        matches!(ev.kind, HealthEventKind::Disabled { ref reason } if reason.contains("2 consecutive")),
        "{ev:?}"
    );
    let s = disp.get("s").unwrap();
    assert!(!s.enabled);
    assert!(s.disabled_reason.is_some());
    assert_eq!(
        disp.publish(&e).await.unwrap().matched,
        0,
        "disabled: nothing sent"
    );
    assert_eq!(sink.count(), 4);

    status.store(200, Ordering::SeqCst);
    disp.enable("s").await.unwrap();
    assert_eq!(events.recv().await.unwrap().kind, HealthEventKind::Enabled);
    let r = disp.publish(&e).await.unwrap();
    assert!(r.records[0].success);
    assert!(disp.enable("nope").await.is_err());
    // Enabling an enabled subscription is not a transition: no event.
    disp.enable("s").await.unwrap();
    disp.disable("s", "maintenance").await.unwrap();
    disp.disable("s", "again").await.unwrap();
    assert!(
        matches!(events.recv().await.unwrap().kind, HealthEventKind::Disabled { ref reason } if reason == "maintenance")
    );
    assert!(events.try_recv().is_err(), "one event per transition");
    assert_eq!(
        disp.get("s").unwrap().disabled_reason.as_deref(),
        Some("maintenance")
    );
}

#[tokio::test]
async fn gone_disables_at_once() {
    let sink = Sink::always(410).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(3))
        .build()
        .unwrap();
    let mut events = disp.health_events();
    disp.register(sub("s", &sink.url(), &["*"])).await.unwrap();
    let r = disp
        .publish(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(r.records[0].status, 410);
    assert_eq!(r.records[0].attempts, 1);
    assert!(
        matches!(events.recv().await.unwrap().kind, HealthEventKind::Disabled { ref reason } if reason.contains("410"))
    );
    assert!(!disp.get("s").unwrap().enabled);
}

#[tokio::test]
async fn open_circuit_stops_hammering_a_dead_endpoint() {
    let sink = Sink::always(503).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .health(HealthConfig::default().with_breaker(2, Duration::from_secs(60)))
        .build()
        .unwrap();
    let mut events = disp.health_events();
    disp.register(sub("s", &sink.url(), &["*"])).await.unwrap();
    let e = Event::new("x", serde_json::Value::Null);
    for _ in 0..5 {
        disp.publish(&e).await.unwrap();
    }
    assert_eq!(sink.count(), 2, "after the breaker opened nothing was sent");
    assert_eq!(
        events.recv().await.unwrap().kind,
        HealthEventKind::CircuitOpened {
            consecutive_failures: 2
        }
    );
    let log = disp.delivery_log(1);
    assert!(log[0].error.as_deref().unwrap().contains("circuit open"));
}

#[tokio::test]
async fn ssrf_guard_blocks_internal_targets_at_registration_and_at_connect_time() {
    let sink = Sink::always(200).await;
    let disp = Dispatcher::builder().retry(fast(2)).build().unwrap();
    for url in [
        sink.url(),
        format!("http://[::ffff:127.0.0.1]:{}/", sink.addr.port()),
        "http://[::1]/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let err = disp.register(sub("x", &url, &["*"])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubscription, "{url}");
    }
    // Names pass registration, but they resolve to loopback: refused when connecting. The
    // decimal form `2130706433` is 127.0.0.1 to the system resolver (inet_aton rules).
    let port = sink.addr.port();
    let named = format!("http://localhost:{port}/hook");
    let decimal = format!("http://2130706433:{port}/hook");
    disp.register(sub("named", &named, &["*"])).await.unwrap();
    disp.register(sub("decimal", &decimal, &["*"]))
        .await
        .unwrap();
    let r = disp
        .publish(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(r.records.len(), 2);
    for rec in &r.records {
        assert!(!rec.success);
        assert_eq!(rec.attempts, 1, "an SSRF refusal is permanent: no retries");
        let err = rec.error.as_deref().unwrap();
        assert!(err.contains("forbidden"), "{}: {err}", rec.subscription_id);
    }
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn durable_mode_loses_nothing_while_the_sink_is_down() {
    let port = hookwire_testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let queue = Arc::new(MemoryTaskQueue::new());
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(RetryPolicy::new(1000).with_backoff(Backoff::fixed(Duration::from_millis(50))))
        .health(
            HealthConfig::default()
                .with_breaker(3, Duration::from_millis(200))
                .with_disable(0, None),
        )
        .durable(queue.clone())
        .build()
        .unwrap();
    disp.register(sub("s", &format!("http://{addr}/hook"), &["order.*"]))
        .await
        .unwrap();
    let mut want = BTreeSet::new();
    for i in 0..20 {
        let e = Event::new("order.created", serde_json::json!({"i": i})).with_id(format!("e{i}"));
        want.insert(e.id.clone());
        assert_eq!(disp.publish(&e).await.unwrap().enqueued, 1);
    }
    // Re-publishing an event while its task is queued does not duplicate it.
    disp.publish(&Event::new("order.created", serde_json::Value::Null).with_id("e0"))
        .await
        .unwrap();
    assert_eq!(queue.len(), 20);

    let worker = tokio::spawn({
        let (d, q) = (disp.clone(), queue.clone());
        async move { d.work(q).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await; // deliveries fail: nobody listens
    let sink = Sink::start_on(addr, |_, _| Reply::status(200)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: BTreeSet<String> = sink
            .hits()
            .iter()
            .map(|h| h.headers["idempotency-key"].to_str().unwrap().to_owned())
            .collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sink answers before the worker writes its record: wait for the log as well, so the
    // worker is not stopped between the two.
    let successes = || disp.delivery_log(100).iter().filter(|r| r.success).count();
    while successes() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    assert_eq!(sink.count(), 20, "each event delivered exactly once");
    assert_eq!(successes(), 20, "each delivery recorded once as a success");
}

#[tokio::test]
async fn fan_out_concurrency_is_bounded() {
    let sink = Sink::start(|_, _| Reply::status(200).delay(Duration::from_millis(50))).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .concurrency(2)
        .build()
        .unwrap();
    for i in 0..6 {
        disp.register(sub(&format!("s{i}"), &sink.url(), &["*"]))
            .await
            .unwrap();
    }
    let r = disp
        .publish(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(r.records.len(), 6);
    assert!(r.records.iter().all(|x| x.success));
    assert_eq!(sink.max_inflight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rate_limit_spaces_deliveries_to_one_endpoint() {
    let sink = Sink::always(200).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .build()
        .unwrap();
    disp.register(
        sub("s", &sink.url(), &["*"]).with_rate_limit(EndpointRateLimit::new(20.0, 1).unwrap()),
    )
    .await
    .unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        disp.publish(&Event::new("x", serde_json::Value::Null))
            .await
            .unwrap();
    }
    // One token up front, then one per 50 ms: four waits.
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(sink.count(), 5);
}

#[tokio::test]
async fn invalid_subscriptions_are_refused_with_reasons() {
    let disp = Dispatcher::builder()
        .ssrf(local())
        .max_subscriptions(1)
        .build()
        .unwrap();
    let bad = [
        Subscription::new("", "http://127.0.0.1/", &["*"]).unwrap(),
        Subscription::new("a", "ftp://127.0.0.1/", &["*"]).unwrap(),
        Subscription::new("a", "http://127.0.0.1/", &[]).unwrap(),
        Subscription::new("a", "http://127.0.0.1/", &["*"])
            .unwrap()
            .with_secret("x")
            .with_scheme(hookwire_core::Scheme::Standard),
        Subscription::new("a", "http://u:p@127.0.0.1/", &["*"]).unwrap(),
        // A rate limit that `EndpointRateLimit::new` refuses, arriving through its public,
        // deserialized fields instead.
        Subscription::new("a", "http://127.0.0.1/", &["*"])
            .unwrap()
            .with_rate_limit(
                serde_json::from_value(serde_json::json!({"per_second": 0.0, "burst": 1})).unwrap(),
            ),
    ];
    for s in bad {
        assert_eq!(
            disp.register(s.clone()).await.unwrap_err().kind(),
            ErrorKind::InvalidSubscription,
            "{s:?}"
        );
    }
    disp.register(sub("a", "http://127.0.0.1/", &["*"]))
        .await
        .unwrap();
    assert!(
        disp.register(sub("b", "http://127.0.0.1/", &["*"]))
            .await
            .is_err(),
        "limit"
    );
    disp.register(sub("a", "http://127.0.0.1/x", &["*"]))
        .await
        .unwrap();
    assert_eq!(disp.list()[0].url, "http://127.0.0.1/x", "same id replaces");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_persists_subscriptions_across_dispatchers() {
    use hookwire_webhook_sender::{RedisSubscriptionStore, WebhookStore};
    let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let store: Arc<dyn WebhookStore> = Arc::new(
        RedisSubscriptionStore::connect(&redis.url())
            .await
            .unwrap()
            .with_prefix("t:"),
    );
    let d1 = Dispatcher::builder()
        .ssrf(local())
        .store(store.clone())
        .build()
        .unwrap();
    d1.register(sub("a", "http://127.0.0.1:1/", &["order.*"]).with_secret("s"))
        .await
        .unwrap();
    d1.register(sub("b", "http://127.0.0.1:2/", &["*"]))
        .await
        .unwrap();
    d1.disable("b", "maintenance").await.unwrap();

    let d2 = Dispatcher::builder()
        .ssrf(local())
        .store(store.clone())
        .build()
        .unwrap();
    assert_eq!(d2.load().await.unwrap(), 2);
    assert_eq!(d2.list(), d1.list());
    assert_eq!(d2.get("a").unwrap().secret.as_deref(), Some("s"));
    assert_eq!(
        d2.get("b").unwrap().disabled_reason.as_deref(),
        Some("maintenance")
    );

    assert!(d2.unregister("a").await.unwrap());
    let d3 = Dispatcher::builder()
        .ssrf(local())
        .store(store)
        .build()
        .unwrap();
    assert_eq!(d3.load().await.unwrap(), 1);
    // A corrupt entry is skipped, not fatal.
    redis
        .command("HSET t:subscriptions broken notjson")
        .unwrap();
    let d4 = Dispatcher::builder()
        .ssrf(local())
        .store(Arc::new(
            RedisSubscriptionStore::connect(&redis.url())
                .await
                .unwrap()
                .with_prefix("t:"),
        ))
        .build()
        .unwrap();
    assert_eq!(d4.load().await.unwrap(), 1);
}

/// The `WebhookStore` contract, run against every implementation.
async fn store_contract(store: &dyn hookwire_webhook_sender::WebhookStore) {
    assert!(
        store.get_all().await.unwrap().is_empty(),
        "{} starts empty",
        store.name()
    );
    let a = sub("a", "https://a.test/", &["order.*"]).with_secret("s");
    let b = sub("b", "https://b.test/", &["*"]);
    store.save(b.clone()).await.unwrap();
    store.save(a.clone()).await.unwrap();
    assert_eq!(
        store.get_all().await.unwrap(),
        vec![a.clone(), b.clone()],
        "sorted by id"
    );
    let a2 = sub("a", "https://a2.test/", &["user.*"]);
    store.save(a2.clone()).await.unwrap();
    assert_eq!(
        store.get_all().await.unwrap(),
        vec![a2, b.clone()],
        "same id replaces"
    );
    assert!(store.remove("a".into()).await.unwrap());
    assert!(
        !store.remove("a".into()).await.unwrap(),
        "second remove reports absence"
    );
    assert_eq!(store.get_all().await.unwrap(), vec![b]);
}

#[tokio::test]
async fn memory_store_meets_the_store_contract() {
    store_contract(&hookwire_webhook_sender::MemoryWebhookStore::default()).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_meets_the_store_contract() {
    let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let store = hookwire_webhook_sender::RedisSubscriptionStore::connect(&redis.url())
        .await
        .unwrap()
        .with_prefix("contract:");
    store_contract(&store).await;
}

#[tokio::test]
async fn dropping_publish_does_not_cut_deliveries_off() {
    let sink = Sink::start(|_, _| Reply::status(200).delay(Duration::from_millis(100))).await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .build()
        .unwrap();
    disp.register(sub("s", &sink.url(), &["*"])).await.unwrap();
    let event = Event::new("x", serde_json::Value::Null);
    let publish = disp.publish(&event);
    // Give up on the publish while the delivery is in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(30), publish)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count(), 1);
    let log = disp.delivery_log(1);
    assert!(
        log[0].success,
        "the delivery finished and was logged: {log:?}"
    );
}

/// The deliveries a dropped `publish` left running belong to the dispatcher: `shutdown` stops
/// them (the endpoint sees its connection closed long before the 10 s delivery timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_deliveries_a_dropped_publish_left_running() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(0))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    disp.register(sub("s", &url, &["*"])).await.unwrap();
    let event = Event::new("x", serde_json::Value::Null);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), disp.publish(&event))
            .await
            .is_err()
    );
    // The endpoint takes the request and never answers.
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(conn.read(&mut buf).await.unwrap() > 0);
    assert_eq!(disp.running_deliveries(), 1);
    let started = Instant::now();
    disp.shutdown();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => {}
            Err(_) => break false,
        }
    };
    assert!(closed, "the delivery still holds its connection");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(disp.running_deliveries(), 0);
}

#[tokio::test]
async fn every_special_purpose_range_is_refused_at_registration_and_when_connecting() {
    use hookwire_webhook_sender::{DeliveryOutcome, HyperClient, Webhook};
    let sink = Sink::always(200).await;
    let port = sink.addr.port();
    // Ranges of the IANA special-purpose registries the guard used to let through, and
    // IPv4-in-IPv6 forms of the loopback sink.
    let urls = [
        format!("http://[64:ff9b:1::7f00:1]:{port}/hook"),
        format!("http://[64:ff9b:1::808:808]:{port}/hook"),
        format!("http://[2001:2::1]:{port}/hook"),
        format!("http://[2001:3::1]:{port}/hook"),
        format!("http://[2001:20::1]:{port}/hook"),
        format!("http://[2620:4f:8000::1]:{port}/hook"),
        format!("http://[3fff::1]:{port}/hook"),
        format!("http://[100:0:0:1::1]:{port}/hook"),
        format!("http://192.31.196.1:{port}/hook"),
        format!("http://192.52.193.1:{port}/hook"),
        format!("http://192.88.99.1:{port}/hook"),
        format!("http://192.175.48.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[64:ff9b::7f00:1]:{port}/hook"),
        format!("http://[::127.0.0.1]:{port}/hook"),
        format!("http://[2002:7f00:1::1]:{port}/hook"),
    ];
    let disp = Dispatcher::builder().retry(fast(2)).build().unwrap();
    for url in &urls {
        let err = disp.register(sub("x", url, &["*"])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubscription, "{url}");
    }
    // The connector applies the same table: refused before any connection, permanently.
    let client = Arc::new(HyperClient::with_policy(SsrfPolicy::default()));
    for url in &urls {
        let hook = Webhook::builder()
            .url(url.clone())
            .client(client.clone())
            .build()
            .unwrap();
        let d = hook
            .deliver_with_retry(&Event::new("x", serde_json::Value::Null), &fast(2))
            .await;
        let DeliveryOutcome::Blocked(e) = &d.outcome else {
            panic!("{url}: {:?}", d.outcome);
        };
        assert_eq!(d.attempts, 1, "{url}");
        assert!(e.to_string().contains("forbidden"), "{url}: {e}");
    }
    assert_eq!(sink.count(), 0);
}

/// A hostile endpoint: every request gets `429 Too Many Requests` with `Retry-After: 3600`.
async fn throttling_sink() -> Sink {
    Sink::start(|_, _| Reply::status(429).header("retry-after", "3600")).await
}

#[tokio::test]
async fn endpoints_waiting_for_a_retry_hold_no_concurrency_slot() {
    let hostile = throttling_sink().await;
    let good = Sink::always(200).await;
    // Default concurrency (64); a policy whose own delay is long (60 s), so only releasing the
    // slot while sleeping lets other subscriptions through.
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(RetryPolicy::new(1).with_backoff(Backoff::fixed(Duration::from_secs(60))))
        .build()
        .unwrap();
    for i in 0..64 {
        disp.register(sub(&format!("flood-{i}"), &hostile.url(), &["flood.*"]))
            .await
            .unwrap();
    }
    disp.register(sub("good", &good.url(), &["order.*"]))
        .await
        .unwrap();
    let flood = {
        let disp = disp.clone();
        tokio::spawn(async move {
            disp.publish(&Event::new("flood.now", serde_json::Value::Null))
                .await
        })
    };
    // Every one of the 64 slots has made its first attempt and is now waiting for the retry.
    let t = Instant::now();
    while hostile.count() < 64 {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", hostile.count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        disp.publish(&Event::new("order.created", serde_json::Value::Null)),
    )
    .await
    .expect("the other subscription is delivered while 64 endpoints wait for their retry")
    .unwrap();
    assert!(report.records[0].success);
    assert_eq!(good.count(), 1);
    assert!(!flood.is_finished());
    flood.abort();
}

#[tokio::test]
async fn retry_after_is_capped_by_the_policys_longest_delay() {
    let hostile = throttling_sink().await;
    let disp = Dispatcher::builder()
        .ssrf(local())
        .retry(fast(2).with_backoff(Backoff::fixed(Duration::from_millis(200))))
        .build()
        .unwrap();
    disp.register(sub("s", &hostile.url(), &["*"]))
        .await
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        disp.publish(&Event::new("x", serde_json::Value::Null)),
    )
    .await
    .expect("Retry-After: 3600 is not honoured beyond the policy's 200 ms")
    .unwrap();
    let rec = &report.records[0];
    assert_eq!((rec.success, rec.status, rec.attempts), (false, 429, 3));
    let hits = hostile.hits();
    for w in hits.windows(2) {
        // The backoff (200 ms) still applies: the cap does not shorten the policy's own delay.
        assert!(w[1].at - w[0].at >= Duration::from_millis(190));
    }
}
