//! Reference §3.2 broadcast behaviour (with the Appendix B fixes) through the public API.

use hookwire_sse::{
    BroadcastChannel, ChannelConfig, FrameKind, PublishError, QueueLimits, apply_patch_message,
};
use serde_json::{Value, json};

fn drain(sub: &mut hookwire_sse::StreamSubscription) -> Vec<hookwire_sse::Frame> {
    std::iter::from_fn(|| sub.try_next()).collect()
}

fn js(f: &hookwire_sse::Frame) -> Value {
    serde_json::from_slice(f.json()).unwrap()
}

#[test]
fn publish_keys_patches_up_to_the_state_version() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let f = ch
        .publish(
            "s",
            json!({"_v": 7, "a": 3}),
            vec![json!({"a": 1}), json!({"a": 2}), json!({"a": 3})],
        )
        .unwrap();
    assert_eq!(js(&f), json!({"5": {"a": 1}, "6": {"a": 2}, "7": {"a": 3}}));
    assert_eq!((f.first_version(), f.version()), (Some(5), Some(7)));
    assert_eq!(f.kind(), FrameKind::Patch);
    assert_eq!(ch.state("s").unwrap()["a"], 3);
    assert_eq!(ch.version("s"), Some(7));
}

#[test]
fn every_subscriber_gets_the_same_encoding() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let mut a = ch.subscribe("s");
    let mut b = ch.subscribe("s");
    let mut other = ch.subscribe("t");
    assert_eq!(ch.subscriber_count("s"), 2);
    let f = ch
        .publish("s", json!({"_v": 1}), vec![json!({"x": 1})])
        .unwrap();
    let (fa, fb) = (a.try_next().unwrap(), b.try_next().unwrap());
    assert!(fa.ptr_eq(&f) && fb.ptr_eq(&f));
    assert!(other.try_next().is_none());
    drop(a);
    assert_eq!(ch.subscriber_count("s"), 1);
    drop(b);
    assert_eq!(ch.subscriber_count("s"), 0);
}

#[test]
fn subscribe_sends_the_cached_snapshot_first() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let mut none = ch.subscribe("s");
    assert!(none.try_next().is_none(), "nothing cached: nothing sent");
    ch.publish("s", json!({"_v": 2, "n": 1}), vec![]).unwrap();
    // A publish without patches is a snapshot for the live subscriber too.
    assert_eq!(none.try_next().unwrap().kind(), FrameKind::Snapshot);
    let mut sub = ch.subscribe("s");
    let snap = sub.try_next().unwrap();
    assert_eq!(snap.kind(), FrameKind::Snapshot);
    assert_eq!(js(&snap), json!({"_v": 2, "n": 1}));
    assert_eq!(snap.version(), Some(2));
    // Snapshots are serialized once per version.
    assert!(ch.snapshot("s").unwrap().ptr_eq(&snap));
}

#[test]
fn older_or_equal_versions_are_refused_and_change_nothing() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("s", json!({"_v": 5}), vec![]).unwrap();
    let mut sub = ch.subscribe("s");
    sub.try_next();
    assert_eq!(
        ch.publish("s", json!({"_v": 4}), vec![json!({})])
            .unwrap_err(),
        PublishError::NotNewer { current: 5, got: 4 }
    );
    assert!(matches!(
        ch.publish("s", json!({"_v": 1}), vec![json!({}), json!({}), json!({})]),
        Err(PublishError::TooManyPatches { .. })
    ));
    assert!(sub.try_next().is_none());
    assert_eq!(ch.version("s"), Some(5));
}

