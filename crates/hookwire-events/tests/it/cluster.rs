//! Redis Streams on a local 3-master Redis Cluster: every key of a bus lives in one slot, so the
//! scripts, groups, dead letters and retention run unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hookwire_core::{Backoff, Event};
use hookwire_events::{Bus, Group, HandlerError, RedisStreams};
use hookwire_testkit::RedisCluster;
use serde_json::json;

use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_runs_on_redis_cluster_with_groups_broadcast_and_dead_letters() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3).expect("cluster"))
        .await
        .unwrap();
    let conn = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let t = RedisStreams::new(conn)
        .node_id("c1")
        .claim_idle(Duration::from_secs(1))
        .retention(10)
        .trim_interval(Duration::from_millis(100));
    let bus = Bus::builder(t)
        .retry(Backoff::fixed(Duration::from_millis(10)))
        .max_deliveries(2)
        .build()
        .unwrap();
    let (group, cast) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let g = group.clone();
    let _g = bus
        .subscribe(Group::at_end("g"), "*", move |e: Event| {
            let g = g.clone();
            async move {
                if e.id == "poison" {
                    return Err::<(), HandlerError>("no".into());
                }
                g.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
    let c = cast.clone();
    let _c = bus
        .broadcast("*", move |_e: Event| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), HandlerError>(()) }
        })
        .await
        .unwrap();
    let mut batch: Vec<Event> = (0..100).map(|i| Event::new("a", json!(i))).collect();
    // Keyed events go to their partitions' streams, leased per group: same slot, one node.
    batch.extend((0..20).map(|i| Event::new("a", json!(i)).with_partition_key(format!("k{i}"))));
    bus.publish_many(batch).await.unwrap();
    bus.publish(Event::new("a", json!(0)).with_id("poison"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            group.load(Ordering::SeqCst) == 120 && cast.load(Ordering::SeqCst) == 121
        })
        .await
    );
    let dl = bus.dead_letters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            dl.list(5).await.unwrap().len() == 1
        })
        .await
    );
    let d = dl.list(5).await.unwrap().remove(0);
    assert_eq!((d.event.id.as_str(), d.attempts), ("poison", 2));
    bus.shutdown().await;
}
