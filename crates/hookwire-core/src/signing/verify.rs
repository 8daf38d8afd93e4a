//! Verification: one function, every scheme, a deterministic reason order.

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::keys::{HmacSha256, KeyRing};
use super::{
    HeaderLookup, HeaderSource, Scheme, SchemeChoice, Verified, VerifyError, VerifyOptions,
};

type Sig = [u8; 32];

/// Verifies a request's signature headers over its raw `body`.
///
/// Accepts when any secret in `keys` (usable at `now`, see [`super::Secret::valid_between`])
/// produced any of the signatures in the headers. Never panics, whatever the headers hold.
///
/// ```
/// use hookwire_core::signing::{verify, Scheme, VerifyError, VerifyOptions};
/// use hookwire_core::KeyRing;
/// let keys = KeyRing::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
/// let headers = [
///     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
///     ("webhook-timestamp", "1614265330"),
///     ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
/// ];
/// let body = br#"{"test": 2432232314}"#;
/// let ok = verify(&headers, body, &keys, &VerifyOptions::default().at(1614265330)).unwrap();
/// assert_eq!(ok.scheme, Scheme::Standard);
/// assert_eq!(ok.id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
/// let late = verify(&headers, body, &keys, &VerifyOptions::default().at(1614265330 + 301));
/// assert_eq!(late.unwrap_err(), VerifyError::Stale);
/// ```
pub fn verify<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    keys: &KeyRing,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let scheme = match opts.scheme {
        SchemeChoice::Only(s) => s,
        SchemeChoice::Auto => detect(headers).ok_or(VerifyError::MissingSignature)?,
    };
    // The window is counted in seconds: the coarse clock (a tick behind at most) is exact
    // enough and far cheaper to read on every request.
    let now = opts.now.unwrap_or_else(crate::time::unix_now_coarse);
    match scheme {
        Scheme::Hookwire => hex_scheme(headers, body, keys, opts, now, HexScheme::HOOKWIRE),
        Scheme::Body => hex_scheme(headers, body, keys, opts, now, HexScheme::BODY),
        Scheme::Github => hex_scheme(headers, body, keys, opts, now, HexScheme::GITHUB),
        Scheme::Slack => hex_scheme(headers, body, keys, opts, now, HexScheme::SLACK),
        Scheme::Stripe => stripe(headers, body, keys, opts, now),
        Scheme::Standard => standard(headers, body, keys, opts, now),
    }
}

/// Signature headers in detection priority order, with the scheme each one means.
const SIGNATURE_HEADERS: [(&str, Scheme); 6] = [
    ("webhook-signature", Scheme::Standard),
    ("svix-signature", Scheme::Standard),
    ("stripe-signature", Scheme::Stripe),
    ("x-hub-signature-256", Scheme::Github),
    ("x-slack-signature", Scheme::Slack),
    ("x-webhook-signature", Scheme::Hookwire),
];

fn detect<H: HeaderSource + ?Sized>(h: &H) -> Option<Scheme> {
    let names = SIGNATURE_HEADERS.map(|(n, _)| n);
    let present = h.present_mask(&names);
    // The lowest set bit is the highest-priority header present.
    let first = present.trailing_zeros() as usize;
    SIGNATURE_HEADERS.get(first).map(|(_, s)| *s)
}

/// One header that must not repeat: `Ok(None)` when absent or empty.
fn single<'h, H: HeaderSource + ?Sized>(
    h: &'h H,
    name: &str,
    max_len: usize,
) -> Result<Option<&'h [u8]>, VerifyError> {
    checked(h.lookup(name), max_len)
}

/// The rule of [`single`] on a lookup already made.
fn checked(found: HeaderLookup<'_>, max_len: usize) -> Result<Option<&[u8]>, VerifyError> {
    match found {
        HeaderLookup::Absent => Ok(None),
        HeaderLookup::Many => Err(VerifyError::MalformedHeader),
        HeaderLookup::One([]) => Ok(None),
        HeaderLookup::One(v) if v.len() > max_len => Err(VerifyError::MalformedHeader),
        HeaderLookup::One(v) => Ok(Some(v)),
    }
}

