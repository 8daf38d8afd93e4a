//! A small HTTP/1.1 server with graceful shutdown, used by [`crate::Receiver`] and `hookwire
//! listen`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

/// How long [`Server::shutdown`] waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A running server. Dropping it keeps it running in the background; call
/// [`Server::shutdown`] to stop accepting and drain in-flight requests.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits (up to [`SHUTDOWN_GRACE`]) for in-flight requests
    /// to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Shuts down gracefully once `signal` completes (e.g. `tokio::signal::ctrl_c()`).
    pub async fn shutdown_on<F: Future>(self, signal: F) {
        signal.await;
        self.shutdown().await;
    }
}

/// Serves `handler` on `listener` (HTTP/1.1, keep-alive) until the returned [`Server`] is shut
/// down. Errors on one connection never stop the server.
pub fn serve_with<F, Fut>(listener: TcpListener, handler: F) -> std::io::Result<Server>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let h = handler.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                // hyper bounds its read buffer but not a head that arrives in one read.
                let fut = (head_len(&req) <= MAX_HEAD_BYTES).then(|| h(req));
                async move {
                    Ok::<_, std::convert::Infallible>(match fut {
                        Some(f) => f.await,
                        None => {
                            crate::Rejection::from(crate::Reason::HeadersTooLarge).to_response()
                        }
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    });
    Ok(Server {
        addr,
        stop: Some(tx),
        task,
    })
}
