//! The event gateway (feature `sse`): SSE from `hookwire-sse` (`/events?filter=order.*`,
//! `/events/<stream>`, `/state/<stream>`) and the WebSocket rooms (`/ws`) behind one
//! configuration, with **one** authenticator, **one** room policy and **one** org-scoping rule
//! (spec `ws.md`, "Event gateway"). Either side can be turned off.
//!
//! How the shared rules apply to SSE:
//! - **Auth**: the gateway's (async) [`Authenticator`] runs on every SSE request before
//!   `hookwire-sse` sees it; no identity → 401. The identity is handed to the SSE crate's
//!   authorization hook through a task-local, so a request that did not come through the gateway
//!   is refused (fail closed).
//! - **Org scoping** on the event stream: a client of organization `acme` only receives events of
//!   `acme`; events without organization never reach it. A client *without* organization is
//!   refused (403) while org scoping is on, because `hookwire-sse`'s filter cannot yet express
//!   "events without organization only" and the alternative would be every tenant's events.
//! - **Room policy**: for `/events/<stream>` and `/state/<stream>` the room is the stream name;
//!   for `/events?filter=…` every pattern's resource (the part before the first `.`, `*` for
//!   `*`) must be allowed, else 403.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hookwire_core::Event;
use hookwire_sse::http::{Access, RequestInfo, SseApp, SseConfig};
use hookwire_sse::{BroadcastChannel, EventBroadcast};

use crate::auth::SharedAuth;
use crate::gateway::{Admission, Refusal, RoomPolicy};
use crate::{AuthRequest, Authenticator, Error, Identity, WsGateway, WsGatewayBuilder};

tokio::task_local! {
    /// The identity the gateway authenticated for the SSE request being handled.
    static SSE_IDENTITY: Identity;
}

/// Builds an [`EventGateway`].
///
/// ```
/// use hookwire_ws::{DemoAuthenticator, EventGateway, WsGateway};
/// let gw = EventGateway::builder()
///     .authenticator(DemoAuthenticator)
///     .room_policy(|who, room| room != "admin" || who.user_id() == Some("root"))
///     .ws_options(WsGateway::builder().resources(["order"]))
///     .build()
///     .unwrap();
/// assert!(gw.ws().is_some() && gw.sse().is_some());
/// ```
#[must_use]
pub struct EventGatewayBuilder {
    auth: bool,
    authenticator: Option<SharedAuth>,
    admission: Admission,
    scope_error: Option<String>,
    org_scoping: bool,
    ws: bool,
    sse: bool,
    ws_options: WsGatewayBuilder,
    sse_config: SseConfig,
    channel: Option<BroadcastChannel>,
    history: usize,
}

impl fmt::Debug for EventGatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventGatewayBuilder")
            .field("auth", &self.auth)
            .field("ws", &self.ws)
            .field("sse", &self.sse)
            .finish_non_exhaustive()
    }
}

impl Default for EventGatewayBuilder {
    fn default() -> Self {
        Self {
            auth: true,
            authenticator: None,
            admission: Admission::default(),
            scope_error: None,
            org_scoping: true,
            ws: true,
            sse: true,
            ws_options: WsGatewayBuilder::default(),
            sse_config: SseConfig::default(),
            channel: None,
            history: 1024,
        }
    }
}