/// Parses a canonical decimal integer timestamp: `^-?(0|[1-9][0-9]*)$`, not `-0`, and exactly
/// representable as an f64 (a JavaScript verifier compares `String(parseInt(x))` with the text, and hookwire agrees with it).
fn parse_timestamp(v: &[u8]) -> Result<i64, VerifyError> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    let canonical = !digits.is_empty()
        && digits.len() <= 16
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
        && v != b"-0";
    if !canonical {
        return Err(VerifyError::MissingTimestamp);
    }
    // At most 16 ASCII digits: the value fits an i64 with room to spare, so no overflow check
    // is needed (this runs on every request; a `str::parse` would validate the text again).
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    if n.unsigned_abs() > (1u64 << 53) {
        return Err(VerifyError::MissingTimestamp);
    }
    Ok(if v[0] == b'-' { -n } else { n })
}

fn check_window(ts: i64, now: i64, opts: &VerifyOptions) -> Result<(), VerifyError> {
    if opts.ignore_timestamp {
        return Ok(());
    }
    let delta = i128::from(now) - i128::from(ts);
    if delta > i128::from(opts.tolerance_past.as_secs()) {
        return Err(VerifyError::Stale);
    }
    if -delta > i128::from(opts.tolerance_future.as_secs()) {
        return Err(VerifyError::Future);
    }
    Ok(())
}

/// Hex digit values (either case); 0xff marks a non-digit.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

// A table lookup per digit: this runs on every request, and the signature is not secret.
fn decode_hex32(v: &[u8]) -> Option<Sig> {
    if v.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    // Every valid digit is below 16, so any 0xff sets the top bit.
    (bad < 16).then_some(out)
}

/// Standard-alphabet base64 digit values; 0xff marks a non-digit (`=` included).
const B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = 52 + i as u8;
        i += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t
};

/// Decodes the canonical padded base64 of 32 bytes: 43 digits, then `=`, the last digit's two
/// unused bits zero — exactly what the `base64` crate's `STANDARD` engine accepts for 32 bytes.
/// A table lookup per digit: this runs on every request, and the signature is not secret.
fn decode_b64_32(v: &[u8]) -> Option<Sig> {
    let Some((b'=', digits)) = v.split_last() else {
        return None;
    };
    let digits: &[u8; 43] = digits.try_into().ok()?;
    let d = |i: usize| u32::from(B64[usize::from(digits[i])]);
    let mut out = [0u8; 32];
    // A non-digit is 0xff, so OR-ing every value sets bit 7 (or 6) only when one was invalid.
    let mut bad = 0u32;
    // 10 groups of 4 digits make 30 bytes; the last 3 digits make 2 bytes and 2 zero bits.
    for g in 0..10 {
        let n = d(4 * g) << 18 | d(4 * g + 1) << 12 | d(4 * g + 2) << 6 | d(4 * g + 3);
        bad |= d(4 * g) | d(4 * g + 1) | d(4 * g + 2) | d(4 * g + 3);
        out[3 * g..3 * g + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let n = d(40) << 12 | d(41) << 6 | d(42);
    bad |= d(40) | d(41) | d(42);
    out[30] = (n >> 10) as u8;
    out[31] = (n >> 2) as u8;
    // Every digit is below 64; the last digit's two unused bits must be zero.
    (bad < 64 && n & 0b11 == 0).then_some(out)
}

/// Runs each usable key's MAC over `parts` and compares it with every candidate signature in
/// constant time. Returns the index of the first matching key and the MAC it produced.
fn find_key(
    keys: &KeyRing,
    now: i64,
    candidates: &[Sig],
    parts: &[&[u8]],
    mac_of: impl Fn(&super::Secret) -> Option<&HmacSha256>,
) -> Option<(usize, Sig)> {
    for (i, secret) in keys.secrets().iter().enumerate() {
        if !secret.usable_at(now) {
            continue;
        }
        let Some(mut mac) = mac_of(secret).cloned() else {
            continue;
        };
        for p in parts {
            mac.update(p);
        }
        let expected = mac.finalize().into_bytes();
        let mut hit = subtle::Choice::from(0u8);
        for c in candidates {
            hit |= ct_eq32(expected.as_slice(), c);
        }
        if bool::from(hit) {
            return Some((i, expected.into()));
        }
    }
    None
}

/// Constant-time equality of a MAC and a candidate: the differences are folded into one word
/// first, then compared once. `subtle`'s slice comparison puts an optimization barrier on every
/// byte, which costs as much as the rest of the header work on a 1 KiB request.
fn ct_eq32(mac: &[u8], candidate: &Sig) -> subtle::Choice {
    let mut diff = 0u64;
    for (a, b) in mac.chunks_exact(8).zip(candidate.chunks_exact(8)) {
        let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or([0xff; 8]));
        diff |= word(a) ^ word(b);
    }
    // A MAC of the wrong length never matches (the fold above would have compared a prefix).
    diff |= u64::from(mac.len() != candidate.len());
    diff.ct_eq(&0)
}

fn verified(
    scheme: Scheme,
    keys: &KeyRing,
    (idx, mac): (usize, Option<Sig>),
    id: Option<&[u8]>,
    timestamp: Option<i64>,
    event_type: Option<&[u8]>,
) -> Verified {
    // Header values are almost always ASCII; the lossy path only runs for odd bytes.
    let text = |v: &[u8]| match std::str::from_utf8(v) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(v).into_owned(),
    };
    Verified {
        scheme,
        key_index: idx,
        key_label: keys.secrets().get(idx).and_then(super::Secret::label_arc),
        id: id.map(text),
        timestamp,
        event_type: event_type.map(text),
        mac,
    }
}

