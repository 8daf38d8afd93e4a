//! Scopes: what an identity may do (a service account's grants, or the scopes of a user's token),
//! and rules naming which rooms and event patterns need which scope.
//!
//! The WebSocket gateway and the SSE routes check the same [`ScopeRules`], so an identity is
//! refused a room on both transports alike. A rule applies to *every* identity, user or service:
//! an identity without the scope is refused (fail closed).
//!
//! A rule's pattern uses the event-pattern grammar ([`Pattern`]). A request is refused when what
//! it could receive overlaps the rule:
//! - an event filter (`order.*`, `order.paid`, `*`) overlaps a rule when some event name matches
//!   both (so the filter `*` needs every rule's scope);
//! - a room (or SSE state stream) `r` carries the events of resource `r`, so it overlaps a rule
//!   that matches the name `r` itself or any name `r.<…>`.
//!
//! ```
//! use hookwire_core::scope::{ScopeRules, Scopes};
//! use hookwire_core::Pattern;
//!
//! let mut rules = ScopeRules::new();
//! rules.require("audit.*", "audit:read").unwrap();
//! let reader = Scopes::new(["audit:read", "orders:read"]);
//! let other = Scopes::new(["orders:read"]);
//! assert_eq!(rules.missing_for_room("audit", &other), Some("audit:read"));
//! assert_eq!(rules.missing_for_room("audit", &reader), None);
//! assert_eq!(rules.missing_for_room("order", &other), None);
//! let all = Pattern::parse("*").unwrap();
//! assert_eq!(rules.missing_for_pattern(&all, &other), Some("audit:read"));
//! ```

use std::fmt;
use std::sync::Arc;

use crate::pattern::Pattern;

/// Most scopes one [`Scopes`] holds; further ones are dropped (fewer rights, never more).
pub const MAX_SCOPES: usize = 64;
/// Longest scope in bytes; a longer one is dropped.
pub const MAX_SCOPE_LEN: usize = 128;
/// Most rules one [`ScopeRules`] holds; [`ScopeRules::require`] refuses more.
pub const MAX_SCOPE_RULES: usize = 256;

/// A sorted set of scopes (`orders:read`, `audit:read`, …), cheap to clone.
///
/// Bounded: at most [`MAX_SCOPES`] scopes of at most [`MAX_SCOPE_LEN`] bytes; empty, over-long
/// and surplus scopes are dropped, so a hostile token can only lose rights by being large.
///
/// ```
/// let s = hookwire_core::scope::Scopes::new(["b", "a", "b", ""]);
/// assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b"]);
/// assert!(s.contains("a") && !s.contains("c"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Arc<[Box<str>]>);

impl Scopes {
    /// The set of `scopes` (sorted, duplicates removed, bounded as described above).
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut v: Vec<Box<str>> = scopes
            .into_iter()
            .filter(|s| !s.as_ref().is_empty() && s.as_ref().len() <= MAX_SCOPE_LEN)
            .take(MAX_SCOPES)
            .map(|s| Box::from(s.as_ref()))
            .collect();
        v.sort_unstable();
        v.dedup();
        Self(v.into())
    }

    /// Whether `scope` is held (exact, case-sensitive comparison).
    ///
    /// ```
    /// assert!(!hookwire_core::scope::Scopes::new(["Audit:read"]).contains("audit:read"));
    /// ```
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// The scopes, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    /// How many scopes are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What a subscription can receive, in pattern terms.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// Every name.
    All,
    /// Exactly this name.
    Exact(&'a str),
    /// Every name `p.<…>`.
    Under(&'a str),
}

impl<'a> Target<'a> {
    fn of(p: &'a Pattern) -> Self {
        match p.wildcard_prefix() {
            None => Target::Exact(p.as_str()),
            Some("") => Target::All,
            Some(prefix) => Target::Under(prefix),
        }
    }
}

/// Whether `name` is `prefix.<something>`.
fn is_under(name: &str, prefix: &str) -> bool {
    name.len() > prefix.len() && name.starts_with(prefix) && name.as_bytes()[prefix.len()] == b'.'
}

/// Whether some name matches both targets.
fn overlaps(a: Target<'_>, b: Target<'_>) -> bool {
    match (a, b) {
        (Target::All, _) | (_, Target::All) => true,
        (Target::Exact(x), Target::Exact(y)) => x == y,
        (Target::Exact(x), Target::Under(p)) | (Target::Under(p), Target::Exact(x)) => {
            is_under(x, p)
        }
        (Target::Under(p), Target::Under(q)) => p == q || is_under(p, q) || is_under(q, p),
    }
}

/// A rule was refused by [`ScopeRules::require`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRuleError {
    why: String,
}

impl fmt::Display for ScopeRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for ScopeRuleError {}

/// Rules "what matches this pattern needs this scope", checked when an identity joins a room,
/// opens a stream or subscribes to an event filter. Cheap to clone.
///
/// ```
/// use hookwire_core::scope::{ScopeRules, Scopes};
/// let mut rules = ScopeRules::new();
/// rules.require("billing", "billing:read").unwrap();
/// assert!(rules.require("bad pattern", "x").is_err());
/// assert_eq!(rules.missing_for_room("billing", &Scopes::default()), Some("billing:read"));
/// ```
#[derive(Clone, Default)]
pub struct ScopeRules {
    rules: Arc<Vec<(Pattern, Box<str>)>>,
}

