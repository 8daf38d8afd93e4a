//! Signature schemes: sign and verify webhooks the way hookwire, Standard Webhooks/Svix, GitHub,
//! Stripe and Slack do.
//!
//! The sender and the receiver share this one implementation so they can never disagree. Bodies
//! are raw bytes: the exact bytes on the wire are signed and verified, never a re-serialization,
//! and verification streams them through the HMAC without copying.
//!
//! Verification checks, in this order, so the reason is deterministic: the signature header is
//! present (`missing-signature`), the timestamp header (`missing-timestamp`), the id header
//! (`missing-id`); the timestamp is a canonical decimal integer (else `missing-timestamp`); it is
//! inside the window (`stale` / `future`); a signature matches one of the keys
//! (`bad-signature`). A repeated signature header, an over-long header or too many signature
//! entries is `malformed-header`.
//!
//! ```
//! use hookwire_core::signing::{sign, verify, Scheme, SignInput, VerifyOptions};
//! use hookwire_core::{KeyRing, Secret};
//!
//! let secret = Secret::new("test-secret");
//! let body = br#"{"orderId":"o-1"}"#;
//! let headers = sign(Scheme::Hookwire, &secret, &SignInput::new(body, 1_700_000_000)).unwrap();
//! assert_eq!(
//!     headers.get("X-Webhook-Signature"),
//!     Some("sha256=a076b00daf4150523b4c8f1e391714f9b9475d05433f414ea087de28fd94faed")
//! );
//! let pairs = headers.to_vec();
//! let ok = verify(&pairs, body, &KeyRing::from(secret), &VerifyOptions::default().at(1_700_000_100)).unwrap();
//! assert_eq!(ok.scheme, Scheme::Hookwire);
//! ```

mod headers;
mod keys;
mod verify;

#[cfg(feature = "ed25519")]
mod ed;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use hmac::Mac;

pub use headers::{HeaderLookup, HeaderSource, lookup_pairs_into, present_mask_of};
pub use keys::{KeyRing, MIN_STANDARD_KEY_LEN, Secret, decode_standard_secret};
pub use verify::verify;

/// Default tolerance for timestamps, each way: 300 s.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Default cap on signature entries in one header.
pub const DEFAULT_MAX_SIGNATURES: usize = 16;
/// Default cap on a signature header's length, bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// A signature scheme.
///
/// ```
/// use hookwire_core::signing::Scheme;
/// assert_eq!("standard".parse::<Scheme>().unwrap(), Scheme::Standard);
/// assert_eq!(Scheme::Github.as_str(), "github");
/// assert!("nope".parse::<Scheme>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `X-Webhook-Signature: sha256=<hex>` over `{timestamp}.{body}`, `X-Webhook-Timestamp`;
    /// wire-compatible with the TypeScript sender. The default.
    Hookwire,
    /// `X-Webhook-Signature: sha256=<hex>` over the body only (plus `X-Webhook-Id`,
    /// `X-Webhook-Event`). No timestamp, so no replay protection: never picked by `auto`.
    Body,
    /// Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64>`
    /// over `{id}.{timestamp}.{body}`, with a `whsec_` key; `svix-*` aliases accepted.
    Standard,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>…` over `{t}.{body}`.
    Stripe,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 6] = [
        Scheme::Hookwire,
        Scheme::Body,
        Scheme::Standard,
        Scheme::Github,
        Scheme::Stripe,
        Scheme::Slack,
    ];

    /// The scheme's name as the CLI spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Hookwire => "hookwire",
            Scheme::Body => "body",
            Scheme::Standard => "standard",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Slack => "slack",
        }
    }

    /// Whether the scheme signs a message id.
    pub const fn signs_id(self) -> bool {
        matches!(self, Scheme::Standard)
    }

    /// Whether the scheme carries a timestamp (and so protects against replays).
    pub const fn has_timestamp(self) -> bool {
        matches!(
            self,
            Scheme::Hookwire | Scheme::Standard | Scheme::Stripe | Scheme::Slack
        )
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scheme name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScheme(pub String);

impl fmt::Display for UnknownScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown signature scheme {:?} (expected hookwire, standard, github, stripe, slack or body)",
            self.0
        )
    }
}

impl std::error::Error for UnknownScheme {}

impl FromStr for Scheme {
    type Err = UnknownScheme;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownScheme(s.to_owned()))
    }
}

/// Which scheme(s) verification accepts.
///
/// ```
/// use hookwire_core::signing::{Scheme, SchemeChoice};
/// assert_eq!("auto".parse::<SchemeChoice>().unwrap(), SchemeChoice::Auto);
/// assert_eq!("slack".parse::<SchemeChoice>().unwrap(), SchemeChoice::Only(Scheme::Slack));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemeChoice {
    /// Exactly this scheme.
    Only(Scheme),
    /// Pick from the signature header present: `webhook-signature`/`svix-signature` → standard,
    /// `stripe-signature` → stripe, `x-hub-signature-256` → github, `x-slack-signature` →
    /// slack, `x-webhook-signature` → hookwire. Never `body` (it has no replay protection).
    #[default]
    Auto,
}

