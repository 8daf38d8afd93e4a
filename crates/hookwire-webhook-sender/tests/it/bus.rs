//! The dispatcher as a consumer group of the event bus (features `events` + `redis`): two
//! dispatcher nodes on one real `redis-server`, real HTTP receivers on 127.0.0.1.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, Event, RetryPolicy};
use hookwire_events::{Bus, Group, RedisStreams};
use hookwire_testkit::RedisServer;
use hookwire_webhook_sender::ssrf::SsrfPolicy;
use hookwire_webhook_sender::{
    BusDispatcher, Dispatcher, RedisSubscriptionStore, Subscription, WebhookStore,
};

use crate::support::{Hit, Sink};

async fn bus(redis: &RedisServer, node: &str) -> Bus {
    let t = RedisStreams::connect(&redis.url())
        .await
        .unwrap()
        .node_id(node)
        .claim_idle(Duration::from_secs(2));
    Bus::builder(t).build().unwrap()
}

async fn store(redis: &RedisServer) -> Arc<dyn WebhookStore> {
    Arc::new(
        RedisSubscriptionStore::connect(&redis.url())
            .await
            .unwrap()
            .with_prefix("bus-test:"),
    )
}

fn dispatcher(store: Arc<dyn WebhookStore>) -> Dispatcher {
    Dispatcher::builder()
        .ssrf(SsrfPolicy::default().allow("127.0.0.1/32".parse().unwrap()))
        .retry(RetryPolicy::new(0).with_backoff(Backoff::fixed(Duration::from_millis(10))))
        .store(store)
        .build()
        .unwrap()
}

fn sub(id: &str, url: &str, patterns: &[&str]) -> Subscription {
    Subscription::new(id, url, patterns).unwrap()
}

/// Polls `cond` every 20 ms for up to 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event id → organization of every delivery a sink received.
fn received(hits: &[Hit]) -> Vec<(String, Option<String>)> {
    hits.iter()
        .map(|h| {
            let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
            let org = v["meta"]["organizationId"].as_str().map(str::to_owned);
            (v["meta"]["id"].as_str().unwrap().to_owned(), org)
        })
        .collect()
}

/// Each id once, and the organization each sink may see.
fn assert_once_each(sink: &str, got: &[(String, Option<String>)], want: &[String]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _) in got {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "{sink}: delivered more than once: {dup:?}");
    let mut want = want.to_vec();
    want.sort();
    let got: Vec<&str> = counts.keys().copied().collect();
    assert_eq!(got, want, "{sink}: exactly the expected events");
}

