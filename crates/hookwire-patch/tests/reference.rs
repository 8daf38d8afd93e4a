//! Patch and delta behaviour cases, as JavaScript live-state clients apply them, with
//! hookwire's documented fixes.

use hookwire_patch::{delta, is_expressible, patch, patch_mut, rfc};
use serde_json::{Value, json};

/// `patch` and `patch_mut` must agree on every case.
fn both(original: Value, p: Value) -> Value {
    let immutable = patch(&original, &p);
    let mut in_place = original;
    patch_mut(&mut in_place, &p);
    assert_eq!(immutable, in_place, "patch and patch_mut disagree");
    immutable
}

#[test]
fn null_patch_returns_original() {
    assert_eq!(both(json!({"a": 1}), Value::Null), json!({"a": 1}));
}

#[test]
fn empty_patch_returns_original() {
    assert_eq!(both(json!({"a": 1}), json!({})), json!({"a": 1}));
    assert_eq!(both(json!(7), json!({})), json!(7));
}

#[test]
fn scalars_set_and_replace() {
    assert_eq!(
        both(json!({"a": 1, "b": "x"}), json!({"a": 2, "c": true})),
        json!({"a": 2, "b": "x", "c": true})
    );
}

#[test]
fn null_deletes_and_absent_null_is_a_noop() {
    assert_eq!(
        both(json!({"a": 1, "b": 2}), json!({"a": null})),
        json!({"b": 2})
    );
    assert_eq!(both(json!({"b": 2}), json!({"zz": null})), json!({"b": 2}));
}

#[test]
fn objects_merge_recursively() {
    assert_eq!(
        both(
            json!({"a": {"b": 1, "c": {"d": 1, "e": 2}}, "f": 0}),
            json!({"a": {"c": {"e": 3, "g": 4}}})
        ),
        json!({"a": {"b": 1, "c": {"d": 1, "e": 3, "g": 4}}, "f": 0})
    );
}

#[test]
fn missing_original_merges_into_empty_object() {
    assert_eq!(
        both(json!({}), json!({"a": {"b": 1}})),
        json!({"a": {"b": 1}})
    );
}

#[test]
fn nested_nulls_in_a_new_subtree_are_dropped() {
    assert_eq!(
        both(json!({}), json!({"a": {"b": null, "c": 1}})),
        json!({"a": {"c": 1}})
    );
}

#[test]
fn arrays_replace_and_are_never_merged_element_wise() {
    assert_eq!(
        both(json!({"a": [1, 2, 3]}), json!({"a": [9]})),
        json!({"a": [9]})
    );
    assert_eq!(
        both(json!({"a": {"x": 1}}), json!({"a": [1]})),
        json!({"a": [1]})
    );
}

#[test]
fn object_patch_over_a_scalar_or_array_starts_from_empty() {
    // A JavaScript merge spreads a string's characters or an array's indices into the object (a JS
    // accident); over JSON values hookwire starts from `{}`, as RFC 7396 does.
    assert_eq!(
        both(json!({"a": 5}), json!({"a": {"b": 1}})),
        json!({"a": {"b": 1}})
    );
    assert_eq!(
        both(json!({"a": "ab"}), json!({"a": {"b": 1}})),
        json!({"a": {"b": 1}})
    );
    assert_eq!(
        both(json!({"a": [1]}), json!({"a": {"b": 1}})),
        json!({"a": {"b": 1}})
    );
}

#[test]
fn corner_empty_nested_patch_keeps_non_object_value() {
    assert_eq!(both(json!({"a": 1}), json!({"a": {}})), json!({"a": 1}));
    assert_eq!(both(json!({"a": [1]}), json!({"a": {}})), json!({"a": [1]}));
    // … where RFC 7396 makes it `{}`.
    let mut rfc_doc = json!({"a": 1});
    rfc::merge(&mut rfc_doc, &json!({"a": {}}));
    assert_eq!(rfc_doc, json!({"a": {}}));
    // Absent or null values do become `{}` in both.
    assert_eq!(both(json!({}), json!({"a": {}})), json!({"a": {}}));
    assert_eq!(both(json!({"a": null}), json!({"a": {}})), json!({"a": {}}));
}

