//! Query string decoding in hookwire-sse (`query_param`, `last_event_id`) and hookwire-ws
//! (`AuthRequest::query_param`).
//!
//! Asserts: any value encoded by a strict `application/x-www-form-urlencoded` encoder decodes
//! back to itself in both crates (first occurrence wins); on hostile query strings both decode
//! exactly as a reference `application/x-www-form-urlencoded` decoder does (a `%` not followed
//! by two hex digits stays literal, invalid UTF-8 becomes U+FFFD), in bounded output.
#![no_main]

use hookwire_fuzz::{bytes, short_string};
use hookwire_sse::http::{last_event_id, query_param as sse_param};
use hookwire_ws::AuthRequest;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["token", "last_event_id", "lastEventId", "a"];

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding with `+` as space; `strict` refuses a `%` without two hex digits, otherwise
/// it stays literal (WHATWG).
fn reference(s: &str, strict: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ if strict => return None,
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

fn encode(v: &str, upper: bool, plus: bool) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if plus => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// The WebSocket side's answer, with the query string the URI parser kept (it ends at `#`).
fn ws_param(query: &str, name: &str) -> Option<(Option<String>, String)> {
    let uri: http::Uri = format!("/ws?{query}").parse().ok()?;
    let headers = http::HeaderMap::new();
    let seen = uri.query().unwrap_or_default().to_owned();
    Some((AuthRequest::new(&uri, &headers).query_param(name), seen))
}

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let (upper, plus) = (u.arbitrary()?, u.arbitrary()?);
    let mut parts = Vec::new();
    let mut first: Vec<(&str, String)> = Vec::new();
    for _ in 0..u.int_in_range(1..=5)? {
        let name = *u.choose(&NAMES)?;
        let value = short_string(u, 24)?;
        parts.push(format!("{name}={}", encode(&value, upper, plus)));
        if !first.iter().any(|(n, _)| *n == name) {
            first.push((name, value));
        }
    }
    let query = parts.join("&");
    for name in NAMES {
        let want = first
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone());
        assert_eq!(sse_param(&query, name), want, "sse: {query}");
        let (ws, seen) = ws_param(&query, name).expect("an encoded query is a valid URI");
        assert_eq!(seen, query);
        assert_eq!(ws, want, "ws: {query}");
    }
    Ok(())
}

fn hostile(u: &mut Unstructured<'_>) -> Result<()> {
    let query = String::from_utf8_lossy(bytes(u, 120)?).into_owned();
    let name = *u.choose(&NAMES)?;
    let sse = sse_param(&query, name);
    // One behaviour for both crates (application/x-www-form-urlencoded): names and values are
    // decoded leniently (a malformed escape stays as written, invalid UTF-8 becomes U+FFFD),
    // empty pairs are skipped, and the first pair whose decoded name matches wins.
    let lossy =
        |s: &str| String::from_utf8_lossy(&reference(s, false).unwrap_or_default()).into_owned();
    let expect = |query: &str| {
        query.split('&').filter(|p| !p.is_empty()).find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (lossy(k) == name).then(|| lossy(v))
        })
    };
    assert_eq!(sse, expect(&query), "sse decoded {query:?} differently");
    if let Some(s) = &sse {
        assert!(
            s.len() <= 3 * query.len(),
            "decoded value grew past its bound"
        );
    }
    if let Some((ws, query)) = ws_param(&query, name) {
        assert_eq!(ws, expect(&query), "ws decoded {query:?} differently");
    }
    if let Some(n) = last_event_id(&http::HeaderMap::new(), Some(&query)) {
        let from = |name| sse_param(&query, name).and_then(|v| v.trim().parse::<u64>().ok());
        assert_eq!(
            from("last_event_id").or_else(|| from("lastEventId")),
            Some(n),
            "{query:?}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if u.ratio(1, 2).unwrap_or(false) {
        round_trip(&mut u)
    } else {
        hostile(&mut u)
    };
});
