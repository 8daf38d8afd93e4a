//! The axum integration (feature `axum`): a [`Router`] with the WebSocket route and, when
//! enabled, `<path>/stats`, on axum's own WebSocket support.
//!
//! Authentication runs on the upgrade request *before* the upgrade: a refused request gets
//! `401 {"error":"unauthorized"}` and never a 101 (spec `ws.md`, "Pitfalls").

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use crate::{
    AuthRequest, Close, Connection, ExposeStats, KillSignal, Outbound, Outbox, Reaction, WsGateway,
};

/// Read buffer per socket. tungstenite's default (128 KiB, allocated eagerly) would cost
/// ~1.3 GB for 10 000 idle clients. Client messages (subscribe, pong, …) are tens of bytes, so
/// 1 KiB is plenty; a larger message (up to the gateway's limit) still arrives, in more reads.
pub const READ_BUFFER_BYTES: usize = 1024;

/// Most frames written in one flush when several are queued (coalesced writes).
const MAX_BATCH: usize = 64;

/// Longest a single write may block when heartbeats are off (with heartbeats: two periods).
const DEFAULT_WRITE_STALL: Duration = Duration::from_secs(60);

/// How long a close frame may take to go out before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// After an oversized frame, the longest each of two drains runs: the rest of the frame before
/// the close frame goes out, and whatever still comes afterwards until the client closes its
/// side. Dropping a socket with unread input makes the kernel send a reset, which clients
/// report as an abnormal closure (1006) instead of the 1009 they were sent.
pub const OVERSIZE_DRAIN: Duration = Duration::from_secs(2);

/// The socket under a WebSocket: hyper's upgraded connection.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A router serving the gateway's WebSocket route and, unless stats are off, its stats route.
///
/// ```no_run
/// use hookwire_ws::{DemoAuthenticator, WsGateway};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let gw = WsGateway::builder().authenticator(DemoAuthenticator).resources(["order"]).build()?;
/// let app = hookwire_ws::axum::ws_router(gw.clone());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub fn ws_router<S>(gw: WsGateway) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut r = Router::new().route(gw.path(), get(upgrade));
    if gw.expose_stats() != ExposeStats::Off {
        let stats_path = format!("{}/stats", gw.path().trim_end_matches('/'));
        r = r.route(&stats_path, get(stats));
    }
    r.with_state(gw)
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": "unauthorized"})),
    )
        .into_response()
}

/// The upgrade handler: authenticate, then upgrade with the gateway's frame limits.
///
/// axum's extractor validates the handshake (its rejections answer malformed requests), but
/// the socket is set up here on hyper's upgraded connection itself: after an oversized frame
/// the connection must keep reading raw bytes, which axum's `WebSocket` cannot.
pub async fn upgrade(State(gw): State<WsGateway>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let Some(identity) = gw
        .authenticate(AuthRequest::new(&parts.uri, &parts.headers))
        .await
    else {
        return unauthorized();
    };
    let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
    if let Err(rejection) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        return rejection.into_response();
    }
    let (Some(on_upgrade), Some(key)) = (on_upgrade, parts.headers.get(header::SEC_WEBSOCKET_KEY))
    else {
        // HTTP/2 extended CONNECT passes axum's checks but has no key: not served here.
        return StatusCode::UPGRADE_REQUIRED.into_response();
    };
    let accept = accept_key(key.as_bytes());
    let max = gw.max_message_bytes();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        // Credentials are kept only when they will be re-checked.
        let reauth = gw
            .reauth_interval()
            .map(|p| Reauth::new(gw.clone(), parts.uri, parts.headers, p));
        drive(socket, gw.connect(identity), reauth).await;
    });
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut sha1 = sha1::Sha1::default();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    // ok: base64 output is always a valid header value
    HeaderValue::from_str(&b64).unwrap_or(HeaderValue::from_static(""))
}

/// The stats handler (`GET <path>/stats`).
pub async fn stats(State(gw): State<WsGateway>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    match gw
        .stats_for(AuthRequest::new(&parts.uri, &parts.headers))
        .await
    {
        Ok(Some(s)) => axum::Json(s).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(()) => unauthorized(),
    }
}

