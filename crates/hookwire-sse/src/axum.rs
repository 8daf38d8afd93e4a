//! axum integration: the routes of an [`SseApp`] as an [`axum::Router`], and the conversion
//! of its responses.
//!
//! ```no_run
//! use hookwire_sse::{BroadcastChannel, http::{Public, SseApp, SseConfig}};
//! # async fn run() {
//! let channel: BroadcastChannel = BroadcastChannel::new();
//! let app = axum::Router::new().merge(hookwire_sse::axum::sse_router(SseApp::new(channel, SseConfig::default().auth(Public))));
//! # let _: axum::Router = app;
//! # }
//! ```

use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;

use crate::channel::BroadcastState;
use crate::http::{CLIENT_JS_PATH, ResponseBody, SseApp};

/// Routes `GET /events/{stream}`, `GET /state/{stream}`, `GET /events` (when the app has an
/// event broadcast) and `GET /hookwire-sse.js`. Set `TCP_NODELAY` on the listener's
/// connections (`axum::serve::ListenerExt::tap_io`).
pub fn sse_router<S: BroadcastState>(app: SseApp<S>) -> axum::Router {
    let h = move |req: Request| {
        let app = app.clone();
        async move { handle(&app, &req) }
    };
    axum::Router::new()
        .route("/events/{stream}", get(h.clone()))
        .route("/state/{stream}", get(h.clone()))
        .route("/events", get(h.clone()))
        .route(CLIENT_JS_PATH, get(h))
}

/// Answers one axum request with `app` (for custom routing).
pub fn handle<S: BroadcastState, B>(app: &SseApp<S>, req: &http::Request<B>) -> Response {
    into_axum(app.handle(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    ))
}

/// Converts a hookwire response into an axum response.
pub fn into_axum(r: http::Response<ResponseBody>) -> Response {
    r.map(axum::body::Body::new)
}
