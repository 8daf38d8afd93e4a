//! Read-only header access for verification, independent of any HTTP crate.

/// What a header lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLookup<'a> {
    /// No such header.
    Absent,
    /// Exactly one value.
    One(&'a [u8]),
    /// The header appears more than once (ambiguous for signature headers).
    Many,
}

/// Anything that can answer "what is the value of header `name`?".
///
/// `name` is always lowercase ASCII; implementations compare case-insensitively. Implemented for
/// `http::HeaderMap` (feature `http`, off by default) and for slices and vectors of
/// `(name, value)` pairs, so frameworks with their own header types adapt with a few lines.
///
/// ```
/// use hookwire_core::signing::{HeaderLookup, HeaderSource};
/// let h = [("X-Webhook-Signature", "sha256=00"), ("x-a", "1"), ("X-A", "2")];
/// assert_eq!(h.lookup("x-webhook-signature"), HeaderLookup::One(b"sha256=00"));
/// assert_eq!(h.lookup("x-a"), HeaderLookup::Many);
/// assert_eq!(h.lookup("x-b"), HeaderLookup::Absent);
/// ```
pub trait HeaderSource {
    /// Looks up `name` (lowercase ASCII).
    fn lookup(&self, name: &str) -> HeaderLookup<'_>;

    /// Which of `names` (lowercase ASCII, at most 32) are present at least once: bit `i` is set
    /// for `names[i]`. The default looks each one up; sources that can walk their headers once
    /// override it (scheme detection asks for six names on every request).
    ///
    /// ```
    /// use hookwire_core::signing::HeaderSource;
    /// let h = [("Stripe-Signature", "t=1,v1=00"), ("X-A", "1")];
    /// assert_eq!(h.present_mask(&["webhook-signature", "stripe-signature", "x-a"]), 0b110);
    /// ```
    fn present_mask(&self, names: &[&str]) -> u32 {
        names
            .iter()
            .take(32)
            .enumerate()
            .filter(|(_, n)| self.lookup(n) != HeaderLookup::Absent)
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Looks up every name of `names` (lowercase ASCII) into the same position of `out` (the
    /// shorter of the two bounds the work). The default looks each one up; sources that can
    /// walk their headers once override it (a `standard` verification asks for six names on
    /// every request).
    ///
    /// ```
    /// use hookwire_core::signing::{HeaderLookup, HeaderSource};
    /// let h = [("Webhook-Id", "msg_1"), ("x-a", "1"), ("X-A", "2")];
    /// let mut out = [HeaderLookup::Absent; 3];
    /// h.lookup_into(&["webhook-id", "x-a", "x-b"], &mut out);
    /// assert_eq!(out, [HeaderLookup::One(b"msg_1"), HeaderLookup::Many, HeaderLookup::Absent]);
    /// ```
    fn lookup_into<'a>(&'a self, names: &[&str], out: &mut [HeaderLookup<'a>]) {
        for (o, n) in out.iter_mut().zip(names) {
            *o = self.lookup(n);
        }
    }
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        (**self).lookup(name)
    }
    fn present_mask(&self, names: &[&str]) -> u32 {
        (**self).present_mask(names)
    }
    fn lookup_into<'a>(&'a self, names: &[&str], out: &mut [HeaderLookup<'a>]) {
        (**self).lookup_into(names, out);
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for [(K, V)] {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        let mut found = HeaderLookup::Absent;
        for (k, v) in self {
            if k.as_ref().eq_ignore_ascii_case(name) {
                if found != HeaderLookup::Absent {
                    return HeaderLookup::Many;
                }
                found = HeaderLookup::One(v.as_ref());
            }
        }
        found
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> HeaderSource for [(K, V); N] {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        self.as_slice().lookup(name)
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(K, V)> {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        self.as_slice().lookup(name)
    }
}

/// [`HeaderSource::present_mask`] for a source that can list its distinct header names, already
/// lowercase (as HTTP crates' header maps keep them): one walk over them instead of a parse,
/// hash and probe per wanted name. A request has a handful of headers and the length test
/// rejects almost every pair.
///
/// ```
/// use hookwire_core::signing::present_mask_of;
/// let keys = ["content-type", "webhook-id", "webhook-signature"];
/// assert_eq!(present_mask_of(keys, &["webhook-signature", "stripe-signature", "webhook-id"]), 0b101);
/// ```
pub fn present_mask_of<'a>(keys: impl IntoIterator<Item = &'a str>, names: &[&str]) -> u32 {
    let mut mask = 0;
    for key in keys {
        for (i, n) in names.iter().take(32).enumerate() {
            if n.len() == key.len() && *n == key {
                mask |= 1 << i;
            }
        }
    }
    mask
}

/// [`HeaderSource::lookup_into`] for a source that can list every header value with its name,
/// already lowercase: one walk over them (see [`present_mask_of`]). A name listed twice is
/// [`HeaderLookup::Many`].
///
/// ```
/// use hookwire_core::signing::{HeaderLookup, lookup_pairs_into};
/// let pairs = [("webhook-id", &b"msg_1"[..]), ("x-a", b"1"), ("x-a", b"2")];
/// let mut out = [HeaderLookup::Absent; 3];
/// lookup_pairs_into(pairs, &["webhook-id", "x-a", "x-b"], &mut out);
/// assert_eq!(out, [HeaderLookup::One(b"msg_1"), HeaderLookup::Many, HeaderLookup::Absent]);
/// ```
pub fn lookup_pairs_into<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    names: &[&str],
    out: &mut [HeaderLookup<'a>],
) {
    let n = names.len().min(out.len());
    let (names, out) = (&names[..n], &mut out[..n]);
    out.fill(HeaderLookup::Absent);
    for (key, value) in pairs {
        for (o, want) in out.iter_mut().zip(names) {
            if want.len() == key.len() && *want == key {
                *o = match o {
                    HeaderLookup::Absent => HeaderLookup::One(value),
                    _ => HeaderLookup::Many,
                };
            }
        }
    }
}

/// The pre-parsed name of every header verification reads: looking one up by `HeaderName` only
/// hashes, where a `&str` is validated and lowered byte by byte on every request.
#[cfg(feature = "http")]
fn known_name(name: &str) -> Option<&'static http::HeaderName> {
    use http::HeaderName;
    static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
    static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
    static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
    static SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
    static SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
    static SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");
    static STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
    static X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");
    static X_GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
    static X_GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");
    static X_SLACK_SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
    static X_SLACK_REQUEST_TIMESTAMP: HeaderName =
        HeaderName::from_static("x-slack-request-timestamp");
    static X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
    static X_WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("x-webhook-timestamp");
    static X_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-webhook-id");
    static X_WEBHOOK_EVENT: HeaderName = HeaderName::from_static("x-webhook-event");
    // Not a signature header, but every receiver looks it up on every request.
    static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
    Some(match name {
        "webhook-id" => &WEBHOOK_ID,
        "webhook-timestamp" => &WEBHOOK_TIMESTAMP,
        "webhook-signature" => &WEBHOOK_SIGNATURE,
        "svix-id" => &SVIX_ID,
        "svix-timestamp" => &SVIX_TIMESTAMP,
        "svix-signature" => &SVIX_SIGNATURE,
        "stripe-signature" => &STRIPE_SIGNATURE,
        "x-hub-signature-256" => &X_HUB_SIGNATURE_256,
        "x-github-delivery" => &X_GITHUB_DELIVERY,
        "x-github-event" => &X_GITHUB_EVENT,
        "x-slack-signature" => &X_SLACK_SIGNATURE,
        "x-slack-request-timestamp" => &X_SLACK_REQUEST_TIMESTAMP,
        "x-webhook-signature" => &X_WEBHOOK_SIGNATURE,
        "x-webhook-timestamp" => &X_WEBHOOK_TIMESTAMP,
        "x-webhook-id" => &X_WEBHOOK_ID,
        "x-webhook-event" => &X_WEBHOOK_EVENT,
        "idempotency-key" => &IDEMPOTENCY_KEY,
        _ => return None,
    })
}

#[cfg(feature = "http")]
impl HeaderSource for http::HeaderMap {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        let all = match known_name(name) {
            Some(known) => self.get_all(known),
            None => self.get_all(name),
        };
        let mut it = all.iter();
        match (it.next(), it.next()) {
            (None, _) => HeaderLookup::Absent,
            (Some(v), None) => HeaderLookup::One(v.as_bytes()),
            (Some(_), Some(_)) => HeaderLookup::Many,
        }
    }

    fn present_mask(&self, names: &[&str]) -> u32 {
        present_mask_of(self.keys().map(http::HeaderName::as_str), names)
    }

    fn lookup_into<'a>(&'a self, names: &[&str], out: &mut [HeaderLookup<'a>]) {
        lookup_pairs_into(
            self.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            names,
            out,
        );
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn header_map_present_mask_matches_lookups() {
        let mut m = http::HeaderMap::new();
        m.append("X-Hub-Signature-256", http::HeaderValue::from_static("a"));
        m.append("x-hub-signature-256", http::HeaderValue::from_static("b"));
        m.append("content-type", http::HeaderValue::from_static("c"));
        let names = [
            "webhook-signature",
            "x-hub-signature-256",
            "content-type",
            "x",
        ];
        let by_lookup = names
            .iter()
            .enumerate()
            .filter(|(_, n)| m.lookup(n) != HeaderLookup::Absent)
            .fold(0, |acc, (i, _)| acc | (1 << i));
        assert_eq!(m.present_mask(&names), 0b110);
        assert_eq!(m.present_mask(&names), by_lookup);
        // Only the first 32 names fit the mask; later ones are ignored, never a shift overflow.
        let mut many = vec!["absent"; 32];
        many.push("content-type");
        assert_eq!(m.present_mask(&many), 0);
        let pairs = [("content-type", "c")];
        assert_eq!(pairs.present_mask(&many), 0);
        many[31] = "content-type";
        assert_eq!(m.present_mask(&many), 1 << 31);
        assert_eq!(pairs.present_mask(&many), 1 << 31);
    }

    #[test]
    fn header_map_lookup_into_matches_lookups() {
        let mut m = http::HeaderMap::new();
        m.append("Webhook-Id", http::HeaderValue::from_static("a"));
        m.append("svix-id", http::HeaderValue::from_static("b"));
        m.append("SVIX-ID", http::HeaderValue::from_static("c"));
        m.append("webhook-timestamp", http::HeaderValue::from_static(""));
        m.append("content-type", http::HeaderValue::from_static("d"));
        let names = [
            "webhook-id",
            "svix-id",
            "webhook-timestamp",
            "svix-timestamp",
            "content-type",
            "webhook-id",
        ];
        let mut out = [HeaderLookup::Many; 6];
        m.lookup_into(&names, &mut out);
        let by_lookup: Vec<_> = names.iter().map(|n| m.lookup(n)).collect();
        assert_eq!(out.as_slice(), by_lookup.as_slice());
        assert_eq!(out[1], HeaderLookup::Many);
        assert_eq!(out[2], HeaderLookup::One(b""));
        assert_eq!(out[3], HeaderLookup::Absent);
        // A shorter `out` bounds the work; a longer one keeps its tail.
        let mut short = [HeaderLookup::Many; 2];
        m.lookup_into(&names, &mut short);
        assert_eq!(short.as_slice(), &by_lookup[..2]);
        let mut long = [HeaderLookup::Many; 3];
        m.lookup_into(&names[..1], &mut long);
        assert_eq!(
            long,
            [
                HeaderLookup::One(b"a"),
                HeaderLookup::Many,
                HeaderLookup::Many
            ]
        );
    }

    #[test]
    fn header_map_reports_repeats() {
        let mut m = http::HeaderMap::new();
        m.append("x-hub-signature-256", http::HeaderValue::from_static("a"));
        assert_eq!(m.lookup("x-hub-signature-256"), HeaderLookup::One(b"a"));
        m.append("X-Hub-Signature-256", http::HeaderValue::from_static("b"));
        assert_eq!(m.lookup("x-hub-signature-256"), HeaderLookup::Many);
    }
}