#[test]
fn overlays_merge_at_the_current_version_and_survive_publishes() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    // Overlay before any state: subscribers are told to refetch (Appendix B).
    let mut sub = ch.subscribe("s");
    assert!(
        ch.overlay("s", json!({"online": ["ann"]}))
            .unwrap()
            .is_none()
    );
    assert_eq!(sub.try_next().unwrap().kind(), FrameKind::Resync);

    ch.publish("s", json!({"_v": 1, "a": 1}), vec![]).unwrap();
    let client = js(&sub.try_next().unwrap());
    let f = ch
        .overlay("s", json!({"online": ["ann"]}))
        .unwrap()
        .unwrap();
    assert_eq!(js(&f), json!({"1": {"online": ["ann"]}, "_overlay": true}));
    let client = apply_patch_message(&js(&sub.try_next().unwrap()), Some(&client)).unwrap();
    assert_eq!(client, json!({"_v": 1, "a": 1, "online": ["ann"]}));
    // The app publishes its own state (without the overlay key): the key is carried.
    ch.publish_diff("s", json!({"_v": 2, "a": 2})).unwrap();
    assert_eq!(
        *ch.state("s").unwrap(),
        json!({"_v": 2, "a": 2, "online": ["ann"]})
    );
    let client = apply_patch_message(&js(&sub.try_next().unwrap()), Some(&client)).unwrap();
    assert_eq!(client, *ch.state("s").unwrap());
}

#[test]
fn resync_and_reset_reach_every_subscriber() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("s", json!({"_v": 3}), vec![]).unwrap();
    let mut sub = ch.subscribe("s");
    sub.try_next();
    ch.resync("s");
    assert_eq!(sub.try_next().unwrap().kind(), FrameKind::Resync);
    ch.reset("s", json!({"_v": 1, "fresh": true})).unwrap();
    let f = sub.try_next().unwrap();
    assert_eq!((f.kind(), f.version()), (FrameKind::Snapshot, Some(1)));
}

#[test]
fn overflow_replaces_the_queue_with_one_resync_and_spares_the_others() {
    let cfg = ChannelConfig::default().queue(QueueLimits {
        frames: 4,
        bytes: 1 << 20,
    });
    let ch: BroadcastChannel = BroadcastChannel::with_config(cfg);
    ch.publish("s", json!({"_v": 0}), vec![]).unwrap();
    let mut slow = ch.subscribe("s");
    let mut fast = ch.subscribe("s");
    for v in 1..=10u64 {
        ch.publish("s", json!({"_v": v, "n": v}), vec![json!({"n": v})])
            .unwrap();
        // The fast one keeps up.
        assert!(!drain(&mut fast).is_empty());
    }
    let got = drain(&mut slow);
    assert_eq!(got[0].kind(), FrameKind::Resync, "{got:?}");
    assert!(got.len() <= 4);
    assert!(ch.stats().overflow_resyncs >= 1);
    // After the resync the slow client refetches and continues with later patches.
    let mut state = (*ch.state("s").unwrap()).clone();
    for f in got.iter().skip(1) {
        if let Ok(s) = apply_patch_message(&js(f), Some(&state)) {
            state = s;
        }
    }
    ch.publish("s", json!({"_v": 11, "n": 11}), vec![json!({"n": 11})])
        .unwrap();
    state = apply_patch_message(&js(&slow.try_next().unwrap()), Some(&state)).unwrap();
    assert_eq!(state, *ch.state("s").unwrap());
}

#[test]
fn resume_gets_exactly_the_missed_patches_else_a_snapshot() {
    let ch: BroadcastChannel =
        BroadcastChannel::with_config(ChannelConfig::default().history(3, 1 << 20));
    ch.publish("s", json!({"_v": 0}), vec![]).unwrap();
    for v in 1..=5u64 {
        ch.publish("s", json!({"_v": v}), vec![json!({"n": v})])
            .unwrap();
    }
    // History holds versions 3, 4, 5.
    let versions = |sub: &mut hookwire_sse::StreamSubscription| {
        drain(sub)
            .iter()
            .map(|f| (f.kind(), f.version()))
            .collect::<Vec<_>>()
    };
    let mut s = ch.subscribe_from("s", Some(3));
    assert_eq!(
        versions(&mut s),
        [(FrameKind::Patch, Some(4)), (FrameKind::Patch, Some(5))]
    );
    let mut s = ch.subscribe_from("s", Some(2));
    assert_eq!(versions(&mut s).len(), 3);
    let mut s = ch.subscribe_from("s", Some(5));
    assert!(versions(&mut s).is_empty(), "up to date");
    for stale in [Some(1), Some(6), None] {
        let mut s = ch.subscribe_from("s", stale);
        assert_eq!(
            versions(&mut s),
            [(FrameKind::Snapshot, Some(5))],
            "{stale:?}"
        );
    }
}

