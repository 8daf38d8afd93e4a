//! The signature header parsers, fed hostile headers under every scheme choice.
//!
//! Asserts: verification never panics and is deterministic; `(name, value)` pairs and
//! `http::HeaderMap` (two `HeaderSource`s) give the same answer; `auto` never picks `body`; a
//! success honours the time window, and the same headers never verify a different body. A
//! quarter of the inputs start from genuinely signed headers and damage them.
#![no_main]

use hookwire_core::signing::{
    HeaderLookup, HeaderSource, Scheme, SchemeChoice, SignInput, VerifyError, VerifyOptions, sign,
    verify,
};
use hookwire_core::{KeyRing, Secret};
use hookwire_fuzz::{bytes, short_string};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// Every header name some scheme reads, so the fuzzer hits the parsers instead of "missing".
const NAMES: [&str; 18] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "x-github-event",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-webhook-signature",
    "x-webhook-timestamp",
    "x-webhook-id",
    "x-webhook-event",
    "X-Webhook-Signature",
    "content-type",
];

/// Value prefixes of the signature formats.
const PREFIXES: [&[u8]; 9] = [
    b"sha256=",
    b"v0=",
    b"v1,",
    b"v1a,",
    b"t=",
    b"v1=",
    b"t=1700000000,v1=",
    b" ",
    b"",
];

const NOW: i64 = 1_700_000_000;

fn value(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    match u.int_in_range(0u8..=3)? {
        0 => v.extend_from_slice(NOW.to_string().as_bytes()),
        1 => v.extend_from_slice(u.choose(&PREFIXES)?),
        _ => {}
    }
    // Repeating a chunk builds long headers and many signature entries cheaply.
    let chunk = bytes(u, 80)?;
    for _ in 0..u.int_in_range(1..=40)? {
        v.extend_from_slice(chunk);
        if !u.ratio(3, 4)? {
            break;
        }
    }
    Ok(v)
}

/// The headers of a genuine signature by one of [`keys`], then damaged: a byte changed, a
/// header repeated, renamed in another case, cut or dropped. Reaches the success path, which
/// random bytes never do.
fn signed(u: &mut Unstructured<'_>, body: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let scheme = *u.choose(&Scheme::ALL)?;
    let ring = keys();
    let secret = u.choose(ring.secrets())?;
    let input = SignInput::new(body, NOW)
        .id("msg_1")
        .event_type("order.created");
    let Ok(h) = sign(scheme, secret, &input) else {
        return Ok(Vec::new());
    };
    let mut pairs: Vec<(String, Vec<u8>)> = h
        .iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    for _ in 0..u.int_in_range(0..=2)? {
        let i = u.int_in_range(0..=pairs.len() - 1)?;
        match u.int_in_range(0u8..=4)? {
            0 => {
                let v = &mut pairs[i].1;
                if !v.is_empty() {
                    let j = u.int_in_range(0..=v.len() - 1)?;
                    v[j] = u.arbitrary()?;
                }
            }
            1 => pairs.push(pairs[i].clone()),
            2 => pairs[i].0 = pairs[i].0.to_ascii_uppercase(),
            3 => {
                let v = &mut pairs[i].1;
                v.truncate(u.int_in_range(0..=v.len())?);
            }
            _ => {
                pairs.remove(i);
                if pairs.is_empty() {
                    break;
                }
            }
        }
    }
    Ok(pairs)
}

fn keys() -> KeyRing {
    KeyRing::new()
        .with(Secret::new("test-secret"))
        .with(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        .with(Secret::new(
            "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        ))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let body = bytes(u, 64)?.to_vec();
    let mut pairs = if u.ratio(1, 4)? {
        signed(u, &body)?
    } else {
        Vec::new()
    };
    for _ in 0..u.int_in_range(0..=8)? {
        let name = if u.ratio(7, 8)? {
            (*u.choose(&NAMES)?).to_owned()
        } else {
            short_string(u, 20)?
        };
        pairs.push((name, value(u)?));
    }
    let mut choices = vec![SchemeChoice::Auto];
    choices.extend(Scheme::ALL.map(SchemeChoice::Only));
    let choice = *u.choose(&choices)?;
    let mut opts = VerifyOptions::new(choice).at(NOW + u.int_in_range(-400i64..=400)?);
    if u.ratio(1, 4)? {
        opts = opts.ignoring_timestamp();
    }
    if u.ratio(1, 4)? {
        opts = opts.tolerance(Duration::from_secs(u.int_in_range(0..=600)?));
    }
    if u.ratio(1, 4)? {
        opts.max_signatures = u.int_in_range(0..=40)?;
        opts.max_header_len = u.int_in_range(0..=5000)?;
    }
    let keys = keys();

    let got = verify(&pairs, &body, &keys, &opts);
    assert_eq!(
        got,
        verify(&pairs, &body, &keys, &opts),
        "not deterministic"
    );

    // The same request through http::HeaderMap, when every header is valid there.
    let mut map = http::HeaderMap::new();
    let mut representable = true;
    for (k, v) in &pairs {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(v),
        ) {
            (Ok(k), Ok(v)) => {
                map.append(k, v);
            }
            _ => representable = false,
        }
    }
    if representable {
        for n in NAMES {
            let lower = n.to_ascii_lowercase();
            assert_eq!(
                lookup_kind(pairs.lookup(&lower)),
                lookup_kind(map.lookup(&lower)),
                "pairs and HeaderMap disagree on {lower}"
            );
        }
        assert_eq!(
            got,
            verify(&map, &body, &keys, &opts),
            "HeaderMap disagrees"
        );
    }

    match got {
        Ok(v) => {
            if choice == SchemeChoice::Auto {
                assert_ne!(v.scheme, Scheme::Body, "auto picked body");
            } else {
                assert_eq!(SchemeChoice::Only(v.scheme), choice);
            }
            assert!(v.key_index < keys.len());
            if let (Some(ts), false, Some(now)) = (v.timestamp, opts.ignore_timestamp, opts.now) {
                assert!(
                    ts >= now - opts.tolerance_past.as_secs() as i64,
                    "stale accepted"
                );
                assert!(
                    ts <= now + opts.tolerance_future.as_secs() as i64,
                    "future accepted"
                );
            }
            assert_eq!(v.timestamp.is_some(), v.scheme.has_timestamp());
            let mut other = body.clone();
            other.push(b'!');
            assert_eq!(
                verify(&pairs, &other, &keys, &opts),
                Err(VerifyError::BadSignature),
                "one signature verified two bodies"
            );
        }
        Err(e) => assert!(VerifyError::ALL.contains(&e)),
    }
    Ok(())
}

/// A lookup without its value (HeaderMap and pairs return the same bytes from different
/// places, compared through `verify` above).
fn lookup_kind(l: HeaderLookup<'_>) -> (u8, Vec<u8>) {
    match l {
        HeaderLookup::Absent => (0, Vec::new()),
        HeaderLookup::One(v) => (1, v.to_vec()),
        HeaderLookup::Many => (2, Vec::new()),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
