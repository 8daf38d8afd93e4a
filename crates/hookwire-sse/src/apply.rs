//! [`apply_patch_message`]: the client-side rules for version-keyed patch messages, with the
//! fixes hookwire adopts (reference §3.5 and Appendix B).

use std::fmt;

use serde_json::{Map, Value};

/// Why a message was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyError {
    /// Nothing new in the message: keep the current state (a no-op).
    Stale,
    /// The client missed something or was told to refetch: discard the state and fetch a
    /// snapshot.
    Behind,
}

impl ApplyError {
    /// `"stale"` or `"behind"`, as the browser client names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Behind => "behind",
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ApplyError {}

/// The version of a state (`_v`), if it has a non-negative integer one.
pub fn state_version(state: &Value) -> Option<u64> {
    state.get("_v").and_then(Value::as_u64)
}

/// Parses a version key: ASCII decimal digits only, at most 20 of them, fitting in `u64`.
fn version_key(k: &str) -> Option<u64> {
    if k.is_empty() || k.len() > 20 || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

fn flag(msg: &Map<String, Value>, key: &str) -> bool {
    msg.get(key).and_then(Value::as_bool) == Some(true)
}

/// Applies a patch message to the client's cached state.
///
/// Rules (version-keyed patches, documented in `docs/hookwire-sse.md`):
/// - `{"_resync": true}` → [`ApplyError::Behind`]; a message that is not a JSON object, or
///   whose patches are neither objects nor `null`, → `Behind` (refetching is always safe).
/// - Keys that are not decimal versions are ignored; no version keys → `Stale` when a baseline
///   exists, else `Behind`.
/// - Overlay frames (`_overlay: true`, version-neutral): no baseline → `Behind`; the version
///   equals the baseline's `_v` → merged keeping `_v`; newer → `Behind`; older → `Stale`.
/// - Ordinary frames: an absent baseline has watermark −1, so a genesis `{"0": …}` applies onto
///   `{}`; `Stale` when a baseline exists and every version is ≤ its `_v`; versions already
///   applied are skipped; the first needed version must be `_v + 1` and **every** needed
///   version must follow the previous one (a gap anywhere → `Behind`); `_v` ends at the
///   highest key.
///
/// The input is never mutated; the result is a new state.
///
/// ```
/// use hookwire_sse::{apply_patch_message, ApplyError};
/// use serde_json::json;
/// let s = apply_patch_message(&json!({"0": {"n": 1}}), None).unwrap();
/// assert_eq!(s, json!({"n": 1, "_v": 0}));
/// let s = apply_patch_message(&json!({"1": {"n": 2}, "2": {"m": 3}}), Some(&s)).unwrap();
/// assert_eq!(s, json!({"n": 2, "m": 3, "_v": 2}));
/// assert_eq!(apply_patch_message(&json!({"2": {"n": 9}}), Some(&s)), Err(ApplyError::Stale));
/// assert_eq!(apply_patch_message(&json!({"4": {"n": 9}}), Some(&s)), Err(ApplyError::Behind));
/// assert_eq!(apply_patch_message(&json!({"_resync": true}), Some(&s)), Err(ApplyError::Behind));
/// let s = apply_patch_message(&json!({"2": {"who": ["ann"]}, "_overlay": true}), Some(&s)).unwrap();
/// assert_eq!(s, json!({"n": 2, "m": 3, "who": ["ann"], "_v": 2}));
/// ```
pub fn apply_patch_message(msg: &Value, cached: Option<&Value>) -> Result<Value, ApplyError> {
    let Some(msg) = msg.as_object() else {
        return Err(ApplyError::Behind);
    };
    if flag(msg, "_resync") {
        return Err(ApplyError::Behind);
    }
    let mut versions: Vec<(u64, &Value)> = msg
        .iter()
        .filter_map(|(k, v)| version_key(k).map(|n| (n, v)))
        .collect();
    if versions.is_empty() {
        return Err(if cached.is_some() {
            ApplyError::Stale
        } else {
            ApplyError::Behind
        });
    }
    if versions
        .iter()
        .any(|(_, p)| !(p.is_object() || p.is_null()))
    {
        return Err(ApplyError::Behind);
    }
    versions.sort_unstable_by_key(|(n, _)| *n);
    let max_v = versions[versions.len() - 1].0;
    let cached_v = cached.and_then(state_version);

    if flag(msg, "_overlay") {
        let (Some(base), Some(cv)) = (cached, cached_v) else {
            return Err(ApplyError::Behind);
        };
        return match max_v.cmp(&cv) {
            std::cmp::Ordering::Less => Err(ApplyError::Stale),
            std::cmp::Ordering::Greater => Err(ApplyError::Behind),
            std::cmp::Ordering::Equal => {
                let mut state = base.clone();
                for (_, p) in &versions {
                    hookwire_patch::patch_mut(&mut state, p);
                }
                set_version(&mut state, cv);
                Ok(state)
            }
        };
    }

    // Watermark: the baseline's version, or −1 when there is none (so genesis `0` applies).
    let watermark: i128 = cached_v.map_or(-1, i128::from);
    if cached.is_some() && i128::from(max_v) <= watermark {
        return Err(ApplyError::Stale);
    }
    let mut expected = watermark + 1;
    let mut state = cached.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    if !state.is_object() {
        return Err(ApplyError::Behind);
    }
    for (v, p) in versions {
        if i128::from(v) < expected {
            continue; // already applied
        }
        if i128::from(v) != expected {
            return Err(ApplyError::Behind);
        }
        hookwire_patch::patch_mut(&mut state, p);
        set_version(&mut state, v);
        expected += 1;
    }
    Ok(state)
}

fn set_version(state: &mut Value, v: u64) {
    if let Some(o) = state.as_object_mut() {
        o.insert("_v".to_owned(), Value::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(msg: Value, cached: Option<Value>) -> Value {
        apply_patch_message(&msg, cached.as_ref()).expect("applies")
    }
    fn err(msg: Value, cached: Option<Value>) -> ApplyError {
        apply_patch_message(&msg, cached.as_ref()).expect_err("rejected")
    }

    // Reference §3.5 cases, with the Appendix B fixes where 1.1 was defective.
    #[test]
    fn next_version_applies_and_sets_v() {
        assert_eq!(
            ok(
                json!({"6": {"a": 2}}),
                Some(json!({"_v": 5, "a": 1, "b": 1}))
            ),
            json!({"_v": 6, "a": 2, "b": 1})
        );
    }

    #[test]
    fn multi_key_message_folds_in_numeric_order() {
        // "10" sorts before "9" as a string; numeric order must win.
        assert_eq!(
            ok(
                json!({"10": {"a": 10}, "9": {"a": 9, "b": 9}}),
                Some(json!({"_v": 8}))
            ),
            json!({"_v": 10, "a": 10, "b": 9})
        );
    }

    #[test]
    fn partially_overlapping_message_skips_applied_versions() {
        assert_eq!(
            ok(
                json!({"5": {"a": "old"}, "6": {"b": 6}}),
                Some(json!({"_v": 5, "a": 1}))
            ),
            json!({"_v": 6, "a": 1, "b": 6})
        );
    }

    #[test]
    fn stale_and_behind() {
        assert_eq!(
            err(json!({"5": {"a": 1}}), Some(json!({"_v": 5}))),
            ApplyError::Stale
        );
        assert_eq!(
            err(json!({"3": {}}), Some(json!({"_v": 5}))),
            ApplyError::Stale
        );
        assert_eq!(
            err(json!({"7": {}}), Some(json!({"_v": 5}))),
            ApplyError::Behind
        );
        assert_eq!(err(json!({}), Some(json!({"_v": 5}))), ApplyError::Stale);
        assert_eq!(err(json!({}), None), ApplyError::Behind);
    }

    #[test]
    fn genesis_applies_without_a_baseline_fix() {
        // 1.1 said stale here (cachedV defaulted to 0); fixed: watermark −1.
        assert_eq!(ok(json!({"0": {"a": 1}}), None), json!({"_v": 0, "a": 1}));
        assert_eq!(
            ok(json!({"0": {"a": 1}, "1": {"b": 2}}), None),
            json!({"_v": 1, "a": 1, "b": 2})
        );
        assert_eq!(err(json!({"1": {"a": 1}}), None), ApplyError::Behind);
    }

    #[test]
    fn gap_inside_a_message_is_behind_fix() {
        // 1.1 applied keys 2 and 4 on cached 1 and ended at 4; hookwire refuses.
        assert_eq!(
            err(json!({"2": {}, "4": {}}), Some(json!({"_v": 1}))),
            ApplyError::Behind
        );
    }

    #[test]
    fn overlays_merge_at_the_same_version_fix() {
        let base = json!({"_v": 3, "a": 1});
        assert_eq!(
            ok(
                json!({"3": {"who": ["x"]}, "_overlay": true}),
                Some(base.clone())
            ),
            json!({"_v": 3, "a": 1, "who": ["x"]})
        );
        assert_eq!(
            err(json!({"4": {}, "_overlay": true}), Some(base.clone())),
            ApplyError::Behind
        );
        assert_eq!(
            err(json!({"2": {}, "_overlay": true}), Some(base)),
            ApplyError::Stale
        );
        assert_eq!(
            err(json!({"3": {}, "_overlay": true}), None),
            ApplyError::Behind
        );
    }

    #[test]
    fn resync_and_malformed_messages_are_behind() {
        let base = Some(json!({"_v": 1}));
        assert_eq!(
            err(json!({"_resync": true}), base.clone()),
            ApplyError::Behind
        );
        assert_eq!(err(json!([1, 2]), base.clone()), ApplyError::Behind);
        assert_eq!(err(json!({"2": 5}), base.clone()), ApplyError::Behind);
        // Non-integer keys are ignored.
        assert_eq!(
            err(json!({"x": {}, "-1": {}, "1.5": {}}), base.clone()),
            ApplyError::Stale
        );
        assert_eq!(
            ok(json!({"x": {"a": 1}, "2": {"b": 1}}), base),
            json!({"_v": 2, "b": 1})
        );
    }

    #[test]
    fn null_deletes_and_input_is_not_mutated() {
        let base = json!({"_v": 1, "a": {"b": 1, "c": 2}});
        let before = base.clone();
        let out = ok(json!({"2": {"a": {"b": null}}}), Some(base.clone()));
        assert_eq!(out, json!({"_v": 2, "a": {"c": 2}}));
        assert_eq!(base, before);
    }
}