impl From<Scheme> for SchemeChoice {
    fn from(s: Scheme) -> Self {
        SchemeChoice::Only(s)
    }
}

impl FromStr for SchemeChoice {
    type Err = UnknownScheme;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            Ok(SchemeChoice::Auto)
        } else {
            s.parse().map(SchemeChoice::Only)
        }
    }
}

/// Why verification failed. The reason strings are a wire contract (`{"error":"stale"}`).
///
/// ```
/// use hookwire_core::signing::VerifyError;
/// assert_eq!(VerifyError::BadSignature.as_str(), "bad-signature");
/// assert_eq!(VerifyError::Stale.status(), 401);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyError {
    /// No signature header.
    MissingSignature,
    /// No timestamp, or not a canonical decimal integer.
    MissingTimestamp,
    /// No message id where the scheme signs one.
    MissingId,
    /// Older than the tolerance allows.
    Stale,
    /// Newer than the tolerance allows.
    Future,
    /// No signature matched any key (or signatures were not decodable).
    BadSignature,
    /// A header repeated, too long, or with too many entries.
    MalformedHeader,
}

impl VerifyError {
    /// Every reason.
    pub const ALL: [VerifyError; 7] = [
        VerifyError::MissingSignature,
        VerifyError::MissingTimestamp,
        VerifyError::MissingId,
        VerifyError::Stale,
        VerifyError::Future,
        VerifyError::BadSignature,
        VerifyError::MalformedHeader,
    ];

    /// The reason string.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerifyError::MissingSignature => "missing-signature",
            VerifyError::MissingTimestamp => "missing-timestamp",
            VerifyError::MissingId => "missing-id",
            VerifyError::Stale => "stale",
            VerifyError::Future => "future",
            VerifyError::BadSignature => "bad-signature",
            VerifyError::MalformedHeader => "malformed-header",
        }
    }

    /// The HTTP status a receiver answers with: always 401.
    pub const fn status(self) -> u16 {
        401
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for VerifyError {}

/// How to verify.
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::signing::{Scheme, VerifyOptions};
/// let o = VerifyOptions::new(Scheme::Stripe).tolerance(Duration::from_secs(60)).at(1_700_000_000);
/// assert_eq!(o.now, Some(1_700_000_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Accepted scheme(s). Default `auto`.
    pub scheme: SchemeChoice,
    /// How far in the past a timestamp may be. Default 300 s.
    pub tolerance_past: Duration,
    /// How far in the future a timestamp may be. Default 300 s.
    pub tolerance_future: Duration,
    /// "Now" in Unix seconds; `None` reads the clock.
    pub now: Option<i64>,
    /// Skip the window check (replaying stored deliveries, tests). The timestamp must still parse.
    pub ignore_timestamp: bool,
    /// Most signature entries examined in one header.
    pub max_signatures: usize,
    /// Longest signature header accepted, bytes.
    pub max_header_len: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            scheme: SchemeChoice::Auto,
            tolerance_past: DEFAULT_TOLERANCE,
            tolerance_future: DEFAULT_TOLERANCE,
            now: None,
            ignore_timestamp: false,
            max_signatures: DEFAULT_MAX_SIGNATURES,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
        }
    }
}

