//! Serving the routes over plain hyper with this crate's accept loop.

use crate::channel::BroadcastState;
use http::{HeaderMap, Method, Response};
use std::convert::Infallible;

use super::*;

/// Serves `app` over plain hyper HTTP/1.1 on `listener` until the task is dropped, under the
/// default [`ServerConfig`](crate::server::ServerConfig) (header-read and idle timeout, body
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
        crate::server::ServerConfig::default(),
        handler,
        std::future::pending(),
    )
    .await
}

/// Like [`serve_fn`] under an explicit `config`, stopping gracefully once `shutdown` completes (end
/// the streams in it, e.g. with [`BroadcastChannel::shutdown`](crate::BroadcastChannel::shutdown)). Request bodies are never read.
pub async fn serve_fn_with<F, G>(
    listener: tokio::net::TcpListener,
    config: crate::server::ServerConfig,
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
    let svc = hyper::service::service_fn(move |req: http::Request<crate::server::RequestBody>| {
        let r = handler(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        std::future::ready(Ok::<_, Infallible>(r))
    });
    config.serve(listener, svc, shutdown).await
}
