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
//! use hookwire_webhook_sender::{Webhook, Outcome};
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
//!     Outcome::Delivered { status } => println!("{status} after {} attempts", delivery.attempts),
//!     Outcome::Blocked(e) | Outcome::Exhausted(e) => eprintln!("failed: {e}"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! # Concepts
//! - **One endpoint** ([`Webhook`]): URL, headers and body as values or functions of the event;
//!   a timeout over the whole exchange; `Idempotency-Key` = event id unless told otherwise;
//!   caller headers win case-insensitively; signatures over the exact body bytes.
//! - **Classification** ([`classify_http_response`], [`try_ok`]): 2xx ok; 408/425/429/5xx and
//!   network failures retry (honouring `Retry-After`); redirects and other 4xx block.
//! - **Retries** ([`Webhook::deliver_with_retry`]) with the core's [`RetryPolicy`].
//! - **Fan-out** ([`Dispatcher`]): pattern subscriptions, bounded concurrency, a delivery log,
//!   endpoint health, rate limits, durable mode and the SSRF guard ([`ssrf`]).
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `redis` | `RedisStore`, a [`WebhookStore`] in Redis | no |
//!
//! MSRV: Rust 1.88.

mod client;
mod delivery;
mod dispatcher;
pub mod ssrf;
mod webhook;

pub use client::{
    ClientResponse, HttpClient, HyperClient, HyperClientBuilder, MAX_RESPONSE_BODY, TransportError,
    TransportErrorKind,
};
pub use delivery::{Delivery, Outcome};
#[cfg(feature = "redis")]
pub use dispatcher::RedisStore;
pub use dispatcher::{
    DEFAULT_CONCURRENCY, DEFAULT_LOG_CAPACITY, DEFAULT_MAX_SUBSCRIPTIONS, DELIVER_TASK,
    DeliveryRecord, DispatchError, DispatchErrorKind, Dispatcher, DispatcherBuilder, HealthConfig,
    HealthEvent, HealthEventKind, MemoryTaskQueue, MemoryWebhookStore, PublishReport, RateLimit,
    StoreError, Subscription, TaskOutcome, WebhookStore, envelope_body,
};
pub use hookwire_core::{Disposition, Event, HttpError, RetryPolicy, Scheme};
pub use webhook::{
    BuildError, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, Prepared, Sent, Webhook, WebhookBody,
    WebhookBuilder, classify_http_response, try_ok, try_ok_response,
};