/// The four schemes with one hex signature behind a fixed prefix.
#[derive(Clone, Copy)]
struct HexScheme {
    scheme: Scheme,
    sig_header: &'static str,
    prefix: &'static [u8],
    ts_header: Option<&'static str>,
    id_header: Option<&'static str>,
    type_header: Option<&'static str>,
    // The message is `pre ts mid body`, or just `body` without a timestamp header.
    pre: &'static [u8],
    mid: &'static [u8],
}

impl HexScheme {
    const HOOKWIRE: Self = Self {
        scheme: Scheme::Hookwire,
        sig_header: "x-webhook-signature",
        prefix: b"sha256=",
        ts_header: Some("x-webhook-timestamp"),
        id_header: None,
        type_header: None,
        pre: b"",
        mid: b".",
    };
    const BODY: Self = Self {
        scheme: Scheme::Body,
        sig_header: "x-webhook-signature",
        prefix: b"sha256=",
        ts_header: None,
        id_header: Some("x-webhook-id"),
        type_header: Some("x-webhook-event"),
        pre: b"",
        mid: b"",
    };
    const GITHUB: Self = Self {
        scheme: Scheme::Github,
        sig_header: "x-hub-signature-256",
        prefix: b"sha256=",
        ts_header: None,
        id_header: Some("x-github-delivery"),
        type_header: Some("x-github-event"),
        pre: b"",
        mid: b"",
    };
    const SLACK: Self = Self {
        scheme: Scheme::Slack,
        sig_header: "x-slack-signature",
        prefix: b"v0=",
        ts_header: Some("x-slack-request-timestamp"),
        id_header: None,
        type_header: None,
        pre: b"v0:",
        mid: b":",
    };
}

fn hex_scheme<H: HeaderSource + ?Sized>(
    h: &H,
    body: &[u8],
    keys: &KeyRing,
    opts: &VerifyOptions,
    now: i64,
    s: HexScheme,
) -> Result<Verified, VerifyError> {
    let max = opts.max_header_len;
    let sig = single(h, s.sig_header, max)?.ok_or(VerifyError::MissingSignature)?;
    let ts = match s.ts_header {
        Some(name) => {
            let raw = single(h, name, max)?.ok_or(VerifyError::MissingTimestamp)?;
            let ts = parse_timestamp(raw)?;
            Some((raw, ts))
        }
        None => None,
    };
    if let Some((_, t)) = ts {
        check_window(t, now, opts)?;
    }
    // Ids and types are informational for these schemes; a repeated one is still ambiguous.
    let id = match s.id_header {
        Some(n) => single(h, n, max)?,
        None => None,
    };
    let event_type = match s.type_header {
        Some(n) => single(h, n, max)?,
        None => None,
    };
    let candidate = sig
        .strip_prefix(s.prefix)
        .and_then(decode_hex32)
        .ok_or(VerifyError::BadSignature)?;
    let parts: [&[u8]; 4] = match ts {
        Some((raw, _)) => [s.pre, raw, s.mid, body],
        None => [b"", b"", b"", body],
    };
    let (idx, mac) = find_key(keys, now, &[candidate], &parts, |k| Some(k.raw_key()))
        .ok_or(VerifyError::BadSignature)?;
    Ok(verified(
        s.scheme,
        keys,
        (idx, Some(mac)),
        id,
        ts.map(|(_, t)| t),
        event_type,
    ))
}

