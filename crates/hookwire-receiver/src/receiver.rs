//! The typed receiver: routes by event name or pattern, a `tower::Service`, and a server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::Bytes;
use hookwire_core::signing::{HeaderLookup, HeaderSource, Scheme, SchemeChoice, VerifyOptions};
use hookwire_core::{IdempotencyStore, KeyRing, Pattern, PatternSet};
use http::{Request, Response};
use http_body_util::Full;
use serde::de::DeserializeOwned;

use crate::{Gate, Rejection, Verify};
use http_body_util::{BodyExt, Either};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler learns about the delivery besides the event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Context {
    /// The idempotency key (absent only when keys are optional and none was sent).
    pub key: Option<String>,
    /// The event type: the route's name, or the type read from the header or body.
    pub event_type: String,
    /// The scheme that verified the request (`None` for an unsigned receiver).
    pub scheme: Option<Scheme>,
}

/// Why a route could not run its handler.
enum Outcome {
    Handled,
    Invalid(String),
    Failed(String),
}

/// The body as a route receives it: raw, or already parsed to find the event type.
enum Payload {
    Raw(Bytes),
    Parsed(serde_json::Value),
}

trait Route: Send + Sync {
    fn call(&self, payload: Payload, ctx: Context) -> BoxFuture<Outcome>;
}

struct Typed<T, F> {
    handler: F,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, F, Fut, E> Route for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn call(&self, payload: Payload, ctx: Context) -> BoxFuture<Outcome> {
        let parsed = match payload {
            Payload::Raw(b) => serde_json::from_slice::<T>(&b),
            Payload::Parsed(v) => serde_json::from_value::<T>(v),
        };
        let event = match parsed {
            Ok(e) => e,
            Err(e) => return Box::pin(std::future::ready(Outcome::Invalid(e.to_string()))),
        };
        let fut = CatchUnwind {
            inner: (self.handler)(event, ctx),
        };
        Box::pin(async move {
            match fut.await {
                Ok(Ok(())) => Outcome::Handled,
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(()) => Outcome::Failed("handler panicked".to_owned()),
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Turns a panic while polling the handler into an error, so the claim is released and the
    /// client gets a 500 instead of a dropped connection.
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Builds a [`Receiver`]. Start with [`receiver()`] or [`ReceiverBuilder::new`].
pub struct ReceiverBuilder {
    gate: Gate,
    base: String,
    routes: HashMap<String, Arc<dyn Route>>,
    patterns: PatternSet<Arc<dyn Route>>,
    expose_errors: bool,
}

impl fmt::Debug for ReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("gate", &self.gate)
            .field("base", &self.base)
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

/// A new [`ReceiverBuilder`].
pub fn receiver() -> ReceiverBuilder {
    ReceiverBuilder::new()
}

impl Default for ReceiverBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiverBuilder {
    /// An unsigned receiver with a [`hookwire_core::MemoryStore`] and a 1 MiB body limit.
    pub fn new() -> Self {
        Self {
            gate: Gate::new(),
            base: String::new(),
            routes: HashMap::new(),
            patterns: PatternSet::new(),
            expose_errors: false,
        }
    }
    /// Replaces the whole check configuration.
    #[must_use]
    pub fn gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }
    /// Verifies with `secret` (call again to add rotation keys).
    #[must_use]
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.gate = self.gate.secret(secret);
        self
    }
    /// Verifies with a key ring.
    #[must_use]
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.gate = self.gate.keys(keys);
        self
    }
    /// The accepted scheme(s) (default `auto`).
    #[must_use]
    pub fn scheme(mut self, scheme: impl Into<SchemeChoice>) -> Self {
        self.gate = self.gate.scheme(scheme);
        self
    }
    /// Verification options (tolerance, clock).
    #[must_use]
    pub fn verify_options(mut self, v: VerifyOptions) -> Self {
        self.gate = self.gate.verify_options(v);
        self
    }
    /// The idempotency store (default: an in-process [`hookwire_core::MemoryStore`]).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.gate = self.gate.store(store);
        self
    }
    /// Body limit in bytes (default 1 MiB).
    #[must_use]
    pub fn max_body(mut self, n: usize) -> Self {
        self.gate = self.gate.max_body(n);
        self
    }
    /// Path prefix of every route (default none: `POST /<name>`). The pattern route is at the
    /// prefix itself (`/` without one).
    #[must_use]
    pub fn base_path(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }
    /// Put the handler's error message in the 500 body's `detail` (default: log only).
    #[must_use]
    pub fn expose_handler_errors(mut self, yes: bool) -> Self {
        self.expose_errors = yes;
        self
    }

    /// Routes `POST <base>/<name>` to `handler`, with the body parsed as JSON into `T`. A body
    /// that does not parse is a 422; a handler error or panic is a 500 and releases the key so
    /// the sender's retry is processed. Registering a name twice replaces the handler.
    #[must_use]
    pub fn on<T, F, Fut, E>(mut self, name: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.routes.insert(name.to_owned(), typed(handler));
        self
    }

    /// Handles events posted to the pattern route whose type matches `pattern` (`order.*`).
    /// The type comes from the `webhook-event`, `x-webhook-event` or `x-github-event` header,
    /// else the body's `type` field. The first matching pattern (in registration order) wins.
    #[must_use]
    pub fn on_pattern<T, F, Fut, E>(mut self, pattern: Pattern, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.patterns.insert(pattern, typed(handler));
        self
    }

    /// Freezes the routes.
    pub fn build(self) -> Receiver {
        Receiver(Arc::new(Inner {
            gate: self.gate,
            pattern_path: if self.base.is_empty() {
                "/".to_owned()
            } else {
                self.base.clone()
            },
            base: self.base,
            routes: self.routes,
            patterns: self.patterns,
            expose_errors: self.expose_errors,
        }))
    }
}

fn typed<T, F, Fut, E>(handler: F) -> Arc<dyn Route>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    Arc::new(Typed {
        handler,
        _t: std::marker::PhantomData,
    })
}

