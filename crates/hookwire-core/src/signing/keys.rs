//! Secrets and key rings.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Shortest decoded `whsec_` key accepted (bytes). Svix ships 18-byte keys, so 16 is the floor.
pub const MIN_STANDARD_KEY_LEN: usize = 16;

/// One signing secret.
///
/// The raw bytes sign the `hookwire`, `body`, `github`, `stripe` and `slack` schemes; a
/// `whsec_…` secret additionally decodes to the key the `standard` scheme uses. The keyed HMAC
/// state is computed once here, so verifying a request hashes only the message. `Debug` never
/// shows the secret.
///
/// ```
/// use hookwire_core::Secret;
/// let s = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").with_label("2026-q4");
/// assert!(s.has_standard_key());
/// assert_eq!(format!("{s:?}"), "Secret { label: Some(\"2026-q4\"), key: [redacted] }");
/// assert!(!Secret::new("plain").has_standard_key());
/// ```
#[derive(Clone)]
pub struct Secret {
    label: Option<Arc<str>>,
    raw: HmacSha256,
    raw_len: usize,
    standard: Result<HmacSha256, &'static str>,
    not_before: Option<i64>,
    not_after: Option<i64>,
    #[cfg(feature = "ed25519")]
    pub(crate) ed25519: Option<super::ed::EdKey>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label.as_deref())
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this never fails; the
    // fallback only exists to keep the library free of `expect`.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Decodes a `whsec_` secret into its key bytes.
///
/// ```
/// use hookwire_core::signing::decode_standard_secret;
/// assert_eq!(decode_standard_secret("whsec_AAAAAAAAAAAAAAAAAAAAAA").unwrap().len(), 16);
/// assert_eq!(decode_standard_secret("whsec_AAAAAAAAAAAAAAAAAAAAAA==").unwrap().len(), 16);
/// assert!(decode_standard_secret("AAAAAAAAAAAAAAAAAAAAAA").is_err());
/// assert!(decode_standard_secret("whsec_").is_err());
/// assert!(decode_standard_secret("whsec_not base64!").is_err());
/// assert!(decode_standard_secret("whsec_AAAA").is_err(), "too short");
/// ```
pub fn decode_standard_secret(secret: &str) -> Result<Vec<u8>, &'static str> {
    let Some(b64) = secret.strip_prefix("whsec_") else {
        return Err("a standard secret must start with `whsec_`");
    };
    let trimmed = b64.trim_end_matches('=');
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|_| "a standard secret must be `whsec_` followed by base64")?;
    if key.is_empty() {
        return Err("a standard secret must not be empty");
    }
    if key.len() < MIN_STANDARD_KEY_LEN {
        return Err("a standard secret must decode to at least 16 bytes");
    }
    Ok(key)
}

impl Secret {
    /// A secret from its text (UTF-8) or bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        let bytes = secret.as_ref();
        let standard = std::str::from_utf8(bytes)
            .map_err(|_| "a standard secret must be `whsec_` followed by base64")
            .and_then(decode_standard_secret)
            .map(|k| keyed(&k));
        Self {
            label: None,
            raw: keyed(bytes),
            raw_len: bytes.len(),
            standard,
            not_before: None,
            not_after: None,
            #[cfg(feature = "ed25519")]
            ed25519: super::ed::EdKey::parse(bytes),
        }
    }

    /// Names the secret so logs and [`crate::signing::Verified`] say which key matched.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<Arc<str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Restricts the secret to `[not_before, not_after]` (Unix seconds, either end open), for
    /// scheduled rotation: a retired key stops verifying on its own.
    #[must_use]
    pub fn valid_between(mut self, not_before: Option<i64>, not_after: Option<i64>) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// The label, if set.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(crate) fn label_arc(&self) -> Option<Arc<str>> {
        self.label.clone()
    }

    /// Whether the secret is a valid `whsec_` key for the `standard` scheme.
    pub fn has_standard_key(&self) -> bool {
        self.standard.is_ok()
    }

    /// True when the secret has no bytes.
    pub fn is_empty(&self) -> bool {
        self.raw_len == 0
    }

    pub(crate) fn raw_mac(&self) -> HmacSha256 {
        self.raw.clone()
    }

    /// The keyed state for the raw-byte schemes, to clone per message.
    pub(crate) fn raw_key(&self) -> &HmacSha256 {
        &self.raw
    }

    /// The keyed state for the `standard` scheme, when the secret is a valid `whsec_` key.
    pub(crate) fn standard_key(&self) -> Option<&HmacSha256> {
        self.standard.as_ref().ok()
    }

    pub(crate) fn standard_mac(&self) -> Result<HmacSha256, &'static str> {
        self.standard.clone()
    }

    /// Whether the secret may verify at `now`: inside its validity window, and not empty (a
    /// key anyone can reproduce authenticates nothing, so a misconfigured empty secret fails
    /// closed instead of accepting forged requests).
    pub(crate) fn usable_at(&self, now: i64) -> bool {
        self.raw_len > 0
            && self.not_before.is_none_or(|nb| now >= nb)
            && self.not_after.is_none_or(|na| now <= na)
    }
}

/// Several secrets; verification accepts a request signed by any of them (key rotation).
///
/// ```
/// use hookwire_core::{KeyRing, Secret};
/// let ring = KeyRing::new().with(Secret::new("new").with_label("new")).with(Secret::new("old").with_label("old"));
/// assert_eq!(ring.len(), 2);
/// let single: KeyRing = "only".into();
/// assert_eq!(single.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    secrets: Vec<Secret>,
}

impl KeyRing {
    /// An empty ring (verifies nothing).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a secret.
    #[must_use]
    pub fn with(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }
    /// Adds a secret in place.
    pub fn push(&mut self, secret: Secret) {
        self.secrets.push(secret);
    }
    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
    /// The secrets, in order.
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }
}

impl From<Secret> for KeyRing {
    fn from(s: Secret) -> Self {
        Self { secrets: vec![s] }
    }
}

impl From<&str> for KeyRing {
    fn from(s: &str) -> Self {
        Secret::new(s).into()
    }
}

impl From<String> for KeyRing {
    fn from(s: String) -> Self {
        Secret::new(s).into()
    }
}

impl FromIterator<Secret> for KeyRing {
    fn from_iter<I: IntoIterator<Item = Secret>>(iter: I) -> Self {
        Self {
            secrets: iter.into_iter().collect(),
        }
    }
}
