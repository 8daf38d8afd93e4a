//! `cargo xtask bench bus`: the Redis Streams bus end to end (publish → no-op handler → ack) on
//! one `redis-server` without persistence, 256-byte events, interleaved rounds against a Node +
//! ioredis consumer running the common reference algorithm (`reference.mjs`: `COUNT 10`, one
//! `XACK` per entry, `XPENDING … 10` claims) on the same server.
//!
//! Figures per round: events/s of both sides with one group; Redis CPU per event (`INFO cpu`
//! user + sys delta ÷ N) of both; hookwire's Redis CPU per event with a second group and with a
//! broadcast reader beside the group (the difference is the cost of one more reader); the
//! publish → handler latency at a paced 10 000 events/s (p50, p99, p99.9); the time to recover
//! 10 000 entries left pending by a killed consumer.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Event;
use hookwire_events::{Bus, Group, HandlerError, RedisStreams};
use hookwire_testkit::RedisServer;
use hookwire_testkit::bench::{
    Report, median, npm_peer, pin, quick_requested, redis_command_calls, redis_cpu_seconds,
    redis_pid,
};
use serde_json::json;

/// Bytes of one event's JSON, both sides.
const EVENT_BYTES: usize = 256;
/// Events per `publish_many` (hookwire) and per awaited batch of XADDs (the peer).
const PUBLISH_BATCH: usize = 100;
/// The paced rate of the latency figure.
const RATE: u64 = 10_000;
/// Entries a killed consumer leaves pending in the recovery figure.
const ORPHANS: usize = 10_000;
/// `claim_idle` of the recovery figure.
const CLAIM_IDLE: Duration = Duration::from_secs(2);
/// No single measurement may take longer than this.
const LIMIT: Duration = Duration::from_secs(300);

/// The padding that makes an event `EVENT_BYTES` long.
fn pad() -> String {
    let len = event(0, "", 0).to_json_bytes().len();
    "x".repeat(EVENT_BYTES.saturating_sub(len))
}

fn event(i: usize, pad: &str, t: u64) -> Event {
    Event::new(
        "bench.event",
        json!({ "i": format!("{i:08}"), "t": t, "pad": pad }),
    )
}

/// Counts handler calls of every subscription; wakes the round when each has seen `n`.
#[derive(Clone)]
struct Finish {
    n: usize,
    left: Arc<AtomicUsize>,
    all: Arc<tokio::sync::Notify>,
}