impl VerifyOptions {
    /// Options for one scheme (or `auto`), defaults otherwise.
    pub fn new(scheme: impl Into<SchemeChoice>) -> Self {
        Self {
            scheme: scheme.into(),
            ..Self::default()
        }
    }
    /// Sets both tolerances.
    #[must_use]
    pub fn tolerance(mut self, t: Duration) -> Self {
        self.tolerance_past = t;
        self.tolerance_future = t;
        self
    }
    /// Sets the past and future tolerances separately.
    #[must_use]
    pub fn tolerances(mut self, past: Duration, future: Duration) -> Self {
        self.tolerance_past = past;
        self.tolerance_future = future;
        self
    }
    /// Verifies as of `now` (Unix seconds).
    #[must_use]
    pub fn at(mut self, now: i64) -> Self {
        self.now = Some(now);
        self
    }
    /// Skips the window check.
    #[must_use]
    pub fn ignoring_timestamp(mut self) -> Self {
        self.ignore_timestamp = true;
        self
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The scheme that verified.
    pub scheme: Scheme,
    /// Index of the matching secret in the key ring.
    pub key_index: usize,
    /// Label of the matching secret.
    pub key_label: Option<std::sync::Arc<str>>,
    /// The message id: signed for `standard`; the delivery id header for `github` and `body`.
    pub id: Option<String>,
    /// The verified timestamp, for schemes that carry one.
    pub timestamp: Option<i64>,
    /// The event type header, where the scheme has one (`X-GitHub-Event`, `X-Webhook-Event`).
    pub event_type: Option<String>,
    /// The HMAC that matched, as bytes (`None` for an Ed25519 `v1a` match). However the header
    /// spelled it (hex case, extra entries, spacing), one signed message has one MAC: replay
    /// protection keys on these bytes, never on the header text.
    pub mac: Option<[u8; 32]>,
}

impl Verified {
    /// Whether the id was covered by the signature (safe to use as an idempotency key even
    /// against an attacker who can replay inside the window).
    pub fn id_is_signed(&self) -> bool {
        self.scheme.signs_id() && self.id.is_some()
    }
}

/// What to sign.
///
/// ```
/// let i = hookwire_core::signing::SignInput::new(b"{}", 1_700_000_000).id("msg_1").event_type("order.created");
/// assert_eq!(i.id, Some("msg_1"));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SignInput<'a> {
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
    /// Unix seconds.
    pub timestamp: i64,
    /// Message id; schemes that need one generate `msg_…` when absent.
    pub id: Option<&'a str>,
    /// Event type, for schemes with an event header.
    pub event_type: Option<&'a str>,
}

impl<'a> SignInput<'a> {
    /// Body and timestamp.
    pub fn new(body: &'a [u8], timestamp: i64) -> Self {
        Self {
            body,
            timestamp,
            id: None,
            event_type: None,
        }
    }
    /// Sets the id.
    #[must_use]
    pub fn id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }
    /// Sets the event type.
    #[must_use]
    pub fn event_type(mut self, t: &'a str) -> Self {
        self.event_type = Some(t);
        self
    }
}

/// Headers produced by [`sign`], in the order to send them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedHeaders(Vec<(&'static str, String)>);

impl SignedHeaders {
    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Iterates over `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str()))
    }
    /// Owned `(name, value)` pairs (also a [`HeaderSource`]).
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for SignedHeaders {
    type Item = (&'static str, String);
    type IntoIter = std::vec::IntoIter<(&'static str, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Why signing failed.
///
/// ```
/// use hookwire_core::signing::{sign, Scheme, SignInput, SignError};
/// let e = sign(Scheme::Standard, &hookwire_core::Secret::new("plain"), &SignInput::new(b"", 0)).unwrap_err();
/// assert!(matches!(e, SignError::InvalidSecret(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The secret cannot be used with this scheme (e.g. `standard` without `whsec_`).
    InvalidSecret(&'static str),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::InvalidSecret(why) => write!(f, "invalid secret: {why}"),
        }
    }
}

