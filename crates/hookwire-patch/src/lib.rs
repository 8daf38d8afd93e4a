//! Deep-merge JSON patches and deltas, plus RFC 7396 / RFC 6902 through the `json-patch` crate.
//!
//! hookwire sends *changes* to browsers instead of whole states. A change is a **patch**: a JSON
//! object merged into the previous state, where
//!
//! - objects merge recursively,
//! - `null` deletes a key,
//! - everything else (arrays, strings, numbers, booleans) replaces the old value wholesale.
//!
//! [`delta`] computes the smallest such patch between two states — including `null` for keys that
//! were removed, so that `patch(before, delta(before, after)) == after`.
//!
//! ```
//! use hookwire_patch::{delta, patch};
//! use serde_json::json;
//!
//! let before = json!({"board": {"open": 3, "done": 1}, "title": "orders"});
//! let after = json!({"board": {"open": 2, "done": 2}});
//!
//! let d = delta(&before, &after);
//! assert_eq!(d, json!({"board": {"open": 2, "done": 2}, "title": null}));
//! assert_eq!(patch(&before, &d), after);
//! ```
//!
//! # Differences from RFC 7396
//!
//! The merge is the one JavaScript live-state libraries use, which agrees with RFC 7396 JSON Merge Patch
//! ([`rfc::merge`]) everywhere except two corners, both property-tested:
//!
//! 1. An **empty nested patch on a non-object value keeps the value**: `patch({"a":1}, {"a":{}})` is
//!    `{"a":1}`; RFC 7396 gives `{"a":{}}`. (A non-empty nested patch on a non-object starts from
//!    `{}` in both.)
//! 2. A **top-level `null` patch is a no-op**; RFC 7396 replaces the whole document with `null`.
//!
//! Because `null` means "delete", a state cannot store `null` through a patch, and because of (1)
//! a state cannot turn a non-object value into an *empty* object through a patch. [`delta`]
//! documents what it does in those cases; [`is_expressible`] tells them apart up front.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Applies `patch` to a copy of `original` and returns the result; `original` is not touched.
///
/// - A `null` or empty-object patch returns `original` unchanged.
/// - A non-object patch (array, string, number, boolean) replaces the document, as in RFC 7396.
/// - An object patch merges key by key: `null` deletes, objects recurse, anything else replaces.
///
/// Untouched subtrees are cloned once; subtrees the patch replaces or deletes are never cloned.
///
/// ```
/// use hookwire_patch::patch;
/// use serde_json::json;
///
/// let state = json!({"a": {"b": 1, "c": [1, 2]}, "d": true});
/// let next = patch(&state, &json!({"a": {"b": null, "c": [3]}, "e": "new"}));
/// assert_eq!(next, json!({"a": {"c": [3]}, "d": true, "e": "new"}));
/// assert_eq!(state["a"]["b"], 1); // the input is never mutated
/// ```
pub fn patch(original: &Value, patch: &Value) -> Value {
    match patch {
        Value::Null => original.clone(),
        Value::Object(p) if p.is_empty() => original.clone(),
        Value::Object(p) => match original {
            Value::Object(o) => Value::Object(merge_new(o, p)),
            _ => Value::Object(merge_new(&Map::new(), p)),
        },
        other => other.clone(),
    }
}

/// Builds `o` patched with the non-empty object patch `p` without cloning what `p` replaces.
fn merge_new(o: &Map<String, Value>, p: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in o {
        match p.get(k) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            Some(Value::Null) => {}
            Some(pv @ Value::Object(_)) => {
                out.insert(k.clone(), nested(Some(v), pv));
            }
            Some(pv) => {
                out.insert(k.clone(), pv.clone());
            }
        }
    }
    for (k, pv) in p {
        if o.contains_key(k) || pv.is_null() {
            continue;
        }
        out.insert(k.clone(), nested(None, pv));
    }
    out
}

/// The value of one key after merging `pv` (not null) over `current`.
fn nested(current: Option<&Value>, pv: &Value) -> Value {
    match pv {
        Value::Object(p) if p.is_empty() => match current {
            // Reference corner (1): an empty nested patch keeps whatever is there.
            Some(v) if !v.is_null() => v.clone(),
            _ => Value::Object(Map::new()),
        },
        Value::Object(p) => match current {
            Some(Value::Object(o)) => Value::Object(merge_new(o, p)),
            _ => Value::Object(merge_new(&Map::new(), p)),
        },
        other => other.clone(),
    }
}

