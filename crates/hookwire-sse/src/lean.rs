//! The lean SSE acceptor: an opt-in listener for large fan-outs.
//!
//! hyper's HTTP/1 connection keeps two fixed 8 KiB buffers per connection (~20 KiB per idle
//! subscriber in total). This acceptor parses the request head with `httparse` into a
//! temporary buffer that is freed before streaming, writes the response head itself, and then
//! only holds the socket, the [`StreamSubscription`](crate::StreamSubscription) and an empty frame list —
//! about 2 KiB per idle subscriber (measured by `cargo xtask bench sse`). Same
//! [`BroadcastChannel`], same wire format (`Transfer-Encoding: chunked` with the frames'
//! pre-encoded chunks), same [`Authorize`](crate::http::Authorize) hook as [`SseApp`].
//!
//! Every drain writes all waiting frames with one write: a burst of small frames (≤ 16 KiB
//! together) comes from the stream's log already joined into one buffer, built once per burst
//! and shared by every subscriber reading the very same frames; anything else is vectored. Routes: `GET /events/<s>`
//! and `GET /state/<s>` (the latter answered with `Connection: close`); anything else is
//! 404/405. Limits: request head ≤ [`MAX_HEAD`] bytes and ≤ 32 headers (else 431), sent
//! within [`ServerConfig::header_read_timeout`] (else the connection is closed), at most
//! [`LeanAcceptor::max_subscribers`] streams at once (else 503) and at most
//! [`ServerConfig::max_connections`] connections of any kind (above it the acceptor stops
//! accepting until one closes). Request bodies are never read; there is no keep-alive (one
//! request per connection), so no idle timeout either.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::channel::{BroadcastChannel, BroadcastState};
use crate::frame::Frame;
use crate::http::{
    Refused, RequestInfo, SSE_HEADERS, SseApp, SseConfig, last_event_id, valid_stream_name,
};
use crate::server::ServerConfig;
use hookwire_server::Continuation;

/// Largest accepted request head, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Default cap on concurrent streams of one acceptor.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 200_000;
const MAX_HEADERS: usize = 32;

/// The lean acceptor for one channel.
///
/// ```no_run
/// use hookwire_sse::{BroadcastChannel, http::{Public, SseConfig}, lean::LeanAcceptor};
/// # async fn run() -> std::io::Result<()> {
/// let channel: BroadcastChannel = BroadcastChannel::new();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
/// LeanAcceptor::new(channel, SseConfig::default().auth(Public)).serve(listener).await
/// # }
/// ```
pub struct LeanAcceptor<S = serde_json::Value> {
    app: SseApp<S>,
    config: ServerConfig,
    max_subscribers: usize,
    live: Arc<AtomicUsize>,
}

