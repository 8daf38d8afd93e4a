//! `extract_idempotency_key` and `check`: the exact order of reasons, signed ids as keys, and
//! spoofed requests never reaching the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hookwire_core::idempotency::BoxFuture;
use hookwire_core::signing::{Scheme, SignInput, VerifyOptions, sign};
use hookwire_core::{
    Claim, FencingToken, IdempotencyStore, KeyRing, MemoryStore, Secret, StoreError,
};
use hookwire_receiver::{
    CheckOptions, Gate, MAX_KEY_LEN, Rejection, check, extract_idempotency_key,
};

const NOW: i64 = 1_700_000_000;

type Headers = Vec<(String, String)>;

/// A real MemoryStore that counts claims, to prove which requests reach it.
#[derive(Debug)]
struct Counting {
    inner: MemoryStore,
    claims: AtomicUsize,
}

impl IdempotencyStore for Counting {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(key)
    }
    fn commit<'a>(
        &'a self,
        k: &'a str,
        t: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.commit(k, t)
    }
    fn release<'a>(
        &'a self,
        k: &'a str,
        t: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.release(k, t)
    }
}

fn counting() -> (Arc<Counting>, Arc<dyn IdempotencyStore>) {
    let c = Arc::new(Counting {
        inner: MemoryStore::new(Default::default()),
        claims: AtomicUsize::new(0),
    });
    (c.clone(), c)
}

fn signed(scheme: Scheme, secret: &str, body: &[u8], id: Option<&str>) -> Vec<(String, String)> {
    let mut input = SignInput::new(body, NOW);
    if let Some(id) = id {
        input = input.id(id);
    }
    sign(scheme, &Secret::new(secret), &input).unwrap().to_vec()
}

fn with(mut h: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    h.push((name.to_owned(), value.to_owned()));
    h
}

async fn run(
    store: &Arc<dyn IdempotencyStore>,
    keys: Option<&KeyRing>,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Checked, Rejection> {
    let verify = VerifyOptions::default().at(NOW);
    flat(check(headers, body, &CheckOptions::new(store, keys, &verify)).await)
}

/// The check's outcome as the flags these tests assert on.
#[derive(Debug)]
struct Checked {
    key: Option<String>,
    deduped: bool,
    scheme: Option<Scheme>,
    guard: Option<hookwire_receiver::ClaimGuard>,
}

impl Checked {
    fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }
}

fn flat(c: hookwire_receiver::Check) -> Result<Checked, Rejection> {
    let (a, deduped) = c.into_result()?;
    Ok(Checked {
        scheme: a.scheme(),
        key: a.key,
        deduped,
        guard: a.guard,
    })
}

#[test]
fn key_extraction_rules() {
    let mut h = http::HeaderMap::new();
    h.insert("IDEMPOTENCY-KEY", "".parse().unwrap());
    assert_eq!(extract_idempotency_key(&h), None, "empty");
    h.insert("idempotency-key", " ".parse().unwrap());
    assert_eq!(
        extract_idempotency_key(&h),
        Some(" "),
        "whitespace is usable, verbatim"
    );
    h.insert(
        "idempotency-key",
        http::HeaderValue::from_bytes(b"\xff").unwrap(),
    );
    assert_eq!(extract_idempotency_key(&h), None, "not UTF-8");
    let pairs = [("Idempotency-Key", "a"), ("IDEMPOTENCY-KEY", "b")];
    assert_eq!(
        extract_idempotency_key(&pairs[..]),
        None,
        "repeated is ambiguous"
    );
}