impl Finish {
    fn new(n: usize, subscriptions: usize) -> Self {
        Self {
            n,
            left: Arc::new(AtomicUsize::new(subscriptions)),
            all: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn handler(
        &self,
    ) -> impl Fn(Event) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
    {
        let seen = Arc::new(AtomicUsize::new(0));
        let me = self.clone();
        move |_| {
            if seen.fetch_add(1, Ordering::Relaxed) + 1 == me.n
                && me.left.fetch_sub(1, Ordering::AcqRel) == 1
            {
                me.all.notify_one();
            }
            std::future::ready(Ok(()))
        }
    }

    async fn wait(&self, what: &str) {
        tokio::time::timeout(LIMIT, self.all.notified())
            .await
            .unwrap_or_else(|_| panic!("{what}: not every event was handled within {LIMIT:?}"));
    }
}

async fn bus(server: &RedisServer, stream: &str, node: &str, claim_idle: Duration) -> Bus {
    let t = RedisStreams::connect(&server.url())
        .await
        .expect("connect")
        .stream(stream)
        .node_id(node)
        .claim_idle(claim_idle);
    Bus::builder(t).build().expect("bus")
}

/// Publishes `n` events in awaited batches.
async fn produce(bus: &Bus, n: usize, pad: &str) {
    for start in (0..n).step_by(PUBLISH_BATCH) {
        let batch = (start..(start + PUBLISH_BATCH).min(n))
            .map(|i| event(i, pad, 0))
            .collect();
        bus.publish_many(batch).await.expect("publish");
    }
}

/// One hookwire round: `groups` group subscriptions (and a broadcast reader when asked) while
/// `n` events are published; returns (seconds until every subscription handled all, Redis CPU
/// seconds, Redis commands).
async fn hookwire_round(
    server: &RedisServer,
    n: usize,
    groups: usize,
    broadcast: bool,
    pad: &str,
) -> (f64, f64, f64) {
    let stream = format!("bench-{}", hookwire_core::id::random_u64() % 1_000_000);
    let bus = bus(server, &stream, "bench-1", Duration::from_secs(30)).await;
    let finish = Finish::new(n, groups + usize::from(broadcast));
    let mut subs = Vec::new();
    for g in 0..groups {
        subs.push(
            bus.subscribe(Group::at_end(format!("g{g}")), "*", finish.handler())
                .await
                .expect("subscribe"),
        );
    }
    if broadcast {
        subs.push(
            bus.broadcast("*", finish.handler())
                .await
                .expect("broadcast"),
        );
    }
    let (cpu0, calls0) = (redis_cpu_seconds(server), redis_command_calls(server));
    let t0 = Instant::now();
    produce(&bus, n, pad).await;
    finish.wait("hookwire round").await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = redis_cpu_seconds(server) - cpu0;
    let calls = redis_command_calls(server) - calls0;
    drop(subs);
    bus.shutdown().await;
    (secs, cpu, calls)
}

/// One round of the Node peer; returns (seconds, Redis CPU seconds, Redis commands).
fn reference_round(
    server: &RedisServer,
    dir: &Path,
    n: usize,
    pinned: bool,
) -> Result<(f64, f64, f64), String> {
    let (cpu0, calls0) = (redis_cpu_seconds(server), redis_command_calls(server));
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "node"]);
        c
    } else {
        Command::new("node")
    };
    let stream = format!("ref-{}", hookwire_core::id::random_u64() % 1_000_000);
    let out = cmd
        .arg("bench.mjs")
        .args([
            server.port().to_string(),
            n.to_string(),
            stream,
            "g0".to_owned(),
            EVENT_BYTES.to_string(),
        ])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "reference run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let cpu = redis_cpu_seconds(server) - cpu0;
    let calls = redis_command_calls(server) - calls0;
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    Ok((v["ms"].as_f64().unwrap_or(f64::NAN) / 1000.0, cpu, calls))
}