fn stripe<H: HeaderSource + ?Sized>(
    h: &H,
    body: &[u8],
    keys: &KeyRing,
    opts: &VerifyOptions,
    now: i64,
) -> Result<Verified, VerifyError> {
    let header =
        single(h, "stripe-signature", opts.max_header_len)?.ok_or(VerifyError::MissingSignature)?;
    let mut t: Option<&[u8]> = None;
    let mut sigs: Vec<Sig> = Vec::new();
    let mut entries = 0usize;
    for item in header.split(|&b| b == b',') {
        entries += 1;
        if entries > opts.max_signatures + 1 {
            return Err(VerifyError::MalformedHeader);
        }
        let item = item.trim_ascii();
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            return Err(VerifyError::MalformedHeader);
        };
        let (k, v) = (&item[..eq], &item[eq + 1..]);
        match k {
            b"t" if t.is_some() => return Err(VerifyError::MalformedHeader),
            b"t" => t = Some(v),
            b"v1" => {
                if let Some(s) = decode_hex32(v) {
                    sigs.push(s);
                }
            }
            // v0 (test mode) and unknown schemes are ignored, as Stripe's libraries do.
            _ => {}
        }
    }
    let raw_ts = t
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingTimestamp)?;
    let ts = parse_timestamp(raw_ts)?;
    check_window(ts, now, opts)?;
    if sigs.is_empty() {
        return Err(VerifyError::BadSignature);
    }
    let (idx, mac) = find_key(keys, now, &sigs, &[raw_ts, b".", body], |k| {
        Some(k.raw_key())
    })
    .ok_or(VerifyError::BadSignature)?;
    Ok(verified(
        Scheme::Stripe,
        keys,
        (idx, Some(mac)),
        None,
        Some(ts),
        None,
    ))
}

/// The Standard Webhooks headers, each under its `webhook-` name then its `svix-` alias:
/// signature, timestamp, id. Looked up together, in one walk where the source can.
const STANDARD_HEADERS: [&str; 6] = [
    "webhook-signature",
    "svix-signature",
    "webhook-timestamp",
    "svix-timestamp",
    "webhook-id",
    "svix-id",
];

/// A Standard Webhooks header from its `webhook-` lookup, else its `svix-` alias: the first
/// name wins when it holds a value, and either one repeated or too long is malformed.
fn alias<'h>(pair: [HeaderLookup<'h>; 2], max: usize) -> Result<Option<&'h [u8]>, VerifyError> {
    match checked(pair[0], max)? {
        Some(v) => Ok(Some(v)),
        None => checked(pair[1], max),
    }
}

/// Signatures kept on the stack before spilling to the heap. Senders put one, or two during a key
/// rotation, so the common path (this runs per request) neither allocates nor clears a large
/// buffer.
const INLINE_SIGNATURES: usize = 4;

/// Decoded candidate signatures: inline up to [`INLINE_SIGNATURES`], then on the heap (only when
/// a caller raised `max_signatures`).
struct Candidates<T> {
    inline: [T; INLINE_SIGNATURES],
    len: usize,
    spilled: Vec<T>,
}