#[tokio::test]
async fn reasons_in_order_and_spoofs_never_touch_the_store() {
    let (count, store) = counting();
    let keys = KeyRing::from("s3cret");
    let body = br#"{"a":1}"#;
    let good = with(
        signed(Scheme::Hookwire, "s3cret", body, None),
        "Idempotency-Key",
        "k1",
    );

    let cases: Vec<(Headers, &[u8], u16, &str)> = vec![
        (good.clone(), b"", 400, "empty-body"),
        (
            vec![("Idempotency-Key".into(), "k1".into())],
            body,
            401,
            "missing-signature",
        ),
        (
            vec![("X-Webhook-Signature".into(), "sha256=00".into())],
            body,
            401,
            "missing-timestamp",
        ),
        (
            with(
                signed(Scheme::Hookwire, "s3cret", body, None),
                "X-Webhook-Timestamp",
                "1",
            ),
            body,
            401,
            "malformed-header",
        ),
        (good.clone(), br#"{"a":2}"#, 401, "bad-signature"),
        (
            signed(Scheme::Hookwire, "other", body, None),
            body,
            401,
            "bad-signature",
        ),
        (
            signed(Scheme::Hookwire, "s3cret", body, None),
            body,
            400,
            "missing-key",
        ),
    ];
    for (h, b, status, reason) in cases {
        let r = run(&store, Some(&keys), &h, b).await.unwrap_err();
        assert_eq!((r.status(), r.reason()), (status, reason), "headers {h:?}");
    }
    assert_eq!(
        count.claims.load(Ordering::SeqCst),
        0,
        "no failed request may claim"
    );

    let ok = run(&store, Some(&keys), &good, body).await.unwrap();
    assert_eq!(ok.key.as_deref(), Some("k1"));
    assert_eq!(ok.scheme(), Some(Scheme::Hookwire));
    assert_eq!(count.claims.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stale_and_future() {
    let (_, store) = counting();
    let keys = KeyRing::from("s3cret");
    let body = b"{}";
    for (ts, reason) in [(NOW - 301, "stale"), (NOW + 301, "future")] {
        let h = sign(
            Scheme::Hookwire,
            &Secret::new("s3cret"),
            &SignInput::new(body, ts),
        )
        .unwrap()
        .to_vec();
        let h = with(h, "Idempotency-Key", "k");
        let r = run(&store, Some(&keys), &h, body).await.unwrap_err();
        assert_eq!((r.status(), r.reason()), (401, reason));
    }
}

#[tokio::test]
async fn signed_ids_are_keys_for_standard_and_github() {
    let (_, store) = counting();
    let body = b"{}";
    let std_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let keys = KeyRing::from(std_secret);
    let h = signed(Scheme::Standard, std_secret, body, Some("msg_1"));
    let first = run(&store, Some(&keys), &h, body).await.unwrap();
    assert_eq!(first.key.as_deref(), Some("msg_1"));
    // The signed id wins over an unsigned Idempotency-Key a replayer could swap.
    let swapped = with(h.clone(), "Idempotency-Key", "fresh-key");
    let r = run(&store, Some(&keys), &swapped, body).await.unwrap_err();
    assert_eq!((r.status(), r.reason()), (409, "in-flight"));
    assert!(r.retry_after().unwrap() >= 1);
    first.guard.unwrap().commit().await;
    assert!(
        run(&store, Some(&keys), &swapped, body)
            .await
            .unwrap()
            .deduped
    );

    let gh = KeyRing::from("ghs");
    let h = signed(Scheme::Github, "ghs", body, Some("delivery-1"));
    let c = run(&store, Some(&gh), &h, body).await.unwrap();
    assert_eq!(c.key.as_deref(), Some("delivery-1"));
    let h = with(
        signed(Scheme::Github, "ghs", body, Some("delivery-2")),
        "Idempotency-Key",
        "ik",
    );
    assert_eq!(
        run(&store, Some(&gh), &h, body)
            .await
            .unwrap()
            .key
            .as_deref(),
        Some("ik")
    );
    let h = signed(Scheme::Github, "ghs", body, None);
    assert_eq!(
        run(&store, Some(&gh), &h, body).await.unwrap_err().reason(),
        "missing-key"
    );
}

#[tokio::test]
async fn stripe_events_are_keyed_by_their_signed_body_id() {
    let (counter, store) = counting();
    let keys = KeyRing::from("whsec_stripe");
    let body = br#"{"object":"event","id":"evt_1","data":{"object":{"id":"in_9"}}}"#;
    let h = signed(Scheme::Stripe, "whsec_stripe", body, None);
    let first = run(&store, Some(&keys), &h, body).await.unwrap();
    assert_eq!(first.key.as_deref(), Some("evt_1"));
    first.guard.unwrap().commit().await;
    // Stripe's retry of the same event: answered as a replay.
    assert!(run(&store, Some(&keys), &h, body).await.unwrap().deduped);
    // An explicit Idempotency-Key still wins (it is what the sender chose).
    let h2 = with(h.clone(), "Idempotency-Key", "ik-stripe");
    let c = run(&store, Some(&keys), &h2, body).await.unwrap();
    assert_eq!(c.key.as_deref(), Some("ik-stripe"));
    // No usable id in the body: nothing to de-duplicate on.
    for body in [
        &br#"{"object":"event"}"#[..],
        br#"{"id":""}"#,
        br#"{"id":7}"#,
        b"[1]",
        b"not json",
    ] {
        let h = signed(Scheme::Stripe, "whsec_stripe", body, None);
        let r = run(&store, Some(&keys), &h, body).await.unwrap_err();
        assert_eq!(
            r.reason(),
            "missing-key",
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // A forged body never reaches the store, whatever id it carries.
    let before = counter.claims.load(Ordering::SeqCst);
    let forged = br#"{"id":"evt_2"}"#;
    let r = run(&store, Some(&keys), &h, forged).await.unwrap_err();
    assert_eq!((r.status(), r.reason()), (401, "bad-signature"));
    assert_eq!(counter.claims.load(Ordering::SeqCst), before);
    // An escaped id is decoded like any JSON string.
    let body = br#"{"id":"evt_\u0033"}"#;
    let h = signed(Scheme::Stripe, "whsec_stripe", body, None);
    let c = run(&store, Some(&keys), &h, body).await.unwrap();
    assert_eq!(c.key.as_deref(), Some("evt_3"));
}

#[tokio::test]
async fn release_lets_the_retry_through_and_optional_keys_skip_the_store() {
    let (count, store) = counting();
    let h = vec![("Idempotency-Key".to_owned(), "k".to_owned())];
    let first = run(&store, None, &h, b"").await.unwrap();
    first.guard.unwrap().release().await;
    let retry = run(&store, None, &h, b"").await.unwrap();
    assert!(!retry.deduped, "a released key is processed again");
    drop(retry); // dropping an unfinished claim releases it too
    assert!(!run(&store, None, &h, b"").await.unwrap().deduped);

    let verify = VerifyOptions::default();
    let mut opts = CheckOptions::new(&store, None, &verify);
    opts.require_key = false;
    let before = count.claims.load(Ordering::SeqCst);
    let c = flat(check(&Vec::<(String, String)>::new(), b"{}", &opts).await).unwrap();
    assert!(c.key.is_none() && c.guard.is_none());
    assert_eq!(count.claims.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn keys_over_the_cap_are_refused_before_the_store() {
    let (count, store) = counting();
    let keys = KeyRing::from("s3cret");
    let h = signed(Scheme::Hookwire, "s3cret", b"{}", None);
    let ok = run(
        &store,
        Some(&keys),
        &with(h.clone(), "Idempotency-Key", &"k".repeat(MAX_KEY_LEN)),
        b"{}",
    )
    .await;
    assert!(ok.is_ok());
    let before = count.claims.load(Ordering::SeqCst);
    let long = with(h, "Idempotency-Key", &"k".repeat(MAX_KEY_LEN + 1));
    assert_eq!(
        run(&store, Some(&keys), &long, b"{}").await.unwrap_err(),
        Rejection::key_too_long()
    );
    let evt = format!(r#"{{"id":"evt_{}"}}"#, "x".repeat(MAX_KEY_LEN));
    let h = signed(Scheme::Stripe, "s3cret", evt.as_bytes(), None);
    assert_eq!(
        run(&store, Some(&keys), &h, evt.as_bytes())
            .await
            .unwrap_err()
            .reason(),
        "key-too-long"
    );
    assert_eq!(count.claims.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn without_a_required_key_a_signed_request_is_claimed_on_its_signature() {
    let (_, store) = counting();
    let keys = KeyRing::from("s3cret");
    let verify = VerifyOptions::default().at(NOW);
    let mut opts = CheckOptions::new(&store, Some(&keys), &verify);
    opts.require_key = false;
    let h = signed(Scheme::Slack, "s3cret", b"{}", None);
    let first = flat(check(&h, b"{}", &opts).await).unwrap();
    assert!(first.key.is_none(), "no key was sent");
    let guard = first.guard.expect("claimed");
    assert!(guard.key().starts_with("slack:"), "{}", guard.key());
    guard.commit().await;
    assert!(flat(check(&h, b"{}", &opts).await).unwrap().deduped);
}

#[tokio::test]
async fn the_github_replay_horizon_is_configurable_on_the_gate() {
    let gate = Gate::new()
        .secret("s3cret")
        .verify_options(VerifyOptions::default().at(NOW))
        .replay_horizon(std::time::Duration::from_millis(300));
    let h = signed(Scheme::Github, "s3cret", b"{}", Some("d-1"));
    let c = flat(gate.check(&h, b"{}").await).unwrap();
    c.guard.unwrap().commit().await;
    let delivered_as = |id: &str| -> Headers {
        h.iter()
            .map(|(k, v)| match k.as_str() {
                "X-GitHub-Delivery" => (k.clone(), id.to_owned()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    let resend = delivered_as("d-2");
    let again = flat(gate.check(&resend, b"{}").await).unwrap();
    assert!(again.deduped && again.key.as_deref() == Some("d-1"));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let later = flat(gate.check(&resend, b"{}").await).unwrap();
    assert!(!later.deduped && later.key.as_deref() == Some("d-2"));
    // Off means off: only the delivery id de-duplicates.
    let open = gate.replay_protection(false);
    assert!(
        !flat(open.check(&delivered_as("d-3"), b"{}").await)
            .unwrap()
            .deduped
    );
}
