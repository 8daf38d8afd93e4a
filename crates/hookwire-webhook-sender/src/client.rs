//! The HTTP client boundary and the default client with lean keep-alive pools.
//!
//! [`HttpClient`] is the seam tests and users plug into; [`HyperClient`] is the default. Idle
//! connections are kept per (scheme, authority):
//! - `http://`: plain TCP connections driven by the small HTTP/1.1 exchange in `h1.rs`, from the
//!   caller's task (no connection task, no channels);
//! - `https://`: rustls via hyper-rustls; HTTP/1.1 on `hyper::client::conn::http1` senders
//!   (checkout pops a ready sender, the body is read, the sender goes back), or one shared
//!   `http2` sender per host when the server picks `h2` by ALPN.
//!
//! This costs far less per request than a general-purpose pooled client, which matters because
//! the `sender` benchmark holds us to ≥ 0.7 × `wrk` on the same sink.
//!
//! Redirects are never followed (there is no redirect logic at all); response bodies are read up
//! to [`MAX_RESPONSE_BODY`] and the connection is discarded beyond that; every connect goes
//! through the [`SsrfPolicy`] on the resolved addresses.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hookwire_core::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::h1::RawConn;
use crate::interim::{MAX_HEAD, Meter, Metered, too_many_interim};
use crate::ssrf::{SsrfPolicy, strip_brackets};

/// The most response-body bytes read from any response; beyond it the rest is dropped with the
/// connection (a hostile receiver cannot make the sender buffer without bound).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Idle connections kept per (scheme, authority).
const MAX_IDLE_PER_HOST: usize = 256;

/// An idle connection older than this is closed rather than reused (servers commonly close idle
/// keep-alive connections after 60–120 s; reusing one just as it closes costs a retry).
const IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// A response as the sender needs it: status, headers and the first bytes of the body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientResponse {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most [`MAX_RESPONSE_BODY`] bytes.
    pub body: Bytes,
}

impl ClientResponse {
    /// A response (for custom [`HttpClient`]s).
    ///
    /// ```
    /// let r = hookwire_webhook_sender::ClientResponse::new(http::StatusCode::OK, Default::default(), bytes::Bytes::new());
    /// assert_eq!(r.status, 200);
    /// ```
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }
}

/// What went wrong before a response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// DNS failure, connection refused or reset while connecting.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The connection broke while sending or reading.
    Io,
    /// The SSRF guard refused every resolved address. Permanent.
    Blocked,
    /// The URL cannot be requested (no host, unsupported scheme). Permanent.
    InvalidUrl,
}

/// A failure before or while reading the response.
///
/// ```
/// use hookwire_webhook_sender::{TransportError, TransportErrorKind};
/// let e = TransportError::new(TransportErrorKind::Blocked, "10.0.0.1 is not allowed");
/// assert!(e.is_permanent());
/// assert_eq!(e.to_string(), "blocked: 10.0.0.1 is not allowed");
/// ```
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
}

impl TransportError {
    /// An error of `kind` with a human-readable message.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// The kind.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }
    /// True when retrying cannot help (SSRF-blocked, invalid URL).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Blocked | TransportErrorKind::InvalidUrl
        )
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Tls => "tls",
            TransportErrorKind::Io => "io",
            TransportErrorKind::Blocked => "blocked",
            TransportErrorKind::InvalidUrl => "invalid url",
        };
        write!(f, "{k}: {}", self.message)
    }
}

impl std::error::Error for TransportError {}

/// Sends one request and returns the response with a capped body.
///
/// The caller (the [`crate::Webhook`]) wraps the returned future in its total timeout, so an
/// implementation need not time out itself; dropping the future must abandon the request.
pub trait HttpClient: Send + Sync + fmt::Debug {
    /// Sends `req`; never follows redirects.
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<ClientResponse, TransportError>>;
}

/// The connector: resolves, applies the SSRF policy to every address, connects to the first
/// permitted one (pinning the connection to a vetted address).
#[derive(Clone, Debug)]
struct GuardedConnector {
    policy: Arc<SsrfPolicy>,
}

/// The SSRF refusal, carried through hyper-rustls's boxed errors and recognised by downcast.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = Result<TokioIo<TcpStream>, Box<dyn std::error::Error + Send + Sync>>>
            + Send,
    >,
