//! Redis Streams semantics, each proven on a real redis-server.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Event;
use hookwire_events::{Bus, Group, HandlerError, NonRetryable};
use hookwire_testkit::RedisServer;
use serde_json::json;

use crate::support::{STREAM, eventually, fast, node, pending, raw, redis, streams};

type Seen = Arc<Mutex<HashMap<String, u32>>>;

fn counting(
    seen: &Seen,
) -> impl Fn(Event) -> std::future::Ready<Result<(), HandlerError>> + Clone + use<> {
    let seen = seen.clone();
    move |e: Event| {
        *seen.lock().unwrap().entry(e.id).or_insert(0) += 1;
        std::future::ready(Ok(()))
    }
}

/// Creates `group` at the end of `key`, as another node would.
async fn create_group(r: &mut redis::aio::MultiplexedConnection, key: &str, group: &str) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(r)
        .await
        .unwrap();
}

async fn xlen(r: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(r).await.unwrap()
}

/// Publishes each event in a stream entry of its own (`publish_many` packs them).
async fn publish_each(bus: &Bus, events: Vec<Event>) {
    for e in events {
        bus.publish(e).await.unwrap();
    }
}

async fn hlen(r: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("HLEN").arg(key).query_async(r).await.unwrap()
}

/// Redrives dead letter `id` and returns the bytes of the first event the (healed) handler
/// recorded in `got`.
async fn redrive_and_receive(
    dl: &hookwire_events::DeadLetters<'_>,
    id: &str,
    got: &Mutex<Vec<Vec<u8>>>,
) -> Vec<u8> {
    dl.redrive(id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !got.lock().unwrap().is_empty()
        })
        .await
    );
    got.lock().unwrap()[0].clone()
}

/// Asserts that group `g` holds nothing pending within 5 s.
async fn nothing_pending_soon(server: &RedisServer) {
    let r = raw(server).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut r = r.clone();
            async move { pending(&mut r, "g").await == 0 }
        })
        .await,
        "entries of group g still pending"
    );
}