impl fmt::Debug for ScopeRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.rules.iter().map(|(p, s)| (p.as_str(), &**s)))
            .finish()
    }
}

impl ScopeRules {
    /// No rules: nothing needs a scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule: rooms, streams and event filters overlapping `pattern` need `scope`.
    ///
    /// # Errors
    /// A `pattern` outside the event-pattern grammar, an empty scope or one longer than
    /// [`MAX_SCOPE_LEN`], or more than [`MAX_SCOPE_RULES`] rules.
    pub fn require(&mut self, pattern: &str, scope: &str) -> Result<(), ScopeRuleError> {
        let pattern = Pattern::parse(pattern).map_err(|e| ScopeRuleError {
            why: format!("scope rule pattern: {e}"),
        })?;
        if scope.is_empty() || scope.len() > MAX_SCOPE_LEN {
            return Err(ScopeRuleError {
                why: format!("a scope must be 1 to {MAX_SCOPE_LEN} bytes"),
            });
        }
        if self.rules.len() >= MAX_SCOPE_RULES {
            return Err(ScopeRuleError {
                why: format!("at most {MAX_SCOPE_RULES} scope rules"),
            });
        }
        Arc::make_mut(&mut self.rules).push((pattern, Box::from(scope)));
        Ok(())
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first scope `held` lacks for an event filter `requested`, if any.
    ///
    /// ```
    /// use hookwire_core::{Pattern, scope::{ScopeRules, Scopes}};
    /// let mut rules = ScopeRules::new();
    /// rules.require("audit.login", "audit:read").unwrap();
    /// let none = Scopes::default();
    /// let p = |s: &str| Pattern::parse(s).unwrap();
    /// assert_eq!(rules.missing_for_pattern(&p("audit.*"), &none), Some("audit:read"));
    /// assert_eq!(rules.missing_for_pattern(&p("audit.logout"), &none), None);
    /// assert_eq!(rules.missing_for_pattern(&p("order.*"), &none), None);
    /// ```
    pub fn missing_for_pattern(&self, requested: &Pattern, held: &Scopes) -> Option<&str> {
        let want = Target::of(requested);
        self.first_missing(held, |rule| overlaps(rule, want))
    }

    /// The first scope `held` lacks for room (or state stream) `room`, if any: the room carries
    /// the events of resource `room`, so rules matching `room` or `room.<…>` apply.
    ///
    /// ```
    /// use hookwire_core::scope::{ScopeRules, Scopes};
    /// let mut rules = ScopeRules::new();
    /// rules.require("order.refund", "refunds:read").unwrap();
    /// assert_eq!(rules.missing_for_room("order", &Scopes::default()), Some("refunds:read"));
    /// assert_eq!(rules.missing_for_room("orders", &Scopes::default()), None);
    /// ```
    pub fn missing_for_room(&self, room: &str, held: &Scopes) -> Option<&str> {
        self.first_missing(held, |rule| {
            overlaps(rule, Target::Exact(room)) || overlaps(rule, Target::Under(room))
        })
    }

    fn first_missing(&self, held: &Scopes, applies: impl Fn(Target<'_>) -> bool) -> Option<&str> {
        self.rules
            .iter()
            .find(|(p, scope)| applies(Target::of(p)) && !held.contains(scope))
            .map(|(_, scope)| &**scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn overlap_is_exact_for_the_pattern_grammar() {
        let cases = [
            ("order.*", "order.paid", true),
            ("order.*", "order", false),
            ("order.*", "orders.paid", false),
            ("order.*", "order.item.*", true),
            ("order.item.*", "order.*", true),
            ("order.item.*", "order.line.*", false),
            ("*", "x", true),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
        ];
        for (a, b, want) in cases {
            let (pa, pb) = (p(a), p(b));
            let (ta, tb) = (Target::of(&pa), Target::of(&pb));
            assert_eq!(overlaps(ta, tb), want, "{a} vs {b}");
            assert_eq!(overlaps(tb, ta), want, "{b} vs {a}");
        }
    }

    #[test]
    fn rooms_cover_their_resource_events_and_nothing_else() {
        let mut rules = ScopeRules::new();
        rules.require("audit.*", "audit:read").unwrap();
        let none = Scopes::default();
        assert!(rules.missing_for_room("audit", &none).is_some());
        assert!(rules.missing_for_room("audit.eu", &none).is_some());
        assert!(rules.missing_for_room("audit-log", &none).is_none());
        assert!(rules.missing_for_room("auditx", &none).is_none());
        // Room names are free-form: separators a pattern could not hold never panic.
        assert!(rules.missing_for_room("a:b c", &none).is_none());
    }

    #[test]
    fn scopes_are_bounded_and_only_ever_lose_entries() {
        let many: Vec<String> = (0..1000).map(|i| format!("s{i:04}")).collect();
        assert_eq!(Scopes::new(&many).len(), MAX_SCOPES);
        let long = "x".repeat(MAX_SCOPE_LEN + 1);
        assert!(Scopes::new([long.as_str()]).is_empty());
        let mut rules = ScopeRules::new();
        assert!(rules.require("a", &long).is_err());
        assert!(rules.require("a", "").is_err());
        for _ in 0..MAX_SCOPE_RULES {
            rules.require("a", "s").unwrap();
        }
        assert!(rules.require("a", "s").is_err());
    }
}