>;

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = uri
                .host()
                .map(strip_brackets)
                .unwrap_or_default()
                .to_owned();
            if host.is_empty() || host.contains('%') {
                return Err(Box::new(Refused(format!("unusable host in {uri}"))) as _);
            }
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
                    443
                } else {
                    80
                });
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .collect(),
            };
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(Refused(format!(
                    "{host} resolves only to forbidden addresses [{}]",
                    list.join(", ")
                ))) as _);
            }
            let mut last = None;
            for addr in permitted {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        // Webhooks are small request/response exchanges: Nagle only adds latency.
                        let _ = s.set_nodelay(true);
                        return Ok(TokioIo::new(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(Box::new(last.unwrap_or_else(|| std::io::Error::other("no address"))) as _)
        })
    }
}

type H1 = http1::SendRequest<Full<Bytes>>;
type H2 = http2::SendRequest<Full<Bytes>>;

/// A fresh connection: HTTP/1.1, or HTTP/2 when the server chose it by ALPN; each with the
/// [`Meter`] that bounds interim responses on it.
enum Conn {
    H1(H1, Arc<Meter>),
    H2(H2, Arc<Meter>),
}

#[derive(Debug)]
struct Idle {
    tx: H1,
    meter: Arc<Meter>,
    since: Instant,
}

type PoolKey = (Scheme, Authority);

/// FNV-1a for the pool maps: `Authority` hashes byte by byte (lowercased), where SipHash's
/// per-call cost shows up on every request; pool keys come from configured URLs, and a
/// collision only costs a longer probe, so DoS-resistant hashing buys nothing here.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type PoolMap<V> = HashMap<PoolKey, V, std::hash::BuildHasherDefault<Fnv>>;

/// Configures a [`HyperClient`]. Errors (an unreadable certificate) are reported by `build`.
///
/// ```
/// use hookwire_webhook_sender::{HyperClient, ssrf::SsrfPolicy};
/// let client = HyperClient::builder()
///     .ssrf(SsrfPolicy::default())
///     .http2(false)
///     .title_case_headers(true)
///     .build()
///     .unwrap();
/// assert!(HyperClient::builder().add_root_certificates_pem(b"not pem").build().is_err());
/// # let _ = client;
/// ```
#[derive(Debug)]
pub struct HyperClientBuilder {
    policy: SsrfPolicy,
    lean_http: bool,
    http2: bool,
    title_case: bool,
    pems: Vec<Vec<u8>>,
}

