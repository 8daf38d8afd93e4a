//! [`Webhook`]: one configured outbound endpoint (the crate guide, "One endpoint", states what
//! one attempt does, in order).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::signing::{SignInput, sign};
use hookwire_core::{Disposition, Event, HttpError, RetryPolicy, Scheme, Secret};
use http::header::{CONTENT_TYPE, Entry, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use tracing::Instrument;

use crate::body::WebhookBody;
use crate::classify::try_ok_parts;
use crate::client::{HttpClient, HyperClient};
use crate::delivery::{Delivery, DeliveryOutcome};
use crate::error::Error;

/// Default whole-exchange timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default cap on a request body; larger bodies are refused before sending (Svix accepts about
/// 350 kB, Hook0 512 KiB; GitHub sends up to 25 MB — raise it with
/// [`WebhookBuilder::max_body_bytes`] if you must).
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1024 * 1024;

type EventFn<T> = Arc<dyn Fn(&Event) -> T + Send + Sync>;

#[derive(Clone)]
enum Source<T> {
    Value(T),
    Fn(EventFn<T>),
}

impl<T: Clone> Source<T> {
    fn get(&self, e: &Event) -> T {
        match self {
            Source::Value(v) => v.clone(),
            Source::Fn(f) => f(e),
        }
    }
}

/// The URL option: a pre-parsed fixed URL, or a function of the event.
#[derive(Clone)]
enum UrlSource {
    /// The parsed URL, its text and its `Host` header value.
    Fixed(Uri, Arc<str>, Option<HeaderValue>),
    Fn(EventFn<String>),
}

#[derive(Clone)]
enum KeyRule {
    EventId,
    None,
    Fn(EventFn<Option<String>>),
}

/// Configures a [`Webhook`]. Setter mistakes are reported by [`WebhookBuilder::build`].
pub struct WebhookBuilder {
    url: Option<Source<String>>,
    method: Method,
    headers: Vec<(String, String)>,
    headers_fn: Option<EventFn<Vec<(String, String)>>>,
    body: Option<Source<WebhookBody>>,
    timeout: Duration,
    key: KeyRule,
    secret: Option<String>,
    scheme: Scheme,
    client: Option<Arc<dyn HttpClient>>,
    max_body: usize,
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl WebhookBuilder {
    /// A fixed URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(Source::Value(url.into()));
        self
    }
    /// The URL as a function of the event.
    #[must_use]
    pub fn url_fn(mut self, f: impl Fn(&Event) -> String + Send + Sync + 'static) -> Self {
        self.url = Some(Source::Fn(Arc::new(f)));
        self
    }
    /// POST (default), PUT, PATCH or DELETE. A body is sent for every method.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    /// Adds a fixed header. Caller headers win (case-insensitively) over derived ones.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Headers as a function of the event (added after the fixed ones).
    #[must_use]
    pub fn headers_fn(
        mut self,
        f: impl Fn(&Event) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.headers_fn = Some(Arc::new(f));
        self
    }
    /// A fixed body (default: the event, JSON-serialized).
    #[must_use]
    pub fn body(mut self, body: impl Into<WebhookBody>) -> Self {
        self.body = Some(Source::Value(body.into()));
        self
    }
    /// The body as a function of the event.
    #[must_use]
    pub fn body_fn(mut self, f: impl Fn(&Event) -> WebhookBody + Send + Sync + 'static) -> Self {
        self.body = Some(Source::Fn(Arc::new(f)));
        self
    }
    /// The whole-exchange timeout: connect, send, response head and body (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// The `Idempotency-Key` as a function of the event; `None` sends no header.
    /// Default: the event id.
    #[must_use]
    pub fn idempotency_key(
        mut self,
        f: impl Fn(&Event) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = KeyRule::Fn(Arc::new(f));
        self
    }
    /// Sends no `Idempotency-Key`.
    #[must_use]
    pub fn no_idempotency_key(mut self) -> Self {
        self.key = KeyRule::None;
        self
    }
    /// Signs every request with `secret` (an empty secret means unsigned).
    #[must_use]
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }
    /// The signature scheme (default `hookwire`).
    #[must_use]
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
    /// The HTTP client (default: a process-wide shared [`HyperClient`] without SSRF guard).
    #[must_use]
    pub fn client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.client = Some(client);
        self
    }
    /// The largest request body sent (default [`DEFAULT_MAX_REQUEST_BODY`]).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// Checks the configuration and builds the webhook.
    ///
    /// ```
    /// use hookwire_webhook_sender::Webhook;
    /// assert!(Webhook::builder().build().is_err(), "a URL is required");
    /// assert!(Webhook::builder().url("http://x.test/").method(http::Method::GET).build().is_err());
    /// assert!(Webhook::builder().url("http://x.test/").secret("plain").scheme(hookwire_core::Scheme::Standard).build().is_err());
    /// assert!(Webhook::builder().url("not a url").build().is_err());
    /// ```
    pub fn build(self) -> Result<Webhook, Error> {
        let url = match self.url.ok_or_else(|| Error::build("a URL is required"))? {
            Source::Value(u) => {
                let uri = parse_url(&u).map_err(Error::build)?;
                let host = uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                UrlSource::Fixed(uri, Arc::from(u), host)
            }
            Source::Fn(f) => UrlSource::Fn(f),
        };
        if ![Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(&self.method) {
            return Err(Error::build(format!(
                "method {} is not one of POST, PUT, PATCH, DELETE",
                self.method
            )));
        }
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 6);
        for (k, v) in &self.headers {
            let (n, v) = header_pair(k, v).map_err(Error::build)?;
            headers.append(n, v);
        }
        let secret = match self.secret {
            Some(s) if !s.is_empty() => {
                let secret = Secret::new(&s);
                if self.scheme == Scheme::Standard && !secret.has_standard_key() {
                    return Err(Error::build(
                        "the standard scheme needs a `whsec_` + base64 secret of at least 16 bytes",
                    ));
                }
                Some(secret)
            }
            _ => None,
        };
        let client = self.client.unwrap_or_else(|| {
            static SHARED: OnceLock<Arc<HyperClient>> = OnceLock::new();
            SHARED.get_or_init(|| Arc::new(HyperClient::new())).clone()
        });
        let label = format!("webhook {}", self.method);
        Ok(Webhook {
            inner: Arc::new(WebhookInner {
                url,
                method: self.method,
                headers,
                headers_fn: self.headers_fn,
                body: self.body,
                timeout: self.timeout,
                key: self.key,
                secret,
                scheme: self.scheme,
                client,
                max_body: self.max_body,
                label,
                body_hint: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }
}

fn parse_url(u: &str) -> Result<Uri, String> {
    let uri: Uri = u.parse().map_err(|e| format!("invalid URL {u:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        _ => Err(format!("URL {u:?} must be http(s) with a host")),
    }
}

fn header_pair(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n =
        HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))?;
    let v = HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))?;
    Ok((n, v))
}

