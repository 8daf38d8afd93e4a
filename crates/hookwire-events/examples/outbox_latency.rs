//! Measures commit → published latency of the PostgreSQL outbox with `NOTIFY` wake-up: producers
//! commit an order row and its event at a steady rate, relays publish into a recorder that notes
//! when each event arrives. Prints the achieved rate and p50/p90/p99/max.
//!
//! ```text
//! cargo run --release -p hookwire-events --features postgres --example outbox_latency -- [rate/s] [seconds] [relays] [producers]
//! ```
//!
//! Starts its own throw-away server (`fsync=off`), or uses `DATABASE_URL`. With `DRAIN=<n>` it
//! measures the relays' drain rate instead: `n` events appended first, then the relays started.
#![allow(
    clippy::print_stdout,
    reason = "a measurement program prints its figures"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Event;
use hookwire_events::Result;
use hookwire_events::outbox::{PostgresOutbox, Publish, Relay};

#[derive(Default)]
struct Recorder {
    arrived: Mutex<HashMap<String, Instant>>,
}

impl Publish for Recorder {
    async fn publish_batch(&self, events: &[Event]) -> Result<()> {
        let now = Instant::now();
        let mut m = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            m.entry(e.id.clone()).or_insert(now);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let relays: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let (_server, url) = common::database()?;
    let outbox = Arc::new(PostgresOutbox::connect(&url).await?);
    outbox.migrate().await?;
    let recorder = Arc::new(Recorder::default());
    if let Ok(n) = std::env::var("DRAIN").map(|v| v.parse::<usize>().unwrap_or(50_000)) {
        return drain(&outbox, recorder, n, relays).await;
    }
    let mut running = Vec::new();
    for _ in 0..relays {
        running.push(
            Relay::builder()
                .batch_size(100)
                .poll_interval(Duration::from_secs(1))
                .spawn(outbox.clone(), recorder.clone())?,
        );
    }
    let (setup, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total BIGINT)")
        .await?;

    // Producers, each with its own connection, share the rate (a transaction is four round
    // trips, so one connection alone cannot reach 1 000/s).
    let producers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let total = rate * secs;
    let committed = Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let url = url.clone();
        let committed = committed.clone();
        tasks.push(tokio::spawn(async move {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 * producers / rate.max(1)));
            for n in 0..total / producers {
                tick.tick().await;
                let id = format!("o-{p}-{n}");
                let tx = client.transaction().await?;
                tx.execute("INSERT INTO orders (id, total) VALUES ($1, 1)", &[&id])
                    .await?;
                let event = Event::new("order.created", serde_json::json!({"order": id}))
                    .with_id(id.clone())
                    .with_stream(format!("order-{id}"), 0);
                PostgresOutbox::enqueue_in(&tx, &event).await?;
                tx.commit().await?;
                committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, Instant::now());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = (total / producers * producers) as usize;
    while recorder.arrived.lock().map(|m| m.len()).unwrap_or(0) < want && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in running {
        r.shutdown().await;
    }
    let arrived = recorder.arrived.lock().unwrap_or_else(|p| p.into_inner());
    let committed = committed.lock().unwrap_or_else(|p| p.into_inner());
    let mut lat: Vec<f64> = committed
        .iter()
        .filter_map(|(id, c)| {
            arrived
                .get(id)
                .map(|a| a.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "events={} published={} achieved={:.0}/s relays={relays} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        committed.len(),
        lat.len(),
        committed.len() as f64 / elapsed.as_secs_f64(),
        pick(0.50),
        pick(0.90),
        pick(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

/// Appends `n` events with no relay running, then times `relays` relays (batch 100) publishing
/// them all.
async fn drain(
    outbox: &Arc<PostgresOutbox>,
    recorder: Arc<Recorder>,
    n: usize,
    relays: usize,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use hookwire_events::outbox::OutboxStore;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new("order.created", serde_json::json!({"n": i}))
                .with_stream(format!("o-{i}"), 0)
        })
        .collect();
    for chunk in events.chunks(1000) {
        outbox.enqueue_many(chunk).await?;
    }
    let started = Instant::now();
    let running = (0..relays)
        .map(|_| {
            Relay::builder()
                .batch_size(100)
                .spawn(outbox.clone(), recorder.clone())
        })
        .collect::<Result<Vec<_>>>()?;
    while recorder.arrived.lock().map(|m| m.len()).unwrap_or(0) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for r in running {
        r.shutdown().await;
    }
    println!(
        "drained {n} events with {relays} relays in {:.2}s: {:.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
