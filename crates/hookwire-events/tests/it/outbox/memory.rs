//! The in-memory store.

use hookwire_events::outbox::{MemoryOutbox, OutboxStore};

hookwire_testkit::outbox_conformance!(|| async { MemoryOutbox::new() });

#[tokio::test]
async fn a_full_memory_outbox_refuses_appends_as_not_durable() {
    let o = MemoryOutbox::with_capacity(2);
    let e = |n: u32| hookwire_core::Event::new("a", serde_json::json!(n));
    o.enqueue_many(&[e(1), e(2)]).await.unwrap();
    let err = o.enqueue(&e(3)).await.unwrap_err();
    assert!(err.is_transport(), "{err}");
    assert_eq!(o.len(), 2);
}
