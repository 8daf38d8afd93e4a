//! The one accept loop behind every hyper server of this crate ([`crate::http::serve`],
//! [`crate::http::serve_fn`]) and of anything else that wants the same protection (the
//! `hookwire demo` serves its axum router with it): a header-read timeout that is also the
//! idle keep-alive timeout, a request-body timeout, a connection cap, WebSocket upgrades and a
//! graceful shutdown. The lean acceptor applies the same [`SseServerLimits`] with its own parser.
//!
//! Without them, connections that never finish their request head hold a file descriptor
//! each forever: about a thousand of them fill a default `ulimit -n` of 1 024 and every
//! legitimate request waits in the kernel's backlog indefinitely.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Default time a client has to send a complete request head (10 s). hyper starts the same
/// timer as soon as a kept-alive connection goes idle, so this is also the idle keep-alive
/// timeout.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request body has to arrive completely, counted from the end of its head
/// (30 s).
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for open connections before returning.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// File descriptors left to the rest of the process when the connection cap is derived from
/// the open-file limit.
pub(crate) const FD_RESERVE: usize = 256;
/// The connection cap when the open-file limit cannot be read (not Linux): 1 024 − 256.
pub(crate) const FALLBACK_MAX_CONNECTIONS: usize = 768;
const MIN_MAX_CONNECTIONS: usize = 64;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Per-server protection against clients that hold connections without finishing requests.
///
/// ```
/// use std::time::Duration;
/// use hookwire_sse::server::SseServerLimits;
/// let l = SseServerLimits::default().header_read_timeout(Duration::from_secs(5)).max_connections(10_000);
/// assert_eq!(l.body_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseServerLimits {
    /// Time to send a complete request head; also how long a kept-alive connection may sit idle
    /// (default 10 s). The connection is closed when it runs out.
    pub header_read_timeout: Duration,
    /// Time for the whole request body after the head (default 30 s); reading it
    /// fails with [`SseBodyTimeout`] after that, and the connection is closed.
    pub body_timeout: Duration,
    /// Most connections open at once, WebSocket and SSE streams included. At the cap the server
    /// stops accepting (new connections wait in the kernel's backlog) until one closes. Default:
    /// the open-file soft limit minus 256 (768 where it cannot be read).
    pub max_connections: usize,
}

impl Default for SseServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

impl SseServerLimits {
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

    /// Sets the connection cap. Keep it below `ulimit -n`. A cap of 0 (nothing would ever be
    /// accepted) or above the largest permit count tokio allows is not clamped: the server
    /// refuses to start with [`io::ErrorKind::InvalidInput`].
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The cap as a permit count: the field is public, so it is clamped here too (a zero cap
    /// would never accept, and tokio refuses more than `MAX_PERMITS`).
    pub(crate) fn cap(&self) -> u32 {
        let n = self
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// A semaphore with one permit per allowed connection; an unusable cap is reported here,
    /// when a server starts, instead of being changed silently.
    pub(crate) fn permits(&self) -> io::Result<Arc<Semaphore>> {
        if self.cap() as usize != self.max_connections {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "max_connections must be between 1 and {}, got {}",
                    Semaphore::MAX_PERMITS.min(u32::MAX as usize),
                    self.max_connections
                ),
            ));
        }
        Ok(Arc::new(Semaphore::new(self.cap() as usize)))
    }
}

/// The default connection cap: the process's open-file soft limit minus `FD_RESERVE` (at
/// least 64), read once from `/proc/self/limits`; `FALLBACK_MAX_CONNECTIONS` where that
/// cannot be read. So a server never accepts connections it has no descriptors for.
pub(crate) fn default_max_connections() -> usize {
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

/// A request body that fails with [`SseBodyTimeout`] once its deadline passes.
pub struct SseRequestBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    // Created on the first pending read, so a body that is already complete costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for SseRequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseRequestBody")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl SseRequestBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + limit,
            limit,
            timer: None,
        }
    }
}

/// The request body did not arrive within [`SseServerLimits::body_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseBodyTimeout(pub Duration);

impl fmt::Display for SseBodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body not received within {:?}", self.0)
    }
}

impl StdError for SseBodyTimeout {}

impl Body for SseRequestBody {
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
                    Poll::Ready(()) => Poll::Ready(Some(Err(SseBodyTimeout(this.limit).into()))),
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

/// A socket that holds its connection's permit: released when the socket closes, also after
/// a WebSocket upgrade took it over.
struct Counted {
    io: TokioIo<TcpStream>,
    _permit: OwnedSemaphorePermit,
}

impl hyper::rt::Read for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// Accepts one connection once a permit is free; `None` when `stop` completes first. Accept
/// errors are logged and retried after a short pause instead of ending the server.
pub(crate) async fn accept<F: Future + Unpin>(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    stop: &mut F,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            _ = &mut *stop => return None,
            p = Arc::clone(permits).acquire_owned() => p.ok()?,
        };
        let accepted = tokio::select! {
            _ = &mut *stop => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return Some((tcp, permit));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves `service` over HTTP/1.1 (keep-alive, WebSocket upgrades) on `listener` under
/// `limits` until `shutdown` completes; then stops accepting, lets every connection finish its
/// current response (end your SSE streams and WebSockets in `shutdown`: they never finish by
/// themselves) and returns once all are closed or after a 30 s grace period.
///
/// An axum `Router` is served with `hyper_util::service::TowerToHyperService::new(router)`.
///
/// ```no_run
/// use hookwire_sse::server::{SseServerLimits, SseRequestBody, serve_service};
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let service = hyper::service::service_fn(|_req: http::Request<SseRequestBody>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
/// });
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// serve_service(listener, SseServerLimits::default(), service, async {
///     let _ = stopped.await; // e.g. Ctrl-C; end open SSE streams here
/// })
/// .await
/// # }
/// ```
pub async fn serve_service<S, B, F>(
    listener: TcpListener,
    limits: SseServerLimits,
    service: S,
    shutdown: F,
) -> io::Result<()>
where
    S: hyper::service::Service<Request<SseRequestBody>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let permits = limits.permits()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some((tcp, permit)) = accept(&listener, &permits, &mut shutdown).await {
        let svc = service.clone();
        let stop = stop_rx.clone();
        tokio::spawn(connection(tcp, permit, svc, limits, stop));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until its socket closes: all of them back = all closed.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(limits.cap())).await;
    Ok(())
}

async fn connection<S, B>(
    tcp: TcpStream,
    permit: OwnedSemaphorePermit,
    service: S,
    limits: SseServerLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<SseRequestBody>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let body_timeout = limits.body_timeout;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        service.call(req.map(|b| SseRequestBody::new(b, body_timeout)))
    });
    let io = Counted {
        io: TokioIo::new(tcp),
        _permit: permit,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Completes when the server asks its connections to stop; never when the server was dropped
/// without a shutdown (its connections then run on, as spawned tasks do).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_cap_becomes_a_usable_permit_count() {
        let mut l = SseServerLimits {
            max_connections: 0,
            ..SseServerLimits::default()
        };
        assert_eq!(l.cap(), 1);
        l.max_connections = usize::MAX;
        assert_eq!(
            l.cap() as usize,
            Semaphore::MAX_PERMITS.min(u32::MAX as usize)
        );
        let _ = l.permits();
        assert!(default_max_connections() >= MIN_MAX_CONNECTIONS);
    }
}
