//! Outbound webhooks: signed, timed-out, idempotency-keyed, classified and retried deliveries
//! ([`Webhook`]), and a subscription [`Dispatcher`] that fans events out to many endpoints.
//!
//! The crate guide below is this page: its examples compile as doctests.
#![doc = include_str!("../../../docs/hookwire-webhook-sender.md")]

mod body;
mod classify;
mod client;
mod connect;
mod delivery;
mod dispatcher;
mod error;
mod h1;
mod interim;
pub mod ssrf;
mod webhook;

pub use body::WebhookBody;
pub use classify::{classify_http_response, try_ok_parts, try_ok_response};
pub use client::{
    ClientResponse, HttpClient, HyperClient, HyperClientBuilder, MAX_RESPONSE_BODY, TransportError,
    TransportErrorKind,
};
pub use delivery::{Delivery, DeliveryOutcome};
#[cfg(feature = "redis")]
pub use dispatcher::RedisSubscriptionStore;
#[cfg(feature = "events")]
pub use dispatcher::{
    BusDispatcher, BusDispatcherBuilder, DEFAULT_CHANGES_EVENT, DEFAULT_RELOAD_INTERVAL,
};
pub use dispatcher::{
    DEFAULT_CONCURRENCY, DEFAULT_LOG_CAPACITY, DEFAULT_MAX_SUBSCRIPTIONS, DELIVER_TASK,
    DeliveryRecord, Dispatcher, DispatcherBuilder, EndpointRateLimit, HealthConfig, HealthEvent,
    HealthEventKind, MemoryTaskQueue, MemoryWebhookStore, PublishReport, Subscription, TaskOutcome,
    WebhookStore, envelope_body,
};
pub use error::{Error, ErrorKind};
pub use hookwire_core::{Disposition, Event, HttpError, RetryPolicy, Scheme};
pub use webhook::{
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_TIMEOUT, Prepared, Sent, Webhook, WebhookBuilder,
};
