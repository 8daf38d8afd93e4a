//! `Webhook`: signing, headers, classification and the retry driver against a real sink.

use std::time::{Duration, Instant};

use hookwire_core::signing::{VerifyOptions, verify};
use hookwire_core::{Backoff, Event, KeyRing, RetryPolicy, Scheme};
use hookwire_webhook_sender::{DeliveryOutcome, Webhook};

use crate::support::{Reply, Sink, stalling_body_server};

fn fast(retries: u32) -> RetryPolicy {
    RetryPolicy::new(retries).with_backoff(Backoff::fixed(Duration::from_millis(10)))
}

fn event() -> Event {
    Event::new(
        "order.created",
        serde_json::json!({"order": "o-1", "total": 99.5}),
    )
    .with_id("evt_42")
}

#[tokio::test]
async fn signed_delivery_verifies_with_the_core_verifier_for_every_scheme() {
    let sink = Sink::always(200).await;
    let cases = [
        (Scheme::Hookwire, "s3cret"),
        (Scheme::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        (Scheme::Github, "gh-secret"),
        (Scheme::Stripe, "whsec_stripe_like"),
        (Scheme::Slack, "slack-secret"),
        (Scheme::Body, "body-secret"),
    ];
    for (i, (scheme, secret)) in cases.iter().enumerate() {
        let hook = Webhook::builder()
            .url(sink.url())
            .secret(*secret)
            .scheme(*scheme)
            .build()
            .unwrap();
        let e = event();
        let d = hook.deliver_with_retry(&e, &fast(0)).await;
        assert_eq!(
            d.outcome,
            DeliveryOutcome::Delivered { status: 200 },
            "{scheme}"
        );
        let hit = &sink.hits()[i];
        assert_eq!(
            hit.body,
            e.to_json_bytes(),
            "the event JSON is the default body"
        );
        assert_eq!(
            d.body, hit.body,
            "the delivery reports the exact bytes sent"
        );
        assert_eq!(hit.headers["idempotency-key"], "evt_42");
        assert_eq!(hit.headers["content-type"], "application/json");
        let ok = verify(
            &hit.headers,
            &hit.body,
            &KeyRing::from(*secret),
            &VerifyOptions::new(*scheme),
        )
        .unwrap_or_else(|r| panic!("{scheme}: {r}"));
        assert_eq!(ok.scheme, *scheme);
        // A flipped body byte must not verify: the signature covers the bytes on the wire.
        let mut tampered = hit.body.to_vec();
        tampered[2] ^= 1;
        assert!(
            verify(
                &hit.headers,
                &tampered,
                &KeyRing::from(*secret),
                &VerifyOptions::new(*scheme)
            )
            .is_err()
        );
    }
}

#[tokio::test]
async fn server_error_then_success_is_retried_until_delivered() {
    let sink = Sink::start(|n, _| Reply::status(if n < 2 { 503 } else { 200 })).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(5)).await;
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!(d.attempts, 3);
    let hits = sink.hits();
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter().all(|h| h.body == hits[0].body),
        "every attempt sends the same bytes"
    );
}

#[tokio::test]
async fn client_error_blocks_after_one_attempt_and_captures_the_body() {
    let sink = Sink::start(|_, _| Reply::status(404).body("no such hook")).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(5)).await;
    let DeliveryOutcome::Blocked(e) = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(e.status(), 404);
    assert_eq!(e.response_body(), Some("no such hook"));
    assert_eq!(d.attempts, 1);
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn block_on_error_false_keeps_retrying_a_block() {
    let sink = Sink::always(400).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook
        .deliver_with_retry(&event(), &fast(2).with_block_on_error(false))
        .await;
    assert!(
        matches!(d.outcome, DeliveryOutcome::Exhausted(ref e) if e.status() == 400),
        "{:?}",
        d.outcome
    );
    assert_eq!(d.attempts, 3);
    assert_eq!(sink.count(), 3);
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let target = Sink::always(200).await;
    let loc = target.url();
    let sink = Sink::start(move |_, _| Reply::status(302).header("location", loc.clone())).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(3)).await;
    assert!(
        matches!(d.outcome, DeliveryOutcome::Blocked(ref e) if e.status() == 302),
        "{:?}",
        d.outcome
    );
    assert_eq!(sink.count(), 1);
    assert_eq!(target.count(), 0, "the redirect target was never contacted");
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let sink = Sink::start(|n, _| {
        if n == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(3)).await;
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
    let hits = sink.hits();
    let gap = hits[1].at - hits[0].at;
    // The backoff alone is 10 ms; only Retry-After explains a gap near one second.
    assert!(gap >= Duration::from_millis(900), "waited only {gap:?}");
}

