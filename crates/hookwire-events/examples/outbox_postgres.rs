//! An order and its `order.created` event written in one PostgreSQL transaction, and a relay
//! that publishes the event after the commit.
//!
//! ```text
//! cargo run -p hookwire-events --features postgres --example outbox_postgres
//! DATABASE_URL=postgres://app@127.0.0.1/shop cargo run -p hookwire-events --features postgres --example outbox_postgres
//! ```
//!
//! Without `DATABASE_URL` it starts a throw-away server (needs the Debian package `postgresql`).
#![allow(clippy::print_stdout, reason = "an example prints what it does")]

mod common;

use std::time::Duration;

use hookwire_core::Event;
use hookwire_events::Result;
use hookwire_events::outbox::{PostgresOutbox, Publish, Relay};

/// Stands in for the bus: prints what the relay publishes.
struct Print;

impl Publish for Print {
    async fn publish_batch(&self, events: &[Event]) -> Result<()> {
        for e in events {
            println!("published {} {} {}", e.id, e.name, e.data);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = common::database()?;
    let outbox = std::sync::Arc::new(PostgresOutbox::connect(&url).await?);
    outbox.migrate().await?;
    let relay = Relay::builder().spawn(outbox.clone(), Print)?;

    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total BIGINT)")
        .await?;

    // The business change and its event commit together, or not at all.
    let tx = client.transaction().await?;
    let id = hookwire_core::id::new_id("ord");
    tx.execute(
        "INSERT INTO orders (id, total) VALUES ($1, $2)",
        &[&id, &4200_i64],
    )
    .await?;
    let event = Event::new(
        "order.created",
        serde_json::json!({"order": id, "total": 4200}),
    )
    .with_stream(format!("order-{id}"), 0);
    PostgresOutbox::enqueue_in(&tx, &event).await?;
    tx.commit().await?;
    println!("committed order {id}");

    // The commit's NOTIFY wakes the relay; give it a moment, then stop it cleanly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("{:?}", relay.stats());
    relay.shutdown().await;
    Ok(())
}
