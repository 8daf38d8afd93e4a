//! Test support: a gateway served by axum on 127.0.0.1 and real tokio-tungstenite clients.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hookwire_ws::WsGateway;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves `router` on a free loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// Serves a gateway's router.
pub async fn serve_gw(gw: &WsGateway) -> SocketAddr {
    serve(hookwire_ws::axum::ws_router(gw.clone())).await
}

/// Connects with `?token=<token>` (the demo authenticator's format), or without a token.
pub async fn try_connect(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<Client, tungstenite::Error> {
    let url = match token {
        Some(t) => format!("ws://{addr}/ws?token={t}"),
        None => format!("ws://{addr}/ws"),
    };
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
}

/// Connects and reads the `connected` frame.
pub async fn connect(addr: SocketAddr, token: &str) -> (Client, Value) {
    let mut ws = try_connect(addr, Some(token)).await.expect("upgrade");
    let hello = recv(&mut ws).await;
    assert_eq!(hello["type"], "connected");
    (ws, hello)
}

/// Connects through a socket with a tiny receive buffer (a slow client that never reads).
pub async fn connect_small_rcvbuf(addr: SocketAddr, token: &str) -> Client {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let req = format!("ws://{addr}/ws?token={token}")
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws
}

/// The next text frame as JSON (protocol ping frames included), within 5 s.
pub async fn recv(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("unexpected close: {c:?}"),
            _ => {}
        }
    }
}

/// The next frame that is not a heartbeat ping.
pub async fn recv_no_ping(ws: &mut Client) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] != "ping" {
            return v;
        }
    }
}

/// Asserts nothing but pings arrives within `ms`.
pub async fn expect_silence(ws: &mut Client, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["type"], "ping", "unexpected frame {v}");
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// Waits for the server's close frame (skipping text frames) and returns it.
pub async fn recv_close(ws: &mut Client, within: Duration) -> Option<CloseFrame> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(c))) => return c,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error before close frame: {e}"),
            None => return None,
        }
    }
}

/// Sends a JSON text frame.
pub async fn send(ws: &mut Client, v: &Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Sends a raw text frame.
pub async fn send_raw(ws: &mut Client, s: &str) {
    ws.send(Message::text(s.to_owned())).await.unwrap();
}

/// Subscribes and asserts the `subscribed` reply.
pub async fn subscribe(ws: &mut Client, room: &str) {
    send(ws, &serde_json::json!({"type":"subscribe","resource":room})).await;
    let v = recv_no_ping(ws).await;
    assert_eq!(v, serde_json::json!({"type":"subscribed","channel":room}));
}

/// A raw HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` until true or 5 s pass.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// An event bus on Redis Streams as node `node` (each call its own connections).
#[cfg(feature = "events")]
pub async fn redis_bus(url: &str, node: &str) -> hookwire_events::Bus {
    let t = hookwire_events::RedisStreams::connect(url)
        .await
        .unwrap()
        .node_id(node);
    hookwire_events::Bus::builder(t).build().unwrap()
}
