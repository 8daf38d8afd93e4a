//! Every attempt is a `tracing` span with url, attempt and status; https failures classify.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, Event, RetryPolicy};
use hookwire_webhook_sender::{DeliveryOutcome, Webhook};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event as TraceEvent, Metadata, Subscriber};

use crate::support::{Reply, Sink};

/// Spans seen: (name, fields as `name=value` strings).
#[derive(Default)]
struct Spans {
    next: AtomicU64,
    seen: Mutex<Vec<(String, Vec<String>)>>,
}

struct Fields<'a>(&'a mut Vec<String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={:?}", field.name(), value));
    }
}

struct Capture(Arc<Spans>);

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut f = Vec::new();
        span.record(&mut Fields(&mut f));
        self.0
            .seen
            .lock()
            .unwrap()
            .push((span.metadata().name().to_owned(), f));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.0.seen.lock().unwrap();
        let i = usize::try_from(span.into_u64() - 1).unwrap();
        values.record(&mut Fields(&mut seen[i].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &TraceEvent<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn every_attempt_is_a_span_with_url_attempt_and_status() {
    let spans = Arc::new(Spans::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(Capture(Arc::clone(&spans)));
    rt.block_on(async {
        let sink = Sink::start(|n, _| Reply::status(if n < 2 { 502 } else { 201 })).await;
        let hook = Webhook::builder().url(sink.url()).build().unwrap();
        let policy = RetryPolicy::new(5).with_backoff(Backoff::fixed(Duration::from_millis(5)));
        let d = hook
            .deliver_with_retry(&Event::new("a", serde_json::Value::Null), &policy)
            .await;
        assert_eq!(d.outcome, DeliveryOutcome::Delivered { status: 201 });
        // A single attempt without the retry driver is a span too.
        let one = hook
            .deliver(&Event::new("b", serde_json::Value::Null))
            .await
            .unwrap();
        assert_eq!(one.status, 201);
    });
    let seen = spans.seen.lock().unwrap();
    let attempts: Vec<&Vec<String>> = seen
        .iter()
        .filter(|(n, _)| n == "webhook.attempt")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(attempts.len(), 4);
    for (f, (n, status)) in attempts
        .iter()
        .zip([(1, "502"), (2, "502"), (3, "201"), (1, "201")])
    {
        assert!(f.contains(&format!("attempt={n}")), "{f:?}");
        assert!(f.contains(&format!("status={status}")), "{f:?}");
        assert!(
            f.iter()
                .any(|x| x.starts_with("url=") && x.contains("/hook")),
            "{f:?}"
        );
        assert!(f.iter().any(|x| x.starts_with("duration_ms=")), "{f:?}");
    }
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_retryable_tls_failure() {
    let sink = Sink::always(200).await;
    let hook = Webhook::builder()
        .url(format!("https://{}/hook", sink.addr))
        .build()
        .unwrap();
    let policy = RetryPolicy::new(1).with_backoff(Backoff::fixed(Duration::from_millis(5)));
    let d = hook
        .deliver_with_retry(&Event::new("a", serde_json::Value::Null), &policy)
        .await;
    let DeliveryOutcome::Exhausted(e) = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(e.status(), 0);
    assert!(e.is_retryable());
    assert_eq!(d.attempts, 2);
    assert_eq!(
        sink.count(),
        0,
        "no HTTP request was parsed from a TLS hello"
    );
}
