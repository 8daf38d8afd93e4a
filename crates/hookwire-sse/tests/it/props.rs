//! Property tests: over random message orders and drops a client either applies correctly or
//! says Behind; it never diverges from the server's state at the version it claims.

use hookwire_sse::{
    ApplyError, BroadcastChannel, ChannelConfig, FrameKind, QueueLimits, apply_patch_message,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A random patch over a small key space, including deletions and nested objects.
fn patch_strategy() -> impl Strategy<Value = Value> {
    proptest::collection::vec((0u8..6, 0u8..4, 0i64..5), 1..4).prop_map(|ops| {
        let mut m = Map::new();
        for (k, kind, n) in ops {
            let key = format!("k{k}");
            let v = match kind {
                0 => Value::Null,
                1 => json!(n),
                2 => json!({"n": n, "tag": format!("t{n}")}),
                _ => json!([n, n + 1]),
            };
            m.insert(key, v);
        }
        Value::Object(m)
    })
}

fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("online");
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_never_diverges(
        patches in proptest::collection::vec(patch_strategy(), 1..25),
        batching in proptest::collection::vec(1usize..4, 25),
        overlays in proptest::collection::vec(any::<bool>(), 25),
        deliveries in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..10), 0..80),
    ) {
        // Server: truth[v] is the state at version v (overlay-inclusive), msgs are the frames.
        let ch: BroadcastChannel = BroadcastChannel::new();
        let mut state = json!({"_v": 0});
        ch.publish("s", state.clone(), vec![]).unwrap();
        let mut truth = vec![(0u64, state.clone())];
        let mut msgs: Vec<Value> = Vec::new();
        let mut v = 0u64;
        let mut i = 0;
        let mut round = 0;
        while i < patches.len() {
            let take = batching[round % batching.len()].min(patches.len() - i);
            let ps: Vec<Value> = patches[i..i + take].to_vec();
            for p in &ps {
                v += 1;
                hookwire_patch::patch_mut(&mut state, p);
                state["_v"] = json!(v);
                truth.push((v, state.clone()));
            }
            let f = ch.publish("s", state.clone(), ps).unwrap();
            msgs.push(serde_json::from_slice(f.json()).unwrap());
            state = (*ch.state("s").unwrap()).clone();
            if overlays[round % overlays.len()] {
                let f = ch.overlay("s", json!({"online": [format!("u{round}")]})).unwrap().unwrap();
                msgs.push(serde_json::from_slice(f.json()).unwrap());
                state = (*ch.state("s").unwrap()).clone();
                truth.push((v, state.clone()));
            }
            i += take;
            round += 1;
        }
        // Client: starts from the genesis snapshot, receives messages in a random order with
        // drops and duplicates; on Behind refetches the latest state.
        let mut client = truth[0].1.clone();
        for (idx, dup) in deliveries {
            let m = &msgs[idx.index(msgs.len())];
            for _ in 0..=(dup / 8) {
                match apply_patch_message(m, Some(&client)) {
                    Ok(next) => {
                        let cv = next["_v"].as_u64().unwrap();
                        // The versioned part must equal the server's state at that version.
                        // Overlays are version-neutral, so a dropped overlay cannot be detected
                        // from versions; over SSE nothing is dropped inside a connection and a
                        // resume resends overlays, so overlay keys are compared only in the
                        // in-order run below.
                        prop_assert!(
                            truth.iter().any(|(tv, ts)| *tv == cv && strip(ts) == strip(&next)),
                            "diverged at v{}: {}", cv, next
                        );
                        client = next;
                    }
                    Err(ApplyError::Stale) => {}
                    Err(ApplyError::Behind) => client = truth.last().unwrap().1.clone(),
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                }
            }
        }
        // In order and without drops a client always ends exactly at the server's state.
        let mut c = truth[0].1.clone();
        for m in &msgs {
            c = apply_patch_message(m, Some(&c)).unwrap();
        }
        prop_assert_eq!(&c, &*ch.state("s").unwrap());
    }

    #[test]
    fn slow_subscriber_either_converges_or_is_told_to_resync(
        patches in proptest::collection::vec(patch_strategy(), 1..40),
        reads in proptest::collection::vec(0usize..6, 40),
    ) {
        let ch: BroadcastChannel = BroadcastChannel::with_config(
            ChannelConfig::default().queue(QueueLimits { frames: 3, bytes: 1 << 20 }),
        );
        ch.publish("s", json!({"_v": 0}), vec![]).unwrap();
        let mut sub = ch.subscribe("s");
        let mut client: Option<Value> = None;
        let mut state = json!({"_v": 0});
        let apply_frames = |sub: &mut hookwire_sse::StreamSubscription, n: usize, client: &mut Option<Value>, ch: &BroadcastChannel| {
            for _ in 0..n {
                let Some(f) = sub.try_next() else { break };
                let msg: Value = serde_json::from_slice(f.json()).unwrap();
                match f.kind() {
                    FrameKind::Snapshot => *client = Some(msg),
                    _ => match apply_patch_message(&msg, client.as_ref()) {
                        Ok(s) => *client = Some(s),
                        Err(ApplyError::Stale) => {}
                        Err(_) => *client = ch.state("s").map(|s| (*s).clone()),
                    },
                }
            }
        };
        for (i, p) in patches.iter().enumerate() {
            hookwire_patch::patch_mut(&mut state, p);
            state["_v"] = json!(i as u64 + 1);
            ch.publish("s", state.clone(), vec![p.clone()]).unwrap();
            apply_frames(&mut sub, reads[i % reads.len()], &mut client, &ch);
        }
        apply_frames(&mut sub, usize::MAX, &mut client, &ch);
        prop_assert_eq!(client.as_ref(), Some(&state));
    }
}