/// Applies `patch` to `target` in place, with the same rules as [`patch`].
///
/// This is the hot-path form: nothing outside the patched keys is cloned or moved, and keys that
/// already exist are looked up without allocating.
///
/// ```
/// use hookwire_patch::patch_mut;
/// use serde_json::json;
///
/// let mut state = json!({"count": 1, "tags": ["a"]});
/// patch_mut(&mut state, &json!({"count": 2, "tags": null}));
/// assert_eq!(state, json!({"count": 2}));
/// ```
pub fn patch_mut(target: &mut Value, patch: &Value) {
    match patch {
        Value::Null => {}
        Value::Object(p) if p.is_empty() => {}
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(o) = target {
                merge_in_place(o, p);
            }
        }
        other => *target = other.clone(),
    }
}

fn merge_in_place(o: &mut Map<String, Value>, p: &Map<String, Value>) {
    for (k, pv) in p {
        match pv {
            Value::Null => {
                o.remove(k);
            }
            Value::Object(inner) => {
                if let Some(current) = o.get_mut(k) {
                    if inner.is_empty() {
                        // Reference corner (1): keep the current value (a null becomes `{}`).
                        if current.is_null() {
                            *current = Value::Object(Map::new());
                        }
                        continue;
                    }
                    if !current.is_object() {
                        *current = Value::Object(Map::new());
                    }
                    if let Value::Object(co) = current {
                        merge_in_place(co, inner);
                    }
                } else {
                    o.insert(k.clone(), Value::Object(merge_new(&Map::new(), inner)));
                }
            }
            other => {
                if let Some(current) = o.get_mut(k) {
                    other.clone_into(current);
                } else {
                    o.insert(k.clone(), other.clone());
                }
            }
        }
    }
}

/// The smallest patch that turns `before` into `after`.
///
/// Keys only in `before` come out as `null` (removals; a delta that omitted them would make
/// clients keep deleted keys forever). Equal values are omitted, nested objects recurse, anything
/// else is replaced wholesale. If `after` is not an object, the patch is `after` itself (a whole-
/// document replacement); if nothing changed it is `{}`.
///
/// `patch(before, &delta(before, after)) == after` holds whenever [`is_expressible`]`(before,
/// after)`: `after` holds no `null` values, and no empty object where `before` holds a non-object.
///
/// ```
/// use hookwire_patch::{delta, patch};
/// use serde_json::json;
///
/// let a = json!({"x": 1, "y": {"z": 2, "w": 3}});
/// let b = json!({"x": 1, "y": {"z": 5}, "n": [1]});
/// assert_eq!(delta(&a, &b), json!({"y": {"z": 5, "w": null}, "n": [1]}));
/// assert_eq!(delta(&a, &a), json!({}));
/// ```
pub fn delta(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => Value::Object(delta_maps(b, a)),
        (_, Value::Object(a)) => {
            // Starting from a non-object, the patch is merged into `{}`.
            Value::Object(delta_maps(&Map::new(), a))
        }
        (b, a) if b == a => Value::Object(Map::new()),
        (_, a) => a.clone(),
    }
}

fn delta_maps(b: &Map<String, Value>, a: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, av) in a {
        match b.get(k) {
            None => {
                out.insert(k.clone(), av.clone());
            }
            Some(bv) if bv == av => {}
            Some(Value::Object(bo)) => match av {
                Value::Object(ao) => {
                    let sub = delta_maps(bo, ao);
                    // Unequal objects always differ somewhere, but stay defensive.
                    if !sub.is_empty() {
                        out.insert(k.clone(), Value::Object(sub));
                    }
                }
                other => {
                    out.insert(k.clone(), other.clone());
                }
            },
            Some(_) => {
                out.insert(k.clone(), av.clone());
            }
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.insert(k.clone(), Value::Null);
        }
    }
    out
}

