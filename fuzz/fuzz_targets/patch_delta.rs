//! hookwire-patch: `patch`, `patch_mut` and `delta` on generated JSON.
//!
//! Asserts: `patch(a, delta(a, b)) == b` whenever `is_expressible(a, b)`; `patch_mut` agrees
//! with `patch`; `delta(a, a)` is `{}`; `null` and `{}` patches are no-ops; and on patches
//! without the documented corners (empty objects, a top-level `null`) the merge is RFC 7396's.
#![no_main]

use hookwire_fuzz::json_value;
use hookwire_patch::{delta, is_expressible, patch, patch_mut, rfc};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn has_empty_object(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty() || m.values().any(has_empty_object),
        Value::Array(a) => a.iter().any(has_empty_object),
        _ => false,
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let (a_nulls, b_nulls) = (u.arbitrary()?, u.arbitrary()?);
    let a = json_value(u, 4, a_nulls)?;
    let b = json_value(u, 4, b_nulls)?;
    let p = json_value(u, 4, true)?;

    let d = delta(&a, &b);
    if is_expressible(&a, &b) {
        assert_eq!(
            patch(&a, &d),
            b,
            "patch(a, delta(a, b)) != b\na = {a}\nb = {b}\nd = {d}"
        );
    }
    assert_eq!(
        delta(&a, &a),
        Value::Object(Map::new()),
        "delta(a, a) is not empty: {a}"
    );
    assert_eq!(patch(&a, &Value::Null), a);
    assert_eq!(patch(&a, &json!({})), a);

    for q in [&d, &p] {
        let whole = patch(&a, q);
        let mut in_place = a.clone();
        patch_mut(&mut in_place, q);
        assert_eq!(in_place, whole, "patch_mut != patch\na = {a}\np = {q}");
        if !q.is_null() && !has_empty_object(q) {
            let mut merged = a.clone();
            rfc::merge(&mut merged, q);
            assert_eq!(merged, whole, "differs from RFC 7396\na = {a}\np = {q}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