#[test]
fn cache_eviction_forgets_state_but_keeps_subscribers() {
    let ch: BroadcastChannel =
        BroadcastChannel::with_config(ChannelConfig::default().cache_size(1));
    let mut a = ch.subscribe("a");
    ch.publish("a", json!({"_v": 1}), vec![]).unwrap();
    ch.publish("b", json!({"_v": 1}), vec![]).unwrap();
    assert!(ch.state("a").is_none());
    assert!(ch.state("b").is_some());
    a.try_next();
    ch.publish("a", json!({"_v": 2}), vec![json!({"x": 1})])
        .unwrap();
    assert_eq!(a.try_next().unwrap().version(), Some(2));
}

#[tokio::test]
async fn subscription_is_an_async_stream_that_ends_with_the_channel() {
    use futures_util::StreamExt;
    let ch: BroadcastChannel = BroadcastChannel::new();
    let mut sub = ch.subscribe("s");
    let task = tokio::spawn(async move {
        let mut n = 0;
        while let Some(f) = sub.next().await {
            assert_eq!(f.kind(), FrameKind::Patch);
            n += 1;
        }
        n
    });
    for v in 0..3u64 {
        ch.publish("s", json!({"_v": v}), vec![json!({"v": v})])
            .unwrap();
        tokio::task::yield_now().await;
    }
    drop(ch);
    assert_eq!(task.await.unwrap(), 3);
}

#[test]
fn typed_states_publish_and_diff() {
    #[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Debug)]
    struct Board {
        _v: u64,
        cards: Vec<String>,
        #[serde(default)]
        online: Vec<String>,
    }
    impl hookwire_sse::BroadcastState for Board {
        fn version(&self) -> u64 {
            self._v
        }
    }
    let ch: BroadcastChannel<Board> = BroadcastChannel::new();
    ch.publish(
        "b",
        Board {
            _v: 0,
            cards: vec![],
            online: vec![],
        },
        vec![],
    )
    .unwrap();
    ch.overlay("b", json!({"online": ["ann"]})).unwrap();
    let f = ch
        .publish_diff(
            "b",
            Board {
                _v: 1,
                cards: vec!["x".into()],
                online: vec![],
            },
        )
        .unwrap();
    assert_eq!(js(&f), json!({"1": {"cards": ["x"]}}));
    assert_eq!(ch.state("b").unwrap().online, ["ann"]);
}

#[test]
fn a_subscriber_joining_mid_burst_gets_its_snapshot_then_only_later_patches() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("s", json!({"_v": 0}), vec![]).unwrap();
    let mut early = ch.subscribe("s");
    for v in 1..=3u64 {
        ch.publish("s", json!({"_v": v}), vec![json!({"n": v})])
            .unwrap();
    }
    let mut late = ch.subscribe("s");
    for v in 4..=5u64 {
        ch.publish("s", json!({"_v": v}), vec![json!({"n": v})])
            .unwrap();
    }
    let kv = |fs: Vec<hookwire_sse::Frame>| -> Vec<(FrameKind, Option<u64>)> {
        fs.iter().map(|f| (f.kind(), f.version())).collect()
    };
    let p = |v| (FrameKind::Patch, Some(v));
    assert_eq!(
        kv(drain(&mut late)),
        [(FrameKind::Snapshot, Some(3)), p(4), p(5)]
    );
    assert_eq!(
        kv(drain(&mut early)),
        [(FrameKind::Snapshot, Some(0)), p(1), p(2), p(3), p(4), p(5)]
    );
    assert_eq!(ch.stats().delivered, 7, "log frames handed over: 5 + 2");
}
