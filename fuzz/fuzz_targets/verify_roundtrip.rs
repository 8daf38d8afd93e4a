//! Sign → verify round trip under every scheme, with random secrets, bodies, ids, timestamps
//! and unrelated extra headers. Asserts: what `sign` produced verifies (under the scheme and
//! under `auto`, except `body`), with the right key index, timestamp and id; a tampered body,
//! id or timestamp, or a different key, never verifies.
#![no_main]

use base64::Engine as _;
use hookwire_core::signing::{
    Scheme, SchemeChoice, SignInput, VerifyError, VerifyOptions, sign, verify,
};
use hookwire_core::{KeyRing, Secret};
use hookwire_fuzz::{bytes, short_string};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Header names that take part in some scheme: an extra header must not use them.
const RESERVED: [&str; 6] = ["signature", "webhook", "svix", "slack", "github", "stripe"];

type Pairs = Vec<(String, Vec<u8>)>;

/// A secret usable by `scheme`, and a different one of the same kind.
fn secrets(u: &mut Unstructured<'_>, scheme: Scheme) -> Result<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if scheme == Scheme::Standard {
        let mut key = bytes(u, 48)?.to_vec();
        key.resize(key.len().max(16), 0x5a);
        let ed = u.ratio(1, 3)?;
        if ed {
            key.resize(32, 0);
        }
        let prefix = if ed { "whsk_" } else { "whsec_" };
        let good = format!("{prefix}{}", b64.encode(&key));
        key[0] ^= 1;
        return Ok((good, format!("{prefix}{}", b64.encode(&key))));
    }
    // Raw HMAC keys: same length, one bit apart (HMAC zero-pads keys, so a key and the same key
    // with a trailing NUL are the same key; flipping a bit avoids that).
    let mut key = short_string(u, 40)?.into_bytes();
    if key.is_empty() {
        key.push(b'k');
    }
    let good = String::from_utf8_lossy(&key).into_owned();
    let mut bad = good.clone().into_bytes();
    bad[0] ^= 1;
    Ok((good, String::from_utf8_lossy(&bad).into_owned()))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let scheme = *u.choose(&Scheme::ALL)?;
    let (good, bad) = secrets(u, scheme)?;
    if good == bad {
        return Ok(());
    }
    let body = bytes(u, 256)?.to_vec();
    let ts = u.int_in_range(-(1i64 << 53)..=(1i64 << 53) - 1)?;
    let mut id = short_string(u, 24)?;
    if id.is_empty() {
        // An empty id header counts as absent (`missing-id`), so signing needs a real one.
        id.push_str("msg_1");
    }
    let event_type = short_string(u, 16)?;
    let secret = Secret::new(&good);
    let input = SignInput::new(&body, ts).id(&id).event_type(&event_type);
    let headers = match sign(scheme, &secret, &input) {
        Ok(h) => h,
        Err(e) => panic!("{scheme}: signing with a valid secret failed: {e}"),
    };
    let mut pairs: Pairs = headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    for _ in 0..u.int_in_range(0..=3)? {
        let name = short_string(u, 12)?;
        let lower = name.to_ascii_lowercase();
        if RESERVED.iter().any(|r| lower.contains(r)) {
            continue;
        }
        let at = u.int_in_range(0..=pairs.len())?;
        pairs.insert(at, (name, bytes(u, 32)?.to_vec()));
    }

    // Another key first in the ring: the match must be reported at index 1.
    let ring = KeyRing::new().with(Secret::new(&bad)).with(secret.clone());
    let opts = VerifyOptions::new(scheme).at(ts);
    let ok = verify(&pairs, &body, &ring, &opts)
        .unwrap_or_else(|e| panic!("{scheme}: a fresh signature failed to verify: {e}"));
    assert_eq!(ok.scheme, scheme);
    assert_eq!(ok.key_index, 1, "{scheme}: wrong key index");
    if scheme.has_timestamp() {
        assert_eq!(ok.timestamp, Some(ts), "{scheme}: wrong timestamp");
    }
    if scheme.signs_id() {
        assert_eq!(ok.id.as_deref(), Some(id.as_str()), "{scheme}: wrong id");
        assert!(ok.id_is_signed());
    }
    if scheme != Scheme::Body {
        let auto = VerifyOptions::new(SchemeChoice::Auto).at(ts);
        let ok = verify(&pairs, &body, &ring, &auto)
            .unwrap_or_else(|e| panic!("{scheme}: auto failed to verify: {e}"));
        assert_eq!(ok.scheme, scheme, "auto picked another scheme");
    }

    // The other key alone never verifies.
    let wrong = KeyRing::from(Secret::new(&bad));
    assert_eq!(
        verify(&pairs, &body, &wrong, &opts),
        Err(VerifyError::BadSignature),
        "{scheme}: verified with a different key"
    );

    // A tampered body never verifies: flip a bit, drop the last byte, or append one.
    let mut tampered = body.clone();
    match (u.int_in_range(0u8..=2)?, tampered.len()) {
        (0, n) if n > 0 => {
            let i = u.int_in_range(0..=n - 1)?;
            tampered[i] ^= 1 << u.int_in_range(0u8..=7)?;
        }
        (1, n) if n > 0 => {
            tampered.pop();
        }
        _ => tampered.push(u.arbitrary()?),
    }
    assert_eq!(
        verify(&pairs, &tampered, &ring, &opts),
        Err(VerifyError::BadSignature),
        "{scheme}: a tampered body verified"
    );

    // Timestamps (and the id, for standard) are covered by the signature.
    if scheme.has_timestamp() {
        let moved = VerifyOptions::new(scheme).at(ts + 1);
        let shifted = shift_timestamp(&pairs, scheme, ts, ts + 1);
        assert_eq!(
            verify(&shifted, &body, &ring, &moved),
            Err(VerifyError::BadSignature),
            "{scheme}: a changed timestamp verified"
        );
    }
    if scheme.signs_id() {
        let mut other = pairs.clone();
        for (k, v) in &mut other {
            if k.eq_ignore_ascii_case("webhook-id") {
                v.push(b'x');
            }
        }
        assert_eq!(
            verify(&other, &body, &ring, &opts),
            Err(VerifyError::BadSignature),
            "{scheme}: a changed id verified"
        );
    }
    Ok(())
}

/// The headers with the timestamp `from` replaced by `to` wherever the scheme carries it.
fn shift_timestamp(pairs: &Pairs, scheme: Scheme, from: i64, to: i64) -> Pairs {
    let (from, to) = (from.to_string(), to.to_string());
    pairs
        .iter()
        .map(|(k, v)| {
            let name = k.to_ascii_lowercase();
            let v = if name.ends_with("timestamp") && v == from.as_bytes() {
                to.as_bytes().to_vec()
            } else if scheme == Scheme::Stripe && name == "stripe-signature" {
                let text = String::from_utf8_lossy(v);
                text.replacen(&format!("t={from},"), &format!("t={to},"), 1)
                    .into_bytes()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
