//! Event-name patterns: one grammar and one matcher for the whole workspace.
//!
//! Grammar: dot-separated segments of `[A-Za-z0-9_-]+`; `*` may appear only as the whole last
//! segment (`order.*`) or alone (`*`). `order.created` matches exactly; `order.*` matches any name
//! with at least one more segment after `order` (`order.created`, `order.item.added`, not
//! `order`); `*` matches every non-empty name. The sender's subscriptions, the receiver's
//! routing, SSE filters and the WebSocket gateway all use [`Pattern`] and [`PatternSet`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Longest accepted pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 255;
/// Most segments in one pattern.
pub const MAX_SEGMENTS: usize = 32;

/// Why a pattern string was refused.
///
/// ```
/// let e = hookwire_core::Pattern::parse("order.*.x").unwrap_err();
/// assert_eq!(e.to_string(), "invalid event pattern \"order.*.x\": `*` is only allowed as the whole last segment");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    why: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event pattern {:?}: {}", self.pattern, self.why)
    }
}

impl std::error::Error for PatternError {}

/// A validated event pattern.
///
/// ```
/// use hookwire_core::Pattern;
/// let p: Pattern = "order.*".parse().unwrap();
/// assert!(p.matches("order.created"));
/// assert!(p.matches("order.item.added"));
/// assert!(!p.matches("order"));
/// assert!(!p.matches("orders.created"));
/// assert!(Pattern::parse("*").unwrap().matches("anything.at.all"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    // Length of the literal prefix including the trailing dot for prefix patterns (`order.`),
    // 0 for `*`; `None` for exact patterns.
    prefix_len: Option<usize>,
}

impl Pattern {
    /// Parses and validates a pattern.
    ///
    /// ```
    /// use hookwire_core::Pattern;
    /// assert!(Pattern::parse("order.created").is_ok());
    /// for bad in ["", ".", "order.", ".order", "order..x", "or der", "order.*x", "*.order", "ordér"] {
    ///     assert!(Pattern::parse(bad).is_err(), "{bad}");
    /// }
    /// ```
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let err = |why| PatternError {
            pattern: s.chars().take(MAX_PATTERN_LEN).collect(),
            why,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(err("longer than 255 bytes"));
        }
        let segments: Vec<&str> = s.split('.').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(err("more than 32 segments"));
        }
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            if seg.is_empty() {
                return Err(err("empty segment"));
            }
            if *seg == "*" {
                if i != last {
                    return Err(err("`*` is only allowed as the whole last segment"));
                }
                continue;
            }
            if seg.contains('*') {
                return Err(err("`*` is only allowed as the whole last segment"));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err("segments may only contain A-Z, a-z, 0-9, `_` and `-`"));
            }
        }
        let prefix_len = (segments[last] == "*").then(|| s.len() - 1);
        Ok(Self {
            text: s.to_owned(),
            prefix_len,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `*`.
    pub fn is_global(&self) -> bool {
        self.prefix_len == Some(0)
    }

    /// True for exact patterns (no wildcard).
    pub fn is_exact(&self) -> bool {
        self.prefix_len.is_none()
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self.prefix_len {
            None => self.text == name,
            Some(0) => !name.is_empty(),
            Some(n) => name.len() > n && name.as_bytes().starts_with(&self.text.as_bytes()[..n]),
        }
    }

    /// The literal prefix without its dot for prefix patterns (`order` for `order.*`, `""` for
    /// `*`), `None` for exact patterns.
    pub(crate) fn wildcard_prefix(&self) -> Option<&str> {
        match self.prefix_len {
            None => None,
            Some(0) => Some(""),
            Some(n) => Some(&self.text[..n - 1]),
        }
    }

    fn literal_segments(&self) -> impl Iterator<Item = &str> {
        let lit = match self.prefix_len {
            None => self.text.as_str(),
            Some(0) => "",
            Some(n) => &self.text[..n - 1],
        };
        lit.split('.').filter(|s| !s.is_empty())
    }
}

impl FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug)]
struct Node {
    children: HashMap<Box<str>, Node>,
    exact: Vec<usize>,
    wildcard: Vec<usize>,
}

impl Node {
    fn new() -> Self {
        Self {
            children: HashMap::new(),
            exact: Vec::new(),
            wildcard: Vec::new(),
        }
    }
}