impl EventGatewayBuilder {
    /// Whether clients of both sides must authenticate (default `true`, fail-closed).
    pub fn auth(mut self, on: bool) -> Self {
        self.auth = on;
        self
    }
    /// The authenticator of both sides.
    pub fn authenticator(mut self, a: impl Authenticator) -> Self {
        self.authenticator = Some(SharedAuth(Arc::new(a)));
        self
    }
    /// The room policy of both sides (WebSocket rooms, SSE streams and event resources).
    pub fn room_policy(
        mut self,
        f: impl Fn(&Identity, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.admission.policy = Some(RoomPolicy::sync(f));
        self
    }
    /// An asynchronous room policy for both sides (see
    /// [`WsGatewayBuilder::room_policy_async`]). On the SSE side a refusal is 403, and an error
    /// or no answer within the time limit is 503 (fail closed).
    pub fn room_policy_async<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(Identity, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<bool, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>> + 'static,
    {
        self.admission.policy = Some(RoomPolicy::from_async(f));
        self
    }
    /// Longest an asynchronous room policy may take (default 5 s, must be > 0).
    pub fn room_policy_timeout(mut self, d: std::time::Duration) -> Self {
        self.admission.timeout = d;
        self
    }
    /// A scope rule for both sides: WebSocket rooms, SSE state streams and SSE event filters
    /// overlapping `pattern` need `scope` (see [`WsGatewayBuilder::require_scope`]). Without it a
    /// WebSocket join gets `insufficient-scope` and an SSE request 403 with
    /// `WWW-Authenticate: Bearer error="insufficient_scope"`.
    pub fn require_scope(mut self, pattern: &str, scope: &str) -> Self {
        if let Err(e) = self.admission.rules.require(pattern, scope) {
            self.scope_error.get_or_insert(e.to_string());
        }
        self
    }
    /// Org scoping of both sides (default on).
    pub fn org_scoping(mut self, on: bool) -> Self {
        self.org_scoping = on;
        self
    }
    /// Mounts the WebSocket side (default `true`; `false` is the spec's `ws: false`).
    pub fn ws(mut self, on: bool) -> Self {
        self.ws = on;
        self
    }
    /// Mounts the SSE side (default `true`; `false` is the spec's `sse: false`).
    pub fn sse(mut self, on: bool) -> Self {
        self.sse = on;
        self
    }
    /// WebSocket-only options (path, resources, heartbeat, limits, hooks, fan-out). Its auth,
    /// room policy (and its time limit) and org scoping are replaced by the gateway's; scope
    /// rules set here are a build error (set them on this builder, for both sides), so none is
    /// dropped silently.
    pub fn ws_options(mut self, b: WsGatewayBuilder) -> Self {
        self.ws_options = b;
        self
    }
    /// SSE connection settings (keep-alive, retry). Its authorization hook is replaced by the
    /// gateway's.
    pub fn sse_config(mut self, c: SseConfig) -> Self {
        self.sse_config = c;
        self
    }
    /// The state channel served at `/events/<stream>` and `/state/<stream>` (default: a new one,
    /// reachable through [`SseSide::channel`]).
    pub fn sse_channel(mut self, c: BroadcastChannel) -> Self {
        self.channel = Some(c);
        self
    }
    /// Events kept for `Last-Event-ID` resume on `/events` (default 1024).
    pub fn sse_history(mut self, n: usize) -> Self {
        self.history = n;
        self
    }

    /// Checks the configuration and builds the gateway.
    ///
    /// # Errors
    /// [`Error::is_missing_authenticator`] when auth is on without an authenticator (even if
    /// one side is off); [`Error::is_invalid_option`] for a refused `require_scope` rule, scope
    /// rules on the WebSocket options, a zero `room_policy_timeout`, a WebSocket path on an SSE
    /// route; and any error of the WebSocket options.
    pub fn build(self) -> Result<EventGateway, Error> {
        if self.auth && self.authenticator.is_none() {
            return Err(Error::missing_authenticator());
        }
        if let Some(e) = &self.scope_error {
            return Err(Error::invalid(e));
        }
        if !self.ws_options.admission.rules.is_empty() || self.ws_options.scope_error.is_some() {
            return Err(Error::invalid(
                "scope rules belong on EventGatewayBuilder::require_scope (both sides), not on ws_options",
            ));
        }
        if self.admission.timeout.is_zero() {
            return Err(Error::invalid("room_policy_timeout must be > 0"));
        }
        if self.ws && self.sse {
            // axum panics when merged routers share a route; refuse it here instead.
            let path = self.ws_options.path_str().trim_end_matches('/');
            let stats = format!("{path}/stats");
            let sse_routes = ["/events", hookwire_sse::http::CLIENT_JS_PATH];
            if sse_routes.iter().any(|r| *r == path || *r == stats) {
                return Err(Error::invalid(
                    "the WebSocket path collides with an SSE route (/events, /hookwire-sse.js)",
                ));
            }
        }
        let authenticator = if self.auth { self.authenticator } else { None };
        let ws = if self.ws {
            Some(
                self.ws_options
                    .shared(
                        self.auth,
                        authenticator.clone(),
                        self.admission.clone(),
                        self.org_scoping,
                    )
                    .build()?,
            )
        } else {
            None
        };
        let sse = self.sse.then(|| {
            let scoping = self.org_scoping;
            // The room policy (possibly asynchronous) runs in the gateway's handler before
            // this hook; the scope rules run in `hookwire-sse` right after it.
            let config = self
                .sse_config
                .auth(move |req: &RequestInfo<'_>| {
                    SSE_IDENTITY
                        .try_with(|who| sse_access(who, req.stream, scoping))
                        .unwrap_or(Err(StatusCode::UNAUTHORIZED))
                })
                .scope_rules(self.admission.rules.clone());
            let events = EventBroadcast::new(self.history);
            let channel = self.channel.unwrap_or_default();
            SseSide {
                app: SseApp::new(channel, config).with_events(events.clone()),
                events,
            }
        });
        // With a WebSocket fan-out, events also reach the SSE subscribers of the other nodes:
        // each node republishes relayed events to its own SSE event stream.
        if let (Some(ws), Some(sse)) = (&ws, &sse) {
            let events = sse.events.clone();
            ws.set_event_relay(Box::new(move |json| {
                if let Ok(e) = serde_json::from_slice::<Event>(json) {
                    events.publish(&e);
                }
            }));
        }
        Ok(EventGateway {
            inner: Arc::new(GatewayInner {
                authenticator,
                admission: self.admission,
                ws,
                sse,
            }),
        })
    }
}

/// The SSE authorization decision for an already authenticated identity whose room policy
/// already passed: its organization scoping and its scopes (checked by `hookwire-sse`).
fn sse_access(who: &Identity, stream: &str, org_scoping: bool) -> Result<Access, StatusCode> {
    let access = if !stream.is_empty() {
        Access::all()
    } else {
        match who.organization_id() {
            Some(org) => Access::organization(org),
            None if !org_scoping => Access::all(),
            None => return Err(StatusCode::FORBIDDEN),
        }
    };
    let access = match who.client_id() {
        Some(client) => access.with_service(client, who.scopes().iter()),
        None => access.with_scopes(who.scopes().iter()),
    };
    Ok(access)
}

/// The SSE side of a gateway.
#[derive(Debug, Clone)]
pub struct SseSide {
    app: SseApp,
    events: EventBroadcast,
}

impl SseSide {
    /// The state channel (`/events/<stream>`, `/state/<stream>`): publish states here.
    pub fn channel(&self) -> &BroadcastChannel {
        self.app.channel()
    }
    /// The application-event broadcast behind `/events?filter=…`.
    pub fn events(&self) -> &EventBroadcast {
        &self.events
    }
}

struct GatewayInner {
    authenticator: Option<SharedAuth>,
    admission: Admission,
    ws: Option<WsGateway>,
    sse: Option<SseSide>,
}

/// SSE and WebSocket behind one configuration. Cheap to clone.
///
/// ```
/// use hookwire_core::Event;
/// use hookwire_ws::{EventGateway, WsGateway};
/// let gw = EventGateway::builder()
///     .auth(false)
///     .sse(false)
///     .ws_options(WsGateway::builder().resources(["order"]))
///     .build()
///     .unwrap();
/// assert!(gw.sse().is_none());
/// gw.publish(&Event::new("order.paid", serde_json::json!({})).with_organization("acme"));
/// ```
#[derive(Clone)]
pub struct EventGateway {
    inner: Arc<GatewayInner>,
}

impl fmt::Debug for EventGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventGateway")
            .field("ws", &self.inner.ws)
            .field("sse", &self.inner.sse.is_some())
            .finish_non_exhaustive()
    }
}