/// Whether `patch(before, &delta(before, after)) == after` is guaranteed.
///
/// It is not when `after` stores a `null` (null means delete) or puts an empty object where
/// `before` holds a non-object value (an empty nested patch keeps the old value).
///
/// ```
/// use hookwire_patch::is_expressible;
/// use serde_json::json;
///
/// assert!(is_expressible(&json!({"a": 1}), &json!({"b": {"c": 2}})));
/// assert!(!is_expressible(&json!({}), &json!({"a": null})));
/// assert!(!is_expressible(&json!({"a": 1}), &json!({"a": {}})));
/// assert!(!is_expressible(&json!(5), &json!({})));
/// ```
pub fn is_expressible(before: &Value, after: &Value) -> bool {
    match (before, after) {
        // A top-level empty patch is a no-op, so nothing non-object becomes `{}`.
        (b, Value::Object(a)) if a.is_empty() => b.is_object(),
        _ => expressible_within(before, after),
    }
}

/// [`is_expressible`] below the top level, where an absent or `null` value patched with `{}`
/// does become `{}`.
fn expressible_within(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (_, Value::Null) => false,
        (Value::Object(b), Value::Object(a)) => a.iter().all(|(k, av)| match (b.get(k), av) {
            (_, Value::Null) => false,
            (Some(bv), _) => expressible_within(bv, av),
            (None, av) => expressible_within(&Value::Null, av),
        }),
        (b, Value::Object(a)) if a.is_empty() => b.is_null() || b.is_object(),
        (_, Value::Object(a)) => a.values().all(|av| expressible_within(&Value::Null, av)),
        _ => true,
    }
}

/// Patches a typed state: serializes `original`, applies `patch`, deserializes the result.
///
/// Fails only when the patched JSON no longer fits `T` (for example a patch that sets a number
/// field to a string), so a bad patch can never corrupt a typed state.
///
/// ```
/// use hookwire_patch::patch_typed;
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Board { open: u32, done: u32 }
///
/// let b = patch_typed(&Board { open: 3, done: 1 }, &json!({"done": 2})).unwrap();
/// assert_eq!(b, Board { open: 3, done: 2 });
/// assert!(patch_typed(&b, &json!({"done": "many"})).is_err());
/// ```
pub fn patch_typed<T>(original: &T, patch: &Value) -> Result<T, serde_json::Error>
where
    T: Serialize + DeserializeOwned,
{
    let mut v = serde_json::to_value(original)?;
    patch_mut(&mut v, patch);
    serde_json::from_value(v)
}

/// The [`delta`] between two typed states.
///
/// ```
/// use hookwire_patch::delta_typed;
/// use serde::Serialize;
/// use serde_json::json;
///
/// #[derive(Serialize)]
/// struct Board { open: u32, done: u32 }
///
/// let d = delta_typed(&Board { open: 3, done: 1 }, &Board { open: 2, done: 1 }).unwrap();
/// assert_eq!(d, json!({"open": 2}));
/// ```
pub fn delta_typed<T: Serialize>(before: &T, after: &T) -> Result<Value, serde_json::Error> {
    Ok(delta(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    ))
}

/// The standards, for users who need them: RFC 7396 JSON Merge Patch and RFC 6902 JSON Patch,
/// implemented by the `json-patch` crate.
///
/// ```
/// use hookwire_patch::rfc;
/// use serde_json::json;
///
/// let mut doc = json!({"a": 1});
/// rfc::merge(&mut doc, &json!({"a": {}}));
/// assert_eq!(doc, json!({"a": {}})); // RFC 7396 corner: hookwire's merge would keep 1
///
/// let ops: rfc::Patch = serde_json::from_value(json!([
///     {"op": "add", "path": "/b", "value": [1]},
///     {"op": "test", "path": "/a", "value": {}}
/// ])).unwrap();
/// rfc::apply(&mut doc, &ops).unwrap();
/// assert_eq!(doc, json!({"a": {}, "b": [1]}));
/// ```
pub mod rfc {
    pub use json_patch::{Patch, PatchError, PatchOperation};
    use serde_json::Value;

    /// Applies an RFC 7396 JSON Merge Patch to `doc` in place.
    pub fn merge(doc: &mut Value, patch: &Value) {
        json_patch::merge(doc, patch);
    }

    /// Applies an RFC 6902 JSON Patch to `doc` atomically: on error `doc` is left unchanged.
    pub fn apply(doc: &mut Value, patch: &Patch) -> Result<(), PatchError> {
        json_patch::patch(doc, patch)
    }
}
