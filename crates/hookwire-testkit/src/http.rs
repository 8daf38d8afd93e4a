//! A raw HTTP/1.1 exchange over a real socket, for route tests that must see exactly what a
//! client sees (statuses, headers, streamed bodies) without an HTTP client library in between.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request with `Connection: close` and reads the whole answer; returns the status and
/// the body (chunked bodies are returned as sent, chunk-size lines included). A non-empty `body`
/// gets a `Content-Length`; pass `Content-Type` in `headers`.
///
/// ```no_run
/// # async fn demo(addr: std::net::SocketAddr) {
/// let (status, body) = hookwire_testkit::http_exchange(addr, "GET", "/health", &[], "").await;
/// assert_eq!(status, 200);
/// # let _ = body; }
/// ```
///
/// # Panics
/// When the connection fails or the answer is not HTTP: this is a test helper.
pub async fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .expect("write the request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read the answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
