//! Every verification reason of `signing.md`, produced on purpose, in the documented order.

use hookwire_core::KeyRing;
use hookwire_core::signing::{Scheme, SchemeChoice, VerifyError as E, VerifyOptions, verify};

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"orderId":"o-1"}"#;
const SIG: &str = "sha256=a076b00daf4150523b4c8f1e391714f9b9475d05433f414ea087de28fd94faed";

fn check(scheme: impl Into<SchemeChoice>, headers: &[(&str, &str)]) -> Result<Scheme, E> {
    verify(
        headers,
        BODY,
        &KeyRing::from("test-secret"),
        &VerifyOptions::new(scheme).at(NOW),
    )
    .map(|v| v.scheme)
}

#[test]
fn hookwire_reasons_follow_the_reference_order() {
    let s = Scheme::Hookwire;
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", SIG),
                ("X-Webhook-Timestamp", "1700000000")
            ]
        ),
        Ok(s)
    );
    assert_eq!(
        check(s, &[]),
        Err(E::MissingSignature),
        "both missing reports the signature first"
    );
    assert_eq!(
        check(s, &[("x-webhook-signature", "")]),
        Err(E::MissingSignature),
        "empty counts as absent"
    );
    assert_eq!(
        check(s, &[("X-Webhook-Signature", SIG)]),
        Err(E::MissingTimestamp)
    );
    for bad in [
        "1700000000abc",
        "+1700000000",
        "01700000000",
        "1700000000.5",
        "1e9",
        "-0",
        " 1700000000",
    ] {
        assert_eq!(
            check(
                s,
                &[("X-Webhook-Signature", SIG), ("X-Webhook-Timestamp", bad)]
            ),
            Err(E::MissingTimestamp),
            "{bad}"
        );
    }
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", SIG),
                ("X-Webhook-Timestamp", "1699999699")
            ]
        ),
        Err(E::Stale)
    );
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", SIG),
                ("X-Webhook-Timestamp", "1700000301")
            ]
        ),
        Err(E::Future)
    );
    // Window before signature: a garbage signature on a stale request reports stale.
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", "junk"),
                ("X-Webhook-Timestamp", "1")
            ]
        ),
        Err(E::Stale)
    );
    for bad in [
        "junk",
        "SHA256=a076b00daf4150523b4c8f1e391714f9b9475d05433f414ea087de28fd94faed",
        "sha256=a076",
        "sha256=zz76b00daf4150523b4c8f1e391714f9b9475d05433f414ea087de28fd94faed",
    ] {
        assert_eq!(
            check(
                s,
                &[
                    ("X-Webhook-Signature", bad),
                    ("X-Webhook-Timestamp", "1700000000")
                ]
            ),
            Err(E::BadSignature),
            "{bad}"
        );
    }
    // Uppercase hex is accepted, as JavaScript verifiers accept it.
    let upper = format!("sha256={}", SIG[7..].to_uppercase());
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", &upper),
                ("X-Webhook-Timestamp", "1700000000")
            ]
        ),
        Ok(s)
    );
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", SIG),
                ("x-webhook-signature", SIG),
                ("X-Webhook-Timestamp", "1700000000")
            ]
        ),
        Err(E::MalformedHeader)
    );
    let long = "a".repeat(5000);
    assert_eq!(
        check(
            s,
            &[
                ("X-Webhook-Signature", &long),
                ("X-Webhook-Timestamp", "1700000000")
            ]
        ),
        Err(E::MalformedHeader)
    );
}

