//! The SQLite store, on database files in temporary directories.

use hookwire_core::Event;
use hookwire_events::outbox::{OutboxStore, SqliteOutbox};

async fn fresh() -> SqliteOutbox {
    let dir = hookwire_testkit::temp_dir("sqlite-outbox");
    SqliteOutbox::open(dir.join("app.db"))
        .await
        .expect("open sqlite")
}

hookwire_testkit::outbox_conformance!(fresh);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test]
async fn an_event_commits_and_rolls_back_with_the_business_change() {
    let o = fresh().await;
    o.transaction(|tx| -> Result<(), BoxError> {
        tx.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)", [])?;
        Ok(())
    })
    .await
    .unwrap();
    let kept = Event::new("order.created", serde_json::json!({})).with_id("kept");
    let lost = Event::new("order.created", serde_json::json!({})).with_id("lost");
    o.transaction(move |tx| -> Result<(), BoxError> {
        tx.execute("INSERT INTO orders (id) VALUES ('o-1')", [])?;
        SqliteOutbox::enqueue_in(tx, &kept)?;
        Ok(())
    })
    .await
    .unwrap();
    let failed = o
        .transaction(move |tx| -> Result<(), BoxError> {
            SqliteOutbox::enqueue_in(tx, &lost)?;
            // The business write fails (duplicate key): the event must go with it.
            tx.execute("INSERT INTO orders (id) VALUES ('o-1')", [])?;
            Ok(())
        })
        .await;
    assert!(failed.is_err());
    let rows = o
        .claim(10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let ids: Vec<String> = rows.iter().map(|r| r.event().unwrap().id).collect();
    assert_eq!(ids, ["kept"]);
}
