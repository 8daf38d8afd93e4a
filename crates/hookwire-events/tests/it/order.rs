//! Per-key order across the nodes of one group on Redis Streams: partitions leased to one node
//! at a time, handed over when a node joins or dies. Every test checks, across all nodes at
//! once, that no two events of a key run together and that no key's events run out of order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, Event};
use hookwire_events::{Bus, BusSubscription, Group, HandlerError};
use hookwire_testkit::RedisServer;
use serde_json::json;

use crate::support::{eventually, fast, redis, streams};

const KEYS: usize = 100;

/// What the handlers of every node saw, checked as they run.
#[derive(Default)]
struct Checker {
    /// The next sequence number each key must see.
    next: Mutex<HashMap<String, u64>>,
    /// Keys whose handler runs now, on any node.
    running: Mutex<HashSet<String>>,
    /// A key ran on two calls at once, or a sequence number was skipped.
    violations: AtomicU64,
    /// An event handled again after it succeeded (only when a node is killed mid-call).
    duplicates: AtomicU64,
    failures: AtomicU64,
    done: AtomicU64,
}

/// Takes a key out of `running` when the handler call ends, also when a killed node's runtime
/// drops the call half-way.
struct Running(Arc<Checker>, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.lock().unwrap().remove(&self.1);
    }
}

impl Checker {
    /// Waits up to `limit` until `total` events succeeded, then asserts that, and that no key
    /// ran out of order or on two calls at once. `duplicates_allowed`: handled again after
    /// success (only a killed node's finished but unacknowledged calls may be).
    async fn wait_for(&self, total: u64, limit: Duration, duplicates_allowed: u64) {
        let finished = eventually(limit, || async {
            self.done.load(Ordering::SeqCst) == total
        })
        .await;
        let (done, violations, duplicates) = (
            self.done.load(Ordering::SeqCst),
            self.violations.load(Ordering::SeqCst),
            self.duplicates.load(Ordering::SeqCst),
        );
        assert!(
            finished,
            "handled {done} of {total}; {violations} violations, {duplicates} duplicates"
        );
        assert_eq!(violations, 0, "order violations");
        assert!(
            duplicates <= duplicates_allowed,
            "{duplicates} handled twice"
        );
    }