/// Many patterns compiled into a trie, each mapped to a value (a subscription id, a route).
///
/// Matching walks the name's segments once, so its cost depends on the name's length, not on the
/// number of patterns. Values come back in insertion order, each at most once per pattern that
/// matches.
///
/// ```
/// use hookwire_core::{Pattern, PatternSet};
/// let mut set = PatternSet::new();
/// set.insert(Pattern::parse("order.created").unwrap(), "exact");
/// set.insert(Pattern::parse("order.*").unwrap(), "prefix");
/// set.insert(Pattern::parse("*").unwrap(), "all");
/// set.insert(Pattern::parse("user.*").unwrap(), "user");
/// assert_eq!(set.matching("order.created"), vec![&"exact", &"prefix", &"all"]);
/// assert_eq!(set.matching("order"), vec![&"all"]);
/// assert!(set.matching("").is_empty());
/// ```
#[derive(Debug)]
pub struct PatternSet<T> {
    root: Node,
    values: Vec<(Pattern, T)>,
}

impl<T> Default for PatternSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PatternSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            values: Vec::new(),
        }
    }

    /// Adds a pattern with its value.
    pub fn insert(&mut self, pattern: Pattern, value: T) {
        let idx = self.values.len();
        let mut node = &mut self.root;
        for seg in pattern.literal_segments() {
            node = node.children.entry(seg.into()).or_insert_with(Node::new);
        }
        if pattern.is_exact() {
            node.exact.push(idx);
        } else {
            node.wildcard.push(idx);
        }
        self.values.push((pattern, value));
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether any pattern matches `name`.
    ///
    /// ```
    /// let set: hookwire_core::PatternSet<()> = ["a.*"].iter().map(|p| (p.parse().unwrap(), ())).collect();
    /// assert!(set.is_match("a.b"));
    /// assert!(!set.is_match("b.a"));
    /// ```
    pub fn is_match(&self, name: &str) -> bool {
        let mut found = false;
        self.walk(name, |_| {
            found = true;
        });
        found
    }

    /// Every value whose pattern matches `name`, in insertion order.
    pub fn matching(&self, name: &str) -> Vec<&T> {
        let mut idx = Vec::new();
        self.walk(name, |i| idx.push(i));
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.values[i].1).collect()
    }

    /// Iterates over `(pattern, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Pattern, &T)> {
        self.values.iter().map(|(p, v)| (p, v))
    }

    fn walk(&self, name: &str, mut hit: impl FnMut(usize)) {
        if name.is_empty() {
            return;
        }
        let mut node = &self.root;
        let mut rest = name;
        loop {
            if rest.is_empty() {
                // `order.` has no segment after the prefix: `order.*` needs one.
                return;
            }
            // Some text remains in `rest`, so prefix patterns at this node match.
            node.wildcard.iter().for_each(|&i| hit(i));
            let (seg, tail) = match rest.split_once('.') {
                Some((s, t)) => (s, Some(t)),
                None => (rest, None),
            };
            let Some(child) = node.children.get(seg) else {
                return;
            };
            node = child;
            match tail {
                Some(t) => rest = t,
                None => {
                    node.exact.iter().for_each(|&i| hit(i));
                    return;
                }
            }
        }
    }
}

impl<T> FromIterator<(Pattern, T)> for PatternSet<T> {
    fn from_iter<I: IntoIterator<Item = (Pattern, T)>>(iter: I) -> Self {
        let mut set = Self::new();
        for (p, v) in iter {
            set.insert(p, v);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn prefix_does_not_match_sibling_with_shared_text() {
        assert!(!p("order.*").matches("order"));
        assert!(!p("order.*").matches("order."), "needs a non-empty tail");
        assert!(!p("order.*").matches("orderx.created"));
        assert!(p("a.b.*").matches("a.b.c.d"));
    }

    #[test]
    fn trie_agrees_with_single_pattern_matching() {
        let pats = ["*", "a", "a.*", "a.b", "a.b.*", "b.*", "a-b.c_d", "x.y.z"];
        let set: PatternSet<&str> = pats.iter().map(|s| (p(s), *s)).collect();
        let names = [
            "a", "a.b", "a.b.c", "b", "b.c", "a-b.c_d", "x.y.z", "x.y", "", "a.", ".a", "a..b",
        ];
        for n in names {
            let want: Vec<&&str> = pats.iter().filter(|s| p(s).matches(n)).collect();
            assert_eq!(set.matching(n), want, "name {n:?}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        assert!(Pattern::parse(&"a".repeat(256)).is_err());
        assert!(Pattern::parse(&vec!["a"; 33].join(".")).is_err());
        assert!(Pattern::parse(&vec!["a"; 32].join(".")).is_ok());
    }

    #[test]
    fn serde_round_trip_validates() {
        let v: Pattern = serde_json::from_str("\"order.*\"").unwrap();
        assert_eq!(v, p("order.*"));
        assert!(serde_json::from_str::<Pattern>("\"order.**\"").is_err());
    }
}