impl HyperClientBuilder {
    /// The SSRF policy applied to every resolved address (default: disabled).
    #[must_use]
    pub fn ssrf(mut self, policy: SsrfPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Offer HTTP/2 by ALPN on https (default on, as `spec/sender.md` asks); plain http is always
    /// HTTP/1.1. Turn it off for receivers whose HTTP/2 stack misbehaves.
    #[must_use]
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }
    /// Plain `http://` through the lean HTTP/1.1 exchange (default on) or through hyper's
    /// connection machinery like https (off): an escape hatch should a receiver's HTTP/1.1 need
    /// something only hyper handles.
    #[must_use]
    pub fn lean_http(mut self, on: bool) -> Self {
        self.lean_http = on;
        self
    }
    /// Send HTTP/1.1 header names in Title-Case (`Content-Type`), for receivers that wrongly
    /// compare names case-sensitively (default off: lowercase).
    #[must_use]
    pub fn title_case_headers(mut self, on: bool) -> Self {
        self.title_case = on;
        self
    }
    /// Trusts the PEM certificates in `pem` in addition to the Mozilla roots (a private CA).
    #[must_use]
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        self.pems.push(pem.to_vec());
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<HyperClient, crate::BuildError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |m: String| crate::BuildError(m);
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for pem in &self.pems {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| bad(format!("unreadable PEM certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("unusable root certificate: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(bad("no certificate in the PEM data".into()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(HyperClient::assemble(
            self.policy,
            Some(tls),
            (self.http2, self.title_case, self.lean_http),
        ))
    }
}

/// The default client: HTTP/1.1 keep-alive (and HTTP/2 when an https server offers it by ALPN)
/// over plain TCP or rustls with the Mozilla (webpki) roots, with the SSRF policy enforced in the
/// connector.
///
/// One instance is meant to be shared (it is cheap to clone: the pool is behind an `Arc`).
///
/// ```
/// use hookwire_webhook_sender::{HyperClient, ssrf::SsrfPolicy};
/// let open = HyperClient::new();
/// let guarded = HyperClient::with_policy(SsrfPolicy::default());
/// # let _ = (open, guarded);
/// ```
#[derive(Clone)]
pub struct HyperClient {
    inner: Arc<Inner>,
}

struct Inner {
    guard: GuardedConnector,
    https: Option<HttpsConnector<GuardedConnector>>,
    idle: Mutex<PoolMap<Vec<Idle>>>,
    h2: Mutex<PoolMap<(H2, Arc<Meter>)>>,
    raw: Mutex<PoolMap<Vec<(RawConn, Instant)>>>,
    policy: Arc<SsrfPolicy>,
    title_case: bool,
    lean_http: bool,
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Default for HyperClient {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Pool maps hold only senders that are valid on their own; a panic elsewhere while the lock
    // was held cannot leave one half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HyperClient {
    /// A client without an SSRF guard (for operator-configured URLs).
    pub fn new() -> Self {
        Self::with_policy(SsrfPolicy::disabled())
    }

    /// A client whose every connection must pass `policy`.
    pub fn with_policy(policy: SsrfPolicy) -> Self {
        let fallback = policy.clone();
        // Without extra certificates the build cannot fail (ring supports rustls's safe
        // defaults); the fallback keeps the library free of panics and serves plain http.
        Self::builder()
            .ssrf(policy)
            .build()
            .unwrap_or_else(|_| Self::assemble(fallback, None, (true, false, true)))
    }

    /// A builder (SSRF guard off, HTTP/2 by ALPN on, lowercase header names, Mozilla roots).
    pub fn builder() -> HyperClientBuilder {
        HyperClientBuilder {
            policy: SsrfPolicy::disabled(),
            lean_http: true,
            http2: true,
            title_case: false,
            pems: Vec::new(),
        }
    }

    /// `flags`: (http2, title_case, lean_http).
    fn assemble(
        policy: SsrfPolicy,
        tls: Option<rustls::ClientConfig>,
        (http2, title_case, lean_http): (bool, bool, bool),
    ) -> Self {
        let policy = Arc::new(policy);
        let guard = GuardedConnector {
            policy: Arc::clone(&policy),
        };
        let https = tls.map(|cfg| {
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_only()
                .enable_http1();
            if http2 {
                b.enable_http2().wrap_connector(guard.clone())
            } else {
                b.wrap_connector(guard.clone())
            }
        });
        Self {
            inner: Arc::new(Inner {
                guard,
                https,
                idle: Mutex::default(),
                h2: Mutex::default(),
                raw: Mutex::default(),
                policy,
                title_case,
                lean_http,
            }),
        }
    }

    /// The SSRF policy in force.
    pub fn policy(&self) -> &SsrfPolicy {
        &self.inner.policy
    }

    fn checkout(&self, key: &PoolKey) -> Option<(H1, Arc<Meter>)> {
        let mut idle = lock(&self.inner.idle);
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some((i.tx, i.meter));
            }
        }
        None
    }

    fn checkin(&self, key: PoolKey, tx: H1, meter: Arc<Meter>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = lock(&self.inner.idle);
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                tx,
                meter,
                since: Instant::now(),
            });
        }
    }