enum Stop {
    /// The peer is gone or the socket failed: nothing more can be written.
    Gone,
    /// Close with this code.
    Close(Close),
}

fn text(b: Bytes) -> Result<Message, Stop> {
    // Frames are built by serde_json, so they are UTF-8; a failure would be a bug, and the
    // connection is dropped rather than sending a corrupt frame.
    Utf8Bytes::try_from(b)
        .map(Message::Text)
        .map_err(|_| Stop::Gone)
}

/// Writes `frames` and flushes, unless the connection is killed meanwhile (a blocked write to
/// a slow client must not keep it alive past its 1013).
///
/// A write that cannot finish within `stall` drops the connection: a client that sends but
/// never reads would otherwise park its driver in a blocked write forever, where neither its
/// queue (replies do not go through it) nor the heartbeat (checked between writes) can reach it.
async fn write(
    ws: &mut Socket,
    frames: impl IntoIterator<Item = Bytes>,
    kill: &KillSignal,
    stall: Duration,
) -> Result<(), Stop> {
    let io = async {
        for f in frames {
            ws.feed(text(f)?).await.map_err(|_| Stop::Gone)?;
        }
        ws.flush().await.map_err(|_| Stop::Gone)
    };
    let mut io = std::pin::pin!(io);
    // Fast path: on a healthy socket the write completes on its first poll, and neither the
    // kill signal nor a timer is ever touched.
    tokio::select! {
        biased;
        r = &mut io => return r,
        () = std::future::ready(()) => {}
    }
    tokio::select! {
        biased;
        r = io => r,
        code = kill.wait() => Err(Stop::Close(Close::for_code(code))),
        () = tokio::time::sleep(stall) => Err(Stop::Gone),
    }
}

/// Re-authentication of a live socket: the upgrade request's URI and headers, re-checked
/// every period.
struct Reauth {
    gw: WsGateway,
    uri: http::Uri,
    headers: http::HeaderMap,
    timer: Interval,
}

impl Reauth {
    fn new(gw: WsGateway, uri: http::Uri, headers: http::HeaderMap, period: Duration) -> Self {
        Self {
            gw,
            uri,
            headers,
            timer: timer(period),
        }
    }

