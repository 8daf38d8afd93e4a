//! The conformance suite against a local 3-master Redis Cluster.

use std::sync::{Arc, Mutex, Weak};

use hookwire_jobs::conformance::Backend;
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisCluster;

/// One cluster shared by the cases running at the same time (each case uses its own queues);
/// it stops when the last case holding it ends.
static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());

fn cluster() -> Arc<RedisCluster> {
    let mut slot = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(RedisCluster::start(3).expect("redis cluster"));
    *slot = Arc::downgrade(&c);
    c
}

async fn backend() -> (Backend, Arc<RedisCluster>) {
    let c = tokio::task::spawn_blocking(cluster).await.expect("cluster");
    let b = RedisBackend::connect_cluster(&c.urls())
        .await
        .expect("connect");
    (Arc::new(b) as Backend, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_spread_over_the_masters_and_each_lives_in_one_slot() {
    let (b, c) = backend().await;
    for q in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"] {
        b.add(q, vec![hookwire_jobs::NewJob::new("1")])
            .await
            .expect("add");
    }
    let holding: usize = c
        .nodes()
        .iter()
        .filter(|n| n.command("DBSIZE").is_ok_and(|r| r.trim() != ":0"))
        .count();
    assert!(
        holding >= 2,
        "six queues all on one master: hash tags not spreading"
    );
}

hookwire_jobs::jobs_conformance!(backend());