impl<T: Copy> Candidates<T> {
    fn new(zero: T) -> Self {
        Self {
            inline: [zero; INLINE_SIGNATURES],
            len: 0,
            spilled: Vec::new(),
        }
    }
    fn push(&mut self, v: T) {
        if !self.spilled.is_empty() {
            self.spilled.push(v);
        } else if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = v;
            self.len += 1;
        } else {
            self.spilled.extend_from_slice(&self.inline);
            self.spilled.push(v);
        }
    }
    fn as_slice(&self) -> &[T] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

fn standard<H: HeaderSource + ?Sized>(
    h: &H,
    body: &[u8],
    keys: &KeyRing,
    opts: &VerifyOptions,
    now: i64,
) -> Result<Verified, VerifyError> {
    let max = opts.max_header_len;
    let mut found = [HeaderLookup::Absent; 6];
    h.lookup_into(&STANDARD_HEADERS, &mut found);
    let [sig, sig_alias, ts, ts_alias, id, id_alias] = found;
    let header = alias([sig, sig_alias], max)?.ok_or(VerifyError::MissingSignature)?;
    let raw_ts = alias([ts, ts_alias], max)?.ok_or(VerifyError::MissingTimestamp)?;
    let id = alias([id, id_alias], max)?.ok_or(VerifyError::MissingId)?;
    let ts = parse_timestamp(raw_ts)?;
    check_window(ts, now, opts)?;

    let mut v1 = Candidates::new([0u8; 32]);
    #[cfg(feature = "ed25519")]
    let mut v1a = Candidates::new([0u8; 64]);
    // The common header is one `v1,<44 base64 digits>` entry. Decoding it whole is exact: a
    // space is no base64 digit, so a header that decodes here holds no second entry, and the
    // loop below would find this one signature and nothing else.
    let single = (opts.max_signatures > 0)
        .then(|| header.strip_prefix(b"v1,").and_then(decode_b64_32))
        .flatten();
    let entries = if let Some(s) = single {
        v1.push(s);
        &[][..]
    } else {
        header
    };
    for (n, entry) in entries
        .split(|&b| b == b' ')
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        if n >= opts.max_signatures {
            return Err(VerifyError::MalformedHeader);
        }
        let Some(comma) = entry.iter().position(|&b| b == b',') else {
            continue;
        };
        match &entry[..comma] {
            b"v1" => {
                if let Some(s) = decode_b64_32(&entry[comma + 1..]) {
                    v1.push(s);
                }
            }
            #[cfg(feature = "ed25519")]
            b"v1a" => {
                if let Some(s) = super::ed::decode_sig(&entry[comma + 1..]) {
                    v1a.push(s);
                }
            }
            // Unknown versions are ignored so senders can add schemes without breaking us.
            _ => {}
        }
    }
    let parts: [&[u8]; 5] = [id, b".", raw_ts, b".", body];
    if let Some((idx, mac)) = find_key(keys, now, v1.as_slice(), &parts, |k| k.standard_key()) {
        return Ok(verified(
            Scheme::Standard,
            keys,
            (idx, Some(mac)),
            Some(id),
            Some(ts),
            None,
        ));
    }
    #[cfg(feature = "ed25519")]
    if let Some(idx) = super::ed::find_key(keys, now, v1a.as_slice(), &parts) {
        return Ok(verified(
            Scheme::Standard,
            keys,
            (idx, None),
            Some(id),
            Some(ts),
            None,
        ));
    }
    Err(VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq32_tells_every_differing_byte_and_a_short_mac() {
        let a: Sig = std::array::from_fn(|i| i as u8);
        assert!(bool::from(ct_eq32(&a, &a)));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!bool::from(ct_eq32(&a, &b)), "byte {i} bit {bit}");
            }
        }
        assert!(!bool::from(ct_eq32(&a[..31], &a)));
        assert!(!bool::from(ct_eq32(&[], &a)));
    }

    #[test]
    fn candidates_spill_past_the_inline_capacity_in_order() {
        let mut c = Candidates::new(0u8);
        for i in 0..10u8 {
            c.push(i);
        }
        assert_eq!(c.as_slice(), (0..10).collect::<Vec<_>>().as_slice());
    }

    #[test]
    fn an_empty_secret_verifies_nothing_even_a_request_signed_with_it() {
        let empty = crate::Secret::new("");
        let input = crate::signing::SignInput::new(b"{}", 1_700_000_000);
        let opts = |s: Scheme| VerifyOptions::new(s).at(1_700_000_000);
        for scheme in [
            Scheme::Hookwire,
            Scheme::Github,
            Scheme::Stripe,
            Scheme::Slack,
        ] {
            // Anyone can compute a MAC under the empty key: it must not authenticate.
            let forged = crate::signing::sign(scheme, &empty, &input)
                .unwrap_or_else(|e| panic!("{scheme}: sign: {e}"));
            let forged: Vec<(&str, String)> =
                forged.iter().map(|(k, v)| (k, v.to_owned())).collect();
            let alone = verify(&forged, b"{}", &KeyRing::from(empty.clone()), &opts(scheme));
            assert!(alone.is_err(), "{scheme}: {alone:?}");
            // Beside a real secret, the empty one still matches nothing, the real one still works.
            let real = crate::Secret::new("s3cret");
            let ring = KeyRing::new().with(empty.clone()).with(real.clone());
            assert!(
                verify(&forged, b"{}", &ring, &opts(scheme)).is_err(),
                "{scheme}"
            );
            let signed = crate::signing::sign(scheme, &real, &input)
                .unwrap_or_else(|e| panic!("{scheme}: sign: {e}"));
            let signed: Vec<(&str, String)> =
                signed.iter().map(|(k, v)| (k, v.to_owned())).collect();
            let ok = verify(&signed, b"{}", &ring, &opts(scheme));
            assert!(ok.is_ok(), "{scheme}: {ok:?}");
        }
    }

    #[test]
    fn a_valid_signature_after_many_bogus_ones_verifies() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signed = crate::signing::sign(
            Scheme::Standard,
            &crate::Secret::new(secret),
            &crate::signing::SignInput::new(b"{}", 1_700_000_000).id("msg_1"),
        )
        .unwrap_or_else(|e| panic!("sign: {e}"));
        let real = signed.get("webhook-signature").unwrap_or_default();
        let bogus = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ".repeat(9);
        let header = format!("{bogus}{real}");
        let headers = [
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", header.as_str()),
        ];
        let opts = VerifyOptions::new(Scheme::Standard).at(1_700_000_000);
        let ok = verify(&headers, b"{}", &KeyRing::from(secret), &opts);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn every_spelling_of_one_signature_verifies_to_the_same_mac() {
        let secret = crate::Secret::new("s3cret");
        let keys = KeyRing::from(secret.clone());
        let input = crate::signing::SignInput::new(b"{}", 1_700_000_000);
        let opts = |s: Scheme| VerifyOptions::new(s).at(1_700_000_000);
        let mac_of = |s: Scheme, h: &[(&str, String)]| {
            verify(h, b"{}", &keys, &opts(s))
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .mac
        };
        let signed = |s: Scheme| crate::signing::sign(s, &secret, &input).unwrap_or_default();
        for (scheme, name) in [
            (Scheme::Hookwire, "X-Webhook-Signature"),
            (Scheme::Slack, "X-Slack-Signature"),
            (Scheme::Github, "X-Hub-Signature-256"),
        ] {
            let h = signed(scheme);
            let pairs: Vec<(&str, String)> = h.iter().map(|(k, v)| (k, v.to_owned())).collect();
            let upper: Vec<(&str, String)> = pairs
                .iter()
                .map(|(k, v)| {
                    let v = if *k == name {
                        let (p, hex) = v.split_at(v.len() - 64);
                        format!("{p}{}", hex.to_uppercase())
                    } else {
                        v.clone()
                    };
                    (*k, v)
                })
                .collect();
            let mac = mac_of(scheme, &pairs);
            assert!(mac.is_some());
            assert_eq!(mac, mac_of(scheme, &upper), "{scheme}");
        }
        let h = signed(Scheme::Stripe);
        let plain = h.get("Stripe-Signature").unwrap_or_default().to_owned();
        let hex = plain.rsplit('=').next().unwrap_or_default().to_owned();
        let noisy = format!(
            "t=1700000000 , v0={hex}, v1={} ,v1={}",
            "ab".repeat(32),
            hex.to_uppercase()
        );
        assert_eq!(
            mac_of(Scheme::Stripe, &[("Stripe-Signature", plain)]),
            mac_of(Scheme::Stripe, &[("Stripe-Signature", noisy)])
        );
    }

    #[test]
    fn hex_signatures_decode_like_the_hex_crate() {
        let raw: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        let lower = hex::encode(&raw);
        assert_eq!(decode_hex32(lower.as_bytes()).unwrap().to_vec(), raw);
        assert_eq!(
            decode_hex32(lower.to_uppercase().as_bytes())
                .unwrap()
                .to_vec(),
            raw
        );
        assert_eq!(decode_hex32(&lower.as_bytes()[..62]), None);
        assert_eq!(decode_hex32(format!("{lower}00").as_bytes()), None);
        for bad in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0, 0xff] {
            for at in [0, 1, 31, 63] {
                let mut v = lower.clone().into_bytes();
                v[at] = bad;
                assert_eq!(decode_hex32(&v), None, "{bad} at {at}");
            }
        }
    }

    use base64::Engine as _;

    /// What the `base64` crate's padded engine accepts as 32 bytes: the decoder must agree.
    fn reference_b64_32(v: &[u8]) -> Option<Sig> {
        let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
        <Sig>::try_from(raw.as_slice()).ok()
    }

    #[test]
    fn base64_signatures_decode_like_the_base64_crate() {
        let engine = base64::engine::general_purpose::STANDARD;
        for seed in 0u8..8 {
            let raw: Vec<u8> = (0u8..32)
                .map(|i| i.wrapping_mul(73).wrapping_add(seed.wrapping_mul(151)))
                .collect();
            let text = engine.encode(&raw);
            assert_eq!(
                decode_b64_32(text.as_bytes()).map(|s| s.to_vec()),
                Some(raw)
            );
            // Every byte value at every position: same answer as the crate (non-digits,
            // misplaced `=`, non-zero trailing bits of the last digit).
            for at in 0..text.len() {
                for b in 0..=255u8 {
                    let mut v = text.clone().into_bytes();
                    v[at] = b;
                    assert_eq!(decode_b64_32(&v), reference_b64_32(&v), "{b} at {at}");
                }
            }
            for bad in [
                &text.as_bytes()[..43],
                &text.as_bytes()[..40],
                format!("{text}=").as_bytes(),
                format!("{}==", &text[..42]).as_bytes(),
                b"",
            ] {
                assert_eq!(decode_b64_32(bad), None);
                assert_eq!(reference_b64_32(bad), None);
            }
        }
    }

    #[test]
    fn canonical_timestamps_only() {
        for ok in [
            "0",
            "1700000000",
            "-5",
            "9007199254740992",
            "-9007199254740992",
        ] {
            assert_eq!(
                parse_timestamp(ok.as_bytes()),
                Ok(ok.parse::<i64>().unwrap_or_default()),
                "{ok}"
            );
        }
        for bad in [
            "",
            "1700000000abc",
            "+1",
            "01",
            "00",
            "1.5",
            "1700000000.5",
            " 1",
            "1 ",
            "-0",
            "1e9",
            "-",
            "9007199254740993",
            "-9007199254740993",
            "9999999999999999",
            "99999999999999999",
            "99999999999999999999999",
            "١٢",
        ] {
            assert_eq!(
                parse_timestamp(bad.as_bytes()),
                Err(VerifyError::MissingTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn window_boundaries_are_inclusive() {
        let o = VerifyOptions::default();
        assert!(check_window(1000, 1300, &o).is_ok());
        assert_eq!(check_window(1000, 1301, &o), Err(VerifyError::Stale));
        assert!(check_window(1300, 1000, &o).is_ok());
        assert_eq!(check_window(1301, 1000, &o), Err(VerifyError::Future));
        let zero = VerifyOptions::default().tolerance(std::time::Duration::ZERO);
        assert!(check_window(5, 5, &zero).is_ok());
        assert_eq!(check_window(4, 5, &zero), Err(VerifyError::Stale));
        assert!(check_window(i64::MIN, i64::MAX, &o).is_err());
    }
}