#[tokio::test]
async fn retry_after_is_clamped_by_the_policy() {
    let sink = Sink::start(|n, _| {
        if n == 0 {
            Reply::status(503).header("retry-after", "86400")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let policy = fast(3).with_max_retry_after(Duration::from_millis(50));
    let t = Instant::now();
    let d = hook.deliver_with_retry(&event(), &policy).await;
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "a day-long Retry-After must be clamped"
    );
}

#[tokio::test]
async fn timeout_while_reading_the_body_is_retried() {
    let (addr, conns) = stalling_body_server(2, Duration::from_secs(10)).await;
    let hook = Webhook::builder()
        .url(format!("http://{addr}/hook"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let first = hook.deliver(&event()).await.unwrap_err();
    assert!(first.is_timeout(), "the body stall must time out: {first}");
    assert_eq!(first.status(), 0);
    let d = hook.deliver_with_retry(&event(), &fast(3)).await;
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!(
        *conns.lock().unwrap(),
        2,
        "the stalled connection was not reused"
    );
}

#[tokio::test]
async fn connection_refused_is_retried_until_the_sink_comes_up() {
    let port = hookwire_testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hook = Webhook::builder()
        .url(format!("http://{addr}/hook"))
        .build()
        .unwrap();
    let policy = RetryPolicy::new(50).with_backoff(Backoff::fixed(Duration::from_millis(50)));
    let task = tokio::spawn(async move { hook.deliver_with_retry(&event(), &policy).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sink = Sink::start_on(addr, |_, _| Reply::status(204)).await;
    let d = task.await.unwrap();
    assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 204 });
    assert!(d.attempts > 1, "the first attempts were refused");
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn retries_exhausted_reports_the_last_error_and_attempts() {
    let sink = Sink::start(|_, _| Reply::status(500).body("boom")).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(2)).await;
    let DeliveryOutcome::Exhausted(e) = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(e.status(), 500);
    assert_eq!(e.response_body(), Some("boom"));
    assert_eq!(d.attempts, 3);
    assert_eq!(sink.count(), 3);
}

#[tokio::test]
async fn max_window_stops_retries_before_max_attempts() {
    let sink = Sink::always(500).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let policy = RetryPolicy::new(100)
        .with_backoff(Backoff::fixed(Duration::from_millis(100)))
        .with_max_window(Duration::from_millis(250));
    let d = hook.deliver_with_retry(&event(), &policy).await;
    assert!(matches!(d.outcome, DeliveryOutcome::Exhausted(_)));
    assert!(
        d.attempts <= 4,
        "the window allows about 3 attempts, made {}",
        d.attempts
    );
}

#[tokio::test]
async fn caller_headers_win_case_insensitively() {
    let sink = Sink::always(200).await;
    let hook = Webhook::builder()
        .url(sink.url())
        .header("CONTENT-type", "text/plain")
        .header("Idempotency-KEY", "mine")
        .header("x-webhook-signature", "sha256=caller")
        .secret("s")
        .idempotency_key(|_| panic!("not called when the caller set the header"))
        .body("plain text")
        .build()
        .unwrap();
    hook.deliver(&event()).await.unwrap();
    let h = &sink.hits()[0];
    assert_eq!(h.headers.get_all("content-type").iter().count(), 1);
    assert_eq!(h.headers["content-type"], "text/plain");
    assert_eq!(h.headers["idempotency-key"], "mine");
    assert_eq!(h.headers["x-webhook-signature"], "sha256=caller");
    assert!(
        h.headers.get("x-webhook-timestamp").is_none(),
        "no auto timestamp without auto signature"
    );
    assert_eq!(h.body, "plain text", "a string body is sent verbatim");
}

#[tokio::test]
async fn idempotency_key_rules() {
    let sink = Sink::always(200).await;
    let none = Webhook::builder()
        .url(sink.url())
        .no_idempotency_key()
        .build()
        .unwrap();
    none.deliver(&event()).await.unwrap();
    let custom = Webhook::builder()
        .url(sink.url())
        .idempotency_key(|e| Some(format!("{}:v1", e.id)))
        .build()
        .unwrap();
    custom.deliver(&event()).await.unwrap();
    let opt_out = Webhook::builder()
        .url(sink.url())
        .idempotency_key(|_| None)
        .build()
        .unwrap();
    opt_out.deliver(&event()).await.unwrap();
    let hits = sink.hits();
    assert!(hits[0].headers.get("idempotency-key").is_none());
    assert_eq!(hits[1].headers["idempotency-key"], "evt_42:v1");
    assert!(hits[2].headers.get("idempotency-key").is_none());
}

#[tokio::test]
async fn url_headers_body_and_method_can_depend_on_the_event() {
    let sink = Sink::always(200).await;
    let base = format!("http://{}", sink.addr);
    let hook = Webhook::builder()
        .url_fn(move |e| format!("{base}/t/{}", e.name))
        .headers_fn(|e| vec![("X-Stream".into(), e.stream.clone())])
        .body_fn(|e| serde_json::json!({"kind": e.name}).into())
        .method(http::Method::PUT)
        .build()
        .unwrap();
    hook.deliver(&event().with_stream("order-7", 3))
        .await
        .unwrap();
    let h = &sink.hits()[0];
    assert_eq!(h.method, http::Method::PUT);
    assert_eq!(h.path, "/t/order.created");
    assert_eq!(h.headers["x-stream"], "order-7");
    assert_eq!(h.body, r#"{"kind":"order.created"}"#);
}

#[tokio::test]
async fn error_bodies_are_captured_with_a_cap() {
    let big: &'static str = Box::leak("x".repeat(200_000).into_boxed_str());
    let sink = Sink::start(move |_, _| Reply::status(500).body(big)).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    let e = hook.deliver(&event()).await.unwrap_err();
    assert_eq!(e.response_body().map(str::len), Some(4096));
    // The connection that carried an oversized body is dropped, and the next attempt still works.
    let e2 = hook.deliver(&event()).await.unwrap_err();
    assert_eq!(e2.status(), 500);
}

#[tokio::test]
async fn oversized_request_body_is_refused_without_an_attempt() {
    let sink = Sink::always(200).await;
    let hook = Webhook::builder()
        .url(sink.url())
        .max_body_bytes(10)
        .body("0123456789ab")
        .build()
        .unwrap();
    let d = hook.deliver_with_retry(&event(), &fast(3)).await;
    assert!(matches!(d.outcome, DeliveryOutcome::Blocked(_)));
    assert_eq!(d.attempts, 0);
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_for_sequential_deliveries() {
    let sink = Sink::always(200).await;
    let hook = Webhook::builder().url(sink.url()).build().unwrap();
    for _ in 0..5 {
        hook.deliver(&event()).await.unwrap();
    }
    assert_eq!(sink.count(), 5);
    assert_eq!(sink.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}
