//! `cargo xtask bench sign`: sign and verify of 1 KiB and 64 KiB bodies (Standard Webhooks
//! headers, so every peer verifies the same request), interleaved rounds against raw
//! `hmac::Hmac<Sha256>` over the same bytes (the limit) and the `svix` and `standardwebhooks`
//! crates. Writes `target/bench/sign.json`. Runs from its own manifest (see Cargo.toml here).

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookwire_core::signing::{Scheme, SignInput, VerifyOptions, sign, verify};
use hookwire_core::{KeyRing, Secret};
use hookwire_testkit::bench::{Report, quick_requested};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Case {
    body: Vec<u8>,
    headers: http::HeaderMap,
    id: String,
    ts: String,
    expected: [u8; 32],
}

fn case(size: usize) -> Case {
    let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let ts = hookwire_core::time::unix_now();
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let signed = sign(Scheme::Standard, &Secret::new(SECRET), &SignInput::new(&body, ts).id(id))
        .expect("whsec secret signs");
    let mut headers = http::HeaderMap::new();
    for (k, v) in signed.iter() {
        headers.insert(k, v.parse().expect("ascii header"));
    }
    let sig = signed.get("webhook-signature").expect("signature header");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sig[3..])
        .expect("base64");
    let mut expected = [0u8; 32];
    expected.copy_from_slice(&raw);
    Case { body, headers, id: id.to_owned(), ts: ts.to_string(), expected }
}

/// ns per call of `f`, over `iters` calls.
fn time(iters: u32, mut f: impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    let mut ok = true;
    for _ in 0..iters {
        ok &= black_box(f());
    }
    assert!(ok, "every verification in the bench must succeed");
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn main() {
    if std::env::var("SIGN_PROFILE").is_ok() {
        // A hot loop of one verify for `perf record`; not part of the report.
        let c = case(1024);
        let ring = KeyRing::from(SECRET);
        let opts = VerifyOptions::new(Scheme::Standard);
        time(5_000_000, || verify(&c.headers, &c.body, &ring, &opts).is_ok());
        return;
    }
    let quick = quick_requested();
    let rounds = if quick { 1 } else { 7 };
    let key = base64::engine::general_purpose::STANDARD
        .decode(&SECRET[6..])
        .expect("base64 key");
    let ring = KeyRing::from(SECRET);
    let opts = VerifyOptions::new(Scheme::Standard);
    let svix = svix::webhooks::Webhook::new(SECRET).expect("svix key");
    let sw = standardwebhooks::Webhook::new(SECRET).expect("standardwebhooks key");
    let mut report = Report::new("sign", quick);
    report.rounds(rounds);
    report.peer("svix", "2.9.1");
    report.peer("standardwebhooks", "1.0.1");
    report.extra("scheme", serde_json::json!("standard (webhook-id/timestamp/signature)"));

    for (label, size, iters) in [("1k", 1024usize, 20_000u32), ("64k", 64 * 1024, 400)] {
        let iters = if quick { (iters / 10).max(20) } else { iters };
        let c = case(size);
        for _ in 0..rounds {
            let raw = time(iters, || {
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
                mac.update(c.id.as_bytes());
                mac.update(b".");
                mac.update(c.ts.as_bytes());
                mac.update(b".");
                mac.update(&c.body);
                bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&c.expected))
            });
            // Like for like with hookwire's key handling: keyed once, the state cloned per
            // message (for the record; the limit above keys per call).
            let prekeyed_mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
            let prekeyed = time(iters, || {
                let mut mac = prekeyed_mac.clone();
                mac.update(c.id.as_bytes());
                mac.update(b".");
                mac.update(c.ts.as_bytes());
                mac.update(b".");
                mac.update(&c.body);
                bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&c.expected))
            });
            let hw = time(iters, || verify(&c.headers, &c.body, &ring, &opts).is_ok());
            let sv = time(iters, || svix.verify(&c.body, &c.headers).is_ok());
            let st = time(iters, || sw.verify(&c.body, &c.headers).is_ok());
            let ts: i64 = c.ts.parse().unwrap_or(0);
            let secret = Secret::new(SECRET);
            let sg = time(iters, || {
                sign(Scheme::Standard, &secret, &SignInput::new(&c.body, ts).id(&c.id)).is_ok()
            });
            report.figure(&format!("raw_hmac_ns_{label}"), raw);
            report.figure(&format!("raw_hmac_prekeyed_ns_{label}"), prekeyed);
            report.figure(&format!("hookwire_verify_ns_{label}"), hw);
            report.figure(&format!("svix_verify_ns_{label}"), sv);
            report.figure(&format!("standardwebhooks_verify_ns_{label}"), st);
            report.figure(&format!("hookwire_sign_ns_{label}"), sg);
        }
        let hw = format!("hookwire_verify_ns_{label}");
        report.ratio_of_rounds(&format!("verify_vs_raw_{label}"), &hw, &format!("raw_hmac_ns_{label}"));
        report.ratio_of_rounds(
            &format!("verify_vs_raw_prekeyed_{label}"),
            &hw,
            &format!("raw_hmac_prekeyed_ns_{label}"),
        );
        report.ratio_of_rounds(&format!("verify_vs_svix_{label}"), &hw, &format!("svix_verify_ns_{label}"));
        report.ratio_of_rounds(
            &format!("verify_vs_standardwebhooks_{label}"),
            &hw,
            &format!("standardwebhooks_verify_ns_{label}"),
        );
    }
    report.note("raw HMAC includes keying per call, as a naive verifier would; hookwire keys once per secret");
    report.note("verify_vs_raw_prekeyed_* (for the record): against raw HMAC keyed once and cloned per message, like hookwire");
    if let Err(e) = report.write() {
        panic!("cannot write report: {e}");
    }
}