#[test]
fn standard_reports_missing_id_after_timestamp() {
    let s = Scheme::Standard;
    assert_eq!(check(s, &[("webhook-id", "m")]), Err(E::MissingSignature));
    assert_eq!(
        check(s, &[("webhook-signature", "v1,AAAA"), ("webhook-id", "m")]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(
            s,
            &[
                ("webhook-signature", "v1,AAAA"),
                ("webhook-timestamp", "1700000000")
            ]
        ),
        Err(E::MissingId)
    );
    let ok_headers = [
        ("webhook-signature", "v1,AAAA v2,BBBB"),
        ("webhook-timestamp", "1700000000"),
        ("webhook-id", "m"),
    ];
    assert_eq!(
        check(s, &ok_headers),
        Err(E::BadSignature),
        "a non-whsec secret or undecodable entries never verify"
    );
    let many = vec!["v1,AAAA"; 17].join(" ");
    assert_eq!(
        check(
            s,
            &[
                ("webhook-signature", &many),
                ("webhook-timestamp", "1700000000"),
                ("webhook-id", "m")
            ]
        ),
        Err(E::MalformedHeader)
    );
}

#[test]
fn stripe_header_grammar_is_strict() {
    let s = Scheme::Stripe;
    let v1 = "v1=a076b00daf4150523b4c8f1e391714f9b9475d05433f414ea087de28fd94faed";
    assert_eq!(check(s, &[]), Err(E::MissingSignature));
    assert_eq!(
        check(s, &[("Stripe-Signature", v1)]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(s, &[("Stripe-Signature", &format!("t=Infinity,{v1}"))]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(
            s,
            &[(
                "Stripe-Signature",
                &format!("t=1700000000,t=1700000000,{v1}")
            )]
        ),
        Err(E::MalformedHeader)
    );
    assert_eq!(
        check(s, &[("Stripe-Signature", "t=1700000000,garbage")]),
        Err(E::MalformedHeader)
    );
    assert_eq!(
        check(s, &[("Stripe-Signature", "t=1700000000,v0=abc")]),
        Err(E::BadSignature)
    );
    assert_eq!(
        check(s, &[("Stripe-Signature", &format!("t=1600000000,{v1}"))]),
        Err(E::Stale)
    );
    // `t` need not come first; v1 matches because Stripe signs `{t}.{body}` like hookwire.
    assert_eq!(
        check(s, &[("Stripe-Signature", &format!("{v1},t=1700000000"))]),
        Ok(s)
    );
    let many = format!("t=1700000000,{}", vec![v1; 17].join(","));
    assert_eq!(
        check(s, &[("Stripe-Signature", &many)]),
        Err(E::MalformedHeader)
    );
}

#[test]
fn slack_and_github_and_body_reasons() {
    assert_eq!(
        check(Scheme::Slack, &[("X-Slack-Signature", "v0=00")]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(
            Scheme::Slack,
            &[
                ("X-Slack-Signature", "v0=00"),
                ("X-Slack-Request-Timestamp", "1700000000")
            ]
        ),
        Err(E::BadSignature)
    );
    assert_eq!(check(Scheme::Github, &[]), Err(E::MissingSignature));
    assert_eq!(
        check(Scheme::Github, &[("X-Hub-Signature-256", "sha1=00")]),
        Err(E::BadSignature)
    );
    assert_eq!(
        check(Scheme::Body, &[("X-Webhook-Signature", "sha256=00")]),
        Err(E::BadSignature)
    );
}

#[test]
fn auto_detection_picks_by_signature_header_and_never_body() {
    assert_eq!(check(SchemeChoice::Auto, &[]), Err(E::MissingSignature));
    assert_eq!(
        check(
            SchemeChoice::Auto,
            &[
                ("X-Webhook-Signature", SIG),
                ("X-Webhook-Timestamp", "1700000000")
            ]
        ),
        Ok(Scheme::Hookwire)
    );
    // A body-scheme request (no timestamp) under auto is treated as hookwire and lacks a timestamp.
    assert_eq!(
        check(SchemeChoice::Auto, &[("X-Webhook-Signature", SIG)]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(SchemeChoice::Auto, &[("Stripe-Signature", "t=1700000000")]),
        Err(E::BadSignature)
    );
    assert_eq!(
        check(SchemeChoice::Auto, &[("X-Slack-Signature", "v0=1")]),
        Err(E::MissingTimestamp)
    );
    assert_eq!(
        check(SchemeChoice::Auto, &[("svix-signature", "v1,x")]),
        Err(E::MissingTimestamp)
    );
}

#[test]
fn every_reason_has_a_stable_string() {
    let all: Vec<&str> = E::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        all,
        [
            "missing-signature",
            "missing-timestamp",
            "missing-id",
            "stale",
            "future",
            "bad-signature",
            "malformed-header"
        ]
    );
}

/// A standard header holding only the one `v1,` signature takes a shorter path than a header
/// with several entries; both must reach the same verdict on every form around it.
#[test]
fn standard_single_entry_headers_agree_with_the_general_grammar() {
    use hookwire_core::Secret;
    use hookwire_core::signing::{SignInput, sign};
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signed = sign(
        Scheme::Standard,
        &Secret::new(secret),
        &SignInput::new(BODY, NOW).id("msg_1"),
    )
    .unwrap();
    let good = signed.get("webhook-signature").unwrap().to_owned();
    let b64 = good.strip_prefix("v1,").unwrap().to_owned();
    let other = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let run = |sig: &str, max_signatures: usize| {
        let mut opts = VerifyOptions::new(Scheme::Standard).at(NOW);
        opts.max_signatures = max_signatures;
        let headers = [
            ("webhook-signature", sig),
            ("webhook-timestamp", "1700000000"),
            ("webhook-id", "msg_1"),
        ];
        verify(&headers[..], BODY, &KeyRing::from(secret), &opts).map(|v| v.scheme)
    };
    let ok = Ok(Scheme::Standard);
    assert_eq!(run(&good, 16), ok);
    assert_eq!(run(&format!(" {good} "), 16), ok, "spaces around the entry");
    assert_eq!(run(&format!("{other} {good}"), 16), ok, "second of two");
    assert_eq!(run(&format!("{good} {other}"), 16), ok, "first of two");
    assert_eq!(
        run(&format!("v1a,{b64} {good}"), 16),
        ok,
        "beside another version"
    );
    assert_eq!(run(other, 16), Err(E::BadSignature));
    assert_eq!(
        run(&format!("v2,{b64}"), 16),
        Err(E::BadSignature),
        "unknown version"
    );
    assert_eq!(
        run(&format!("V1,{b64}"), 16),
        Err(E::BadSignature),
        "versions are case-sensitive"
    );
    assert_eq!(
        run(&format!("v1,{}", b64.to_lowercase()), 16),
        Err(E::BadSignature)
    );
    assert_eq!(
        run(&format!("v1,{}", &b64[..43]), 16),
        Err(E::BadSignature),
        "unpadded"
    );
    assert_eq!(
        run(&good, 0),
        Err(E::MalformedHeader),
        "no signature allowed at all"
    );
    assert_eq!(
        run(&format!("{other} {good}"), 1),
        Err(E::MalformedHeader),
        "over the cap"
    );
}
