//! A small HTTP/1.1 server with graceful shutdown, used by [`crate::Receiver`] and `hookwire
//! listen`.
//!
//! Every connection is bounded in time and number ([`ServerLimits`]): the request head must
//! arrive within the header-read timeout (hyper starts the same timer when a kept-alive
//! connection goes idle, so it is also the idle timeout), the body within the body timeout,
//! and at most `max_connections` are open at once (at the cap the server stops accepting, so
//! it never runs out of file descriptors; new connections wait in the kernel's backlog).
//! Without these, about a thousand connections that never finish their head held a server at
//! a 1 024 descriptor limit forever.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

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
/// Default time a client has to send a complete request head (10 s); also the idle keep-alive
/// timeout.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request body has to arrive completely after its head (30 s).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors left to the rest of the process when the connection cap is derived from
/// the open-file limit.
pub const FD_RESERVE: usize = 256;
/// The connection cap when the open-file limit cannot be read (not Linux): 1 024 − 256.
pub const FALLBACK_MAX_CONNECTIONS: usize = 768;
const MIN_MAX_CONNECTIONS: usize = 64;

/// Per-server protection against clients that hold connections without finishing requests.
///
/// ```
/// use std::time::Duration;
/// use hookwire_receiver::server::ServerLimits;
/// let l = ServerLimits::default().body_timeout(Duration::from_secs(10));
/// assert_eq!(l.header_read_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Time to send a complete request head; also how long a kept-alive connection may sit
    /// idle ([`DEFAULT_HEADER_READ_TIMEOUT`]). The connection is closed when it runs out.
    pub header_read_timeout: Duration,
    /// Time for the whole request body after the head ([`DEFAULT_BODY_TIMEOUT`]); reading it
    /// then fails with [`BodyTimeout`] (the receiver answers 400 `bad-request`) and the
    /// connection is closed.
    pub body_timeout: Duration,
    /// Most connections open at once; at the cap the server stops accepting until one closes.
    /// Default: [`default_max_connections`].
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

impl ServerLimits {
    /// Sets the header-read (and idle keep-alive) timeout.
    #[must_use]
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Sets the request-body timeout.
    #[must_use]
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// Sets the connection cap (at least 1). Keep it below `ulimit -n`.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        self
    }
}

/// The default connection cap: the process's open-file soft limit minus [`FD_RESERVE`] (at
/// least 64), read once from `/proc/self/limits`; [`FALLBACK_MAX_CONNECTIONS`] where that
/// cannot be read. So the server never accepts connections it has no descriptors for.
pub fn default_max_connections() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        open_file_limit().map_or(FALLBACK_MAX_CONNECTIONS, |n| {
            n.saturating_sub(FD_RESERVE)
                .clamp(MIN_MAX_CONNECTIONS, u32::MAX as usize)
        })
    })
}

fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    // Created on the first pending read, so a body that is already complete costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for TimedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimedBody")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// The request body did not arrive within [`ServerLimits::body_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body not received within {:?}", self.0)
    }
}

impl StdError for BodyTimeout {}

type BoxError = Box<dyn StdError + Send + Sync>;

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.limit).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

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

/// Serves `handler` on `listener` (HTTP/1.1, keep-alive) under the default [`ServerLimits`]
/// until the returned [`Server`] is shut down. Errors on one connection never stop the server.
pub fn serve_with<F, Fut>(listener: TcpListener, handler: F) -> std::io::Result<Server>
where
    F: Fn(Request<TimedBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with_limits(listener, ServerLimits::default(), handler)
}

/// Like [`serve_with`] under explicit `limits`.
pub fn serve_with_limits<F, Fut>(
    listener: TcpListener,
    limits: ServerLimits,
    handler: F,
) -> std::io::Result<Server>
where
    F: Fn(Request<TimedBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        // The field is public: clamp here too (zero would never accept; tokio refuses more
        // than `MAX_PERMITS`).
        let cap = limits
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let permits = Arc::new(Semaphore::new(cap));
        loop {
            // The permit first: at the cap nothing is accepted, so descriptors never run out.
            let permit = tokio::select! {
                _ = &mut rx => break,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // ok: never closed
                },
            };
            let stream = tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        drop(permit);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let h = handler.clone();
            let body_timeout = limits.body_timeout;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                // hyper bounds its read buffer but not a head that arrives in one read.
                let fut = (head_len(&req) <= MAX_HEAD_BYTES).then(|| {
                    h(req.map(|b| TimedBody {
                        inner: b,
                        deadline: Instant::now() + body_timeout,
                        limit: body_timeout,
                        timer: None,
                    }))
                });
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
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
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
