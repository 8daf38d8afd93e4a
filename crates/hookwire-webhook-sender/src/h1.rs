//! The lean HTTP/1.1 exchange for `http://` endpoints: opt-in (`HyperClientBuilder::lean_http`).
//!
//! Why it stays as an option: a webhook delivery is one small request and one small response on
//! a keep-alive connection. hyper's client runs each connection as its own task and talks to it
//! through channels, which costs more CPU per request than the request itself on loopback. This
//! module writes the request with one syscall from the caller's task and parses the response with
//! `httparse`, with the framing rules of RFC 9112 §6 (up to [`MAX_INTERIM`] interim 1xx skipped;
//! no body for 204/304; chunked; Content-Length; read to close) and hard caps on head and body
//! sizes: for a sender that must squeeze the last CPU out of plain-http deliveries. The default
//! for http and https is hyper-util's pooled client (`client.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::Uri;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{
    ClientResponse, IDLE_TIMEOUT, MAX_IDLE_PER_HOST, MAX_RESPONSE_BODY, TransportError,
    TransportErrorKind, lock,
};
use crate::connect::{GuardedConnector, connect_error};
use crate::interim::{HEAD_TOO_LARGE, MAX_HEAD, MAX_INTERIM, too_many_interim};

/// Most response headers accepted.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Bodies up to this size are copied behind the head and written with one syscall.
const COALESCE: usize = 16 * 1024;

type PoolKey = (Scheme, Authority);

/// Idle lean connections per (scheme, authority), each with the time it went idle.
#[derive(Debug)]
pub(crate) struct LeanPool {
    guard: GuardedConnector,
    idle: Mutex<HashMap<PoolKey, Vec<(RawConn, Instant)>>>,
}

impl LeanPool {
    pub(crate) fn new(guard: GuardedConnector) -> Self {
        Self {
            guard,
            idle: Mutex::default(),
        }
    }

    fn checkout(&self, key: &PoolKey) -> Option<RawConn> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        while let Some((c, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, key: PoolKey, conn: RawConn) {
        let mut idle = lock(&self.idle);
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((conn, Instant::now()));
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<RawConn, TransportError> {
        use tower_service::Service;
        let io = self
            .guard
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| connect_error(&*e))?;
        Ok(RawConn::new(io.into_inner()))
    }

    /// Sends one plain-http request on a pooled connection (or a fresh one).
    pub(crate) async fn send(
        &self,
        key: PoolKey,
        uri: &Uri,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<ClientResponse, TransportError> {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        loop {
            let (mut conn, pooled) = match self.checkout(&key) {
                Some(c) => (c, true),
                None => (Box::pin(self.connect(uri)).await?, false),
            };
            let sent = conn
                .exchange(
                    &parts.method,
                    target,
                    key.1.as_str(),
                    &parts.headers,
                    &body,
                    pooled,
                )
                .await;
            match sent {
                Ok((resp, reusable)) => {
                    if reusable {
                        self.checkin(key, conn);
                    }
                    return Ok(resp);
                }
                // The server closed an idle connection: try the next one (eventually a fresh
                // one, which never asks for this) without spending a retry.
                Err(e) if e.retry_fresh => {}
                Err(e) => return Err(e.error),
            }
        }
    }
}

/// One keep-alive connection and its buffers.
#[derive(Debug)]
struct RawConn {
    io: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

/// A failed exchange; `retry_fresh` when a pooled connection died before any response byte
/// arrived (the server closed it while idle), so another connection may be tried at once.
#[derive(Debug)]
struct ExchangeError {
    error: TransportError,
    retry_fresh: bool,
}

fn io_err(msg: impl Into<String>) -> ExchangeError {
    ExchangeError {
        error: TransportError::new(TransportErrorKind::Io, msg),
        retry_fresh: false,
    }
}

impl RawConn {
    fn new(io: TcpStream) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: Vec::with_capacity(1024),
        }
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, ExchangeError> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(8192);
        }
        match self.io.read_buf(&mut self.rbuf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(io_err(e.to_string())),
        }
    }

