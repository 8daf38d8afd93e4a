//! Property tests: round trips, tamper detection, and no panics on arbitrary input.

use hookwire_core::signing::{Scheme, SignInput, VerifyError, VerifyOptions, sign, verify};
use hookwire_core::{KeyRing, Pattern, Secret};
use proptest::prelude::*;

const SCHEMES: [Scheme; 6] = Scheme::ALL;
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn secret_for(scheme: Scheme, raw: &str) -> String {
    if scheme == Scheme::Standard {
        STD_SECRET.to_owned()
    } else {
        raw.to_owned()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(
        idx in 0usize..6,
        secret in "[ -~]{1,40}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ts in 1_000_000_000i64..2_000_000_000,
        id in "[a-zA-Z0-9_]{1,24}",
    ) {
        let scheme = SCHEMES[idx];
        let secret = secret_for(scheme, &secret);
        let h = sign(scheme, &Secret::new(&secret), &SignInput::new(&body, ts).id(&id)).unwrap();
        let opts = VerifyOptions::new(scheme).at(ts);
        let v = verify(&h.to_vec(), &body, &KeyRing::from(secret.as_str()), &opts).unwrap();
        prop_assert_eq!(v.scheme, scheme);
    }

    #[test]
    fn any_flipped_body_byte_is_a_bad_signature(
        idx in 0usize..6,
        body in proptest::collection::vec(any::<u8>(), 1..256),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let scheme = SCHEMES[idx];
        let secret = secret_for(scheme, "k3y");
        let ts = 1_700_000_000;
        let h = sign(scheme, &Secret::new(&secret), &SignInput::new(&body, ts).id("msg_1")).unwrap();
        let mut tampered = body.clone();
        let i = pos.index(tampered.len());
        tampered[i] ^= 1 << bit;
        let r = verify(&h.to_vec(), &tampered, &KeyRing::from(secret.as_str()), &VerifyOptions::new(scheme).at(ts));
        prop_assert_eq!(r.unwrap_err(), VerifyError::BadSignature);
    }

    #[test]
    fn any_flipped_header_char_fails(
        idx in 0usize..6,
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
    ) {
        let scheme = SCHEMES[idx];
        let secret = secret_for(scheme, "k3y");
        let ts = 1_700_000_000;
        let body = b"{\"a\":1}";
        let mut h = sign(scheme, &Secret::new(&secret), &SignInput::new(body, ts).id("msg_1")).unwrap().to_vec();
        // Only headers covered by the signature: the signature, timestamp and (standard) id.
        let covered: Vec<usize> = h.iter().enumerate()
            .filter(|(_, (k, _))| !matches!(k.as_str(), "X-Webhook-Id" | "X-GitHub-Delivery" | "X-GitHub-Event" | "X-Webhook-Event"))
            .map(|(i, _)| i).collect();
        let hi = covered[which.index(covered.len())];
        let mut bytes = h[hi].1.clone().into_bytes();
        let p = pos.index(bytes.len());
        bytes[p] = if bytes[p] == b'7' { b'8' } else { b'7' };
        h[hi].1 = String::from_utf8(bytes).unwrap();
        let r = verify(&h, body, &KeyRing::from(secret.as_str()), &VerifyOptions::new(scheme).at(ts));
        prop_assert!(r.is_err(), "tampered header {:?} verified", h[hi]);
    }

    #[test]
    fn random_headers_and_bodies_never_panic(
        headers in proptest::collection::vec(
            (prop_oneof![
                Just("x-webhook-signature".to_owned()), Just("x-webhook-timestamp".to_owned()),
                Just("webhook-signature".to_owned()), Just("webhook-id".to_owned()), Just("webhook-timestamp".to_owned()),
                Just("stripe-signature".to_owned()), Just("x-slack-signature".to_owned()),
                Just("x-slack-request-timestamp".to_owned()), Just("x-hub-signature-256".to_owned()),
                Just("svix-signature".to_owned()), "[a-z-]{1,20}",
            ], proptest::collection::vec(any::<u8>(), 0..300)),
            0..8),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        for choice in ["auto", "hookwire", "body", "standard", "github", "stripe", "slack"] {
            let opts = VerifyOptions::new(choice.parse::<hookwire_core::signing::SchemeChoice>().unwrap()).at(now);
            let _ = verify(&headers, &body, &KeyRing::from(STD_SECRET), &opts);
        }
    }

    #[test]
    fn random_pattern_text_never_panics(s in "\\PC{0,80}", name in "\\PC{0,80}") {
        if let Ok(p) = Pattern::parse(&s) {
            let _ = p.matches(&name);
        }
    }
}