    fn raw_checkout(&self, key: &PoolKey) -> Option<RawConn> {
        let mut raw = lock(&self.inner.raw);
        let list = raw.get_mut(key)?;
        while let Some((c, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    fn raw_checkin(&self, key: PoolKey, conn: RawConn) {
        let mut raw = lock(&self.inner.raw);
        let list = raw.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((conn, Instant::now()));
        }
    }

    async fn raw_connect(&self, uri: &Uri) -> Result<RawConn, TransportError> {
        use tower_service::Service;
        let io = self
            .inner
            .guard
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| connect_error(&*e))?;
        Ok(RawConn::new(io.into_inner()))
    }

    /// Plain http: the lean HTTP/1.1 exchange of [`crate::h1`] on pooled connections.
    async fn send_plain(
        &self,
        key: PoolKey,
        uri: &Uri,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<ClientResponse, TransportError> {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        loop {
            let (mut conn, pooled) = match self.raw_checkout(&key) {
                Some(c) => (c, true),
                None => (Box::pin(self.raw_connect(uri)).await?, false),
            };
            match conn
                .exchange(
                    &parts.method,
                    target,
                    key.1.as_str(),
                    &parts.headers,
                    &body,
                    pooled,
                )
                .await
            {
                Ok((resp, reusable)) => {
                    if reusable {
                        self.raw_checkin(key, conn);
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

    /// The shared HTTP/2 connection to `key`, if one is open.
    fn h2_checkout(&self, key: &PoolKey) -> Option<(H2, Arc<Meter>)> {
        let mut h2 = lock(&self.inner.h2);
        match h2.get(key) {
            Some((tx, meter)) if !tx.is_closed() => Some((tx.clone(), Arc::clone(meter))),
            Some(_) => {
                h2.remove(key);
                None
            }
            None => None,
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, TransportError> {
        use hyper_util::client::legacy::connect::Connection;
        use tower_service::Service;
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let io = if tls {
            let Some(https) = &self.inner.https else {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    "no TLS provider",
                ));
            };
            https.clone().call(uri.clone()).await
        } else {
            // Plain http skips the TLS wrapper's boxed future.
            self.inner
                .guard
                .clone()
                .call(uri.clone())
                .await
                .map(MaybeHttpsStream::Http)
        }
        .map_err(|e| connect_error(&*e))?;
        let kind = if tls {
            TransportErrorKind::Tls
        } else {
            TransportErrorKind::Io
        };
        let meter = Arc::new(Meter::default());
        // Header blocks (interim or final) are held to the same size as on the lean path.
        let head_cap = u32::try_from(MAX_HEAD).unwrap_or(u32::MAX);
        if io.connected().is_negotiated_h2() {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(head_cap)
                .handshake(Metered::h2(io, Arc::clone(&meter)))
                .await
                .map_err(|e| TransportError::new(kind, e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(Conn::H2(tx, meter));
        }
        let (tx, conn) = http1::Builder::new()
            .title_case_headers(self.inner.title_case)
            // Every head (interim or final) ≤ `MAX_HEAD`, as on the lean path.
            .max_header_size(MAX_HEAD)
            .handshake(Metered::h1(io, Arc::clone(&meter)))
            .await
            .map_err(|e| TransportError::new(kind, e.to_string()))?;
        tokio::spawn(async move {
            // The connection task ends when the peer closes or the sender is dropped; its error
            // has already been reported to the request that was in flight, if any.
            let _ = conn.await;
        });
        Ok(Conn::H1(tx, meter))
    }

    async fn send_h2(
        (mut tx, meter): (H2, Arc<Meter>),
        mut req: Request<Full<Bytes>>,
        uri: &Uri,
        added_host: bool,
    ) -> Result<Response<Incoming>, TransportError> {
        // HTTP/2 carries the target as :scheme/:authority/:path: absolute URI, no Host header.
        *req.uri_mut() = uri.clone();
        if added_host {
            req.headers_mut().remove(http::header::HOST);
        }
        tx.ready().await.map_err(|e| hyper_error(&meter, &e))?;
        tx.send_request(req)
            .await
            .map_err(|e| hyper_error(&meter, &e))
    }

    async fn send_inner(&self, req: Request<Bytes>) -> Result<ClientResponse, TransportError> {
        let uri = req.uri().clone();
        let (Some(scheme), Some(auth)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
            return Err(TransportError::new(
                TransportErrorKind::InvalidUrl,
                format!("{uri} has no scheme or host"),
            ));
        };
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(TransportError::new(
                TransportErrorKind::InvalidUrl,
                format!("unsupported scheme {scheme}"),
            ));
        }
        let key = (scheme, auth);
        let (parts, body) = req.into_parts();
        if key.0 == Scheme::HTTP && self.inner.lean_http {
            return self.send_plain(key, &uri, parts, body).await;
        }
        let mut req = Request::from_parts(parts, Full::new(body));
        // HTTP/2 is only negotiated over TLS, so plain http skips the shared-connection lookup.
        if key.0 == Scheme::HTTPS
            && let Some(h2) = self.h2_checkout(&key)
        {
            let resp = Box::pin(Self::send_h2(h2, req, &uri, false)).await?;
            return finish(resp).await.map(|(r, _)| r);
        }
        // Origin-form request target for HTTP/1.1 (`/path?query`), with a Host header.
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        *req.uri_mut() = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
        let mut added_host = false;
        if !req.headers().contains_key(http::header::HOST)
            && let Ok(v) = http::HeaderValue::from_str(key.1.as_str())
        {
            req.headers_mut().insert(http::header::HOST, v);
            added_host = true;
        }

        // A pooled connection may have been closed by the server a moment ago; hyper hands the
        // request back when it was not sent, and then another connection is tried at once
        // (Svix's "insta-retry" of stale keep-alive connections).
        let mut fresh = false;
        let (resp, tx, meter) = loop {
            let (mut tx, meter) = match self.checkout(&key) {
                Some(c) => c,
                None => {
                    fresh = true;
                    // Boxed: connecting is rare with keep-alive, and keeping its large state out of
                    // this future makes every pooled request cheaper to start.
                    match Box::pin(self.connect(&uri)).await? {
                        Conn::H1(tx, meter) => (tx, meter),
                        Conn::H2(tx, meter) => {
                            let h2 = (tx, meter);
                            lock(&self.inner.h2).insert(key.clone(), h2.clone());
                            let resp = Box::pin(Self::send_h2(h2, req, &uri, added_host)).await?;
                            return finish(resp).await.map(|(r, _)| r);
                        }
                    }
                }
            };
            if tx.ready().await.is_err() {
                if fresh {
                    return Err(TransportError::new(
                        TransportErrorKind::Io,
                        "connection closed before use",
                    ));
                }
                continue;
            }
            meter.watch(&mut req);
            match tx.try_send_request(req).await {
                // Interim heads parsed from one buffer with the final head never reach a read
                // that could refuse them: judged here, and the connection is dropped.
                Ok(_) if meter.exceeded() => {
                    return Err(TransportError::new(
                        TransportErrorKind::Io,
                        too_many_interim(),
                    ));
                }
                Ok(r) => break (r, tx, meter),
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => {
                        req = back;
                        continue;
                    }
                    _ => return Err(hyper_error(&meter, &e.into_error())),
                },
            }
        };
        let (r, complete) = finish(resp).await?;
        if complete {
            self.checkin(key, tx, meter);
        }
        Ok(r)
    }
}

/// Reads the response body up to [`MAX_RESPONSE_BODY`]; `complete` is false when it was cut
/// short (the connection must then not be reused).
async fn finish(resp: Response<Incoming>) -> Result<(ClientResponse, bool), TransportError> {
    let (parts, mut body) = resp.into_parts();
    let mut buf: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
    let mut complete = true;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                return Err(TransportError::new(TransportErrorKind::Io, e.to_string()));
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let have =
                    buf.as_ref().map_or(0, BytesMut::len) + first.as_ref().map_or(0, Bytes::len);
                if have + data.len() > MAX_RESPONSE_BODY {
                    let take = MAX_RESPONSE_BODY - have;
                    let b = buf.get_or_insert_with(|| {
                        first
                            .take()
                            .map_or_else(BytesMut::new, |f| BytesMut::from(&f[..]))
                    });
                    b.extend_from_slice(&data[..take]);
                    complete = false;
                    break;
                }
                // The common case is one data frame: keep it as is, copy only when a second
                // frame arrives.
                match (&mut buf, &first) {
                    (None, None) => first = Some(data),
                    (None, Some(f)) => {
                        let mut b = BytesMut::from(&f[..]);
                        b.extend_from_slice(&data);
                        first = None;
                        buf = Some(b);
                    }
                    (Some(b), _) => b.extend_from_slice(&data),
                }
            }
        }
    }
    let body = match (buf, first) {
        (Some(b), _) => b.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    };
    Ok((
        ClientResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        complete,
    ))
}

/// A request that hyper failed: the interim-response limit when that is what ended the
/// connection (hyper's own message would only say "connection error").
fn hyper_error(meter: &Meter, e: &hyper::Error) -> TransportError {
    let message = if meter.exceeded() {
        too_many_interim()
    } else {
        e.to_string()
    };
    TransportError::new(TransportErrorKind::Io, message)
}

fn connect_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> TransportError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return TransportError::new(TransportErrorKind::Blocked, r.0.clone());
        }
        cur = c.source();
    }
    let text = e.to_string();
    let kind = if text.contains("tls") || text.contains("certificate") || text.contains("handshake")
    {
        TransportErrorKind::Tls
    } else {
        TransportErrorKind::Connect
    };
    TransportError::new(kind, text)
}

impl HttpClient for HyperClient {
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<ClientResponse, TransportError>> {
        Box::pin(self.send_inner(req))
    }
}

impl<T: HttpClient + ?Sized> HttpClient for Arc<T> {
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<ClientResponse, TransportError>> {
        (**self).send(req)
    }
}