#[tokio::test]
async fn two_nodes_deliver_each_event_once_in_total_and_never_across_organizations() {
    let redis = RedisServer::start().expect("redis-server");
    let store = store(&redis).await;
    let (acme, globex, every) = (
        Sink::always(200).await,
        Sink::always(200).await,
        Sink::always(200).await,
    );
    let (bus1, bus2) = (bus(&redis, "n1").await, bus(&redis, "n2").await);
    let node = |b: &Bus| {
        dispatcher(store.clone())
            .on_bus(b)
            .group(Group::from_beginning("webhooks"))
            .start()
    };
    let n1 = node(&bus1).await.unwrap();
    let n2 = node(&bus2).await.unwrap();
    n1.register(sub("acme", &acme.url(), &["order.*"]).with_organization("acme"))
        .await
        .unwrap();
    n1.register(sub("globex", &globex.url(), &["order.*"]).with_organization("globex"))
        .await
        .unwrap();
    n2.register(sub("every", &every.url(), &["order.*"]))
        .await
        .unwrap();
    for n in [&n1, &n2] {
        eventually("both nodes see all three subscriptions", || async {
            n.dispatcher().list().len() == 3
        })
        .await;
    }

    let orgs = [Some("acme"), Some("globex"), None];
    let mut want: BTreeMap<Option<&str>, Vec<String>> = BTreeMap::new();
    let mut all = Vec::new();
    for i in 0..90 {
        let org = orgs[i % 3];
        let mut e = Event::new("order.paid", serde_json::json!({"n": i})).with_id(format!("e{i}"));
        if let Some(o) = org {
            e = e.with_organization(o);
        }
        want.entry(org).or_default().push(e.id.clone());
        all.push(e.id.clone());
        // Published from both nodes' buses: the group is one, whoever publishes.
        let b = if i % 2 == 0 { &bus1 } else { &bus2 };
        b.publish(e).await.unwrap();
    }
    // An event no subscription pattern matches is consumed without a delivery.
    bus1.publish(Event::new("user.created", serde_json::json!({})).with_organization("acme"))
        .await
        .unwrap();

    eventually("every delivery", || async { every.count() >= 90 }).await;
    eventually("acme's and globex's deliveries", || async {
        acme.count() >= 30 && globex.count() >= 30
    })
    .await;
    // Time for a duplicate, if there were one, to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (a, g, e) = (
        received(&acme.hits()),
        received(&globex.hits()),
        received(&every.hits()),
    );
    assert_once_each("acme", &a, &want[&Some("acme")]);
    assert_once_each("globex", &g, &want[&Some("globex")]);
    assert_once_each("every", &e, &all);
    assert!(a.iter().all(|(_, o)| o.as_deref() == Some("acme")));
    assert!(g.iter().all(|(_, o)| o.as_deref() == Some("globex")));
    // The two delivery logs together hold one record per (event, matching subscription).
    let logged = |n: &BusDispatcher| n.dispatcher().delivery_log(1000).len();
    assert_eq!(
        logged(&n1) + logged(&n2),
        150,
        "one delivery per (event, match)"
    );
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn subscription_changes_on_one_node_are_used_by_the_other() {
    let redis = RedisServer::start().expect("redis-server");
    let store = store(&redis).await;
    let (first, second) = (Sink::always(200).await, Sink::always(200).await);
    let (bus1, bus2) = (bus(&redis, "n1").await, bus(&redis, "n2").await);
    // Node 1 only administers (its group matches nothing), node 2 dispatches; node 2's timed
    // reload is an hour away, so only the announcements can tell it.
    let n1 = dispatcher(store.clone())
        .on_bus(&bus1)
        .group(Group::at_end("admin"))
        .pattern("admin.nothing")
        .reload_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let n2 = dispatcher(store.clone())
        .on_bus(&bus2)
        .reload_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    assert!(n2.dispatcher().list().is_empty());

    // Added on node 1, used by node 2.
    n1.register(sub("s", &first.url(), &["order.*"]))
        .await
        .unwrap();
    eventually("node 2 learns the new subscription", || async {
        n2.dispatcher().get("s").is_some()
    })
    .await;
    bus1.publish(Event::new("order.paid", serde_json::json!({})).with_id("a"))
        .await
        .unwrap();
    eventually("node 2 delivers to it", || async { first.count() == 1 }).await;

    // Updated on node 1 (same id, new URL): node 2 follows.
    n1.register(sub("s", &second.url(), &["order.*"]))
        .await
        .unwrap();
    eventually("node 2 learns the new URL", || async {
        n2.dispatcher()
            .get("s")
            .is_some_and(|s| s.url == second.url())
    })
    .await;
    bus1.publish(Event::new("order.paid", serde_json::json!({})).with_id("b"))
        .await
        .unwrap();
    eventually("node 2 delivers to the new URL", || async {
        second.count() == 1
    })
    .await;

    // Disabled on node 1: node 2 stops delivering.
    n1.disable("s", "maintenance").await.unwrap();
    eventually("node 2 learns it is disabled", || async {
        n2.dispatcher().get("s").is_some_and(|s| !s.enabled)
    })
    .await;
    // Removed on node 1: node 2 drops it.
    assert!(n1.unregister("s").await.unwrap());
    eventually("node 2 drops it", || async {
        n2.dispatcher().get("s").is_none()
    })
    .await;
    bus1.publish(Event::new("order.paid", serde_json::json!({})).with_id("c"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (first.count(), second.count()),
        (1, 1),
        "nothing after removal"
    );
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_missed_announcement_is_caught_up_by_the_timed_reload() {
    let redis = RedisServer::start().expect("redis-server");
    let store = store(&redis).await;
    let bus = bus(&redis, "n1").await;
    let n = dispatcher(store.clone())
        .on_bus(&bus)
        .reload_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    // Written to the store behind the bus's back: no announcement.
    store
        .save(sub("quiet", "http://127.0.0.1:9/", &["*"]))
        .await
        .unwrap();
    eventually("the timed reload", || async {
        n.dispatcher().get("quiet").is_some()
    })
    .await;
    n.stop().await;
}

#[tokio::test]
async fn bus_dispatcher_refuses_bad_options() {
    let bus = Bus::builder(hookwire_events::MemoryTransport::new())
        .build()
        .unwrap();
    let d = Dispatcher::builder().build().unwrap();
    let e = d
        .on_bus(&bus)
        .changes_event("a.*")
        .start()
        .await
        .unwrap_err();
    assert!(e.is_build(), "{e}");
    let e = d
        .on_bus(&bus)
        .reload_interval(Duration::from_millis(1))
        .start()
        .await
        .unwrap_err();
    assert!(e.is_build(), "{e}");
    let e = d.on_bus(&bus).pattern("a..b").start().await.unwrap_err();
    assert_eq!(e.kind(), hookwire_webhook_sender::ErrorKind::Bus, "{e}");
}
