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
