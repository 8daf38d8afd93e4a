//! hookwire-sse's client-side `apply_patch_message` against the server-side `delta`.
//!
//! Asserts: a client that applies the genesis message and then every version's delta (one at a
//! time, or batched with versions it already has) holds exactly the server's state and
//! version; a replayed message is `Stale`, a gap is `Behind`; and arbitrary messages on
//! arbitrary baselines never panic and only ever move `_v` to the message's highest version.
#![no_main]

use hookwire_fuzz::{json_object, json_value, short_string};
use hookwire_patch::{delta, is_expressible};
use hookwire_sse::{ApplyError, apply_patch_message, state_version};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// A server state: an object without nulls and without the reserved `_v` key.
fn state(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut m = json_object(u, 3, false)?;
    m.remove("_v");
    Ok(Value::Object(m))
}

fn with_version(s: &Value, v: u64) -> Value {
    let mut s = s.clone();
    if let Some(o) = s.as_object_mut() {
        o.insert("_v".to_owned(), Value::from(v));
    }
    s
}

fn chain(u: &mut Unstructured<'_>) -> Result<()> {
    let mut states = vec![state(u)?];
    let mut deltas = vec![delta(&json!({}), &states[0])];
    for _ in 0..u.int_in_range(1..=5)? {
        let next = state(u)?;
        let prev = &states[states.len() - 1];
        if !is_expressible(prev, &next) {
            break;
        }
        deltas.push(delta(prev, &next));
        states.push(next);
    }
    let msg = |from: usize, to: usize| {
        let mut m = Map::new();
        for (v, d) in deltas.iter().enumerate().take(to + 1).skip(from) {
            m.insert(v.to_string(), d.clone());
        }
        Value::Object(m)
    };
    let mut client =
        apply_patch_message(&msg(0, 0), None).unwrap_or_else(|e| panic!("genesis rejected: {e}"));
    assert_eq!(client, with_version(&states[0], 0));
    let mut v = 0;
    while v + 1 < states.len() {
        let to = u.int_in_range(v + 1..=states.len() - 1)?;
        // Overlap with versions the client already has is allowed and skipped.
        let from = u.int_in_range(0..=v + 1)?;
        let m = msg(from, to);
        client = apply_patch_message(&m, Some(&client))
            .unwrap_or_else(|e| panic!("in-order message {m} rejected: {e}"));
        assert_eq!(
            client,
            with_version(&states[to], to as u64),
            "client diverged after {m}"
        );
        assert_eq!(
            apply_patch_message(&m, Some(&client)),
            Err(ApplyError::Stale),
            "a replay applied"
        );
        v = to;
    }
    let gap = json!({ (v + 2).to_string(): {} });
    assert_eq!(
        apply_patch_message(&gap, Some(&client)),
        Err(ApplyError::Behind)
    );
    Ok(())
}

/// Arbitrary messages: version-like keys, flags, any patch values.
fn hostile(u: &mut Unstructured<'_>) -> Result<()> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let key = match u.int_in_range(0u8..=3)? {
            0 => u.int_in_range(0u64..=6)?.to_string(),
            1 => u.arbitrary::<u64>()?.to_string(),
            2 => ["_overlay", "_resync", "00", "-1", "1e1"][u.int_in_range(0..=4)?].to_owned(),
            _ => short_string(u, 22)?,
        };
        m.insert(key, json_value(u, 3, true)?);
    }
    let msg = Value::Object(m);
    let cached = if u.arbitrary()? {
        Some(json_value(u, 3, true)?)
    } else {
        None
    };
    let versions: Vec<u64> = msg
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| !k.is_empty() && k.len() <= 20 && k.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|k| k.parse().ok())
        .collect();
    match apply_patch_message(&msg, cached.as_ref()) {
        Ok(s) => {
            assert!(s.is_object(), "applied state is not an object: {s}");
            let overlay = msg.get("_overlay") == Some(&Value::Bool(true));
            let expect = if overlay {
                cached.as_ref().and_then(state_version)
            } else {
                versions.iter().copied().max()
            };
            assert_eq!(
                state_version(&s),
                expect,
                "wrong _v after {msg} on {cached:?}"
            );
        }
        Err(ApplyError::Stale) => assert!(cached.is_some(), "stale without a baseline"),
        Err(_) => {}
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if u.ratio(1, 2).unwrap_or(false) {
        chain(&mut u)
    } else {
        hostile(&mut u)
    };
});