impl std::error::Error for SignError {}

/// A MAC in lowercase hex, kept on the stack until it is written into its header.
struct HexMac([u8; 64]);

impl HexMac {
    fn as_str(&self) -> &str {
        // Hex digits are ASCII, so the fallback never happens.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for HexMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Encoded into a fixed buffer: `hex::encode` builds its `String` one `char` at a time, which
// cost a sender a tenth of a delivery's CPU.
fn hex_mac(mut mac: keys::HmacSha256, parts: &[&[u8]]) -> HexMac {
    for p in parts {
        mac.update(p);
    }
    let mut out = [0u8; 64];
    // 32 bytes always fill the 64-digit buffer exactly.
    let _ = hex::encode_to_slice(mac.finalize().into_bytes(), &mut out);
    HexMac(out)
}

/// Signs `input` with `secret` under `scheme` and returns the headers to send.
///
/// ```
/// use hookwire_core::signing::{sign, Scheme, SignInput};
/// let h = sign(Scheme::Github, &hookwire_core::Secret::new("It's a Secret to Everybody"), &SignInput::new(b"Hello, World!", 0)).unwrap();
/// assert_eq!(h.get("X-Hub-Signature-256"), Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
/// ```
pub fn sign(
    scheme: Scheme,
    secret: &Secret,
    input: &SignInput<'_>,
) -> Result<SignedHeaders, SignError> {
    let ts = input.timestamp.to_string();
    let body = input.body;
    let mut out = Vec::with_capacity(3);
    match scheme {
        Scheme::Hookwire => {
            let sig = hex_mac(secret.raw_mac(), &[ts.as_bytes(), b".", body]);
            out.push(("X-Webhook-Signature", format!("sha256={sig}")));
            out.push(("X-Webhook-Timestamp", ts));
        }
        Scheme::Body => {
            let sig = hex_mac(secret.raw_mac(), &[body]);
            let id = input
                .id
                .map_or_else(|| crate::id::new_id("msg"), str::to_owned);
            out.push(("X-Webhook-Signature", format!("sha256={sig}")));
            out.push(("X-Webhook-Id", id));
            if let Some(t) = input.event_type {
                out.push(("X-Webhook-Event", t.to_owned()));
            }
        }
        Scheme::Standard => {
            let id = input
                .id
                .map_or_else(|| crate::id::new_id("msg"), str::to_owned);
            let mut sigs = Vec::with_capacity(2);
            #[cfg(feature = "ed25519")]
            if let Some(sig) = ed::sign_v1a(secret, &id, &ts, body) {
                sigs.push(sig);
            }
            if sigs.is_empty() {
                let mut mac = secret.standard_mac().map_err(SignError::InvalidSecret)?;
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts.as_bytes());
                mac.update(b".");
                mac.update(body);
                let b64 =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                sigs.push(format!("v1,{b64}"));
            }
            out.push(("webhook-id", id));
            out.push(("webhook-timestamp", ts));
            out.push(("webhook-signature", sigs.join(" ")));
        }
        Scheme::Github => {
            let sig = hex_mac(secret.raw_mac(), &[body]);
            out.push(("X-Hub-Signature-256", format!("sha256={sig}")));
            if let Some(id) = input.id {
                out.push(("X-GitHub-Delivery", id.to_owned()));
            }
            if let Some(t) = input.event_type {
                out.push(("X-GitHub-Event", t.to_owned()));
            }
        }
        Scheme::Stripe => {
            let sig = hex_mac(secret.raw_mac(), &[ts.as_bytes(), b".", body]);
            out.push(("Stripe-Signature", format!("t={ts},v1={sig}")));
        }
        Scheme::Slack => {
            let sig = hex_mac(secret.raw_mac(), &[b"v0:", ts.as_bytes(), b":", body]);
            out.push(("X-Slack-Signature", format!("v0={sig}")));
            out.push(("X-Slack-Request-Timestamp", ts));
        }
    }
    Ok(SignedHeaders(out))
}
