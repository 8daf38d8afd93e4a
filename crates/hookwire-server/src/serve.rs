//! The accept loop: a permit per connection before accepting (so the process never runs out
//! of descriptors), every connection task owned by one `JoinSet`, and a graceful shutdown that
//! asks open connections to finish, waits the grace period and then closes what is left.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::{RequestBody, ServerConfig};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A server running in a task of its own ([`ServerConfig::spawn`]). [`Server::shutdown`]
/// stops it gracefully; dropping it stops it at once (the accept loop and every connection it
/// owns are aborted).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish their current request (up to the
    /// configured grace period), then closes the rest and returns.
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

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerConfig {
    /// Serves `service` over HTTP/1.1 (keep-alive, upgrades such as WebSocket) on `listener`
    /// until `shutdown` completes; then stops accepting, asks every connection to finish its
    /// current response, and returns once all are closed or, after the grace period, closes
    /// the rest. End your SSE streams and WebSockets in `shutdown`: they never finish by
    /// themselves. Errors on one connection never stop the server.
    ///
    /// An axum `Router` is served with `hyper_util::service::TowerToHyperService::new(router)`.
    pub async fn serve<S, B, F>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: F,
    ) -> io::Result<()>
    where
        S: hyper::service::Service<Request<RequestBody>, Response = Response<B>>
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
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_head_bytes);
        let builder = Arc::new(builder);
        let config = *self;
        run(
            config,
            listener,
            move |tcp, permit, stop| {
                connection(
                    config,
                    Arc::clone(&builder),
                    tcp,
                    permit,
                    service.clone(),
                    stop,
                )
            },
            shutdown,
        )
        .await
    }

    /// [`serve`](Self::serve) in a task of its own, stopped through the returned [`Server`].
    pub fn spawn<S, B>(&self, listener: TcpListener, service: S) -> io::Result<Server>
    where
        S: hyper::service::Service<Request<RequestBody>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let config = *self;
        let task = tokio::spawn(async move {
            config
                .serve(listener, service, async {
                    // A dropped sender is a drop of the `Server`, which aborts this task anyway.
                    let _ = rx.await;
                })
                .await
        });
        Ok(Server {
            addr,
            stop: Some(tx),
            task,
        })
    }

    /// The same accept loop for a protocol handler of your own (e.g. a hand-written parser):
    /// `handler` gets each accepted socket (`TCP_NODELAY` set) under the connection cap. The
    /// header-read and body timeouts are the handler's to apply (read them from this config).
    /// A handler may end by returning a [`Continuation`]: the connection (and its slot under
    /// the cap) then goes on in a fresh task holding only that future. Once `shutdown`
    /// completes nothing more is accepted, and what still runs after the grace period is
    /// dropped, closing its sockets.
    pub async fn serve_tcp<H, Fut, F>(
        &self,
        listener: TcpListener,
        mut handler: H,
        shutdown: F,
    ) -> io::Result<()>
    where
        H: FnMut(TcpStream) -> Fut,
        Fut: Future<Output = Option<Continuation>> + Send + 'static,
        F: Future<Output = ()>,
    {
        run(
            *self,
            listener,
            move |tcp, permit, _stop| {
                let fut = handler(tcp);
                async move { fut.await.map(|next| (permit, next)) }
            },
            shutdown,
        )
        .await
    }
}

/// The rest of a connection, run by [`ServerConfig::serve_tcp`] in a task of its own: the
/// task's allocation holds only this future, not the state the handler needed before it (a
/// long-lived stream stays small).
pub struct Continuation(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Continuation {
    /// Wraps the rest of a connection.
    pub fn new<F: Future<Output = ()> + Send + 'static>(fut: F) -> Self {
        Self(Box::pin(fut))
    }
}

impl std::fmt::Debug for Continuation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Continuation").finish_non_exhaustive()
    }
}

/// What a connection task leaves behind: nothing, or the rest of the connection with its slot.
type Next = Option<(OwnedSemaphorePermit, Continuation)>;

/// Takes a finished connection task's result: its continuation, if any, becomes a task of
/// the same set.
fn reap(conns: &mut JoinSet<Next>, done: Result<Next, tokio::task::JoinError>) {
    if let Ok(Some((permit, next))) = done {
        conns.spawn(async move {
            next.0.await;
            drop(permit);
            None
        });
    }
}

/// The loop itself: one permit per open connection, taken before accepting.
async fn run<H, Fut, F>(
    config: ServerConfig,
    listener: TcpListener,
    mut handler: H,
    shutdown: F,
) -> io::Result<()>
where
    H: FnMut(TcpStream, OwnedSemaphorePermit, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Next> + Send + 'static,
    F: Future<Output = ()>,
{
    let cap = config.max_connections;
    let permits = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // The permit first: at the cap nothing is accepted, so descriptors never run out.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                reap(&mut conns, done);
                continue;
            }
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // ok: never closed
            },
        };
        let accepted = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break None,
                Some(done) = conns.join_next(), if !conns.is_empty() => reap(&mut conns, done),
                a = listener.accept() => break Some(a),
            }
        };
        match accepted {
            None => break,
            Some(Ok((tcp, _))) => {
                let _ = tcp.set_nodelay(true);
                conns.spawn(handler(tcp, permit, stop_rx.clone()));
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async {
        while let Some(done) = conns.join_next().await {
            reap(&mut conns, done);
        }
        // Upgraded sockets hold their permit after their connection task ended.
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
    };
    let _ = tokio::time::timeout(config.shutdown_grace, drained).await;
    conns.shutdown().await;
    Ok(())
}

async fn connection<S, B>(
    config: ServerConfig,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tcp: TcpStream,
    permit: OwnedSemaphorePermit,
    service: S,
    mut stop: watch::Receiver<bool>,
) -> Next
where
    S: hyper::service::Service<Request<RequestBody>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let body_timeout = config.body_timeout;
    let started = Arc::new(AtomicBool::new(false));
    let first = Arc::clone(&started);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        first.store(true, Ordering::Relaxed);
        service.call(req.map(|b| RequestBody::new(b, body_timeout)))
    });
    let io = Counted {
        io: TokioIo::new(tcp),
        _permit: permit,
    };
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, svc));
    // hyper's header-read timer starts once the protocol is known; a client that sends fewer
    // bytes than that takes must not hold the connection either.
    let mut head = pin!(tokio::time::sleep(config.header_read_timeout));
    let mut watching_head = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
                return None;
            }
            () = &mut head, if watching_head => {
                if !started.load(Ordering::Relaxed) {
                    return None; // dropping the connection closes the socket
                }
                watching_head = false;
            }
            () = stopped(&mut stop), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// Completes when the server asks its connections to stop; never when the loop is gone (its
/// connections are aborted with it).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A socket that holds its connection's permit: released when the socket closes, also after
/// an upgrade took it over.
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