impl<S> std::fmt::Debug for LeanAcceptor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanAcceptor")
            .field("config", &self.config)
            .field("max_subscribers", &self.max_subscribers)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: BroadcastState> LeanAcceptor<S> {
    /// An acceptor serving `channel` with `config` (keep-alive, retry, auth).
    pub fn new(channel: BroadcastChannel<S>, config: SseConfig) -> Self {
        Self::from_app(SseApp::new(channel, config))
    }

    /// An acceptor for the stream routes of `app` (channel, config, presence).
    pub fn from_app(app: SseApp<S>) -> Self {
        Self {
            app,
            config: ServerConfig::default(),
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Caps concurrent streams; further requests get 503 (a deliberate non-200: the browser
    /// stops, the JS client retries with backoff).
    #[must_use]
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n;
        self
    }

    /// Sets the header-read timeout and the connection cap (the body timeout does not apply:
    /// bodies are never read). Raise `max_connections` together with `ulimit -n`.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Accepts connections (hookwire-server's loop, under the configured connection cap) until
    /// the task is dropped, which closes every connection. Accept errors (e.g. out of file
    /// descriptors) are logged and retried after a short pause.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        let config = self.config;
        let this = Arc::new(self);
        let handler = move |tcp: TcpStream| {
            let this = Arc::clone(&this);
            async move {
                this.connection(tcp).await.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "lean connection ended");
                    None
                })
            }
        };
        config
            .serve_tcp(listener, handler, std::future::pending())
            .await
    }

    /// Answers the request; a stream goes on as the returned continuation.
    async fn connection(&self, mut tcp: TcpStream) -> io::Result<Option<Continuation>> {
        let head =
            tokio::time::timeout(self.config.header_read_timeout(), read_head(&mut tcp)).await;
        let Ok(Some(head)) = head.unwrap_or(Ok(None)) else {
            // Closed early, answered already, or too slow: the connection (and its slot) goes.
            return Ok(None);
        };
        let sub = match self.route(&head) {
            Route::Respond(status, body, ctype) => {
                return respond(&mut tcp, status, &body, ctype, None)
                    .await
                    .map(|()| None);
            }
            Route::Refused(refused) => {
                let r = refused.response();
                let challenge = r.headers().get(http::header::WWW_AUTHENTICATE).cloned();
                let body = match &refused {
                    Refused::Scope(s) => format!("insufficient_scope: {s}").into_bytes(),
                    Refused::Status(_) => Vec::new(),
                };
                return respond(&mut tcp, r.status(), &body, None, challenge.as_ref())
                    .await
                    .map(|()| None);
            }
            Route::Stream(stream, last, access) => {
                if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_subscribers {
                    self.live.fetch_sub(1, Ordering::AcqRel);
                    return respond(
                        &mut tcp,
                        StatusCode::SERVICE_UNAVAILABLE,
                        b"busy",
                        None,
                        None,
                    )
                    .await
                    .map(|()| None);
                }
                let presence = self.app.presence_guard(&stream, &access);
                let channel = self.app.channel();
                channel.start_keep_alive(self.app.config().keep_alive);
                (channel.subscribe_from(&stream, last), presence)
            }
        };
        let (mut sub, presence) = sub;
        drop(head);
        let guard = Live(Arc::clone(&self.live));
        let mut out = String::with_capacity(160);
        out.push_str("HTTP/1.1 200 OK\r\n");
        for (k, v) in SSE_HEADERS {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("connection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n");
        let pre = self.app.config().preamble();
        out.push_str(&format!("{:x}\r\n", pre.len()));
        out.push_str(std::str::from_utf8(&pre).unwrap_or_default());
        out.push_str("\r\n");
        tcp.write_all(out.as_bytes()).await?;
        drop(out);
        // Stream from a fresh task (owned by the accept loop, holding the connection's slot):
        // its future holds only what streaming needs, not the head-parsing state, which keeps
        // an idle subscriber small.
        let tcp = Arc::new(tcp);
        sub.set_direct(Arc::new(Direct(Arc::clone(&tcp))));
        sub.join_bursts();
        Ok(Some(Continuation::new(async move {
            if let Err(e) = stream_frames(&tcp, sub).await {
                tracing::debug!(error = %e, "lean stream ended");
            }
            drop(guard);
            drop(presence);
        })))
    }

    fn route(&self, head: &Head) -> Route {
        let (path, query) = match head.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (head.target.as_str(), None),
        };
        if head.method != "GET" {
            return Route::Respond(StatusCode::METHOD_NOT_ALLOWED, Vec::new(), None);
        }
        let (events, stream) = match (path.strip_prefix("/events/"), path.strip_prefix("/state/")) {
            (Some(s), _) => (true, s),
            (_, Some(s)) => (false, s),
            _ => return Route::Respond(StatusCode::NOT_FOUND, Vec::new(), None),
        };
        if !valid_stream_name(stream) {
            return Route::Respond(StatusCode::BAD_REQUEST, Vec::new(), None);
        }
        let info = RequestInfo::new(stream, &head.headers, query);
        let access = match self.app.config().admit(&info) {
            Ok(a) => a,
            Err(Refused::Status(status)) => return Route::Respond(status, Vec::new(), None),
            // The same answer as the hyper routes: 403 naming the scope, with its challenge.
            Err(refused) => return Route::Refused(refused),
        };
        if events {
            return Route::Stream(
                stream.to_owned(),
                last_event_id(&head.headers, query),
                access,
            );
        }
        match self.app.channel().snapshot(stream) {
            Some(f) if f.kind() == crate::FrameKind::Snapshot => {
                Route::Respond(StatusCode::OK, f.json().to_vec(), Some("application/json"))
            }
            _ => Route::Respond(StatusCode::NOT_FOUND, Vec::new(), None),
        }
    }
}