    /// Sends one request and reads its response. Returns the response and whether the
    /// connection may be reused.
    async fn exchange(
        &mut self,
        method: &Method,
        target: &str,
        host: &str,
        headers: &HeaderMap,
        body: &Bytes,
        pooled: bool,
    ) -> Result<(ClientResponse, bool), ExchangeError> {
        self.write_request(method, target, host, headers, body)
            .await
            .map_err(|e| ExchangeError {
                error: TransportError::new(TransportErrorKind::Io, e.to_string()),
                retry_fresh: pooled,
            })?;
        let mut any = false;
        let mut interim = Interim::default();
        loop {
            if let Some((status, map, close)) = self.parse_head(&mut interim)? {
                let (body, complete) = self.read_body(method, status, &map).await?;
                let reusable = complete && !close && self.rbuf.is_empty();
                return Ok((ClientResponse::new(status, map, body), reusable));
            }
            // A pooled connection that ends or resets before the first response byte was
            // closed by the server while idle: safe to replay on another connection.
            let idle_close = pooled && !any && self.rbuf.is_empty();
            match self.fill().await {
                Ok(true) => any = true,
                Ok(false) => {
                    return Err(ExchangeError {
                        error: TransportError::new(
                            TransportErrorKind::Io,
                            "connection closed before a response",
                        ),
                        retry_fresh: idle_close,
                    });
                }
                Err(mut e) => {
                    e.retry_fresh = idle_close;
                    return Err(e);
                }
            }
        }
    }

