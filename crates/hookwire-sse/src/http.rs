//! SSE over HTTP: the response body for hyper and axum, `Last-Event-ID` parsing, the
//! authorization hook, routes for `/events/<stream>`, `/state/<stream>`, `/events?filter=…`
//! and the browser client, and a plain-hyper server loop.
//!
//! Responses follow `docs/hookwire-sse.md`: `content-type: text/event-stream; charset=utf-8`,
//! `cache-control: no-cache, no-store`, `x-accel-buffering: no`; the body starts with a
//! `retry:` hint (jittered per connection) and a comment so proxies and browsers open at
//! once, then the snapshot (or the replay), then patches; idle connections get a `:` comment
//! from one shared timer. A non-200 status stops browser reconnects, so it is sent only
//! deliberately: 401/403 from the authorization hook, 400 for a malformed stream name or
//! filter, 404 for unknown routes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::channel::{BroadcastChannel, BroadcastState};
use crate::events::{EventBroadcast, EventFilter};
use crate::frame::Frame;
use crate::presence::PresenceTracker;
use crate::queue::StreamSubscription;

/// The browser client, a dependency-free ES module (served at [`CLIENT_JS_PATH`]).
pub const CLIENT_JS: &str = include_str!("../js/hookwire-sse.js");
/// Where [`SseApp`] serves [`CLIENT_JS`].
pub const CLIENT_JS_PATH: &str = "/hookwire-sse.js";
/// Longest accepted stream name, in bytes.
pub const MAX_STREAM_LEN: usize = 128;
/// Longest `Last-Event-ID` considered; longer values are treated as absent.
pub const MAX_LAST_EVENT_ID_LEN: usize = 20;

/// What the authorization hook sees of a request.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The requested stream (`""` for the event stream).
    pub stream: &'a str,
    /// Request headers (e.g. `Authorization`, `Cookie`).
    pub headers: &'a HeaderMap,
    /// The raw query string, if any (e.g. `token=…`).
    pub query: Option<&'a str>,
}

/// What an authorized request may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// When set, the event stream only carries events of this organization (no cross-tenant
    /// delivery). State streams are authorized per stream name by the hook itself.
    pub organization: Option<String>,
    /// Who is connecting; with [`SseApp::with_presence`] each open state stream counts this
    /// identity as online on that stream.
    pub identity: Option<String>,
}

impl Access {
    /// Unrestricted access.
    pub fn all() -> Self {
        Self::default()
    }

    /// Access scoped to one organization.
    pub fn organization(org: impl Into<String>) -> Self {
        Self {
            organization: Some(org.into()),
            identity: None,
        }
    }

    /// The same access, naming who connects (for presence).
    #[must_use]
    pub fn with_identity(mut self, id: impl Into<String>) -> Self {
        self.identity = Some(id.into());
        self
    }
}

/// Who may read a stream. Returning an error status answers with it (and no stream); any
/// failure inside the hook must return an error (fail closed). The organization must come
/// from the authenticated principal, never from a client-chosen header.
///
/// ```
/// use hookwire_sse::http::{Access, Authorize, RequestInfo};
/// let demo = |r: &RequestInfo<'_>| match r.headers.get("authorization").and_then(|v| v.to_str().ok()) {
///     Some(t) if t.starts_with("Bearer ") => Ok(Access::organization(t.rsplit('@').next().unwrap_or(""))),
///     _ => Err(http::StatusCode::UNAUTHORIZED),
/// };
/// let h = http::HeaderMap::new();
/// let req = RequestInfo::new("board", &h, None);
/// assert_eq!(demo.authorize(&req), Err(http::StatusCode::UNAUTHORIZED));
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// Decides for one request.
    fn authorize(&self, req: &RequestInfo<'_>) -> Result<Access, StatusCode>;
}

impl<F> Authorize for F
where
    F: Fn(&RequestInfo<'_>) -> Result<Access, StatusCode> + Send + Sync + 'static,
{
    fn authorize(&self, req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        self(req)
    }
}

/// Allows every request: for public streams only; say so where you use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Public;

impl Authorize for Public {
    fn authorize(&self, _req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        Ok(Access::all())
    }
}

/// The hook of a configuration that never chose one: refuses every stream with 401 (fail
/// closed, like the WebSocket gateway without an authenticator) and says why once in the log.
#[derive(Debug, Clone, Copy, Default)]
struct Unchosen;

impl Authorize for Unchosen {
    fn authorize(&self, _req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::error!(
                "hookwire-sse: no authorization hook chosen, every stream answers 401; \
                 call SseConfig::auth(hook), or SseConfig::auth(Public) for public streams"
            );
        });
        Err(StatusCode::UNAUTHORIZED)
    }
}