#[test]
fn corner_top_level_null_is_a_noop_where_rfc_replaces() {
    assert_eq!(both(json!({"a": 1}), Value::Null), json!({"a": 1}));
    let mut rfc_doc = json!({"a": 1});
    rfc::merge(&mut rfc_doc, &Value::Null);
    assert_eq!(rfc_doc, Value::Null);
}

#[test]
fn non_object_top_level_patch_replaces_the_document() {
    assert_eq!(both(json!({"a": 1}), json!([1, 2])), json!([1, 2]));
    assert_eq!(both(json!({"a": 1}), json!("s")), json!("s"));
}

#[test]
fn wide_objects_keep_keys_named_like_prototype_members() {
    // A JavaScript > 16-key fast path drops `constructor`, `toString`, … (a bug not replicated).
    let mut wide = serde_json::Map::new();
    for i in 0..20 {
        wide.insert(format!("k{i}"), json!(i));
    }
    wide.insert("constructor".into(), json!("kept"));
    wide.insert("toString".into(), json!("kept"));
    let out = both(Value::Object(wide), json!({"k0": 100}));
    assert_eq!(out["constructor"], "kept");
    assert_eq!(out["toString"], "kept");
    assert_eq!(out["k0"], 100);
    assert_eq!(out.as_object().map(|m| m.len()), Some(22));
}

#[test]
fn inputs_are_never_mutated() {
    let original = json!({"a": {"b": 1}});
    let p = json!({"a": {"b": null}});
    let _ = patch(&original, &p);
    assert_eq!(original, json!({"a": {"b": 1}}));
    assert_eq!(p, json!({"a": {"b": null}}));
}

#[test]
fn delta_of_equal_values_is_empty() {
    let v = json!({"a": [1, 2], "b": {"c": 1}});
    assert_eq!(delta(&v, &v), json!({}));
}

#[test]
fn delta_emits_added_changed_and_nested_changes_only() {
    assert_eq!(
        delta(
            &json!({"a": 1, "b": {"c": 1, "d": 2}, "e": [1]}),
            &json!({"a": 1, "b": {"c": 1, "d": 3}, "e": [1], "f": "new"})
        ),
        json!({"b": {"d": 3}, "f": "new"})
    );
}

#[test]
fn delta_emits_null_for_removed_keys() {
    // A delta without removals leaves clients with deleted keys; hookwire emits `null`.
    let before = json!({"a": 1, "b": {"c": 1, "d": 2}});
    let after = json!({"b": {"c": 1}});
    let d = delta(&before, &after);
    assert_eq!(d, json!({"a": null, "b": {"d": null}}));
    assert_eq!(patch(&before, &d), after);
}

#[test]
fn delta_replaces_arrays_and_type_changes_wholesale() {
    assert_eq!(
        delta(&json!({"a": [1, 2]}), &json!({"a": [1, 3]})),
        json!({"a": [1, 3]})
    );
    assert_eq!(
        delta(&json!({"a": {"x": 1}}), &json!({"a": 5})),
        json!({"a": 5})
    );
    assert_eq!(
        delta(&json!({"a": 5}), &json!({"a": {"x": 1}})),
        json!({"a": {"x": 1}})
    );
}

#[test]
fn delta_to_a_non_object_is_a_replacement() {
    let d = delta(&json!({"a": 1}), &json!([1]));
    assert_eq!(d, json!([1]));
    assert_eq!(patch(&json!({"a": 1}), &d), json!([1]));
}

#[test]
fn inexpressible_targets_are_reported() {
    assert!(!is_expressible(&json!({}), &json!({"a": null})));
    assert!(!is_expressible(&json!({"a": 1}), &json!({"a": {}})));
    assert!(!is_expressible(&json!(null), &json!({})));
    assert!(is_expressible(&json!({"a": 1}), &json!({"a": {"b": {}}})));
    assert!(is_expressible(&json!({"a": {"x": 1}}), &json!({"a": {}})));
    // An object emptied out is expressed with nulls.
    let d = delta(&json!({"a": {"x": 1}}), &json!({"a": {}}));
    assert_eq!(patch(&json!({"a": {"x": 1}}), &d), json!({"a": {}}));
}
