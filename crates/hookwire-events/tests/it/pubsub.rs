//! Redis pub/sub: ephemeral broadcast on a real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hookwire_core::Event;
use hookwire_events::{Bus, ErrorKind, Group, HandlerError, RedisPubSub};
use serde_json::json;

use crate::support::{eventually, redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_broadcasts_to_every_node_and_refuses_groups() {
    let mut server = redis();
    let mut nodes = Vec::new();
    let mut counts = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..2 {
        let bus = Bus::builder(RedisPubSub::connect(&server.url()).await.unwrap())
            .build()
            .unwrap();
        let n = Arc::new(AtomicU32::new(0));
        let c = n.clone();
        subs.push(
            bus.broadcast("order.*", move |_e: Event| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), HandlerError>(()) }
            })
            .await
            .unwrap(),
        );
        let err = bus
            .subscribe(Group::at_end("g"), "*", |_e: Event| async {
                Ok::<(), HandlerError>(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        counts.push(n);
        nodes.push(bus);
    }
    for i in 0..100 {
        nodes[0]
            .publish(Event::new("order.created", json!(i)))
            .await
            .unwrap();
    }
    nodes[1]
        .publish(Event::new("user.created", json!(0)))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            counts.iter().all(|c| c.load(Ordering::SeqCst) == 100)
        })
        .await
    );
    server.kill();
    assert!(
        nodes[0]
            .publish(Event::new("order.created", json!(0)))
            .await
            .unwrap_err()
            .is_transport()
    );
}
