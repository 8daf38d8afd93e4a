//! `cargo xtask bench patch`: apply version-keyed patch messages to a 10k-key state, hookwire's
//! in-place merge against `json_patch::merge` (RFC 7396) on the same inputs, interleaved rounds.

use std::hint::black_box;
use std::time::Instant;

use hookwire_patch::patch_mut;
use hookwire_testkit::bench::{Report, quick_requested};
use serde_json::{Map, Value, json};

const KEYS: usize = 10_000;

/// The starting state: 10k keys, a third of them small nested objects like a board's cards.
fn state() -> Value {
    let mut m = Map::new();
    for i in 0..KEYS {
        let v = if i % 3 == 0 {
            json!({"title": format!("card {i}"), "column": "open", "votes": i % 17})
        } else {
            json!(i)
        };
        m.insert(format!("k{i:05}"), v);
    }
    Value::Object(m)
}

/// Version-keyed messages `{"<v>": patch}` as the SSE layer sends them: each patch moves a few
/// cards, bumps counters, adds one key and removes another.
fn messages(n: usize) -> Vec<Value> {
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % KEYS as u64) as usize
    };
    (0..n)
        .map(|v| {
            let mut p = Map::new();
            for _ in 0..4 {
                let k = next() / 3 * 3;
                p.insert(
                    format!("k{k:05}"),
                    json!({"column": "done", "votes": v % 11}),
                );
            }
            for _ in 0..3 {
                p.insert(format!("k{:05}", next()), json!(v));
            }
            p.insert(format!("extra{v}"), json!({"added": v}));
            p.insert(format!("extra{}", v.saturating_sub(1)), Value::Null);
            json!({ (v + 1).to_string(): p })
        })
        .collect()
}

/// Applies every message's patches in version order with `apply`; returns ops (patches) per second.
fn run(base: &Value, msgs: &[Value], apply: impl Fn(&mut Value, &Value)) -> f64 {
    let mut s = base.clone();
    let start = Instant::now();
    let mut ops = 0u64;
    for m in msgs {
        if let Value::Object(versions) = m {
            for p in versions.values() {
                apply(&mut s, p);
                ops += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(&s);
    ops as f64 / secs
}

#[allow(clippy::print_stderr, reason = "a bench reports on stderr")]
fn main() {
    let quick = quick_requested();
    let (rounds, n) = if quick { (1, 2_000) } else { (7, 50_000) };
    let base = state();
    let msgs = messages(n);

    // Both paths must produce the same state, or the comparison is meaningless.
    let mut ours = base.clone();
    let mut theirs = base.clone();
    for m in &msgs {
        for p in m.as_object().into_iter().flat_map(|o| o.values()) {
            patch_mut(&mut ours, p);
            json_patch::merge(&mut theirs, p);
        }
    }
    assert_eq!(
        ours, theirs,
        "hookwire and json_patch::merge diverged on the bench inputs"
    );

    let mut report = Report::new("patch", quick);
    report.rounds(rounds);
    report.peer("json-patch", "4");
    report.extra("state_keys", json!(KEYS));
    report.extra("patches_per_round", json!(n));
    for _ in 0..rounds {
        report.figure("hookwire_patch_ops_per_s", run(&base, &msgs, patch_mut));
        report.figure(
            "json_patch_merge_ops_per_s",
            run(&base, &msgs, json_patch::merge),
        );
    }
    report.ratio_of_rounds(
        "apply_vs_json_patch_merge",
        "hookwire_patch_ops_per_s",
        "json_patch_merge_ops_per_s",
    );
    if let Err(e) = report.write() {
        eprintln!("could not write the report: {e}");
        std::process::exit(1);
    }
}