    /// A handler that fails `fail_rate` of its calls and counts this node's successes in `mine`.
    fn handler(
        self: &Arc<Self>,
        mine: Arc<AtomicU64>,
        fail_rate: f64,
    ) -> impl Fn(Event) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
    + Clone
    + Send
    + Sync
    + 'static {
        let c = self.clone();
        move |e: Event| {
            let (c, mine) = (c.clone(), mine.clone());
            Box::pin(async move {
                let key = e.meta.partition_key.clone().unwrap();
                let seq = e.data["seq"].as_u64().unwrap();
                if !c.running.lock().unwrap().insert(key.clone()) {
                    c.violations.fetch_add(1, Ordering::SeqCst);
                }
                let _running = Running(c.clone(), key.clone());
                // Let other calls run in between, so that two calls of a key would overlap.
                tokio::task::yield_now().await;
                let expected = *c.next.lock().unwrap().get(&key).unwrap_or(&0);
                if seq > expected {
                    c.violations.fetch_add(1, Ordering::SeqCst);
                } else if seq < expected {
                    c.duplicates.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                if hookwire_core::id::random_unit() < fail_rate {
                    c.failures.fetch_add(1, Ordering::SeqCst);
                    return Err("random failure".into());
                }
                c.next.lock().unwrap().insert(key, seq + 1);
                c.done.fetch_add(1, Ordering::SeqCst);
                mine.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }
}

/// A node of group `g`: 3 s claim idle and leases (a CPU-starved test machine must not
/// stall a node past them), fast retries, 32 calls at once.
async fn order_node(server: &RedisServer, name: &str) -> Bus {
    let t = streams(server, name)
        .await
        .claim_idle(Duration::from_secs(3))
        .lease_ttl(Duration::from_secs(3));
    fast(t)
        .retry(Backoff::fixed(Duration::from_millis(1)))
        .max_deliveries(1000)
        .concurrency(32)
        .max_in_flight(5000)
        .build()
        .unwrap()
}

async fn join(
    server: &RedisServer,
    name: &str,
    checker: &Arc<Checker>,
    fail_rate: f64,
) -> (Bus, BusSubscription, Arc<AtomicU64>) {
    let bus = order_node(server, name).await;
    let mine = Arc::new(AtomicU64::new(0));
    let sub = bus
        .subscribe(
            Group::from_beginning("g"),
            "*",
            checker.handler(mine.clone(), fail_rate),
        )
        .await
        .unwrap();
    (bus, sub, mine)
}

/// Publishes rounds `from..to` of `KEYS` keys (one event per key per round).
async fn publish(publisher: &Bus, from: usize, to: usize) {
    for round in (from..to).step_by(10) {
        let mut batch = Vec::with_capacity(KEYS * 10);
        for s in round..(round + 10).min(to) {
            for k in 0..KEYS {
                batch.push(
                    Event::new("tick", json!({"seq": s})).with_partition_key(format!("k{k}")),
                );
            }
        }
        publisher.publish_many(batch).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_three_nodes_with_random_failures_and_each_event_is_handled_once()
 {
    const PER_KEY: usize = 300;
    let server = redis();
    let checker = Arc::new(Checker::default());
    let publisher = order_node(&server, "publisher").await;
    let mut nodes = Vec::new();
    for n in 0..3 {
        nodes.push(join(&server, &format!("node-{n}"), &checker, 0.01).await);
    }
    let started = Instant::now();
    publish(&publisher, 0, PER_KEY).await;
    let total = (KEYS * PER_KEY) as u64;
    checker.wait_for(total, Duration::from_secs(120), 0).await;
    let took = started.elapsed();
    assert!(
        checker.failures.load(Ordering::SeqCst) > 0,
        "the test injects failures"
    );
    let per_node: Vec<u64> = nodes
        .iter()
        .map(|(_, _, m)| m.load(Ordering::SeqCst))
        .collect();
    // Each node holds about a third of the partitions.
    assert!(
        per_node.iter().all(|&n| n > 0),
        "work per node {per_node:?}"
    );
    tracing::info!("{total} events over 3 nodes in {took:?}, per node {per_node:?}");
    for (bus, sub, _) in nodes {
        drop(sub);
        bus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_mid_run_gets_partitions_and_order_holds_through_the_hand_over() {
    const PER_KEY: usize = 200;
    let server = redis();
    let checker = Arc::new(Checker::default());
    let publisher = order_node(&server, "publisher").await;
    let a = join(&server, "node-a", &checker, 0.01).await;
    let b = join(&server, "node-b", &checker, 0.01).await;
    publish(&publisher, 0, PER_KEY / 2).await;
    let c = join(&server, "node-c", &checker, 0.01).await;
    publish(&publisher, PER_KEY / 2, PER_KEY).await;
    checker
        .wait_for((KEYS * PER_KEY) as u64, Duration::from_secs(120), 0)
        .await;
    // The newcomer got partitions once the others gave theirs up: keep publishing until it
    // has handled some (its share comes within a few lease renewals).
    let mut round = PER_KEY;
    let got = eventually(Duration::from_secs(30), || {
        let c = &c;
        let publisher = &publisher;
        let r = round;
        round += 10;
        async move {
            publish(publisher, r, r + 10).await;
            c.2.load(Ordering::SeqCst) > 0
        }
    })
    .await;
    assert!(got, "the joining node never handled an event");
    checker
        .wait_for((KEYS * round) as u64, Duration::from_secs(60), 0)
        .await;
    for (bus, sub, _) in [a, b, c] {
        drop(sub);
        bus.shutdown().await;
    }
}

#[test]
fn a_killed_nodes_partitions_move_to_the_others_with_nothing_lost_and_no_key_out_of_order() {
    const PER_KEY: usize = 200;
    let server = redis();
    let checker = Arc::new(Checker::default());
    // The doomed node runs on a runtime of its own: dropping that runtime ends every task of
    // the node at once, without a graceful shutdown (its leases and pending entries stay).
    let (kill, killed) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel::<Arc<AtomicU64>>();
    let doomed = {
        let (url_server, checker) = (server.url(), checker.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let t = hookwire_events::RedisStreams::connect(&url_server)
                    .await
                    .unwrap()
                    .node_id("doomed")
                    .claim_idle(Duration::from_secs(3))
                    .lease_ttl(Duration::from_secs(3));
                let bus = fast(t)
                    .retry(Backoff::fixed(Duration::from_millis(1)))
                    .max_deliveries(1000)
                    .concurrency(32)
                    .build()
                    .unwrap();
                let mine = Arc::new(AtomicU64::new(0));
                let sub = bus
                    .subscribe(
                        Group::from_beginning("g"),
                        "*",
                        checker.handler(mine.clone(), 0.01),
                    )
                    .await
                    .unwrap();
                ready_tx.send(mine).unwrap();
                let _ = tokio::task::spawn_blocking(move || killed.recv()).await;
                // No shutdown, no drop: the process is gone.
                Box::leak(Box::new((bus, sub)));
            });
            rt.shutdown_background();
        })
    };
    let doomed_handled = ready.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let publisher = order_node(&server, "publisher").await;
        let a = join(&server, "node-a", &checker, 0.01).await;
        let b = join(&server, "node-b", &checker, 0.01).await;
        publish(&publisher, 0, PER_KEY / 2).await;
        // Kill it while it works on its partitions.
        assert!(
            eventually(Duration::from_secs(60), || async {
                doomed_handled.load(Ordering::SeqCst) > 500
            })
            .await,
            "the doomed node never got work"
        );
        kill.send(()).unwrap();
        doomed.join().unwrap();
        let died = Instant::now();
        // Half of every key's events come after the death: the dead node's partitions must
        // move for them to be handled.
        publish(&publisher, PER_KEY / 2, PER_KEY).await;
        // At most the calls the dead node had finished but not yet acknowledged run again
        // (bounded by its `max_in_flight`, 1000).
        checker
            .wait_for((KEYS * PER_KEY) as u64, Duration::from_secs(90), 1000)
            .await;
        tracing::info!(
            "after the kill the others finished in {:?}; duplicates {}",
            died.elapsed(),
            checker.duplicates.load(Ordering::SeqCst)
        );
        for (bus, sub, _) in [a, b] {
            drop(sub);
            bus.shutdown().await;
        }
    });
}
