//! Helpers shared by the fuzz targets: turning libFuzzer's bytes into bounded, collision-prone
//! structured inputs (JSON values, short strings), so each target spends its time on the
//! property it asserts instead of on rejecting unparsable input.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Value};

/// Keys drawn from a tiny alphabet so that two generated objects share keys often (merges,
/// deletions and replacements all happen), plus the occasional arbitrary key.
const KEYS: [&str; 6] = ["a", "b", "c", "d", "0", "1"];

/// A JSON value of bounded depth and width. `nulls` allows `null` leaves (a state usually has
/// none; a patch uses them to delete).
pub fn json_value(u: &mut Unstructured<'_>, depth: u32, nulls: bool) -> Result<Value> {
    let pick: u8 = u.int_in_range(0..=9)?;
    Ok(match pick {
        0 if nulls => Value::Null,
        0 | 1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.int_in_range(-3i64..=3)?),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::String(short_string(u, 8)?),
        5 if depth > 0 => {
            let n = u.int_in_range(0..=3)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(json_value(u, depth - 1, true)?);
            }
            Value::Array(items)
        }
        _ if depth > 0 => Value::Object(json_object(u, depth - 1, nulls)?),
        _ => Value::from(u.int_in_range(0i64..=9)?),
    })
}

/// A JSON object of bounded depth: see [`json_value`].
pub fn json_object(
    u: &mut Unstructured<'_>,
    depth: u32,
    nulls: bool,
) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=4)?;
    let mut m = Map::new();
    for _ in 0..n {
        let key = if u.ratio(1, 8)? {
            short_string(u, 6)?
        } else {
            (*u.choose(&KEYS)?).to_owned()
        };
        m.insert(key, json_value(u, depth, nulls)?);
    }
    Ok(m)
}

/// A string of at most `max` chars, biased towards ASCII but able to hold any char.
pub fn short_string(u: &mut Unstructured<'_>, max: usize) -> Result<String> {
    let n = u.int_in_range(0..=max)?;
    let mut s = String::with_capacity(n);
    for _ in 0..n {
        let c = if u.ratio(7, 8)? {
            char::from(u.int_in_range(0u8..=127)?)
        } else {
            u.arbitrary::<char>()?
        };
        s.push(c);
    }
    Ok(s)
}

/// Up to `max` raw bytes taken from the input.
pub fn bytes<'a>(u: &mut Unstructured<'a>, max: usize) -> Result<&'a [u8]> {
    let n = u.int_in_range(0..=max)?;
    let n = n.min(u.len());
    u.bytes(n)
}