impl<'a> RequestInfo<'a> {
    /// Describes a request for the hook.
    pub fn new(stream: &'a str, headers: &'a HeaderMap, query: Option<&'a str>) -> Self {
        Self {
            stream,
            headers,
            query,
        }
    }
}

/// Connection settings shared by the hyper/axum body and the lean acceptor.
#[derive(Clone)]
#[non_exhaustive]
pub struct SseConfig {
    /// Interval of keep-alive comments on idle connections (default 15 s).
    pub keep_alive: Duration,
    /// Base reconnect delay sent as `retry:` (default 1 s).
    pub retry: Duration,
    /// Random extra reconnect delay per connection, so a restart does not cause a reconnect
    /// storm (default 3 s).
    pub retry_jitter: Duration,
    /// The authorization hook. There is no silent default: until one is chosen with
    /// [`SseConfig::auth`] (a hook, or [`Public`] for public streams), every stream and state
    /// request answers 401.
    pub auth: Arc<dyn Authorize>,
}

impl fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseConfig")
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .field("retry_jitter", &self.retry_jitter)
            .finish_non_exhaustive()
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(1),
            retry_jitter: Duration::from_secs(3),
            auth: Arc::new(Unchosen),
        }
    }
}

impl SseConfig {
    /// Sets the keep-alive interval.
    #[must_use]
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Sets the reconnect hint (base and jitter).
    #[must_use]
    pub fn retry(mut self, base: Duration, jitter: Duration) -> Self {
        self.retry = base;
        self.retry_jitter = jitter;
        self
    }

