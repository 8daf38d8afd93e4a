//! The routes of one channel and event broadcast

use crate::channel::{BroadcastChannel, BroadcastState};
use crate::events::{EventBroadcast, EventFilter};
use crate::presence::PresenceTracker;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use std::fmt;
use std::sync::Arc;

use super::*;

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
        let access = match self.config.admit(&info) {
            Ok(a) => a,
            Err(refused) => return refused.response(),
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
        let access = match self.config.admit(&info) {
            Ok(a) => a,
            Err(refused) => return refused.response(),
        };
        let list = query
            .and_then(|q| query_param(q, "filter"))
            .unwrap_or_else(|| "*".to_owned());
        let Ok(mut filter) = EventFilter::parse(&list) else {
            return status_response(StatusCode::BAD_REQUEST);
        };
        if let Err(refused) = self.config.admit_filter(filter.patterns(), &access) {
            return refused.response();
        }
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