fn events(n: usize, name: &str) -> Vec<Event> {
    (0..n)
        .map(|i| Event::new(name, json!({"i": i})).with_id(format!("{name}-{i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_group_once_and_every_node_sees_every_broadcast() {
    let server = redis();
    let group: Seen = Arc::default();
    let mut casts = Vec::new();
    let mut buses = Vec::new();
    let mut subs = Vec::new();
    for n in 0..3 {
        // Nothing fails or stalls here, so no entry may be taken over: with the default claim
        // idle time a CPU-starved test machine cannot cause a legitimate duplicate either.
        let t = streams(&server, &format!("node-{n}"))
            .await
            .claim_idle(Duration::from_secs(30));
        let bus = fast(t).build().unwrap();
        subs.push(
            bus.subscribe(Group::at_end("billing"), "order.*", counting(&group))
                .await
                .unwrap(),
        );
        let mine: Seen = Arc::default();
        subs.push(bus.broadcast("order.*", counting(&mine)).await.unwrap());
        casts.push(mine);
        buses.push(bus);
    }
    let all = events(10_000, "order.created");
    for (i, chunk) in all.chunks(1000).enumerate() {
        buses[i % 3].publish_many(chunk.to_vec()).await.unwrap();
    }
    let done = eventually(Duration::from_secs(60), || async {
        group.lock().unwrap().len() == 10_000
            && casts.iter().all(|c| c.lock().unwrap().len() == 10_000)
    })
    .await;
    assert!(done, "group saw {}", group.lock().unwrap().len());
    // Every event once in total across the nodes of the group, and once per node by broadcast.
    assert!(group.lock().unwrap().values().all(|&n| n == 1));
    for c in &casts {
        assert!(c.lock().unwrap().values().all(|&n| n == 1));
    }
    for b in &buses {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_either_fails_or_is_delivered_when_redis_stops_mid_run() {
    let mut server = RedisServer::builder().aof().start().unwrap();
    let seen: Seen = Arc::default();
    let bus = node(&server, "n1").await;
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", counting(&seen))
        .await
        .unwrap();
    let (mut ok, mut failed) = (Vec::new(), 0);
    for i in 0..400 {
        if i == 150 {
            server.kill();
        }
        if i == 200 {
            server.restart().unwrap();
        }
        let e = Event::new("tick", json!(i)).with_id(format!("t{i}"));
        match tokio::time::timeout(Duration::from_secs(15), bus.publish(e)).await {
            Ok(Ok(())) => ok.push(format!("t{i}")),
            Ok(Err(e)) => {
                assert!(e.is_transport(), "{e}");
                failed += 1;
            }
            Err(_) => panic!("publish hung"),
        }
    }
    assert!(
        failed > 0,
        "Redis was down, some publishes must have failed"
    );
    assert!(ok.len() >= 300, "only {} published", ok.len());
    let delivered = eventually(Duration::from_secs(30), || async {
        let s = seen.lock().unwrap();
        ok.iter().all(|id| s.contains_key(id))
    })
    .await;
    let s = seen.lock().unwrap();
    let lost: Vec<_> = ok.iter().filter(|id| !s.contains_key(*id)).collect();
    assert!(delivered, "acknowledged publishes lost: {lost:?}");
    assert_eq!(bus.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_counts_the_events_it_drops() {
    let mut server = redis();
    let bus = fast(streams(&server, "n1").await)
        .fail_open(true)
        .build()
        .unwrap();
    server.kill();
    for i in 0..3 {
        bus.publish(Event::new("a", json!(i))).await.unwrap();
    }
    assert_eq!(bus.dropped(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_after_exactly_max_deliveries_and_redrives_byte_identical() {
    let server = redis();
    let bus = fast(streams(&server, "n1").await)
        .max_deliveries(4)
        .build()
        .unwrap();
    let poison = AtomicBool::new(true);
    let poison = Arc::new(poison);
    let attempts = Arc::new(AtomicU32::new(0));
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (p, a, g) = (poison.clone(), attempts.clone(), got.clone());
    let _sub = bus
        .subscribe(Group::at_end("billing"), "order.*", move |e: Event| {
            let (p, a, g) = (p.clone(), a.clone(), g.clone());
            async move {
                if e.id != "poison" {
                    return Ok(());
                }
                a.fetch_add(1, Ordering::SeqCst);
                if p.load(Ordering::SeqCst) {
                    return Err::<(), HandlerError>(std::io::Error::other("card declined").into());
                }
                g.lock().unwrap().push(e.to_json_bytes());
                Ok(())
            }
        })
        .await
        .unwrap();
    let original = Event::new(
        "order.paid",
        json!({"total": 12.5, "lines": [{"sku": "é"}]}),
    )
    .with_id("poison")
    .with_partition_key("order-1");
    let bytes = original.to_json_bytes();
    bus.publish(original.clone()).await.unwrap();
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            dl.list(10).await.unwrap().len() == 1
        })
        .await
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    let d = dl.list(10).await.unwrap().remove(0);
    assert_eq!(d.attempts, 4);
    assert_eq!(d.failures.len(), 4);
    assert_eq!(d.failures[0].chain, vec!["card declined".to_owned()]);
    assert!(d.first_failed_at_ms <= d.last_failed_at_ms);
    assert_eq!(d.event_bytes, bytes);
    assert_eq!(d.event, original);
    // The original was acknowledged in the same step, and the dead letter does not depend on
    // the stream: trim it away entirely.
    let mut r = raw(&server).await;
    assert_eq!(pending(&mut r, "billing").await, 0);
    let _: () = redis::cmd("XTRIM")
        .arg(STREAM)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut r)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "parked events are not retried"
    );
    poison.store(false, Ordering::SeqCst);
    assert_eq!(redrive_and_receive(&dl, &d.id, &got).await, bytes);
    assert!(dl.get(&d.id).await.unwrap().is_none());
    assert!(dl.redrive(&d.id).await.unwrap_err().kind() == hookwire_events::ErrorKind::NotFound);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_parks_at_once_and_redrive_reaches_only_its_group() {
    let server = redis();
    let bus = node(&server, "n1").await;
    let calls = Arc::new(AtomicU32::new(0));
    let other = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let _a = bus
        .subscribe(Group::at_end("a"), "*", move |_e: Event| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(NonRetryable::new("bad input").into());
                }
                Ok::<(), HandlerError>(())
            }
        })
        .await
        .unwrap();
    let o = other.clone();
    let _b = bus
        .subscribe(Group::at_end("b"), "*", move |_e: Event| {
            o.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), HandlerError>(()) }
        })
        .await
        .unwrap();
    bus.publish(Event::new("x", json!(1))).await.unwrap();
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            dl.list(10).await.unwrap().len() == 1
        })
        .await
    );
    let d = dl.list(1).await.unwrap().remove(0);
    assert_eq!((d.attempts, d.group.as_str()), (1, "a"));
    dl.redrive(&d.id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            calls.load(Ordering::SeqCst) == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        other.load(Ordering::SeqCst),
        1,
        "group b does not see the redrive"
    );
    assert!(dl.discard("a/0-0").await.is_ok_and(|found| !found));
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_key_holds_across_100_keys_with_concurrency_and_random_failures() {
    const KEYS: usize = 100;
    const PER_KEY: usize = 1000;
    let server = redis();
    let bus = fast(streams(&server, "n1").await)
        .retry(hookwire_core::Backoff::fixed(Duration::from_millis(1)))
        .max_deliveries(1000)
        .concurrency(32)
        .max_in_flight(5000)
        .build()
        .unwrap();
    let next: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let violations = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let max_parallel = Arc::new(AtomicU64::new(0));
    let (n, v, f, d, r, m) = (
        next.clone(),
        violations.clone(),
        failures.clone(),
        done.clone(),
        running.clone(),
        max_parallel.clone(),
    );
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", move |e: Event| {
            let (n, v, f, d, r, m) = (
                n.clone(),
                v.clone(),
                f.clone(),
                d.clone(),
                r.clone(),
                m.clone(),
            );
            async move {
                let key = e.meta.partition_key.clone().unwrap();
                let seq = e.data["seq"].as_u64().unwrap();
                {
                    let mut r = r.lock().unwrap();
                    if !r.insert(key.clone()) {
                        v.fetch_add(1, Ordering::SeqCst);
                    }
                    m.fetch_max(r.len() as u64, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                let expected = *n.lock().unwrap().get(&key).unwrap_or(&0);
                let fail = hookwire_core::id::random_unit() < 0.01;
                r.lock().unwrap().remove(&key);
                if seq != expected {
                    v.fetch_add(1, Ordering::SeqCst);
                }
                if fail {
                    f.fetch_add(1, Ordering::SeqCst);
                    return Err::<(), HandlerError>("random failure".into());
                }
                n.lock().unwrap().insert(key, seq + 1);
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
    for round in 0..PER_KEY / 10 {
        let mut batch = Vec::with_capacity(KEYS * 10);
        for s in round * 10..round * 10 + 10 {
            for k in 0..KEYS {
                batch.push(
                    Event::new("tick", json!({"seq": s})).with_partition_key(format!("k{k}")),
                );
            }
        }
        bus.publish_many(batch).await.unwrap();
    }
    let total = (KEYS * PER_KEY) as u64;
    let finished = eventually(Duration::from_secs(90), || async {
        done.load(Ordering::SeqCst) == total
    })
    .await;
    assert!(
        finished,
        "handled {} of {total}",
        done.load(Ordering::SeqCst)
    );
    assert_eq!(violations.load(Ordering::SeqCst), 0, "order violations");
    assert!(
        failures.load(Ordering::SeqCst) > 0,
        "the test injects failures"
    );
    assert!(
        max_parallel.load(Ordering::SeqCst) > 1,
        "different keys ran concurrently"
    );
    bus.shutdown().await;
}

/// Makes `consumer` read every entry of `group` and then vanish, as a killed process would.
async fn read_and_die(server: &RedisServer, group: &str, consumer: &str) {
    let mut r = raw(server).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(100_000)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut r)
        .await
        .unwrap();
}

/// A consumer reads 10 000 events (one entry each, or in packs of 100) and dies; another node
/// handles each exactly once within `claim_idle` (1 s here) + 5 s and acknowledges all.
async fn a_dead_consumers_events_reach_another_node(packed: bool) {
    let server = redis();
    let publisher = node(&server, "publisher").await;
    let mut r = raw(&server).await;
    create_group(&mut r, STREAM, "g").await;
    if packed {
        for chunk in events(10_000, "job.created").chunks(1000) {
            publisher.publish_many(chunk.to_vec()).await.unwrap();
        }
    } else {
        publish_each(&publisher, events(10_000, "job.created")).await;
    }
    read_and_die(&server, "g", "dead-node").await;
    let entries = if packed { 100 } else { 10_000 };
    assert_eq!(pending(&mut r, "g").await, entries);
    let died = Instant::now();
    let seen: Seen = Arc::default();
    let survivor = node(&server, "survivor").await;
    let _sub = survivor
        .subscribe(Group::at_end("g"), "*", counting(&seen))
        .await
        .unwrap();
    let all = eventually(Duration::from_secs(30), || async {
        seen.lock().unwrap().len() == 10_000
    })
    .await;
    let took = died.elapsed();
    assert!(all, "redelivered {} of 10000", seen.lock().unwrap().len());
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(seen.lock().unwrap().values().all(|&n| n == 1), "each once");
    nothing_pending_soon(&server).await;
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_10000_pending_entries_reach_another_node_within_claim_idle_plus_5s() {
    a_dead_consumers_events_reach_another_node(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_packs_reach_another_node_whole() {
    a_dead_consumers_events_reach_another_node(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rereads_its_own_pending_entries_first() {
    let server = redis();
    let mut r = raw(&server).await;
    create_group(&mut r, STREAM, "g").await;
    let publisher = node(&server, "publisher").await;
    publisher.publish_many(events(50, "a")).await.unwrap();
    read_and_die(&server, "g", "web-1").await;
    let seen: Seen = Arc::default();
    // A long claim idle time: only re-reading its own pending entries can deliver them now.
    let bus = fast(
        streams(&server, "web-1")
            .await
            .claim_idle(Duration::from_secs(600)),
    )
    .build()
    .unwrap();
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", counting(&seen))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().len() == 50
        })
        .await
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_starts_where_it_says() {
    let server = redis();
    let bus = node(&server, "n1").await;
    bus.publish_many(events(20, "a")).await.unwrap();
    let (old, new): (Seen, Seen) = (Arc::default(), Arc::default());
    let _a = bus
        .subscribe(Group::from_beginning("replay"), "*", counting(&old))
        .await
        .unwrap();
    let _b = bus
        .subscribe(Group::at_end("live"), "*", counting(&new))
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(0)).with_id("later"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            old.lock().unwrap().len() == 21
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            new.lock().unwrap().len() == 1
        })
        .await
    );
    assert!(new.lock().unwrap().contains_key("later"));
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_what_a_lagging_group_needs_and_the_hard_cap_reports_an_overrun() {
    let server = redis();
    let t = streams(&server, "n1")
        .await
        .retention(10)
        .max_len(0)
        .trim_interval(Duration::from_millis(50));
    let bus = fast(t).build().unwrap();
    let mut r = raw(&server).await;
    // A group that exists but reads nothing (its node is down).
    create_group(&mut r, STREAM, "lagging").await;
    publish_each(&bus, events(100, "a")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let len = xlen(&mut r, STREAM).await;
    assert_eq!(len, 100, "nothing the lagging group needs is trimmed");
    let seen: Seen = Arc::default();
    let lag = node(&server, "n2").await;
    let _sub = lag
        .subscribe(Group::at_end("lagging"), "*", counting(&seen))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().len() == 100
        })
        .await
    );
    let r2 = raw(&server).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut r = r2.clone();
            async move { xlen(&mut r, STREAM).await <= 1 }
        })
        .await,
        "finished entries are trimmed past the retention"
    );
    lag.shutdown().await;
    bus.shutdown().await;

    // Hard cap: a second bus name, a group that never reads.
    let t = streams(&server, "n3")
        .await
        .stream("capped")
        .retention(10)
        .max_len(50)
        .trim_interval(Duration::from_millis(50));
    let capped = fast(t).build().unwrap();
    let key = "hw:{capped}:s";
    create_group(&mut r, key, "slow").await;
    publish_each(&capped, events(100, "a")).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            capped.overruns("slow").await.unwrap() >= 1
        })
        .await
    );
    let len = xlen(&mut r, key).await;
    assert_eq!(len, 50);
    capped.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_running_handler_finish_and_acknowledges_it() {
    let server = redis();
    let bus = node(&server, "n1").await;
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (s, f) = (started.clone(), finished.clone());
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", move |_e: Event| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                s.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                f.store(true, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1))).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            started.load(Ordering::SeqCst)
        })
        .await
    );
    bus.shutdown().await;
    assert!(finished.load(Ordering::SeqCst));
    let mut r = raw(&server).await;
    assert_eq!(pending(&mut r, "g").await, 0);
    assert!(
        bus.publish(Event::new("a", json!(2)))
            .await
            .unwrap_err()
            .is_shutdown()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_waits_without_holding_the_handler_slot() {
    let server = redis();
    let bus = fast(streams(&server, "n1").await)
        .retry(hookwire_core::Backoff::fixed(Duration::from_millis(400)))
        .concurrency(1)
        .build()
        .unwrap();
    let calls: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let c = calls.clone();
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", move |e: Event| {
            let c = c.clone();
            async move {
                let first = {
                    let mut c = c.lock().unwrap();
                    c.push((e.id.clone(), Instant::now()));
                    c.iter().filter(|(id, _)| *id == e.id).count() == 1
                };
                if e.id == "slow" && first {
                    return Err::<(), HandlerError>("try again".into());
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(0)).with_id("slow"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.publish(Event::new("a", json!(1)).with_id("fast"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            calls.lock().unwrap().len() == 3
        })
        .await
    );
    let order: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        order,
        ["slow", "fast", "slow"],
        "the other event ran during the backoff"
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_fail_build_and_subscribing_with_redis_down_fails() {
    let mut server = redis();
    let t = streams(&server, "bad node").await;
    assert_eq!(
        Bus::builder(t).build().unwrap_err().kind(),
        hookwire_events::ErrorKind::Config
    );
    let t = streams(&server, "n").await.retention(100).max_len(10);
    assert!(Bus::builder(t).build().is_err());
    let bus = node(&server, "n").await;
    assert!(
        bus.subscribe(Group::at_end("bad group"), "*", counting(&Seen::default()))
            .await
            .unwrap_err()
            .is_invalid()
    );
    assert!(
        bus.subscribe(Group::at_end("g"), "order.*.x", counting(&Seen::default()))
            .await
            .unwrap_err()
            .is_invalid()
    );
    server.kill();
    assert!(
        bus.subscribe(Group::at_end("g"), "*", counting(&Seen::default()))
            .await
            .unwrap_err()
            .is_transport()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_keeps_its_entry_and_another_node_does_not_take_it_over() {
    let server = redis();
    let calls = Arc::new(AtomicU32::new(0));
    let mut buses = Vec::new();
    let mut subs = Vec::new();
    for n in 0..2 {
        let bus = node(&server, &format!("n{n}")).await;
        let c = calls.clone();
        subs.push(
            bus.subscribe(Group::at_end("g"), "*", move |_e: Event| {
                c.fetch_add(1, Ordering::SeqCst);
                async {
                    // Longer than claim_idle (1 s): only the keep-alive keeps it here.
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    Ok::<(), HandlerError>(())
                }
            })
            .await
            .unwrap(),
        );
        buses.push(bus);
    }
    buses[0].publish(Event::new("a", json!(1))).await.unwrap();
    let mut r = raw(&server).await;
    assert!(
        eventually(Duration::from_secs(10), || {
            let (mut r, calls) = (r.clone(), calls.clone());
            async move { pending(&mut r, "g").await == 0 && calls.load(Ordering::SeqCst) > 0 }
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(pending(&mut r, "g").await, 0);
    for b in &buses {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_turns_10000_forced_redeliveries_into_10000_effects() {
    let server = redis();
    let bus = node(&server, "n1").await;
    let inbox = Arc::new(hookwire_events::Inbox::new(
        hookwire_core::MemoryStore::new(hookwire_core::IdempotencyConfig::default()),
    ));
    let effects = Arc::new(AtomicU64::new(0));
    let deliveries: Seen = Arc::default();
    let (i, f, d) = (inbox.clone(), effects.clone(), deliveries.clone());
    let _sub = bus
        .subscribe(Group::at_end("billing"), "*", move |e: Event| {
            let (i, f, d) = (i.clone(), f.clone(), d.clone());
            async move {
                i.once("billing", &e, || async {
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(())
                })
                .await?;
                // The effect is done but the first delivery fails: every event comes back.
                let n = {
                    let mut d = d.lock().unwrap();
                    let n = d.entry(e.id).or_insert(0);
                    *n += 1;
                    *n
                };
                if n == 1 {
                    return Err::<(), HandlerError>("lost the ack".into());
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    for chunk in events(10_000, "pay").chunks(1000) {
        bus.publish_many(chunk.to_vec()).await.unwrap();
    }
    let done = eventually(Duration::from_secs(60), || async {
        let d = deliveries.lock().unwrap();
        d.len() == 10_000 && d.values().all(|&n| n >= 2)
    })
    .await;
    assert!(done);
    assert_eq!(effects.load(Ordering::SeqCst), 10_000);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_stops_receiving() {
    let server = redis();
    let bus = node(&server, "n1").await;
    let seen: Seen = Arc::default();
    let sub = bus
        .subscribe(Group::at_end("g"), "*", counting(&seen))
        .await
        .unwrap();
    let cast = bus.broadcast("*", counting(&seen)).await.unwrap();
    bus.publish(Event::new("a", json!(1)).with_id("before"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().get("before") == Some(&2)
        })
        .await
    );
    drop(sub);
    drop(cast);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.publish(Event::new("a", json!(2)).with_id("after"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!seen.lock().unwrap().contains_key("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_recreates_its_group_after_redis_lost_its_data() {
    let mut server = redis();
    let bus = node(&server, "n1").await;
    let seen: Seen = Arc::default();
    let _sub = bus
        .subscribe(Group::from_beginning("g"), "*", counting(&seen))
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1)).with_id("one"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().contains_key("one")
        })
        .await
    );
    // No persistence: the stream and the group are gone after the restart.
    server.restart().unwrap();
    let mut published = false;
    for _ in 0..100 {
        if bus
            .publish(Event::new("a", json!(2)).with_id("two"))
            .await
            .is_ok()
        {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published);
    assert!(
        eventually(Duration::from_secs(15), || async {
            seen.lock().unwrap().contains_key("two")
        })
        .await
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_entry_is_parked_with_its_bytes_and_does_not_stop_the_rest() {
    let server = redis();
    let bus = node(&server, "n1").await;
    let seen: Seen = Arc::default();
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", counting(&seen))
        .await
        .unwrap();
    let mut r = raw(&server).await;
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("e")
        .arg("{not json")
        .arg("t")
        .arg("a")
        .query_async(&mut r)
        .await
        .unwrap();
    bus.publish(Event::new("a", json!(1)).with_id("fine"))
        .await
        .unwrap();
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(5), || async {
            dl.list(5).await.unwrap().len() == 1
        })
        .await
    );
    let d = dl.list(5).await.unwrap().remove(0);
    assert_eq!(d.event_bytes, b"{not json");
    assert_eq!(d.event.name, "$malformed");
    assert!(d.failures[0].chain[0].starts_with("malformed event"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().contains_key("fine")
        })
        .await
    );
    assert_eq!(pending(&mut r, "g").await, 0);
    // In a pack, the unreadable event is parked alone; its neighbours run and the pack is
    // acknowledged.
    let good = |id: &str| {
        String::from_utf8(Event::new("a", json!(2)).with_id(id).to_json_bytes()).unwrap()
    };
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("e")
        .arg(good("before"))
        .arg("t")
        .arg("a")
        .arg("e")
        .arg("{broken")
        .arg("t")
        .arg("a")
        .arg("e")
        .arg(good("after"))
        .arg("t")
        .arg("a")
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = seen.lock().unwrap().clone();
            s.contains_key("before")
                && s.contains_key("after")
                && dl.list(5).await.unwrap().len() == 2
        })
        .await
    );
    let broken = dl.list(5).await.unwrap().remove(1);
    assert_eq!(broken.event_bytes, b"{broken");
    assert!(broken.id.ends_with("#1"), "{}", broken.id);
    nothing_pending_soon(&server).await;
    assert_eq!(hlen(&mut r, "hw:{events}:att:g").await, 0);
    bus.shutdown().await;
}

/// The entries pending in group `g`, oldest first.
async fn pending_ids(r: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let rows: Vec<Vec<redis::Value>> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("g")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(r)
        .await
        .unwrap();
    rows.iter()
        .map(|row| match &row[0] {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Four more consumers of group `g` take entry `id` over and die too (each takeover is a
/// delivery), then a survivor node with `max_deliveries` 5 subscribes to `pattern`.
async fn four_more_deaths_then_a_survivor(
    server: &RedisServer,
    r: &mut redis::aio::MultiplexedConnection,
    id: &str,
    pattern: &str,
    seen: &Seen,
) -> (Bus, hookwire_events::BusSubscription) {
    for n in 0..4 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(STREAM)
            .arg("g")
            .arg(format!("crashed-{n}"))
            .arg(0)
            .arg(id)
            .query_async(r)
            .await
            .unwrap();
    }
    let bus = fast(streams(server, "survivor").await)
        .max_deliveries(5)
        .build()
        .unwrap();
    let sub = bus
        .subscribe(Group::at_end("g"), pattern, counting(seen))
        .await
        .unwrap();
    (bus, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_keeps_killing_its_consumer_is_parked_after_max_deliveries() {
    let server = redis();
    let mut r = raw(&server).await;
    create_group(&mut r, STREAM, "g").await;
    let publisher = node(&server, "publisher").await;
    publisher
        .publish(Event::new("a", json!(1)).with_id("killer"))
        .await
        .unwrap();
    publisher
        .publish(Event::new("a", json!(2)).with_id("victim"))
        .await
        .unwrap();
    read_and_die(&server, "g", "crashed").await;
    let killer = pending_ids(&mut r).await.remove(0);
    let seen: Seen = Arc::default();
    let (bus, _sub) = four_more_deaths_then_a_survivor(&server, &mut r, &killer, "*", &seen).await;
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            dl.list(5).await.unwrap().len() == 1
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen.lock().unwrap().contains_key("victim")
        })
        .await
    );
    let d = dl.list(5).await.unwrap().remove(0);
    assert_eq!(d.event.id, "killer");
    assert!(
        d.failures[0].chain[0].contains("6 times"),
        "{:?}",
        d.failures
    );
    assert!(
        !seen.lock().unwrap().contains_key("killer"),
        "the handler never ran it again"
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_are_gone_and_hold_nothing_are_forgotten() {
    let server = redis();
    let mut r = raw(&server).await;
    create_group(&mut r, STREAM, "g").await;
    // A process that ran under a random id and ended with nothing pending.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(STREAM)
        .arg("g")
        .arg("node_old")
        .query_async(&mut r)
        .await
        .unwrap();
    let bus = node(&server, "n1").await;
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", counting(&Seen::default()))
        .await
        .unwrap();
    let consumers = || {
        let mut r = r.clone();
        async move {
            let v: Vec<redis::Value> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(STREAM)
                .arg("g")
                .query_async(&mut r)
                .await
                .unwrap();
            format!("{v:?}")
        }
    };
    // claim_idle is 1 s: gone after 4 s of silence; the live node stays.
    assert!(
        eventually(Duration::from_secs(10), || async {
            !consumers().await.contains("node_old")
        })
        .await
    );
    assert!(consumers().await.contains("n1"));
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_many_packs_events_and_a_poison_event_in_a_pack_is_parked_alone() {
    let server = redis();
    let bus = fast(streams(&server, "n1").await)
        .max_deliveries(3)
        .build()
        .unwrap();
    let seen: Seen = Arc::default();
    let heal = Arc::new(AtomicBool::new(false));
    let bad_runs = Arc::new(AtomicU32::new(0));
    let got_bad: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (s, h, b, g) = (
        seen.clone(),
        heal.clone(),
        bad_runs.clone(),
        got_bad.clone(),
    );
    let _sub = bus
        .subscribe(Group::at_end("g"), "*", move |e: Event| {
            let (s, h, b, g) = (s.clone(), h.clone(), b.clone(), g.clone());
            async move {
                if e.id == "bad" {
                    b.fetch_add(1, Ordering::SeqCst);
                    if !h.load(Ordering::SeqCst) {
                        return Err::<(), HandlerError>("always fails".into());
                    }
                    g.lock().unwrap().push(e.to_json_bytes());
                    return Ok(());
                }
                *s.lock().unwrap().entry(e.id).or_insert(0) += 1;
                Ok(())
            }
        })
        .await
        .unwrap();
    let mut batch = events(250, "a");
    batch[120] = Event::new("a", json!({"poison": true})).with_id("bad");
    let bad_bytes = batch[120].to_json_bytes();
    bus.publish_many(batch).await.unwrap();
    let mut r = raw(&server).await;
    assert_eq!(
        xlen(&mut r, STREAM).await,
        3,
        "packs of 100, 100 and 50 events"
    );
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen.lock().unwrap().len() == 249 && dl.list(10).await.unwrap().len() == 1
        })
        .await,
        "handled {}",
        seen.lock().unwrap().len()
    );
    assert!(
        seen.lock().unwrap().values().all(|&n| n == 1),
        "each event once"
    );
    let d = dl.list(10).await.unwrap().remove(0);
    assert_eq!(d.event.id, "bad");
    assert_eq!(d.event_bytes, bad_bytes);
    assert_eq!((d.attempts, d.failures.len()), (3, 3));
    assert_eq!(bad_runs.load(Ordering::SeqCst), 3);
    // The pack is acknowledged once all its events finished, and its counters are gone.
    nothing_pending_soon(&server).await;
    assert_eq!(hlen(&mut r, "hw:{events}:att:g").await, 0);
    assert_eq!(hlen(&mut r, "hw:{events}:err:g").await, 0);
    heal.store(true, Ordering::SeqCst);
    assert_eq!(redrive_and_receive(&dl, &d.id, &got_bad).await, bad_bytes);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_that_keeps_killing_its_consumer_is_parked_event_by_event() {
    let server = redis();
    let mut r = raw(&server).await;
    create_group(&mut r, STREAM, "g").await;
    let publisher = node(&server, "publisher").await;
    let mut pack = events(3, "order.paid");
    // An event the group's pattern does not take: it never ran there, so it is not parked.
    pack.push(Event::new("audit.log", json!({})).with_id("audit"));
    publisher.publish_many(pack).await.unwrap();
    read_and_die(&server, "g", "crashed").await;
    let ids = pending_ids(&mut r).await;
    assert_eq!(ids.len(), 1, "one pack");
    let pack = ids[0].clone();
    let seen: Seen = Arc::default();
    let (bus, _sub) =
        four_more_deaths_then_a_survivor(&server, &mut r, &pack, "order.*", &seen).await;
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            dl.list(10).await.unwrap().len() == 3
        })
        .await
    );
    // Parking acknowledges the pack last: once nothing is pending, every park happened.
    nothing_pending_soon(&server).await;
    let mut parked: Vec<String> = dl
        .list(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            assert_eq!(d.original_id, pack);
            d.event.id
        })
        .collect();
    parked.sort();
    assert_eq!(parked, ["order.paid-0", "order.paid-1", "order.paid-2"]);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the handler never ran them"
    );
    bus.shutdown().await;
}
