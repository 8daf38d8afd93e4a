//! Standard Webhooks `v1a` (ed25519) signatures, behind the `ed25519` feature.
//!
//! Secrets: `whsk_<base64>` is a signing key (its 32-byte seed, or seed plus public key);
//! `whpk_<base64>` is a verifying key. A signing key also verifies.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::keys::KeyRing;

#[derive(Clone)]
pub(crate) enum EdKey {
    Signing(Box<SigningKey>),
    Verifying(VerifyingKey),
}

impl EdKey {
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        if let Some(rest) = text.strip_prefix("whsk_") {
            let raw = b64.decode(rest.trim_end_matches('=')).ok()?;
            let seed: [u8; 32] = raw.get(..32)?.try_into().ok()?;
            return Some(EdKey::Signing(Box::new(SigningKey::from_bytes(&seed))));
        }
        if let Some(rest) = text.strip_prefix("whpk_") {
            let raw = b64.decode(rest.trim_end_matches('=')).ok()?;
            let pk: [u8; 32] = raw.as_slice().try_into().ok()?;
            return VerifyingKey::from_bytes(&pk).ok().map(EdKey::Verifying);
        }
        None
    }

    fn verifying(&self) -> VerifyingKey {
        match self {
            EdKey::Signing(s) => s.verifying_key(),
            EdKey::Verifying(v) => *v,
        }
    }
}

fn message(id: &[u8], ts: &[u8], body: &[u8]) -> Vec<u8> {
    // ed25519 is not streaming in ed25519-dalek's plain API, so the message is assembled once.
    let mut m = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    m.extend_from_slice(id);
    m.push(b'.');
    m.extend_from_slice(ts);
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

pub(crate) fn sign_v1a(secret: &super::Secret, id: &str, ts: &str, body: &[u8]) -> Option<String> {
    let EdKey::Signing(key) = secret.ed25519.as_ref()? else {
        return None;
    };
    let sig = key.sign(&message(id.as_bytes(), ts.as_bytes(), body));
    Some(format!(
        "v1a,{}",
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    ))
}

pub(crate) fn decode_sig(v: &[u8]) -> Option<[u8; 64]> {
    let mut buf = [0u8; 72];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(v, &mut buf)
        .ok()?;
    (n == 64).then(|| {
        let mut out = [0u8; 64];
        out.copy_from_slice(&buf[..64]);
        out
    })
}

pub(crate) fn find_key(
    keys: &KeyRing,
    now: i64,
    sigs: &[[u8; 64]],
    parts: &[&[u8]; 5],
) -> Option<usize> {
    if sigs.is_empty() {
        return None;
    }
    let msg = message(parts[0], parts[2], parts[4]);
    keys.secrets().iter().enumerate().find_map(|(i, s)| {
        if !s.usable_at(now) {
            return None;
        }
        let vk = s.ed25519.as_ref()?.verifying();
        sigs.iter()
            .any(|sig| vk.verify(&msg, &Signature::from_bytes(sig)).is_ok())
            .then_some(i)
    })
}
