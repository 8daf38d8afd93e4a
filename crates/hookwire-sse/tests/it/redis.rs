//! Two nodes, one real redis-server: a publish on either node reaches subscribers of both, in
//! version order; a stale publish is refused everywhere; a restarted node loads the state.

use std::time::Duration;

use futures_util::StreamExt;
use hookwire_sse::redis::SseRedisFanOut;
use hookwire_sse::{BroadcastChannel, Frame, FrameKind, StreamSubscription, apply_patch_message};
use hookwire_testkit::RedisServer;
use serde_json::{Value, json};

async fn next(sub: &mut StreamSubscription) -> Frame {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("frame in time")
        .expect("open")
}

async fn node(url: &str) -> (BroadcastChannel, SseRedisFanOut) {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let fan = SseRedisFanOut::start(ch.clone(), redis::Client::open(url).unwrap(), "hw:test")
        .await
        .unwrap();
    (ch, fan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_stream_in_version_order() {
    let redis = RedisServer::start().expect("redis-server");
    let (ch_a, a) = node(&redis.url()).await;
    let (ch_b, b) = node(&redis.url()).await;
    assert_ne!(a.node_id(), b.node_id());

    a.publish("board", json!({"_v": 0, "n": 0}), vec![])
        .await
        .unwrap();
    let mut sub_b = {
        // Wait for node B to have the genesis state, then subscribe there.
        for _ in 0..100 {
            if ch_b.version("board") == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ch_b.subscribe("board")
    };
    let mut sub_a = ch_a.subscribe("board");
    let mut client_a: Value = serde_json::from_slice(next(&mut sub_a).await.json()).unwrap();
    let mut client_b: Value = serde_json::from_slice(next(&mut sub_b).await.json()).unwrap();

    // Alternate the publishing node; every subscriber sees every version in order.
    for v in 1..=20u64 {
        let fan = if v % 2 == 0 { &a } else { &b };
        fan.publish("board", json!({"_v": v, "n": v}), vec![json!({"n": v})])
            .await
            .unwrap();
    }
    for (sub, client) in [(&mut sub_a, &mut client_a), (&mut sub_b, &mut client_b)] {
        for v in 1..=20u64 {
            let f = next(sub).await;
            assert_eq!((f.kind(), f.version()), (FrameKind::Patch, Some(v)));
            let msg: Value = serde_json::from_slice(f.json()).unwrap();
            *client = apply_patch_message(&msg, Some(client)).unwrap();
        }
        assert_eq!(*client, json!({"_v": 20, "n": 20}));
    }

    // A node lagging behind Redis cannot publish an older version anywhere.
    match b
        .publish("board", json!({"_v": 20, "n": -1}), vec![json!({"n": -1})])
        .await
    {
        Err(e) if e.is_not_newer() && e.versions() == Some((20, 20)) => {}
        other => panic!("{other:?}"),
    }
    // Overlays reach the other node too.
    a.overlay("board", json!({"online": ["ann"]}))
        .await
        .unwrap();
    let f = next(&mut sub_b).await;
    assert_eq!(f.kind(), FrameKind::Overlay);
    assert_eq!(ch_b.state("board").unwrap()["online"], json!(["ann"]));

    // A fresh node loads the stored state before serving.
    let (ch_c, c) = node(&redis.url()).await;
    assert!(c.load("board").await.unwrap());
    assert_eq!(ch_c.version("board"), Some(20));
    assert!(!c.load("nothing").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_an_error_not_a_silent_local_publish() {
    let mut redis = RedisServer::start().expect("redis-server");
    let (ch, a) = node(&redis.url()).await;
    redis.kill();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        a.publish("s", json!({"_v": 1}), vec![]),
    )
    .await;
    assert!(
        matches!(&r, Ok(Err(e)) if e.is_redis()) || r.is_err(),
        "{r:?}"
    );
    assert_eq!(ch.version("s"), None, "nothing published locally");
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