/// One configured outbound endpoint: signs, times out, keys, classifies and retries deliveries.
///
/// Cheap to clone (the configuration is shared).
///
/// ```no_run
/// # async fn run() {
/// use hookwire_webhook_sender::Webhook;
/// use hookwire_core::{Event, RetryPolicy};
/// let hook = Webhook::builder()
///     .url("https://hooks.example.com/in")
///     .secret("s3cret")
///     .build()
///     .unwrap();
/// let event = Event::new("order.created", serde_json::json!({"id": "o-1"}));
/// let d = hook.deliver_with_retry(&event, &RetryPolicy::default()).await;
/// println!("{:?} after {} attempts", d.outcome, d.attempts);
/// # }
/// ```
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<WebhookInner>,
}

struct WebhookInner {
    url: UrlSource,
    method: Method,
    headers: HeaderMap,
    headers_fn: Option<EventFn<Vec<(String, String)>>>,
    body: Option<Source<WebhookBody>>,
    timeout: Duration,
    key: KeyRule,
    secret: Option<Secret>,
    scheme: Scheme,
    client: Arc<dyn HttpClient>,
    max_body: usize,
    label: String,
    /// Length of the last default body, to size the next serialization buffer.
    body_hint: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("method", &self.inner.method)
            .field("timeout", &self.inner.timeout)
            .field("scheme", &self.inner.scheme)
            .field("signed", &self.inner.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// One delivery ready to be attempted: the URL, the headers (all but the signature, which is
/// computed per attempt so that retries carry a fresh timestamp) and the exact body bytes.
#[derive(Debug, Clone)]
pub struct Prepared {
    uri: Uri,
    url: Arc<str>,
    headers: HeaderMap,
    body: Bytes,
    /// Message id and event type, kept only for schemes that put them in headers or sign them.
    id: Option<String>,
    event_type: Option<String>,
    sign: bool,
}

impl Prepared {
    /// The exact bytes every attempt sends (and signs).
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The request URL.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The headers sent on every attempt (signature headers are added per attempt).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The 2xx status.
    pub status: u16,
    /// Wall time of the attempt.
    pub duration: Duration,
}

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl Webhook {
    /// A builder with the defaults listed in the crate guide (5 s timeout, 1 MiB body cap,
    /// `Idempotency-Key` = event id, the `hookwire` scheme).
    pub fn builder() -> WebhookBuilder {
        WebhookBuilder {
            url: None,
            method: Method::POST,
            headers: Vec::new(),
            headers_fn: None,
            body: None,
            timeout: DEFAULT_TIMEOUT,
            key: KeyRule::EventId,
            secret: None,
            scheme: Scheme::Hookwire,
            client: None,
            max_body: DEFAULT_MAX_REQUEST_BODY,
        }
    }

    /// The event as JSON, serialized into a buffer sized from the previous body so that the
    /// common case allocates once instead of growing 128 → 256 → 512 … bytes.
    fn event_json(&self, event: &Event) -> Bytes {
        use std::sync::atomic::Ordering;
        let hint = self.inner.body_hint.load(Ordering::Relaxed);
        let mut buf = Vec::with_capacity(hint.clamp(128, 64 * 1024) + 64);
        // `Event` is strings, numbers and a `Value`: serialization cannot fail.
        let _ = serde_json::to_writer(&mut buf, event);
        self.inner.body_hint.store(buf.len(), Ordering::Relaxed);
        Bytes::from(buf)
    }

    fn url_text(&self, event: &Event) -> String {
        match &self.inner.url {
            UrlSource::Fixed(_, t, _) => t.to_string(),
            UrlSource::Fn(f) => f(event),
        }
    }

    /// The configured timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Resolves URL, headers and body for `event` (the body from the `body` option, else the
    /// event as JSON).
    pub fn prepare(&self, event: &Event) -> Result<Prepared, HttpError> {
        let body = match &self.inner.body {
            None => Ok(self.event_json(event)),
            Some(b) => b.get(event).into_bytes(),
        };
        let body =
            body.map_err(|e| HttpError::refused(&self.url_text(event), &self.inner.label, e))?;
        self.prepare_with_body(event, body)
    }

    /// Like [`Webhook::prepare`] with an already serialized body (the dispatcher serializes once
    /// per event and shares the bytes between subscriptions).
    pub fn prepare_with_body(&self, event: &Event, body: Bytes) -> Result<Prepared, HttpError> {
        let i = &*self.inner;
        let (uri, url, host) = match &i.url {
            UrlSource::Fixed(uri, text, host) => (uri.clone(), Arc::clone(text), host.clone()),
            UrlSource::Fn(f) => {
                let text = f(event);
                let uri =
                    parse_url(&text).map_err(|why| HttpError::refused(&text, &i.label, why))?;
                (uri, Arc::from(text), None)
            }
        };
        let refused = |why: String| HttpError::refused(&url, &i.label, why);
        if body.len() > i.max_body {
            return Err(refused(format!(
                "body of {} bytes exceeds the {} byte limit",
                body.len(),
                i.max_body
            )));
        }
        let mut headers = i.headers.clone();
        if let Some(f) = &i.headers_fn {
            for (k, v) in f(event) {
                let (n, v) = header_pair(&k, &v).map_err(&refused)?;
                headers.append(n, v);
            }
        }
        // Caller headers win: derived headers only fill gaps (names compare case-insensitively
        // because `HeaderName` is lowercase).
        // A fixed URL's Host value is built once; the client derives it for the others.
        // One lookup per derived header (`entry`), not a `contains_key` and an `insert`.
        if let Some(h) = host
            && let Entry::Vacant(e) = headers.entry(http::header::HOST)
        {
            e.insert(h);
        }
        if let Entry::Vacant(e) = headers.entry(CONTENT_TYPE) {
            e.insert(APPLICATION_JSON.clone());
        }
        if let Entry::Vacant(e) = headers.entry(IDEMPOTENCY_KEY.clone()) {
            let custom;
            let key = match &i.key {
                KeyRule::EventId => Some(event.id.as_str()),
                KeyRule::None => None,
                KeyRule::Fn(f) => {
                    custom = f(event);
                    custom.as_deref()
                }
            };
            if let Some(k) = key {
                let v = HeaderValue::from_str(k)
                    .map_err(|_| refused(format!("idempotency key {k:?} is not a header value")))?;
                e.insert(v);
            }
        }
        let sign = i.secret.is_some() && !headers.contains_key(signature_header(i.scheme));
        Ok(Prepared {
            uri,
            url,
            headers,
            body,
            id: scheme_uses_id(i.scheme).then(|| event.id.clone()),
            event_type: scheme_uses_id(i.scheme).then(|| event.name.clone()),
            sign,
        })
    }

    /// One attempt: sign (at the current time), send, read the response (capped) and classify.
    /// The timeout covers the whole exchange.
    ///
    /// Cancel safety: dropping the future abandons the request; the connection is not reused.
    pub async fn attempt(&self, p: &Prepared) -> Result<Sent, HttpError> {
        self.attempt_with(p, p.headers.clone()).await
    }

    async fn attempt_with(&self, p: &Prepared, mut headers: HeaderMap) -> Result<Sent, HttpError> {
        let i = &*self.inner;
        let started = Instant::now();
        if p.sign
            && let Some(secret) = &i.secret
        {
            let ts = hookwire_core::time::unix_now();
            let mut input = SignInput::new(&p.body, ts);
            if let Some(id) = &p.id {
                input = input.id(id);
            }
            if let Some(t) = &p.event_type {
                input = input.event_type(t);
            }
            let signed = sign(i.scheme, secret, &input)
                .map_err(|e| HttpError::refused(&p.url, &i.label, e))?;
            for (name, value) in signed {
                // The caller's value wins (e.g. an explicit timestamp): fill vacant names only.
                if let Entry::Vacant(e) = headers.entry(signed_header_name(name))
                    && let Ok(v) = HeaderValue::try_from(value)
                {
                    e.insert(v);
                }
            }
        }
        let mut req = Request::new(p.body.clone());
        *req.method_mut() = i.method.clone();
        *req.uri_mut() = p.uri.clone();
        *req.headers_mut() = headers;
        let res = tokio::time::timeout(i.timeout, i.client.send(req)).await;
        let duration = started.elapsed();
        match res {
            Err(_) => Err(HttpError::timeout(&p.url, &i.label, i.timeout)),
            Ok(Err(e)) if e.is_permanent() => Err(HttpError::refused(&p.url, &i.label, e)),
            Ok(Err(e)) => Err(HttpError::network(&p.url, &i.label, e)),
            Ok(Ok(r)) => {
                try_ok_parts(&r.status, &r.headers, &r.body, &p.url, &i.label)?;
                Ok(Sent {
                    status: r.status.as_u16(),
                    duration,
                })
            }
        }
    }

    /// One attempt for `event` (no retries), as a `webhook.attempt` span.
    ///
    /// Cancel safety: dropping the future abandons the request (the receiver may or may not have
    /// seen it; the `Idempotency-Key` makes a later retry safe).
    pub async fn deliver(&self, event: &Event) -> Result<Sent, HttpError> {
        let mut p = self.prepare(event)?;
        // A single attempt can hand the prepared headers over instead of copying them.
        let headers = std::mem::take(&mut p.headers);
        self.traced_attempt(&p, headers, 1).await.0
    }

    /// One attempt inside a `webhook.attempt` span that records url, attempt number, status,
    /// duration and disposition. Without a subscriber the span is disabled and costs a check.
    async fn traced_attempt(
        &self,
        p: &Prepared,
        headers: HeaderMap,
        attempt: u32,
    ) -> (Result<Sent, HttpError>, tracing::Span) {
        let span = tracing::info_span!(
            "webhook.attempt",
            url = %p.url,
            attempt,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            disposition = tracing::field::Empty,
        );
        let t = (!span.is_disabled()).then(Instant::now);
        let r = self.attempt_with(p, headers).instrument(span.clone()).await;
        if let Some(t) = t {
            let (status, disposition) = match &r {
                Ok(s) => (s.status, Disposition::Ok),
                Err(e) => (e.status(), e.disposition()),
            };
            span.record("status", status);
            span.record("duration_ms", t.elapsed().as_millis() as u64);
            span.record("disposition", disposition.as_str());
        }
        (r, span)
    }

    /// Delivers `event` with retries under `policy` (see [`Webhook::deliver_prepared`]).
    ///
    /// Cancel safety: dropping the future stops between or during attempts; nothing is left
    /// behind (no background task).
    pub async fn deliver_with_retry(&self, event: &Event, policy: &RetryPolicy) -> Delivery {
        match self.prepare(event) {
            Ok(p) => self.deliver_prepared(&p, policy).await,
            Err(e) => Delivery::unsent(e),
        }
    }

    /// The retry driver: Retry outcomes are retried with `policy`'s backoff (honouring a
    /// clamped `Retry-After`) until `max_retries` or `max_window`; a Block stops at once unless
    /// `block_on_error` is false. Every attempt is a `tracing` span `webhook.attempt` with url,
    /// attempt, status and duration.
    pub async fn deliver_prepared(&self, p: &Prepared, policy: &RetryPolicy) -> Delivery {
        self.deliver_prepared_gated(p, policy, || std::future::ready(()))
            .await
    }

    /// [`Webhook::deliver_prepared`], holding what `gate` yields (the dispatcher's concurrency
    /// permit) during each attempt only: a delivery sleeping until its retry holds nothing.
    pub(crate) async fn deliver_prepared_gated<G, F, Fut>(
        &self,
        p: &Prepared,
        policy: &RetryPolicy,
        mut gate: F,
    ) -> Delivery
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = G>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let headers = p.headers.clone();
            let held = gate().await;
            let (r, span) = self.traced_attempt(p, headers, attempt).await;
            drop(held);
            let err = match r {
                Ok(sent) => {
                    return Delivery::new(
                        DeliveryOutcome::Delivered {
                            status: sent.status,
                        },
                        attempt,
                        started,
                        p,
                    );
                }
                Err(e) => e,
            };
            if !err.is_retryable() && policy.block_on_error {
                return Delivery::new(DeliveryOutcome::Blocked(err), attempt, started, p);
            }
            let delay = policy.delay_after(attempt - 1, err.retry_after());
            let next_at = started.elapsed().saturating_add(delay);
            if !policy.allows_attempt(attempt + 1, next_at) {
                return Delivery::new(DeliveryOutcome::Exhausted(err), attempt, started, p);
            }
            tracing::debug!(parent: &span, ?delay, error = %err, "webhook attempt failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Whether `sign` reads the message id / event type for this scheme (the others would only pay
/// for copying them).
fn scheme_uses_id(s: Scheme) -> bool {
    matches!(s, Scheme::Standard | Scheme::Body | Scheme::Github)
}

/// The header whose presence in the caller's headers means "the caller signs this request".
fn signature_header(s: Scheme) -> &'static str {
    match s {
        Scheme::Standard => "webhook-signature",
        Scheme::Github => "x-hub-signature-256",
        Scheme::Stripe => "stripe-signature",
        Scheme::Slack => "x-slack-signature",
        _ => "x-webhook-signature",
    }
}

/// The `HeaderName` of a header produced by `sign`, without re-parsing the well-known ones.
fn signed_header_name(name: &'static str) -> HeaderName {
    match name {
        "X-Webhook-Signature" => HeaderName::from_static("x-webhook-signature"),
        "X-Webhook-Timestamp" => HeaderName::from_static("x-webhook-timestamp"),
        "X-Webhook-Id" => HeaderName::from_static("x-webhook-id"),
        "X-Webhook-Event" => HeaderName::from_static("x-webhook-event"),
        "webhook-id" => HeaderName::from_static("webhook-id"),
        "webhook-timestamp" => HeaderName::from_static("webhook-timestamp"),
        "webhook-signature" => HeaderName::from_static("webhook-signature"),
        // Header names from `sign` are static ASCII tokens, so parsing cannot fail.
        other => HeaderName::from_bytes(other.as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-webhook-unknown")),
    }
}