/// The route a request was admitted for, owned so the inner service can be cloned.
#[derive(Clone)]
enum Routed {
    Named(String, Arc<dyn Route>),
    Patterns,
}

/// The service behind [`Verify`]: parses the admitted body and runs the handler.
#[derive(Clone)]
struct Dispatch {
    receiver: Receiver,
    target: Routed,
    span: tracing::Span,
}

impl tower_service::Service<Request<Full<Bytes>>> for Dispatch {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { Ok(me.run(req).await) })
    }
}

impl Dispatch {
    async fn run(self, req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await.map(|c| c.to_bytes());
        let admitted = parts.extensions.get::<crate::Admitted>().cloned();
        let (key, scheme) = admitted.map_or((None, None), |a| (a.key, a.scheme));
        if let Some(k) = &key {
            self.span.record("key", k.as_str());
        }
        self.span.record("deduped", false);
        let (event_type, route, payload) = match self.target {
            Routed::Named(n, r) => (n, r, Payload::Raw(body)),
            Routed::Patterns => {
                let value: serde_json::Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => return Rejection::validation_failed(e.to_string()).to_response(),
                };
                let ty = event_type_header(&parts.headers).or_else(|| {
                    value
                        .get("type")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned)
                });
                let Some(route) = ty.as_deref().and_then(|t| {
                    self.receiver
                        .0
                        .patterns
                        .matching(t)
                        .into_iter()
                        .next()
                        .cloned()
                }) else {
                    return Rejection::unknown_event().to_response();
                };
                (ty.unwrap_or_default(), route, Payload::Parsed(value))
            }
        };
        self.span.record("event", event_type.as_str());
        let ctx = Context {
            key,
            event_type,
            scheme,
        };
        match route.call(payload, ctx).await {
            Outcome::Handled => no_content(),
            Outcome::Invalid(detail) => Rejection::validation_failed(detail).to_response(),
            Outcome::Failed(detail) => {
                tracing::error!(error = %detail, "webhook handler failed; key released for the retry");
                let shown = self.receiver.0.expose_errors.then_some(detail);
                Rejection::handler_failed(shown).to_response()
            }
        }
    }
}

/// Where a request path leads.
enum Target<'a> {
    /// `POST <base>/<name>`.
    Named(&'a str, &'a Arc<dyn Route>),
    /// The pattern route: the type comes from the request.
    Patterns,
}

struct Inner {
    gate: Gate,
    base: String,
    pattern_path: String,
    routes: HashMap<String, Arc<dyn Route>>,
    patterns: PatternSet<Arc<dyn Route>>,
    expose_errors: bool,
}