impl EventGateway {
    /// A builder: auth on (fail-closed), org scoping on, both sides mounted.
    pub fn builder() -> EventGatewayBuilder {
        EventGatewayBuilder::default()
    }

    /// The WebSocket side, unless turned off.
    pub fn ws(&self) -> Option<&WsGateway> {
        self.inner.ws.as_ref()
    }

    /// The SSE side, unless turned off.
    pub fn sse(&self) -> Option<&SseSide> {
        self.inner.sse.as_ref()
    }

    /// Publishes an application event to both sides: the WebSocket room of its resource and the
    /// SSE event stream (each org-scoped). With a fan-out in the WebSocket options (for example
    /// Redis), both sides of every other node get it too. Returns the local WebSocket clients it
    /// was queued for.
    pub fn publish(&self, e: &Event) -> usize {
        if let Some(sse) = &self.inner.sse {
            sse.events.publish(e);
            if let Some(ws) = &self.inner.ws {
                ws.fan_out_event(bytes::Bytes::from(e.to_json_bytes()));
            }
        }
        self.inner.ws.as_ref().map_or(0, |ws| ws.publish(e))
    }

    /// Ends every open stream of both sides, for a graceful shutdown (e.g. in axum's
    /// `with_graceful_shutdown`): WebSocket clients are closed with 1001, every SSE state stream
    /// and `/events` stream ends, and streams opened afterwards end at once. Without it an
    /// open SSE response keeps a gracefully stopping server waiting forever.
    pub fn shutdown(&self) {
        if let Some(ws) = &self.inner.ws {
            ws.close_all();
        }
        if let Some(sse) = &self.inner.sse {
            sse.app.channel().shutdown();
            sse.events.shutdown();
        }
    }

