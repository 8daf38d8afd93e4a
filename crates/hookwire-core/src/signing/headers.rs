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
/// `http::HeaderMap` (feature `http`, on by default) and for slices and vectors of
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
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        (**self).lookup(name)
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

#[cfg(feature = "http")]
impl HeaderSource for http::HeaderMap {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        let mut it = self.get_all(name).iter();
        match (it.next(), it.next()) {
            (None, _) => HeaderLookup::Absent,
            (Some(v), None) => HeaderLookup::One(v.as_bytes()),
            (Some(_), Some(_)) => HeaderLookup::Many,
        }
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn header_map_reports_repeats() {
        let mut m = http::HeaderMap::new();
        m.append("x-hub-signature-256", http::HeaderValue::from_static("a"));
        assert_eq!(m.lookup("x-hub-signature-256"), HeaderLookup::One(b"a"));
        m.append("X-Hub-Signature-256", http::HeaderValue::from_static("b"));
        assert_eq!(m.lookup("x-hub-signature-256"), HeaderLookup::Many);
    }
}