/// A built receiver: a `tower::Service` over `http::Request`s, and a server via
/// `Receiver::listen` / `Receiver::serve` (feature `server`). Cheap to clone.
///
/// | status | body | when |
/// | --- | --- | --- |
/// | 204 | empty | handled (a replay of a done key adds `Idempotent-Replayed: true`) |
/// | 400 | `{"error":"empty-body"\|"missing-key"\|"bad-request"}` | check failed |
/// | 401 | `{"error":"<verify reason>"}` | signature check failed |
/// | 404 | `{"error":"unknown-event"}` | no route (or no pattern) for the event |
/// | 409 | `{"error":"in-flight"}` + `Retry-After` | the key is being processed right now |
/// | 413 | `{"error":"body-too-large"}` | over the body limit |
/// | 415 | `{"error":"unsupported-media-type"}` | a `Content-Type` that is not JSON |
/// | 422 | `{"error":"validation-failed","detail":…}` | the body does not parse into the event |
/// | 431 | `{"error":"headers-too-large"}` | request head over 64 KiB (served by `Receiver::listen`) |
/// | 500 | `{"error":"handler-failed"}` | the handler failed or panicked |
/// | 503 | `{"error":"store-unavailable"}` + `Retry-After` | the idempotency store failed |
#[derive(Clone)]
pub struct Receiver(Arc<Inner>);

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("gate", &self.0.gate)
            .field("base", &self.0.base)
            .finish_non_exhaustive()
    }
}

/// A JSON content type (`application/json`, `…+json`, any parameters), or none at all.
pub(crate) fn is_json_or_absent(h: &http::HeaderMap) -> bool {
    let mut all = h.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        // None is fine; several are ambiguous.
        return h.get(http::header::CONTENT_TYPE).is_none();
    };
    let Ok(v) = v.to_str() else { return false };
    let mime = v.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime
            .rsplit_once('+')
            .is_some_and(|(t, s)| t.starts_with("application/") && s.eq_ignore_ascii_case("json"))
}

fn event_type_header(h: &http::HeaderMap) -> Option<String> {
    ["webhook-event", "x-webhook-event", "x-github-event"]
        .into_iter()
        .find_map(|n| match h.lookup(n) {
            HeaderLookup::One(v) if !v.is_empty() => std::str::from_utf8(v).ok().map(str::to_owned),
            _ => None,
        })
}

fn no_content() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::NO_CONTENT;
    r
}

impl Receiver {
    /// The check configuration.
    pub fn gate(&self) -> &Gate {
        &self.0.gate
    }

    fn route_for(&self, path: &str) -> Option<Target<'_>> {
        let inner = &*self.0;
        if path == inner.pattern_path && !inner.patterns.is_empty() {
            return Some(Target::Patterns);
        }
        let name = path.strip_prefix(inner.base.as_str())?.strip_prefix('/')?;
        inner
            .routes
            .get_key_value(name)
            .map(|(k, r)| Target::Named(k.as_str(), r))
    }

    /// Handles one request (what the `tower::Service` does).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Data: Into<Bytes>,
    {
        let started = Instant::now();
        let span = tracing::info_span!(
            "webhook",
            event = tracing::field::Empty,
            key = tracing::field::Empty,
            deduped = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let resp =
            tracing::Instrument::instrument(self.handle_inner(req, &span), span.clone()).await;
        span.record("outcome", resp.status().as_u16());
        span.record(
            "latency_us",
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        resp
    }

    async fn handle_inner<B>(&self, req: Request<B>, span: &tracing::Span) -> Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Data: Into<Bytes>,
    {
        let Some(target) = (req.method() == http::Method::POST)
            .then(|| self.route_for(req.uri().path()))
            .flatten()
        else {
            return Rejection::unknown_event().to_response();
        };
        if !is_json_or_absent(req.headers()) {
            return Rejection::unsupported_media_type().to_response();
        }
        let target = match target {
            Target::Named(n, r) => Routed::Named(n.to_owned(), r.clone()),
            Target::Patterns => Routed::Patterns,
        };
        // The admission flow (body limit, check, replay, claim finished from the status) is the
        // tower layer's; this receiver only adds routing and typed handlers.
        let dispatch = Dispatch {
            receiver: self.clone(),
            target,
            span: span.clone(),
        };
        let Ok(resp) =
            tower_service::Service::call(&mut Verify::new(dispatch, self.0.gate.clone()), req)
                .await;
        if resp.headers().contains_key(crate::REPLAYED_HEADER) {
            span.record("deduped", true);
        }
        resp.map(|b| match b {
            Either::Left(b) | Either::Right(b) => b,
        })
    }

    #[cfg(feature = "server")]
    /// Binds `addr` and serves until [`crate::Server::shutdown`]. Bind errors are returned.
    pub async fn listen(self, addr: std::net::SocketAddr) -> std::io::Result<crate::Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve(listener)
    }

    #[cfg(feature = "server")]
    /// Serves on an already bound listener.
    pub fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<crate::Server> {
        crate::server::serve_with(listener, move |req| {
            let me = self.clone();
            async move { me.handle(req).await }
        })
    }
}

impl<B> tower_service::Service<Request<B>> for Receiver
where
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { Ok(me.handle(req).await) })
    }
}