/// Publish → handler latencies (ms) at `RATE` events/s for `secs` seconds, after a warm-up
/// second that is not counted.
async fn latency_round(server: &RedisServer, secs: u64, pad: &str) -> Vec<f64> {
    let stream = format!("lat-{}", hookwire_core::id::random_u64() % 1_000_000);
    let bus = bus(server, &stream, "bench-1", Duration::from_secs(30)).await;
    let base = Instant::now();
    let warm = RATE as usize;
    let total = warm + (RATE * secs) as usize;
    let lat: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let finish = Finish::new(total, 1);
    let count = finish.handler();
    let l = lat.clone();
    let _sub = bus
        .subscribe(Group::at_end("lat"), "*", move |e: Event| {
            let sent = e.data["t"].as_u64().unwrap_or(0);
            let now = base.elapsed().as_nanos() as u64;
            let i: usize = e.data["i"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if i >= warm {
                l.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(now.saturating_sub(sent) as f64 / 1e6);
            }
            count(e)
        })
        .await
        .expect("subscribe");
    let start = tokio::time::Instant::now();
    let step = Duration::from_nanos(1_000_000_000 / RATE);
    for i in 0..total {
        let due = start + step * i as u32;
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let b = bus.clone();
        let e = event(i, pad, base.elapsed().as_nanos() as u64);
        tokio::spawn(async move { b.publish(e).await.expect("publish") });
    }
    finish.wait("latency round").await;
    bus.shutdown().await;
    let mut v = std::mem::take(
        &mut *lat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    v.sort_by(f64::total_cmp);
    v
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Seconds from the moment a consumer that read `ORPHANS` entries died until a new node of the
/// group has handled all of them.
async fn recovery_round(server: &RedisServer, pad: &str) -> f64 {
    let stream = format!("rec-{}", hookwire_core::id::random_u64() % 1_000_000);
    let key = format!("hw:{{{stream}}}:s");
    let client = redis::Client::open(server.url()).expect("url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut raw)
        .await
        .expect("group");
    let publisher = bus(server, &stream, "publisher", CLAIM_IDLE).await;
    // One entry per event (`publish`, 100 at a time): `publish_many` would pack them, and the
    // figure is about 10 000 pending entries.
    for start in (0..ORPHANS).step_by(PUBLISH_BATCH) {
        let mut set = tokio::task::JoinSet::new();
        for i in start..(start + PUBLISH_BATCH).min(ORPHANS) {
            let (b, e) = (publisher.clone(), event(i, pad, 0));
            set.spawn(async move { b.publish(e).await.expect("publish") });
        }
        while set.join_next().await.is_some() {}
    }
    // The doomed consumer takes every entry and dies without acknowledging any.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("doomed")
        .arg("COUNT")
        .arg(ORPHANS)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut raw)
        .await
        .expect("read");
    let (held, ..): (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&key)
        .arg("g")
        .query_async(&mut raw)
        .await
        .expect("pending");
    assert_eq!(
        held, ORPHANS,
        "the doomed consumer holds one entry per event"
    );
    let died = Instant::now();
    let survivor = bus(server, &stream, "survivor", CLAIM_IDLE).await;
    let finish = Finish::new(ORPHANS, 1);
    let _sub = survivor
        .subscribe(Group::at_end("g"), "*", finish.handler())
        .await
        .expect("subscribe");
    finish.wait("recovery round").await;
    let secs = died.elapsed().as_secs_f64();
    survivor.shutdown().await;
    publisher.shutdown().await;
    secs
}

fn main() {
    let quick = quick_requested();
    let n: usize = if quick { 5_000 } else { 200_000 };
    let rounds = if quick { 1 } else { 5 };
    let latency_secs = if quick { 1 } else { 5 };
    let mut report = Report::new("bus", quick);
    report.rounds(rounds);
    report.extra("n", json!(n));
    report.extra("event_bytes", json!(EVENT_BYTES));
    report.extra("publish_batch", json!(PUBLISH_BATCH));
    report.extra("latency_rate_per_s", json!(RATE));
    report.extra("latency_seconds", json!(latency_secs));
    report.extra("orphans", json!(ORPHANS));
    report.extra("claim_idle_s", json!(CLAIM_IDLE.as_secs_f64()));
    report.extra(
        "reference",
        json!("Node + ioredis: XADD per event (batches of 100 awaited), XPENDING - + 10 / XREADGROUP COUNT 10 BLOCK 5000 loop, one XACK per entry, MAXLEN off"),
    );

    let server = RedisServer::start().expect("redis-server");
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pinned = nproc >= 2
        && redis_pid(&server).is_some_and(|p| pin(p, "0"))
        && pin(std::process::id(), "1");
    report.extra("machine_nproc", json!(nproc));
    report.extra(
        "layout",
        json!(if pinned {
            "redis-server on cpu 0; hookwire process and node on cpu 1"
        } else {
            "unpinned"
        }),
    );
    if pinned {
        report.note("`nproc` is read after pinning (this process's affinity: 1 CPU); `machine_nproc` is the machine's");
    } else {
        report.note("taskset pinning unavailable: figures from an unpinned layout");
    }
    report.note("the peer's recovery is not measured: it claims at most 10 entries per loop iteration and each iteration blocks up to 5 s on an idle stream, so 10 000 orphans take on the order of 1 000 × 5 s");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let peer = match npm_peer(
        "bus-reference",
        include_str!("reference.mjs"),
        &["ioredis@5"],
    ) {
        Ok((dir, version)) => {
            report.peer("ioredis", &version);
            Some(dir)
        }
        Err(e) => {
            report.note(format!("reference not measured: {e}"));
            None
        }
    };
    let pad = pad();
    // One warm-up of each side (script loading, JIT, connections) outside the figures.
    let warm = n.min(2_000);
    rt.block_on(hookwire_round(&server, warm, 1, false, &pad));
    if let Some(dir) = &peer
        && let Err(e) = reference_round(&server, dir, warm, pinned)
    {
        report.note(format!("reference warm-up failed: {e}"));
    }
    let nf = n as f64;
    for _ in 0..rounds {
        let _ = server.command("FLUSHALL");
        let (s, cpu, calls) = rt.block_on(hookwire_round(&server, n, 1, false, &pad));
        report.figure("hookwire_events_per_s", nf / s);
        report.figure("hookwire_redis_cpu_us_per_event", cpu * 1e6 / nf);
        report.figure("hookwire_redis_cmds_per_event", calls / nf);
        if let Some(dir) = &peer {
            let _ = server.command("FLUSHALL");
            match reference_round(&server, dir, n, pinned) {
                Ok((s, cpu, calls)) => {
                    report.figure("reference_events_per_s", nf / s);
                    report.figure("reference_redis_cpu_us_per_event", cpu * 1e6 / nf);
                    report.figure("reference_redis_cmds_per_event", calls / nf);
                }
                Err(e) => report.note(format!("reference round failed: {e}")),
            }
        }
        let _ = server.command("FLUSHALL");
        let (_, cpu2, _) = rt.block_on(hookwire_round(&server, n, 2, false, &pad));
        report.figure("hookwire_2_groups_redis_cpu_us_per_event", cpu2 * 1e6 / nf);
        let _ = server.command("FLUSHALL");
        let (_, cpub, _) = rt.block_on(hookwire_round(&server, n, 1, true, &pad));
        report.figure(
            "hookwire_group_and_broadcast_redis_cpu_us_per_event",
            cpub * 1e6 / nf,
        );
        let one = cpu * 1e6 / nf;
        report.figure("extra_group_redis_cpu_us_per_event", cpu2 * 1e6 / nf - one);
        report.figure(
            "extra_broadcast_redis_cpu_us_per_event",
            cpub * 1e6 / nf - one,
        );
        let _ = server.command("FLUSHALL");
        let lat = rt.block_on(latency_round(&server, latency_secs, &pad));
        report.figure("latency_p50_ms", quantile(&lat, 0.5));
        report.figure("latency_p99_ms", quantile(&lat, 0.99));
        report.figure("latency_p999_ms", quantile(&lat, 0.999));
        report.figure("latency_max_ms", lat.last().copied().unwrap_or(f64::NAN));
        let _ = server.command("FLUSHALL");
        let rec = rt.block_on(recovery_round(&server, &pad));
        report.figure("recovery_s", rec);
        report.figure(
            "recovery_beyond_claim_idle_s",
            rec - CLAIM_IDLE.as_secs_f64(),
        );
    }
    if !report.figures("reference_events_per_s").is_empty() {
        report.ratio_of_rounds(
            "bus_vs_reference",
            "hookwire_events_per_s",
            "reference_events_per_s",
        );
        report.ratio_of_rounds(
            "redis_cpu_vs_reference",
            "hookwire_redis_cpu_us_per_event",
            "reference_redis_cpu_us_per_event",
        );
        report.ratio_of_rounds(
            "cmds_per_event_vs_reference",
            "hookwire_redis_cmds_per_event",
            "reference_redis_cmds_per_event",
        );
    }
    let cpu = median(report.figures("hookwire_redis_cpu_us_per_event"));
    report.ratio("redis_cpu_us_per_event", cpu);
    let p99 = median(report.figures("latency_p99_ms"));
    report.ratio("p99_ms_10k", p99);
    report.write().expect("write report");
}