enum Route {
    Respond(StatusCode, Vec<u8>, Option<&'static str>),
    Stream(String, Option<u64>, crate::http::Access),
    Refused(Refused),
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Head {
    method: String,
    target: String,
    headers: HeaderMap,
}

/// Reads and parses the request head; `None` when the peer closed early. Answers 400/431
/// itself and returns `None` for malformed or oversized heads.
async fn read_head(tcp: &mut TcpStream) -> io::Result<Option<Head>> {
    // A heap buffer, not a stack array: stack arrays held across `.await` become part of the
    // task's future.
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        let n = tcp.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let mut map = HeaderMap::new();
                for h in req.headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(h.name.as_bytes()),
                        HeaderValue::from_bytes(h.value),
                    ) {
                        map.append(k, v);
                    }
                }
                return Ok(Some(Head {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    headers: map,
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                respond(
                    tcp,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    b"",
                    None,
                    None,
                )
                .await?;
                return Ok(None);
            }
            Err(_) => {
                respond(tcp, StatusCode::BAD_REQUEST, b"", None, None).await?;
                return Ok(None);
            }
        }
    }
}

async fn respond(
    tcp: &mut TcpStream,
    status: StatusCode,
    body: &[u8],
    ctype: Option<&str>,
    challenge: Option<&HeaderValue>,
) -> io::Result<()> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = if body.is_empty() && !status.is_success() {
        reason.as_bytes()
    } else {
        body
    };
    // A header value built by `Refused::challenge` is visible ASCII.
    let challenge = challenge
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("www-authenticate: {v}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-cache, no-store\r\n{challenge}connection: close\r\n\r\n",
        status.as_u16(),
        ctype.unwrap_or("text/plain; charset=utf-8"),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    tcp.shutdown().await
}

struct Direct(Arc<TcpStream>);

impl crate::queue::DirectWrite for Direct {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
}

