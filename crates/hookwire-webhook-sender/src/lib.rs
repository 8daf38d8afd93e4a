//! Outbound webhooks: signed, timed-out, idempotency-keyed, classified and retried deliveries
//! ([`Webhook`]), and a subscription [`Dispatcher`] that fans events out to many endpoints.
//!
//! Use this crate in a service that *sends* webhooks. Receiving is `hookwire-receiver`; the
//! signature schemes, error classification and retry policies come from `hookwire-core` and are
//! re-exported here.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use hookwire_webhook_sender::{Webhook, DeliveryOutcome};
//! use hookwire_core::{Event, RetryPolicy, Scheme};
//!
//! let hook = Webhook::builder()
//!     .url("https://hooks.example.com/in")
//!     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .scheme(Scheme::Standard)
//!     .build()?;
//! let event = Event::new("order.created", serde_json::json!({"order": "o-1"}));
//! let delivery = hook.deliver_with_retry(&event, &RetryPolicy::standard_webhooks()).await;
//! match delivery.outcome {
//!     DeliveryOutcome::Delivered { status } => println!("{status} after {} attempts", delivery.attempts),
//!     DeliveryOutcome::Blocked(e) | DeliveryOutcome::Exhausted(e) => eprintln!("failed: {e}"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! # Example: the client seam (runs offline)
//!
//! Every request goes through an [`HttpClient`]; plug your own to add a proxy, metrics, or — as
//! here — to see exactly what would be sent.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use bytes::Bytes;
//! use hookwire_core::{BoxFuture, Event, KeyRing, signing::{verify, VerifyOptions}};
//! use hookwire_webhook_sender::{ClientResponse, HttpClient, TransportError, Webhook};
//!
//! #[derive(Debug, Default)]
//! struct Recorder(Mutex<Vec<http::Request<Bytes>>>);
//!
//! impl HttpClient for Recorder {
//!     fn send(&self, req: http::Request<Bytes>) -> BoxFuture<'_, Result<ClientResponse, TransportError>> {
//!         self.0.lock().unwrap().push(req);
//!         Box::pin(async { Ok(ClientResponse::new(http::StatusCode::ACCEPTED, Default::default(), Bytes::new())) })
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let recorder = Arc::new(Recorder::default());
//! let hook = Webhook::builder()
//!     .url("https://hooks.example.com/in")
//!     .secret("s3cret")
//!     .client(recorder.clone())
//!     .build()
//!     .unwrap();
//! let event = Event::new("order.created", serde_json::json!({"order": "o-1"})).with_id("evt_1");
//! assert_eq!(hook.deliver(&event).await.unwrap().status, 202);
//!
//! let sent = recorder.0.lock().unwrap().pop().unwrap();
//! assert_eq!(sent.headers()["idempotency-key"], "evt_1");
//! verify(sent.headers(), sent.body(), &KeyRing::from("s3cret"), &VerifyOptions::default()).unwrap();
//! # });
//! ```
//!
//! # Concepts
//! - **One endpoint** ([`Webhook`]): URL, headers and body as values or functions of the event;
//!   a timeout over the whole exchange; `Idempotency-Key` = event id unless told otherwise;
//!   caller headers win case-insensitively; signatures over the exact body bytes.
//! - **Classification** ([`classify_http_response`], [`try_ok_parts`]): 2xx ok; 408/425/429/5xx and
//!   network failures retry (honouring `Retry-After`); redirects and other 4xx block.
//! - **Retries** ([`Webhook::deliver_with_retry`]) with the core's [`RetryPolicy`].
//! - **Fan-out** ([`Dispatcher`]): pattern subscriptions, bounded concurrency, a delivery log,
//!   endpoint health, rate limits, durable mode and the SSRF guard ([`ssrf`]).
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `redis` | `RedisSubscriptionStore`, a [`WebhookStore`] in Redis | no |
//!
//! MSRV: Rust 1.88.

mod client;
mod connect;
mod delivery;
mod dispatcher;
mod error;
mod h1;
mod interim;
pub mod ssrf;
mod webhook;

pub use client::{
    ClientResponse, HttpClient, HyperClient, HyperClientBuilder, MAX_RESPONSE_BODY, TransportError,
    TransportErrorKind,
};
pub use delivery::{Delivery, DeliveryOutcome};
#[cfg(feature = "redis")]
pub use dispatcher::RedisSubscriptionStore;
pub use dispatcher::{
    DEFAULT_CONCURRENCY, DEFAULT_LOG_CAPACITY, DEFAULT_MAX_SUBSCRIPTIONS, DELIVER_TASK,
    DeliveryRecord, Dispatcher, DispatcherBuilder, EndpointRateLimit, HealthConfig, HealthEvent,
    HealthEventKind, MemoryTaskQueue, MemoryWebhookStore, PublishReport, Subscription, TaskOutcome,
    WebhookStore, envelope_body,
};
pub use error::{Error, ErrorKind};
pub use hookwire_core::{Disposition, Event, HttpError, RetryPolicy, Scheme};
pub use webhook::{
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_TIMEOUT, Prepared, Sent, Webhook, WebhookBody,
    WebhookBuilder, classify_http_response, try_ok_parts, try_ok_response,
};

/// The guide's examples compile as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/hookwire-webhook-sender.md")]
struct Guide;