    /// Parses a final response head from the buffer, skipping at most [`MAX_INTERIM`] interim
    /// 1xx responses (`interim` carries the count and the bytes they took across calls); `None`
    /// when more bytes are needed. Synchronous on purpose: the header array stays out of the
    /// exchange future, which is moved into a box for every request.
    fn parse_head(
        &mut self,
        interim: &mut Interim,
    ) -> Result<Option<(StatusCode, HeaderMap, bool)>, ExchangeError> {
        loop {
            let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut hdrs);
            let head_len = match resp.parse(&self.rbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if interim.bytes + self.rbuf.len() > MAX_HEAD {
                        return Err(io_err(HEAD_TOO_LARGE));
                    }
                    return Ok(None);
                }
                Err(e) => return Err(io_err(format!("invalid response: {e}"))),
            };
            // The cap holds whether the head came in one read or many, and covers the interim
            // heads before it.
            if interim.bytes + head_len > MAX_HEAD {
                return Err(io_err(HEAD_TOO_LARGE));
            }
            let code = resp.code.unwrap_or(0);
            let status =
                StatusCode::from_u16(code).map_err(|_| io_err(format!("invalid status {code}")))?;
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(io_err("unexpected 101 Switching Protocols"));
                }
                // Interim responses (100 Continue, 103 Early Hints) precede the real one; a
                // server streaming them without end would otherwise be read until the timeout.
                interim.count += 1;
                if interim.count > MAX_INTERIM {
                    return Err(io_err(too_many_interim()));
                }
                interim.bytes += head_len;
                self.rbuf.advance(head_len);
                continue;
            }
            let keep_alive_version = resp.version == Some(1);
            let mut map = HeaderMap::with_capacity(resp.headers.len());
            for h in resp.headers.iter() {
                // A malformed header from the receiver is dropped, not fatal: the status
                // decides the outcome.
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(h.name.as_bytes()),
                    HeaderValue::from_bytes(h.value),
                ) {
                    map.append(n, v);
                }
            }
            self.rbuf.advance(head_len);
            let close = !keep_alive_version || has_token(&map, &CONNECTION, "close");
            return Ok(Some((status, map, close)));
        }
    }

    async fn write_request(
        &mut self,
        method: &Method,
        target: &str,
        host: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> std::io::Result<()> {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(method.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(target.as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.contains_key(HOST) {
            w.extend_from_slice(b"host: ");
            w.extend_from_slice(host.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers {
            // Framing is ours: a caller's Content-Length or Transfer-Encoding could only
            // disagree with the body actually sent.
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"content-length: ");
        push_decimal(w, body.len());
        w.extend_from_slice(b"\r\n\r\n");
        if body.len() <= COALESCE {
            w.extend_from_slice(body);
            self.io.write_all(&self.wbuf).await
        } else {
            self.io.write_all(&self.wbuf).await?;
            self.io.write_all(body).await
        }
    }

    /// Reads the body by the framing rules; keeps at most [`MAX_RESPONSE_BODY`] bytes.
    /// `complete` is false when the body was cut short or ran to end of stream.
    async fn read_body(
        &mut self,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<(Bytes, bool), ExchangeError> {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Bytes::new(), true));
        }
        if headers.contains_key(TRANSFER_ENCODING) {
            if last_token_is(headers, &TRANSFER_ENCODING, "chunked") {
                return self.read_chunked().await;
            }
            return self.read_to_end().await;
        }
        let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
        let Some(first) = lengths.next() else {
            return self.read_to_end().await;
        };
        let len = parse_length(first.as_bytes())
            .ok_or_else(|| io_err("invalid Content-Length in the response"))?;
        if lengths.any(|v| parse_length(v.as_bytes()) != Some(len)) {
            return Err(io_err("conflicting Content-Length headers in the response"));
        }
        self.read_exact_len(len).await
    }

    async fn read_exact_len(&mut self, len: u64) -> Result<(Bytes, bool), ExchangeError> {
        let keep = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(MAX_RESPONSE_BODY);
        while self.rbuf.len() < keep {
            if !self.fill().await? {
                return Err(io_err("connection closed inside the response body"));
            }
        }
        let body = self.rbuf.split_to(keep).freeze();
        // Longer than the cap: the rest is never read, so the connection cannot be reused.
        Ok((body, keep as u64 == len))
    }

    async fn read_to_end(&mut self) -> Result<(Bytes, bool), ExchangeError> {
        while self.rbuf.len() < MAX_RESPONSE_BODY {
            if !self.fill().await? {
                break;
            }
        }
        let keep = self.rbuf.len().min(MAX_RESPONSE_BODY);
        Ok((self.rbuf.split_to(keep).freeze(), false))
    }

    /// Takes one CRLF-terminated line (without the CRLF), reading as needed.
    async fn line(&mut self) -> Result<BytesMut, ExchangeError> {
        loop {
            if let Some(i) = self.rbuf.windows(2).position(|w| w == b"\r\n") {
                let line = self.rbuf.split_to(i);
                self.rbuf.advance(2);
                return Ok(line);
            }
            if self.rbuf.len() > MAX_LINE {
                return Err(io_err("chunk line too long"));
            }
            if !self.fill().await? {
                return Err(io_err("connection closed inside a chunked body"));
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<(Bytes, bool), ExchangeError> {
        let mut body = BytesMut::new();
        loop {
            let line = self.line().await?;
            let size_text: &[u8] = line[..]
                .split(|b: &u8| *b == b';')
                .next()
                .unwrap_or_default();
            let size = std::str::from_utf8(size_text)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| io_err("invalid chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok((body.freeze(), true));
            }
            let room = MAX_RESPONSE_BODY - body.len();
            if size > room as u64 {
                // Keep what fits and stop: the connection is abandoned.
                while self.rbuf.len() < room {
                    if !self.fill().await? {
                        break;
                    }
                }
                let take = self.rbuf.len().min(room);
                body.extend_from_slice(&self.rbuf[..take]);
                return Ok((body.freeze(), false));
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            while self.rbuf.len() < size + 2 {
                if !self.fill().await? {
                    return Err(io_err("connection closed inside a chunked body"));
                }
            }
            body.extend_from_slice(&self.rbuf[..size]);
            if &self.rbuf[size..size + 2] != b"\r\n" {
                return Err(io_err("chunk not terminated by CRLF"));
            }
            self.rbuf.advance(size + 2);
        }
    }
}

/// Interim responses seen so far in one exchange.
#[derive(Debug, Default)]
struct Interim {
    count: usize,
    bytes: usize,
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

/// Appends the decimal digits of `n` without going through `fmt`.
fn push_decimal(w: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_tokens() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"1e3"), None);
        assert_eq!(parse_length(b""), None);
        let mut h = HeaderMap::new();
        h.append(TRANSFER_ENCODING, HeaderValue::from_static("gzip, Chunked"));
        assert!(last_token_is(&h, &TRANSFER_ENCODING, "chunked"));
        h.append(CONNECTION, HeaderValue::from_static("keep-alive, Close"));
        assert!(has_token(&h, &CONNECTION, "close"));
        let mut w = Vec::new();
        push_decimal(&mut w, 0);
        w.push(b' ');
        push_decimal(&mut w, 1_234_567);
        assert_eq!(w, b"0 1234567");
    }
}