    /// Waits for the next period (cancel safe); pending forever when off.
    async fn due(this: &mut Option<Self>) {
        match this {
            Some(r) => {
                r.timer.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Authenticates the upgrade request again. Awaited outside the `select!`, so traffic on
    /// the socket cannot cancel a slow lookup again and again.
    async fn check(this: Option<&Self>) -> Option<crate::Identity> {
        let r = this?;
        r.gw.authenticate(AuthRequest::new(&r.uri, &r.headers))
            .await
    }
}

fn timer(period: Duration) -> Interval {
    let mut i = tokio::time::interval_at(Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

async fn tick(hb: &mut Option<Interval>) {
    match hb {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn is_too_big(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Capacity(_))
}

/// A pause in the client's input this long means it finished sending its oversized frame.
const QUIET: Duration = Duration::from_millis(50);

/// Reads and discards the rest of an oversized frame until the input pauses for [`QUIET`], the
/// client closes, or [`OVERSIZE_DRAIN`] passes.
async fn drain_until_quiet(ws: &mut Socket) {
    let io = ws.get_mut();
    let deadline = Instant::now() + OVERSIZE_DRAIN;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let quiet = (Instant::now() + QUIET).min(deadline);
        match tokio::time::timeout_at(quiet, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Shuts the sending side down (the close frame is already out) and reads and discards what
/// the client still sends (the rest of its oversized frame, then its close) until it closes its
/// side too or [`OVERSIZE_DRAIN`] passes. Memory stays one read buffer.
async fn drain_and_shut(ws: &mut Socket) {
    let io = ws.get_mut();
    let deadline = Instant::now() + OVERSIZE_DRAIN;
    let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// `first` and whatever else is queued, up to [`MAX_BATCH`] frames (one coalesced write).
fn batch(first: Bytes, outbox: &Outbox) -> Vec<Bytes> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match outbox.try_recv() {
            Some(f) => batch.push(f),
            None => break,
        }
    }
    batch
}

/// Feeds one text frame. A `subscribe` under an asynchronous room policy is awaited (within
/// its time limit) while queued outbound frames keep going out and a close request still
/// closes; the client's next frames wait in the socket meanwhile, so they keep their order.
async fn on_text(
    ws: &mut Socket,
    conn: &mut Connection,
    text: &str,
    kill: &KillSignal,
    stall: Duration,
) -> Result<Reaction, Stop> {
    let member = std::sync::Arc::clone(&conn.member);
    let mut decided = std::pin::pin!(conn.on_text_async(text));
    loop {
        tokio::select! {
            biased;
            r = &mut decided => return Ok(r),
            next = member.outbox().recv() => match next {
                Outbound::Frame(f) => write(ws, batch(f, member.outbox()), kill, stall).await?,
                Outbound::Close(code) => return Err(Stop::Close(Close::for_code(code))),
            },
        }
    }
}

/// Runs one connection until the peer leaves or it is closed; dropping `conn` at the end
/// removes the client from its rooms.
async fn drive(mut ws: Socket, mut conn: Connection, mut reauth: Option<Reauth>) {
    let kill = conn.kill_signal();
    let mut hb = conn.heartbeat_interval().map(timer);
    // Twice the heartbeat period: as long as the heartbeat would take to drop a silent client.
    let stall = conn
        .heartbeat_interval()
        .map_or(DEFAULT_WRITE_STALL, |p| p.saturating_mul(2));
    let mut stop = write(&mut ws, [conn.hello()], &kill, stall).await.err();
    // Set once the input stream is unusable after an oversized frame: what is left of it is
    // drained raw after the close frame.
    let mut oversized = false;
    while stop.is_none() {
        let outcome: Reaction = tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    match on_text(&mut ws, &mut conn, t.as_str(), &kill, stall).await {
                        Ok(r) => r,
                        Err(s) => {
                            stop = Some(s);
                            break;
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => conn.on_binary(b.len()),
                // tungstenite answers protocol pings itself; protocol pongs carry no meaning here.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the close reply; flush it so the handshake completes.
                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                    break;
                }
                None => break,
                Some(Err(e)) if is_too_big(&e) => {
                    oversized = true;
                    // Let the client finish sending first: a close that arrives while it is
                    // still writing the frame is, for some clients, not a clean close.
                    drain_until_quiet(&mut ws).await;
                    conn.on_too_large()
                }
                Some(Err(_)) => break,
            },
            next = conn.next_outbound() => {
                let first = match next {
                    Outbound::Frame(f) => f,
                    Outbound::Close(code) => {
                        stop = Some(Stop::Close(Close::for_code(code)));
                        break;
                    }
                };
                stop = write(&mut ws, batch(first, conn.member.outbox()), &kill, stall).await.err();
                continue;
            }
            () = tick(&mut hb) => conn.on_heartbeat(),
            () = Reauth::due(&mut reauth) => {
                let who = Reauth::check(reauth.as_ref()).await;
                conn.on_reauth(who.as_ref())
            }
        };
        if let Some(reply) = outcome.reply {
            stop = write(&mut ws, [reply], &kill, stall).await.err();
        }
        if let Some(close) = outcome.close {
            stop = stop.or(Some(Stop::Close(close)));
        }
    }
    if let Some(Stop::Close(c)) = stop {
        let frame = CloseFrame {
            code: CloseCode::from(c.code),
            reason: Utf8Bytes::from_static(c.reason),
        };
        let sent = tokio::time::timeout(CLOSE_GRACE, ws.send(Message::Close(Some(frame)))).await;
        if oversized && matches!(sent, Ok(Ok(()))) {
            drain_and_shut(&mut ws).await;
        }
    }
    drop(conn);
}
