//! The PostgreSQL store, on one real server per test process with a database per test.

use std::time::Duration;

use hookwire_core::Event;
use hookwire_events::outbox::{OutboxStore, PostgresOutbox};
use hookwire_testkit::PostgresServer;

async fn database() -> String {
    tokio::task::spawn_blocking(|| {
        PostgresServer::shared()
            .and_then(PostgresServer::create_database)
            .expect("postgres")
    })
    .await
    .unwrap()
}

async fn fresh() -> PostgresOutbox {
    let url = database().await;
    let o = PostgresOutbox::connect(&url).await.expect("connect");
    o.migrate().await.expect("migrate");
    o
}

hookwire_testkit::outbox_conformance!(fresh);

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_commits_and_rolls_back_with_the_business_change() {
    let url = database().await;
    let o = PostgresOutbox::connect(&url).await.unwrap();
    o.migrate().await.unwrap();
    o.migrate().await.expect("migrate is idempotent");
    let mut c = client(&url).await;
    c.batch_execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
        .await
        .unwrap();

    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id) VALUES ('o-1')", &[])
        .await
        .unwrap();
    let kept = Event::new("order.created", serde_json::json!({})).with_id("kept");
    PostgresOutbox::enqueue_in(&tx, &kept).await.unwrap();
    // Not visible to relays before the commit.
    assert!(
        o.claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();

    let tx = c.transaction().await.unwrap();
    let lost = Event::new("order.created", serde_json::json!({})).with_id("lost");
    PostgresOutbox::enqueue_in(&tx, &lost).await.unwrap();
    tx.rollback().await.unwrap();

    let rows = o.claim(10, Duration::from_secs(30)).await.unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.event().unwrap().id).collect();
    assert_eq!(ids, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_race_safely() {
    let url = database().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let o = PostgresOutbox::connect(&url).await.unwrap();
            o.migrate().await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("concurrent migrate");
    }
}

/// A transaction that inserted first but commits last (a smaller id committed after a larger
/// one was published) is still published: claims go by state, not by "last seen id".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_out_of_id_order_is_still_published() {
    let url = database().await;
    let outbox = std::sync::Arc::new(PostgresOutbox::connect(&url).await.unwrap());
    outbox.migrate().await.unwrap();
    let mut c = client(&url).await;
    let tx = c.transaction().await.unwrap();
    let early = Event::new("order.created", serde_json::json!({})).with_id("early-id-late-commit");
    PostgresOutbox::enqueue_in(&tx, &early).await.unwrap();
    let late = Event::new("order.created", serde_json::json!({})).with_id("late-id-early-commit");
    outbox.enqueue(&late).await.unwrap();

    let publisher = hookwire_testkit::outbox::RecordingPublisher::new();
    let relay = hookwire_events::outbox::Relay::builder()
        .poll_interval(Duration::from_millis(50))
        .spawn(outbox.clone(), publisher.clone())
        .unwrap();
    let published = |id: &str| publisher.published().iter().any(|e| e.id == id);
    wait(|| published("late-id-early-commit")).await;
    assert!(!published("early-id-late-commit"), "not committed yet");
    tx.commit().await.unwrap();
    wait(|| published("early-id-late-commit")).await;
    relay.shutdown().await;
}

async fn wait(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out");
}

/// The server drops every connection of the store (a failover, an idle-connection reaper): the
/// next operations reconnect, the listener comes back, and the relay goes on publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_survive_lost_connections() {
    let url = database().await;
    let db = url.rsplit('/').next().unwrap().to_owned();
    let outbox = std::sync::Arc::new(PostgresOutbox::connect(&url).await.unwrap());
    outbox.migrate().await.unwrap();
    let publisher = hookwire_testkit::outbox::RecordingPublisher::new();
    let relay = hookwire_events::outbox::Relay::builder()
        .poll_interval(Duration::from_millis(50))
        .spawn(outbox.clone(), publisher.clone())
        .unwrap();
    let e1 = Event::new("a", serde_json::json!(1)).with_id("before");
    outbox.enqueue(&e1).await.unwrap();
    let published = |id: &str| publisher.published().iter().any(|e| e.id == id);
    wait(|| published("before")).await;

    let killed = tokio::task::spawn_blocking(move || {
        PostgresServer::shared().unwrap().psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(killed.trim().parse::<u32>().unwrap() >= 2, "{killed}");

    // The first operation may meet the dead connection; a retry runs on a new one.
    let e2 = Event::new("a", serde_json::json!(2)).with_id("after");
    let mut ok = false;
    for _ in 0..50 {
        if outbox.enqueue(&e2).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "enqueue never succeeded after the connections were dropped"
    );
    wait(|| published("after")).await;
    relay.shutdown().await;
}