    /// The routes of both sides: the WebSocket route and its stats (see [`crate::axum::ws_router`]),
    /// `GET /events`, `/events/{stream}`, `/state/{stream}` and the SSE browser client.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut r = Router::new();
        if let Some(ws) = &self.inner.ws {
            r = r.merge(crate::axum::ws_router(ws.clone()));
        }
        if self.inner.sse.is_some() {
            let sse: Router<S> = Router::new()
                .route("/events", get(sse_handler))
                .route("/events/{stream}", get(sse_handler))
                .route("/state/{stream}", get(sse_handler))
                .route(hookwire_sse::http::CLIENT_JS_PATH, get(client_js))
                .with_state(self.clone());
            r = r.merge(sse);
        }
        r
    }

    /// The room policy for an SSE request: the stream for `/events/<stream>` and
    /// `/state/<stream>`, every filter pattern's resource for `/events` (`order.*` → `order`,
    /// `*` → `*`). Malformed names are left to `hookwire-sse` (400).
    async fn policy_allows(
        &self,
        who: &Identity,
        path: &str,
        query: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.inner.admission.policy.is_none() {
            return Ok(());
        }
        let list;
        let rooms: Vec<&str> = if path == "/events" {
            list = query
                .and_then(|q| hookwire_sse::http::query_param(q, "filter"))
                .unwrap_or_else(|| "*".to_owned());
            list.split(',')
                .map(str::trim)
                .map(|p| p.split('.').next().unwrap_or(p))
                .collect()
        } else {
            match path
                .strip_prefix("/events/")
                .or_else(|| path.strip_prefix("/state/"))
            {
                Some(s) if hookwire_sse::http::valid_stream_name(s) => vec![s],
                _ => Vec::new(),
            }
        };
        if rooms.is_empty() || rooms.len() > hookwire_sse::MAX_FILTER_PATTERNS {
            // Nothing to decide, or a filter hookwire-sse refuses with 400 anyway.
            return Ok(());
        }
        self.inner.admission.policy_for_all(who, &rooms).await
    }
}

async fn client_js(State(gw): State<EventGateway>, req: Request) -> Response {
    match &gw.inner.sse {
        Some(sse) => hookwire_sse::axum::handle(&sse.app, &req),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sse_handler(State(gw): State<EventGateway>, req: Request) -> Response {
    let Some(sse) = &gw.inner.sse else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let req_auth = AuthRequest::new(req.uri(), req.headers());
    let Some(who) = SharedAuth::identify(gw.inner.authenticator.as_ref(), req_auth).await else {
        return crate::axum::unauthorized();
    };
    match gw
        .policy_allows(&who, req.uri().path(), req.uri().query())
        .await
    {
        Ok(()) => {}
        Err(Refusal::Failed | Refusal::TimedOut) => {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Err(_) => return StatusCode::FORBIDDEN.into_response(),
    }
    SSE_IDENTITY.sync_scope(who, || hookwire_sse::axum::handle(&sse.app, &req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_access_rules() {
        let acme = Identity::new().with_organization("acme");
        let none = Identity::new();
        assert_eq!(
            sse_access(&acme, "", true).unwrap().organization.as_deref(),
            Some("acme")
        );
        assert_eq!(
            sse_access(&none, "", true).unwrap_err(),
            StatusCode::FORBIDDEN
        );
        assert!(sse_access(&none, "", false).unwrap().organization.is_none());
        // A service account keeps its organization and carries its scopes to hookwire-sse.
        let svc = Identity::service("etl", ["audit:read"]).with_organization("acme");
        let a = sse_access(&svc, "", true).unwrap();
        assert_eq!(a.organization.as_deref(), Some("acme"));
        assert_eq!(a.client_id.as_deref(), Some("etl"));
        assert!(a.scopes.contains("audit:read"));
    }

    #[test]
    fn a_websocket_path_on_an_sse_route_is_refused() {
        let b = || EventGateway::builder().auth(false);
        let err = b()
            .ws_options(WsGateway::builder().path("/events"))
            .build()
            .unwrap_err();
        assert!(err.is_invalid_option());
        // Next to `/events/{stream}` is fine: the router is built without a conflict.
        let ok = b()
            .ws_options(WsGateway::builder().path("/events/ws"))
            .build();
        let _: Router = ok.unwrap().router();
        assert!(
            b().sse(false)
                .ws_options(WsGateway::builder().path("/events"))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn scope_rules_on_the_websocket_options_are_refused_not_dropped() {
        let err = EventGateway::builder()
            .auth(false)
            .ws_options(WsGateway::builder().require_scope("audit", "audit:read"))
            .build()
            .unwrap_err();
        assert!(err.is_invalid_option());
    }

    #[test]
    fn fail_closed_even_with_one_side_off() {
        let err = EventGateway::builder().ws(false).build().unwrap_err();
        assert!(err.is_missing_authenticator());
        let err = EventGateway::builder().sse(false).build().unwrap_err();
        assert!(err.is_missing_authenticator());
    }
}