    /// Sets the authorization hook.
    #[must_use]
    pub fn auth(mut self, auth: impl Authorize) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The first bytes of every stream: a jittered `retry:` and an opening comment.
    pub(crate) fn preamble(&self) -> Bytes {
        let jitter = u64::try_from(self.retry_jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter == 0 {
            0
        } else {
            hookwire_core::id::random_u64() % jitter
        };
        let ms = u64::try_from(self.retry.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(extra);
        Bytes::from(format!("retry: {ms}\n: hookwire\n\n"))
    }
}

/// The resume point of a request: the `Last-Event-ID` header, else the `last_event_id` or
/// `lastEventId` query parameter (for the first connect, which cannot set headers). Anything
/// that is not a plain decimal `u64` of at most 20 digits counts as absent (→ snapshot).
///
/// ```
/// use hookwire_sse::http::last_event_id;
/// let mut h = http::HeaderMap::new();
/// assert_eq!(last_event_id(&h, Some("a=1&last_event_id=41")), Some(41));
/// h.insert("last-event-id", "42".parse().unwrap());
/// assert_eq!(last_event_id(&h, Some("lastEventId=7")), Some(42));
/// h.insert("last-event-id", "42; DROP".parse().unwrap());
/// assert_eq!(last_event_id(&h, None), None);
/// ```
pub fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<u64> {
    if let Some(v) = headers.get("last-event-id") {
        return v.to_str().ok().and_then(parse_version);
    }
    query_param(query?, "last_event_id")
        .or_else(|| query_param(query?, "lastEventId"))
        .as_deref()
        .and_then(parse_version)
}

fn parse_version(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_LAST_EVENT_ID_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The percent-decoded value of query parameter `name` (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` is an acceptable stream name: 1–128 bytes of `A-Z a-z 0-9 _ - . :`.
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A response body: an SSE stream, a complete buffer, or nothing.
///
/// Implements [`http_body::Body`], so it can be returned from hyper services and (with the
/// `axum` feature, or `axum::body::Body::new`) from axum handlers. An SSE body yields each
/// frame's shared bytes as its own data frame; hyper queues them and writes several with one
/// vectored write.
pub struct ResponseBody {
    kind: BodyKind,
}

enum BodyKind {
    Full(Option<Bytes>),
    Sse {
        preamble: Option<Bytes>,
        sub: StreamSubscription,
        pending: VecDeque<Frame>,
        batch: Vec<Frame>,
        // Dropped with the body, i.e. when the connection ends (presence).
        _guard: Option<Box<dyn Send + Sync>>,
    },
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Full(b) => f
                .debug_tuple("Full")
                .field(&b.as_ref().map(Bytes::len))
                .finish(),
            BodyKind::Sse { sub, .. } => f.debug_tuple("Sse").field(sub).finish(),
        }
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Self {
            kind: BodyKind::Full(Some(b.into())),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: BodyKind::Full(None),
        }
    }

    /// An SSE body: `preamble` first, then every frame of `sub`.
    pub fn sse(preamble: Bytes, sub: StreamSubscription) -> Self {
        Self::sse_with_guard(preamble, sub, None)
    }

    fn sse_with_guard(
        preamble: Bytes,
        sub: StreamSubscription,
        guard: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            kind: BodyKind::Sse {
                preamble: Some(preamble),
                sub,
                pending: VecDeque::new(),
                batch: Vec::new(),
                _guard: guard,
            },
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(http_body::Frame::data(b)))),
            BodyKind::Sse {
                preamble,
                sub,
                pending,
                batch,
                ..
            } => {
                if let Some(p) = preamble.take() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(p))));
                }
                if pending.is_empty() {
                    match sub.poll_batch(cx, batch) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(false) => return Poll::Ready(None),
                        Poll::Ready(true) => pending.extend(batch.drain(..)),
                    }
                }
                Poll::Ready(
                    pending
                        .pop_front()
                        .map(|f| Ok(http_body::Frame::data(f.sse()))),
                )
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, BodyKind::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            BodyKind::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodyKind::Sse { .. } => http_body::SizeHint::default(),
        }
    }
}

/// The response head of an SSE stream, shared by every serving path.
pub(crate) const SSE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache, no-store"),
    ("x-accel-buffering", "no"),
];

fn sse_head(body: ResponseBody) -> Response<ResponseBody> {
    let mut r = Response::new(body);
    for (k, v) in SSE_HEADERS {
        r.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    r
}

/// A plain response with `status` and a short text body.
pub fn status_response(status: StatusCode) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(
        status
            .canonical_reason()
            .unwrap_or("error")
            .as_bytes()
            .to_vec(),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The routes of one channel (and optionally one event broadcast) for any HTTP server.
///
/// | Route | Answer |
/// | --- | --- |
/// | `GET /events/<stream>` | SSE: snapshot (or the replay after `Last-Event-ID`), then patches |
/// | `GET /state/<stream>` | the cached state as JSON (with `_v`), 404 when none |
/// | `GET /events?filter=order.*,…` | SSE of application events (needs [`with_events`](Self::with_events)) |
/// | `GET /hookwire-sse.js` | the browser client |
///
/// ```no_run
/// use hookwire_sse::{BroadcastChannel, http::{SseApp, SseConfig}};
/// # async fn run() -> std::io::Result<()> {
/// let channel: BroadcastChannel = BroadcastChannel::new();
/// // An explicit authentication choice: without `.auth(…)` every stream answers 401.
/// let app = SseApp::new(channel, SseConfig::default().auth(hookwire_sse::http::Public));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// hookwire_sse::http::serve(listener, app).await
/// # }
/// ```
pub struct SseApp<S = serde_json::Value> {
    channel: BroadcastChannel<S>,
    events: Option<EventBroadcast>,
    config: SseConfig,
    presence: Option<(Arc<PresenceTracker>, Arc<str>)>,
}

impl<S> Clone for SseApp<S> {
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
            events: self.events.clone(),
            config: self.config.clone(),
            presence: self.presence.clone(),
        }
    }
}

impl<S> fmt::Debug for SseApp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseApp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: BroadcastState> SseApp<S> {
    /// Routes for `channel`.
    pub fn new(channel: BroadcastChannel<S>, config: SseConfig) -> Self {
        Self {
            channel,
            events: None,
            config,
            presence: None,
        }
    }

    /// Counts every open state stream whose [`Access`] names an identity as that identity
    /// being online on the stream (ref-counted: two tabs need two disconnects), and publishes
    /// the roster as an overlay `{ key: [ids] }` on every change.
    #[must_use]
    pub fn with_presence(mut self, tracker: Arc<PresenceTracker>, key: &str) -> Self {
        self.presence = Some((tracker, Arc::from(key)));
        self
    }

    /// Also serve `GET /events?filter=…` from `events`.
    #[must_use]
    pub fn with_events(mut self, events: EventBroadcast) -> Self {
        self.events = Some(events);
        self
    }

    /// The channel.
    pub fn channel(&self) -> &BroadcastChannel<S> {
        &self.channel
    }

    /// The connection settings.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Answers one request. Must be called inside a Tokio runtime (starts the shared
    /// keep-alive timer on first use).
    pub fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<ResponseBody> {
        if method != Method::GET && method != Method::HEAD {
            return status_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        if path == CLIENT_JS_PATH {
            let mut r = Response::new(ResponseBody::full(Bytes::from_static(CLIENT_JS.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            );
            return r;
        }
        if path == "/events" {
            return self.events_route(query, headers);
        }
        let (kind, stream) = match path.strip_prefix("/events/") {
            Some(s) => (true, s),
            None => match path.strip_prefix("/state/") {
                Some(s) => (false, s),
                None => return status_response(StatusCode::NOT_FOUND),
            },
        };
        if !valid_stream_name(stream) {
            return status_response(StatusCode::BAD_REQUEST);
        }
        let info = RequestInfo {
            stream,
            headers,
            query,
        };
        let access = match self.config.auth.authorize(&info) {
            Ok(a) => a,
            Err(status) => return status_response(status),
        };
        if kind {
            let guard = self.presence_guard(stream, &access);
            self.channel.start_keep_alive(self.config.keep_alive);
            let sub = self
                .channel
                .subscribe_from(stream, last_event_id(headers, query));
            sse_head(ResponseBody::sse_with_guard(
                self.config.preamble(),
                sub,
                guard,
            ))
        } else {
            state_response(&self.channel, stream)
        }
    }

    /// The SSE response for `stream`, resuming after `last` (authorization already done).
    pub fn stream_response(&self, stream: &str, last: Option<u64>) -> Response<ResponseBody> {
        self.channel.start_keep_alive(self.config.keep_alive);
        let sub = self.channel.subscribe_from(stream, last);
        sse_head(ResponseBody::sse(self.config.preamble(), sub))
    }

    /// Marks `access.identity` online on `stream` until the returned guard drops.
    pub(crate) fn presence_guard(
        &self,
        stream: &str,
        access: &Access,
    ) -> Option<Box<dyn Send + Sync>> {
        let (tracker, key) = self.presence.as_ref()?;
        let id = access.identity.as_ref()?;
        // Past the tracker's per-stream cap the stream is served without presence (and
        // without a guard: only a counted connection may be removed).
        let came_online = tracker.try_add(stream, id)?;
        let guard = PresenceGuard {
            channel: self.channel.clone(),
            tracker: Arc::clone(tracker),
            key: Arc::clone(key),
            stream: stream.to_owned(),
            id: id.clone(),
        };
        if came_online {
            guard.announce();
        }
        Some(Box::new(guard))
    }

    fn events_route(&self, query: Option<&str>, headers: &HeaderMap) -> Response<ResponseBody> {
        let Some(events) = &self.events else {
            return status_response(StatusCode::NOT_FOUND);
        };
        let info = RequestInfo {
            stream: "",
            headers,
            query,
        };
        let access = match self.config.auth.authorize(&info) {
            Ok(a) => a,
            Err(status) => return status_response(status),
        };
        let list = query
            .and_then(|q| query_param(q, "filter"))
            .unwrap_or_else(|| "*".to_owned());
        let Ok(mut filter) = EventFilter::parse(&list) else {
            return status_response(StatusCode::BAD_REQUEST);
        };
        if let Some(org) = access.organization {
            filter = filter.organization(org);
        }
        events.start_keep_alive(self.config.keep_alive);
        let sub = events.subscribe(filter, last_event_id(headers, query));
        sse_head(ResponseBody::sse(self.config.preamble(), sub))
    }
}

struct PresenceGuard<S: BroadcastState> {
    channel: BroadcastChannel<S>,
    tracker: Arc<PresenceTracker>,
    key: Arc<str>,
    stream: String,
    id: String,
}

impl<S: BroadcastState> PresenceGuard<S> {
    fn announce(&self) {
        let patch = self.tracker.overlay_patch(&self.stream, &self.key);
        if let Err(e) = self.channel.overlay(&self.stream, patch) {
            tracing::warn!(stream = %self.stream, error = %e, "presence overlay refused");
        }
    }
}

impl<S: BroadcastState> Drop for PresenceGuard<S> {
    fn drop(&mut self) {
        if self.tracker.remove(&self.stream, &self.id) {
            self.announce();
        }
    }
}

/// `GET /state/<stream>`: the cached snapshot JSON (serialized once per version), 404 when
/// nothing is cached.
pub fn state_response<S: BroadcastState>(
    channel: &BroadcastChannel<S>,
    stream: &str,
) -> Response<ResponseBody> {
    match channel.snapshot(stream) {
        Some(f) if f.kind() == crate::FrameKind::Snapshot => {
            let mut r = Response::new(ResponseBody::full(f.json().clone()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            r
        }
        _ => status_response(StatusCode::NOT_FOUND),
    }
}

/// Serves `app` over plain hyper HTTP/1.1 on `listener` until the task is dropped, under the
/// default [`SseServerLimits`](crate::server::SseServerLimits) (header-read and idle timeout, body
/// timeout, connection cap). Sets `TCP_NODELAY` on every connection. Accept errors (e.g. out
/// of file descriptors) are logged and retried after a short pause instead of ending the
/// server.
pub async fn serve<S: BroadcastState>(
    listener: tokio::net::TcpListener,
    app: SseApp<S>,
) -> std::io::Result<()> {
    serve_fn(listener, move |m, p, q, h| app.handle(m, p, q, h)).await
}

/// Like [`serve`] with any handler, e.g. to add a page in front of [`SseApp::handle`].
///
/// ```no_run
/// use hookwire_sse::http::{ResponseBody, SseApp, SseConfig, serve_fn};
/// # async fn run(l: tokio::net::TcpListener, app: SseApp) -> std::io::Result<()> {
/// serve_fn(l, move |m, path, q, h| match path {
///     "/" => http::Response::new(ResponseBody::full("<script type=module src=/hookwire-sse.js></script>")),
///     _ => app.handle(m, path, q, h),
/// })
/// .await
/// # }
/// ```
pub async fn serve_fn<F>(listener: tokio::net::TcpListener, handler: F) -> std::io::Result<()>
where
    F: Fn(&Method, &str, Option<&str>, &HeaderMap) -> Response<ResponseBody>
        + Clone
        + Send
        + Sync
        + 'static,
{
    serve_fn_with(
        listener,
        crate::server::SseServerLimits::default(),
        handler,
        std::future::pending(),
    )
    .await
}

/// Like [`serve_fn`] with explicit limits, stopping gracefully once `shutdown` completes (end
/// the streams in it, e.g. with [`BroadcastChannel::shutdown`]). Request bodies are never read.
pub async fn serve_fn_with<F, G>(
    listener: tokio::net::TcpListener,
    limits: crate::server::SseServerLimits,
    handler: F,
    shutdown: G,
) -> std::io::Result<()>
where
    F: Fn(&Method, &str, Option<&str>, &HeaderMap) -> Response<ResponseBody>
        + Clone
        + Send
        + Sync
        + 'static,
    G: std::future::Future<Output = ()>,
{
    let svc =
        hyper::service::service_fn(move |req: http::Request<crate::server::SseRequestBody>| {
            let r = handler(
                req.method(),
                req.uri().path(),
                req.uri().query(),
                req.headers(),
            );
            std::future::ready(Ok::<_, Infallible>(r))
        });
    crate::server::serve_service(listener, limits, svc, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_last_event_ids_are_absent() {
        let mut h = HeaderMap::new();
        for bad in [
            "",
            "-1",
            "1.5",
            "abc",
            "999999999999999999999",
            " 12 x",
            "1e3",
        ] {
            h.insert("last-event-id", HeaderValue::from_str(bad).unwrap());
            assert_eq!(last_event_id(&h, None), None, "{bad}");
        }
        h.insert(
            "last-event-id",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(last_event_id(&h, None), None);
        assert_eq!(
            last_event_id(&HeaderMap::new(), Some("lastEventId=%33")),
            Some(3)
        );
    }

    #[test]
    fn query_decoding_never_panics() {
        for q in [
            "filter=%",
            "filter=%4",
            "filter=%zz",
            "filter",
            "=&&=",
            "filter=a%2Cb",
        ] {
            let _ = query_param(q, "filter");
        }
        assert_eq!(query_param("filter=a%2Cb.*", "filter").unwrap(), "a,b.*");
        assert_eq!(query_param("filter=%", "filter").unwrap(), "%");
    }

    #[test]
    fn stream_names_are_restricted() {
        assert!(valid_stream_name("board"));
        assert!(valid_stream_name("org:acme.board-1_x"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
    }
}
