//! The fan-out on the event bus (feature `events`): nodes with their own Redis Streams bus and
//! connections, one real redis-server. A publish on either node reaches the subscribers of both
//! in version order; a stale publish is refused everywhere; a node that misses a version catches
//! up or gets a snapshot; streams of two tenants never mix; a restarted node loads the state.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hookwire_core::Event;
use hookwire_events::{Bus, RedisStreams};
use hookwire_sse::{
    BroadcastChannel, DEFAULT_SSE_FAN_OUT_EVENT, Frame, FrameKind, SseBusFanOut,
    StreamSubscription, apply_patch_message,
};
use hookwire_testkit::RedisServer;
use serde_json::{Value, json};

async fn next(sub: &mut StreamSubscription) -> Frame {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("frame in time")
        .expect("open")
}

async fn bus(url: &str, id: &str) -> Bus {
    let t = RedisStreams::connect(url).await.unwrap().node_id(id);
    Bus::builder(t).max_event_bytes(4096).build().unwrap()
}

async fn node(url: &str, id: &str, catch_up: Duration) -> (BroadcastChannel, SseBusFanOut) {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let fan = SseBusFanOut::builder(
        ch.clone(),
        &bus(url, id).await,
        redis::Client::open(url).unwrap(),
    )
    .prefix("hw:test")
    .catch_up(catch_up)
    .start()
    .await
    .unwrap();
    (ch, fan)
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_published_on_one_node_reaches_the_other_in_version_order() {
    let redis = RedisServer::start().expect("redis-server");
    let (ch_a, a) = node(&redis.url(), "a", Duration::from_secs(2)).await;
    let (ch_b, b) = node(&redis.url(), "b", Duration::from_secs(2)).await;
    assert_ne!(a.node_id(), b.node_id());

    a.publish("board", json!({"_v": 0, "n": 0}), vec![])
        .await
        .unwrap();
    until("genesis on node B", || ch_b.version("board") == Some(0)).await;
    let mut sub_b = ch_b.subscribe("board");
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

    // A node lagging behind the version store cannot publish an older version anywhere.
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
    let (ch_c, c) = node(&redis.url(), "c", Duration::from_secs(2)).await;
    assert!(c.load("board").await.unwrap());
    assert_eq!(ch_c.version("board"), Some(20));
    assert!(!c.load("nothing").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_an_error_not_a_silent_local_publish() {
    let mut redis = RedisServer::start().expect("redis-server");
    let (ch, a) = node(&redis.url(), "a", Duration::from_secs(2)).await;
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

/// An envelope the bus refuses (here: larger than the bus's event limit) is an error, nothing
/// is delivered, and its version is rolled back in the version store, so the node can publish
/// that version again instead of being refused as stale forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_bus_refuses_is_an_error_and_leaves_the_version_free() {
    let redis = RedisServer::start().expect("redis-server");
    let (ch, a) = node(&redis.url(), "a", Duration::from_secs(2)).await;
    a.publish("s", json!({"_v": 1, "n": 1}), vec![])
        .await
        .unwrap();
    let big = "x".repeat(8192);
    let e = a
        .publish("s", json!({"_v": 2, "n": big}), vec![json!({"n": big})])
        .await
        .unwrap_err();
    assert!(e.is_bus(), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ch.version("s"), Some(1), "nothing delivered");
    a.publish("s", json!({"_v": 2, "n": 2}), vec![json!({"n": 2})])
        .await
        .unwrap();
    assert_eq!(ch.state("s").unwrap()["n"], 2);
    let (ch_c, c) = node(&redis.url(), "c", Duration::from_secs(2)).await;
    assert!(c.load("s").await.unwrap());
    assert_eq!(
        ch_c.state("s").unwrap()["n"],
        2,
        "the stored state is the accepted one"
    );
}

/// Publishes the genesis state at version `v` on node A, waits until node B has it, and
/// returns a subscriber on each node with its snapshot read.
async fn genesis(
    a: &SseBusFanOut,
    ch_a: &BroadcastChannel,
    ch_b: &BroadcastChannel,
    v: u64,
) -> [StreamSubscription; 2] {
    a.publish("board", json!({"_v": v, "n": v}), vec![])
        .await
        .unwrap();
    until("genesis on node B", || ch_b.version("board") == Some(v)).await;
    let mut subs = [ch_a.subscribe("board"), ch_b.subscribe("board")];
    for s in &mut subs {
        assert_eq!(next(s).await.kind(), FrameKind::Snapshot);
    }
    subs
}

/// Publishes an envelope on the bus as a node that has no channel (one that published and then
/// died, or whose other envelopes were lost): the wire format of `docs/hookwire-sse.md`.
async fn inject(bus: &Bus, stream: &str, v: u64) {
    let data = json!({"o": "ghost", "s": stream, "st": {"_v": v, "n": v}, "p": [{"n": v}]});
    bus.publish(Event::new(DEFAULT_SSE_FAN_OUT_EVENT, data).with_stream(stream, v))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_misses_versions_catches_up_in_order_or_gets_a_snapshot() {
    let redis = RedisServer::start().expect("redis-server");
    let catch_up = Duration::from_millis(1500);
    let (ch_a, a) = node(&redis.url(), "a", catch_up).await;
    let (ch_b, _b) = node(&redis.url(), "b", catch_up).await;
    let ghost = bus(&redis.url(), "ghost").await;
    let mut subs = genesis(&a, &ch_a, &ch_b, 1).await;

    // Version 3 arrives before 2: held, then both go out in order once 2 arrives.
    inject(&ghost, "board", 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for s in &mut subs {
        assert!(s.try_next().is_none(), "3 must wait for 2");
    }
    inject(&ghost, "board", 2).await;
    for s in &mut subs {
        for v in [2, 3] {
            let f = next(s).await;
            assert_eq!((f.kind(), f.version()), (FrameKind::Patch, Some(v)));
        }
    }

    // Version 4 never arrives: after the catch-up time, version 5 goes out as a snapshot.
    let sent = Instant::now();
    inject(&ghost, "board", 5).await;
    for s in &mut subs {
        let f = next(s).await;
        assert_eq!((f.kind(), f.version()), (FrameKind::Snapshot, Some(5)));
        let state: Value = serde_json::from_slice(f.json()).unwrap();
        assert_eq!(state, json!({"_v": 5, "n": 5}));
    }
    assert!(sent.elapsed() >= catch_up - Duration::from_millis(50));
    // The late version 4 is older than the snapshot: dropped, nothing goes out.
    inject(&ghost, "board", 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in &mut subs {
        assert!(s.try_next().is_none());
    }
}

/// Two nodes publish at once, each deciding its own versions: the version store refuses the
/// stale ones and envelopes cross on the bus, yet every subscriber sees strictly increasing
/// versions, every patch starting right after the version before it, and both nodes end on
/// the state the store holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_publishing_at_once_deliver_in_version_order_and_agree() {
    let redis = RedisServer::start().expect("redis-server");
    let catch_up = Duration::from_millis(300);
    let (ch_a, a) = node(&redis.url(), "a", catch_up).await;
    let (ch_b, b) = node(&redis.url(), "b", catch_up).await;
    let mut subs = genesis(&a, &ch_a, &ch_b, 0).await;
    tokio::join!(publish_every_other(&a, 1), publish_every_other(&b, 2));
    until("both nodes at the stored version", || {
        ch_a.version("board") == Some(24) && ch_b.version("board") == Some(24)
    })
    .await;
    assert_eq!(ch_a.state("board"), ch_b.state("board"));
    for s in &mut subs {
        let mut last = 0;
        while let Some(f) = s.try_next() {
            let v = f.version().unwrap();
            assert!(v > last, "version {v} after {last}");
            if f.kind() == FrameKind::Patch {
                assert_eq!(
                    f.first_version(),
                    Some(last + 1),
                    "a patch from a base this node lacks"
                );
            }
            last = v;
        }
        assert_eq!(last, 24);
    }
}

/// Two tenants' streams with the same versions, published from both nodes: each subscriber
/// gets only its own stream's states, and the version store keeps them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_two_organizations_never_mix_across_nodes() {
    let redis = RedisServer::start().expect("redis-server");
    let (ch_a, a) = node(&redis.url(), "a", Duration::from_secs(2)).await;
    let (ch_b, b) = node(&redis.url(), "b", Duration::from_secs(2)).await;
    for org in ["acme", "globex"] {
        a.publish(
            &format!("{org}.board"),
            json!({"_v": 0, "org": org}),
            vec![],
        )
        .await
        .unwrap();
    }
    until("genesis on node B", || {
        ch_b.version("acme.board") == Some(0) && ch_b.version("globex.board") == Some(0)
    })
    .await;
    let mut acme_b = ch_b.subscribe("acme.board");
    let mut globex_a = ch_a.subscribe("globex.board");
    let _ = (next(&mut acme_b).await, next(&mut globex_a).await);
    for v in 1..=10u64 {
        let (acme, globex) = if v % 2 == 1 { (&a, &b) } else { (&b, &a) };
        for (fan, org) in [(acme, "acme"), (globex, "globex")] {
            let stream = format!("{org}.board");
            until("the previous version", || {
                fan.channel().version(&stream) == Some(v - 1)
            })
            .await;
            fan.publish(
                &stream,
                json!({"_v": v, "org": org, "n": v}),
                vec![json!({"n": v})],
            )
            .await
            .unwrap();
        }
    }
    for (sub, org) in [(&mut acme_b, "acme"), (&mut globex_a, "globex")] {
        for v in 1..=10u64 {
            let f = next(sub).await;
            assert_eq!(f.version(), Some(v));
        }
        assert!(sub.try_next().is_none());
        let ch = if org == "acme" { &ch_b } else { &ch_a };
        assert_eq!(ch.state(&format!("{org}.board")).unwrap()["org"], org);
    }
    assert_eq!(ch_a.state("acme.board").unwrap()["org"], "acme");
    assert_eq!(ch_b.state("globex.board").unwrap()["org"], "globex");
}

/// Publishes versions `first`, `first + 2`, … up to 24, each as a patch from the version before;
/// refusals of stale versions are expected.
async fn publish_every_other(fan: &SseBusFanOut, first: u64) {
    for v in (first..=24).step_by(2) {
        let r = fan
            .publish("board", json!({"_v": v, "n": v}), vec![json!({"n": v})])
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.is_not_newer() => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}
