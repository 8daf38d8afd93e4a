//! The receiver's built-in HTTP/1.1 server, used by [`crate::Receiver::listen`] and
//! `hookwire listen`: hookwire-server's accept loop (header-read and idle timeout, body
//! timeout, connection cap, graceful shutdown; see [`ServerConfig`]) with the receiver's own
//! answer to an oversized request head (431 `headers-too-large`).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::net::TcpListener;

pub use hookwire_server::{
    BodyTimeout, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
    FALLBACK_MAX_CONNECTIONS, FD_RESERVE, RequestBody, Server, ServerConfig, ServerConfigBuilder,
    default_max_connections,
};

/// Largest request head accepted (URI plus every header name and value), bytes; above it the
/// answer is 431 `headers-too-large`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

fn head_len<B>(req: &Request<B>) -> usize {
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
}

/// Serves `handler` on `listener` (HTTP/1.1, keep-alive) under the default [`ServerConfig`]
/// until the returned [`Server`] is shut down or dropped. Errors on one connection never stop
/// the server.
pub fn serve_with<F, Fut>(listener: TcpListener, handler: F) -> std::io::Result<Server>
where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with_config(listener, ServerConfig::default(), handler)
}

/// Like [`serve_with`] under an explicit `config`.
pub fn serve_with_config<F, Fut>(
    listener: TcpListener,
    config: ServerConfig,
    handler: F,
) -> std::io::Result<Server>
where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<RequestBody>| {
        // hyper bounds its read buffer but not a head that arrives in one read.
        let fut = (head_len(&req) <= MAX_HEAD_BYTES).then(|| handler(req));
        async move {
            Ok::<_, Infallible>(match fut {
                Some(f) => f.await,
                None => crate::Rejection::from(crate::Reason::HeadersTooLarge).to_response(),
            })
        }
    });
    config.spawn(listener, service)
}