/// Streams frames until the subscription ends or the peer goes away: each wake-up drains
/// everything waiting (a whole burst at once) with one write. Keep-alive comments go straight
/// to an idle socket ([`Direct`]) without waking this task.
async fn stream_frames(tcp: &TcpStream, mut sub: crate::StreamSubscription) -> io::Result<()> {
    let mut batch: Vec<Frame> = Vec::new();
    loop {
        tokio::select! {
            more = sub.recv_batch(&mut batch) => {
                if !more {
                    write_frames(tcp, &[Frame::end_of_stream()]).await?;
                    return Ok(());
                }
                let r = write_frames(tcp, &batch).await;
                sub.write_done();
                r?;
                batch.clear();
                if batch.capacity() > crate::queue::SPARE_FRAMES {
                    batch = Vec::new();
                }
            }
            r = tcp.readable() => {
                r?;
                let mut scratch = [0u8; 64];
                match tcp.try_read(&mut scratch) {
                    Ok(0) => return Ok(()),
                    // Anything a client sends after the head is ignored.
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Writes every frame's pre-encoded chunk with vectored writes (one `writev` per drain unless
/// the socket takes less). A burst from the stream's log arrives already joined into one frame
/// ([`StreamSubscription::join_bursts`](crate::StreamSubscription::join_bursts)), so it is one
/// segment.
async fn write_frames(tcp: &TcpStream, frames: &[Frame]) -> io::Result<()> {
    let (mut idx, mut off) = (0, 0);
    while idx < frames.len() {
        let n = {
            let mut slices = Vec::with_capacity((frames.len() - idx).min(64));
            slices.push(IoSlice::new(&frames[idx].chunked()[off..]));
            for f in frames[idx + 1..].iter().take(63) {
                slices.push(IoSlice::new(f.chunked()));
            }
            loop {
                tcp.writable().await?;
                match tcp.try_write_vectored(&slices) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        (idx, off) = advance(frames, idx, off, n);
    }
    Ok(())
}

/// The position (frame index, offset in it) after `n` more bytes were written from
/// (`idx`, `off`).
fn advance(frames: &[Frame], mut idx: usize, mut off: usize, n: usize) -> (usize, usize) {
    let mut left = n;
    while left > 0 && idx < frames.len() {
        let rem = frames[idx].chunked().len() - off;
        if left >= rem {
            left -= rem;
            idx += 1;
            off = 0;
        } else {
            off += left;
            left = 0;
        }
    }
    (idx, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_across_whole_and_partial_frames() {
        let f = |s: &str| Frame::patch(1, 1, s.as_bytes().to_vec());
        let frames = [f("{}"), f("{\"a\":1}")];
        let (a, b) = (frames[0].len(), frames[1].len());
        assert_eq!(advance(&frames, 0, 0, 0), (0, 0));
        assert_eq!(advance(&frames, 0, 0, a - 1), (0, a - 1));
        assert_eq!(advance(&frames, 0, a - 1, 1), (1, 0));
        assert_eq!(advance(&frames, 0, 0, a + 3), (1, 3));
        assert_eq!(advance(&frames, 1, 3, b - 3), (2, 0));
        // More than what is left stops at the end.
        assert_eq!(advance(&frames, 0, 0, a + b + 10), (2, 0));
    }

    #[tokio::test]
    async fn a_coalesced_burst_arrives_whole_and_in_order() {
        use tokio::io::AsyncReadExt;
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.expect("read");
            got
        });
        let (server, _) = l.accept().await.expect("accept");
        let frames: Vec<Frame> = (1..=50u64)
            .map(|v| Frame::patch(v, v, format!("{{\"{v}\":{{\"t\":{v}}}}}").into_bytes()))
            .collect();
        write_frames(&server, &frames).await.expect("write");
        drop(server);
        let want: Vec<u8> = frames.iter().flat_map(|f| f.chunked().to_vec()).collect();
        assert_eq!(client.await.expect("client"), want);
    }

    #[tokio::test]
    async fn subscribers_sharing_a_coalesced_burst_each_get_exactly_their_frames() {
        use tokio::io::AsyncReadExt;
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let read_all = || async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.expect("read");
            got
        };
        let (a, b) = (tokio::spawn(read_all()), tokio::spawn(read_all()));
        let (s1, _) = l.accept().await.expect("accept");
        let (s2, _) = l.accept().await.expect("accept");
        let frame = |v: u64| Frame::patch(v, v, format!("{{\"{v}\":{{}}}}").into_bytes());
        let burst: Vec<Frame> = (1..=5).map(frame).collect();
        // The same frames twice, then equal-looking but distinct frames and a shorter burst:
        // each socket gets exactly the frames it was given.
        let again: Vec<Frame> = (1..=5).map(frame).collect();
        let short: Vec<Frame> = burst[..3].to_vec();
        write_frames(&s1, &burst).await.expect("write");
        write_frames(&s2, &burst).await.expect("write");
        write_frames(&s1, &short).await.expect("write");
        write_frames(&s2, &again).await.expect("write");
        drop((s1, s2));
        let bytes = |fs: &[&[Frame]]| -> Vec<u8> {
            fs.iter()
                .flat_map(|b| b.iter().flat_map(|f| f.chunked().to_vec()))
                .collect()
        };
        let (got_a, got_b) = (a.await.expect("a"), b.await.expect("b"));
        // Connections are accepted in either order; compare as a set of two.
        let want = [bytes(&[&burst, &short]), bytes(&[&burst, &again])];
        assert!(
            (got_a == want[0] && got_b == want[1]) || (got_a == want[1] && got_b == want[0]),
            "each socket gets its own frames, in order"
        );
    }
}
