//! Presence across two nodes sharing one real redis-server (feature `redis`).

use std::time::Duration;

use futures_util::StreamExt;
use hookwire_sse::{BroadcastChannel, Frame, StreamSubscription};
use hookwire_testkit::RedisServer;
use serde_json::{Value, json};

async fn next(sub: &mut StreamSubscription) -> Frame {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("frame in time")
        .expect("open")
}

/// Presence shared through Redis leases: each node sees the other's users; when one node stops
/// renewing (a crash: its `SharedPresence` is dropped without leaving), the other's roster drops
/// that node's users within the lease time, and its subscribers get the new roster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_users_leave_the_shared_roster_within_the_ttl() {
    use std::sync::Arc;
    use std::time::Instant;

    use hookwire_sse::PresenceTracker;
    use hookwire_sse::redis::SharedPresence;

    let redis = RedisServer::start().expect("redis-server");
    let ttl = Duration::from_millis(600);
    let mut nodes = Vec::new();
    for who in ["ann", "bob"] {
        let ch: BroadcastChannel = BroadcastChannel::new();
        ch.publish("board", json!({"_v": 1}), vec![]).unwrap();
        let tracker = Arc::new(PresenceTracker::new());
        tracker.add("board", who);
        let shared = SharedPresence::start_with_ttl(
            ch.clone(),
            Arc::clone(&tracker),
            "online",
            redis::Client::open(redis.url()).unwrap(),
            "hw:presence-test",
            ttl,
        )
        .await
        .unwrap();
        nodes.push((ch, tracker, shared));
    }
    let roster = |t: &PresenceTracker| {
        let mut v = t.online("board");
        v.sort();
        v
    };
    let wait_for = |t: Arc<PresenceTracker>, want: Vec<&'static str>| async move {
        let until = Instant::now() + Duration::from_secs(5);
        while roster(&t) != want {
            assert!(
                Instant::now() < until,
                "roster {:?}, want {want:?}",
                roster(&t)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for(Arc::clone(&nodes[0].1), vec!["ann", "bob"]).await;
    wait_for(Arc::clone(&nodes[1].1), vec!["ann", "bob"]).await;
    assert_eq!(
        nodes[0].1.online_here("board"),
        ["ann"],
        "bob is remote on node A"
    );

    // Node A's subscribers follow the roster as overlays.
    let mut sub_a = nodes[0].0.subscribe("board");
    let (ch_b, tracker_b, shared_b) = nodes.pop().unwrap();
    let killed = Instant::now();
    // Node B crashes: no leave, its renewals just stop.
    drop(shared_b);
    drop((ch_b, tracker_b));
    wait_for(Arc::clone(&nodes[0].1), vec!["ann"]).await;
    let took = killed.elapsed();
    assert!(
        took >= ttl / 3,
        "bob left after {took:?}: too soon for an expired lease"
    );
    assert!(
        took < ttl * 3,
        "bob left after {took:?}, the lease is {ttl:?}"
    );
    // The overlay with the new roster reached node A's subscriber.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let f = next(&mut sub_a).await;
        let text = String::from_utf8_lossy(f.json()).into_owned();
        if text.contains(r#""online":["ann"]"#) {
            break;
        }
        assert!(Instant::now() < until, "no roster overlay without bob");
    }

    // A graceful leave removes the leases at once.
    let (_ch_a, tracker_a, shared_a) = nodes.pop().unwrap();
    let other = Arc::new(PresenceTracker::new());
    let watcher = SharedPresence::start_with_ttl(
        BroadcastChannel::<Value>::new(),
        Arc::clone(&other),
        "online",
        redis::Client::open(redis.url()).unwrap(),
        "hw:presence-test",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    watcher.watch("board");
    wait_for(Arc::clone(&other), vec!["ann"]).await;
    shared_a.leave().await.unwrap();
    drop(tracker_a);
    watcher.nudge();
    wait_for(other, vec![]).await;
}
