//! Property tests: round trips, agreement with RFC 7396 outside the documented corners, and no
//! panics on arbitrary input.

use hookwire_patch::{delta, is_expressible, patch, patch_mut, rfc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn key() -> impl Strategy<Value = String> {
    // A small alphabet so that documents and patches share keys often.
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(str::to_owned)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z]{0,4}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON, optionally including `null`s.
fn value(nulls: bool) -> impl Strategy<Value = Value> {
    let leaf = if nulls {
        prop_oneof![1 => Just(Value::Null), 4 => scalar()].boxed()
    } else {
        scalar().boxed()
    };
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object(nulls: bool) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(nulls), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Whether hookwire's merge hits one of the two documented RFC 7396 corners.
fn hits_corner(doc: &Value, p: &Value) -> bool {
    match p {
        Value::Null => true,
        Value::Object(pm) => pm.iter().any(|(k, pv)| {
            let current = doc.get(k).unwrap_or(&Value::Null);
            match pv {
                Value::Object(inner) if inner.is_empty() => {
                    !current.is_null() && !current.is_object()
                }
                Value::Object(_) => {
                    let base = if current.is_object() {
                        current
                    } else {
                        &Value::Null
                    };
                    hits_corner(base, pv)
                }
                _ => false,
            }
        }),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn delta_round_trips(a in value(true), b in value(false)) {
        prop_assume!(is_expressible(&a, &b));
        prop_assert_eq!(patch(&a, &delta(&a, &b)), b);
    }

    #[test]
    fn delta_round_trips_objects(a in object(true), b in object(false)) {
        prop_assume!(is_expressible(&a, &b));
        let d = delta(&a, &b);
        prop_assert_eq!(patch(&a, &d), b);
    }

    #[test]
    fn delta_of_self_is_empty(a in value(true)) {
        prop_assert_eq!(delta(&a, &a), json!({}));
    }

    #[test]
    fn agrees_with_rfc7396_outside_the_corners(doc in object(true), p in object(true)) {
        let ours = patch(&doc, &p);
        let mut theirs = doc.clone();
        rfc::merge(&mut theirs, &p);
        if hits_corner(&doc, &p) {
            // Corner (1): ours keeps a value the RFC turns into `{}`; they differ only there.
            prop_assert_ne!(ours, theirs);
        } else {
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn patch_and_patch_mut_agree(doc in value(true), p in value(true)) {
        let mut in_place = doc.clone();
        patch_mut(&mut in_place, &p);
        prop_assert_eq!(patch(&doc, &p), in_place);
    }

    #[test]
    fn patching_is_idempotent(doc in object(true), p in object(true)) {
        let once = patch(&doc, &p);
        prop_assert_eq!(patch(&once, &p), once);
    }

    #[test]
    fn random_bytes_never_panic(doc in prop::collection::vec(any::<u8>(), 0..256),
                                p in prop::collection::vec(any::<u8>(), 0..256)) {
        let doc: Value = serde_json::from_slice(&doc).unwrap_or(Value::Null);
        if let Ok(p) = serde_json::from_slice::<Value>(&p) {
            let mut d = doc.clone();
            patch_mut(&mut d, &p);
            let _ = delta(&doc, &d);
            let _ = is_expressible(&doc, &d);
        }
    }
}

/// A tiny xorshift so the text generator needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random JSON text, heavy on the shapes that matter to a merge: nulls, empty objects, deep
/// nesting, repeated keys.
fn json_text(rng: &mut Rng, depth: u32, out: &mut String) {
    match if depth == 0 {
        rng.below(4)
    } else {
        rng.below(7)
    } {
        0 => out.push_str("null"),
        1 => out.push_str("{}"),
        2 => out.push_str(&rng.below(1000).to_string()),
        3 => out.push_str("\"x\""),
        4 => {
            out.push('[');
            for i in 0..rng.below(3) {
                if i > 0 {
                    out.push(',');
                }
                json_text(rng, depth - 1, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(["\"a\":", "\"b\":", "\"\":", "\"a\":"][rng.below(4) as usize]);
                json_text(rng, depth - 1, out);
            }
            out.push('}');
        }
    }
}

#[test]
fn random_json_texts_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut reached = 0;
    for _ in 0..20_000 {
        let mut doc = String::new();
        let mut p = String::new();
        json_text(&mut rng, 5, &mut doc);
        json_text(&mut rng, 5, &mut p);
        // Sometimes corrupt the patch text so the parse-error path is exercised too.
        if rng.below(5) == 0 && !p.is_empty() {
            p.truncate(rng.below(p.len() as u64) as usize);
        }
        let (Ok(mut d), Ok(p)) = (
            serde_json::from_str::<Value>(&doc),
            serde_json::from_str::<Value>(&p),
        ) else {
            continue;
        };
        reached += 1;
        let copy = patch(&d, &p);
        patch_mut(&mut d, &p);
        assert_eq!(copy, d);
    }
    assert!(
        reached > 10_000,
        "the generator produced too little valid JSON: {reached}"
    );
}
