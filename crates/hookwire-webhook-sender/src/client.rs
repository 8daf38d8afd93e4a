//! The HTTP client boundary and the default client.
//!
//! [`HttpClient`] is the seam tests and users plug into; [`HyperClient`] is the default:
//! hyper-util's pooled client (HTTP/1.1 keep-alive, HTTP/2 when an https server picks `h2` by
//! ALPN) over the SSRF-guarded connector of `connect.rs`, with the interim-response meter of
//! `interim.rs` on every connection. Plain `http://` may opt into the lean exchange of `h1.rs`.
//!
//! Redirects are never followed (there is no redirect logic at all); response bodies are read up
//! to [`MAX_RESPONSE_BODY`] and the connection is discarded beyond that; every connect goes
//! through the [`SsrfPolicy`] on the resolved addresses.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hookwire_core::BoxFuture;
use http::uri::Scheme;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::connect::{GuardedConnector, MeteredConnector, connect_error, error_chain};
use crate::h1::LeanPool;
use crate::interim::MAX_HEAD;
use crate::ssrf::SsrfPolicy;

/// The most response-body bytes read from any response; beyond it the rest is dropped with the
/// connection (a hostile receiver cannot make the sender buffer without bound).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Most response headers accepted.
const MAX_HEADERS: usize = 100;

/// Idle connections kept per (scheme, authority).
pub(crate) const MAX_IDLE_PER_HOST: usize = 256;

/// An idle connection older than this is closed rather than reused (servers commonly close idle
/// keep-alive connections after 60–120 s; reusing one just as it closes costs a retry).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(55);

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
    /// Offer HTTP/2 by ALPN on https (default on); plain http is always HTTP/1.1. Turn it off for receivers whose HTTP/2 stack misbehaves.
    #[must_use]
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }
    /// Plain `http://` through the lean HTTP/1.1 exchange (on) instead of the pooled hyper
    /// client (default, off). The lean exchange writes each request with one syscall from the
    /// caller's task and parses the response with `httparse`, which costs less CPU per delivery
    /// than hyper's connection task and channels; it keeps the same limits (see the crate guide).
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
    pub fn build(self) -> Result<HyperClient, crate::Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = crate::Error::build;
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

/// The default client: hyper-util's pooled client, HTTP/1.1 keep-alive (and HTTP/2 when an https
/// server offers it by ALPN) over plain TCP or rustls with the Mozilla (webpki) roots, with the
/// SSRF policy enforced in the connector and at most four interim responses per request.
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
    pooled: Client<MeteredConnector, Full<Bytes>>,
    /// `Some` when plain http opted into the lean exchange.
    lean: Option<LeanPool>,
    policy: Arc<SsrfPolicy>,
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient")
            .field("policy", &self.inner.policy)
            .field("lean_http", &self.inner.lean.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for HyperClient {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Pool maps hold only connections that are valid on their own; a panic elsewhere while the
    // lock was held cannot leave one half-written.
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
            .unwrap_or_else(|_| Self::assemble(fallback, None, (true, false, false)))
    }

    /// A builder (SSRF guard off, HTTP/2 by ALPN on, lowercase header names, Mozilla roots,
    /// plain http through hyper).
    pub fn builder() -> HyperClientBuilder {
        HyperClientBuilder {
            policy: SsrfPolicy::disabled(),
            lean_http: false,
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
        let connector = MeteredConnector {
            guard: guard.clone(),
            https,
        };
        let pooled = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .http1_title_case_headers(title_case)
            // Every head (interim or final) ≤ `MAX_HEAD`: hyper refuses a head that does not
            // fit its read buffer.
            .http1_max_buf_size(MAX_HEAD)
            .http1_max_headers(MAX_HEADERS)
            .http2_max_header_list_size(u32::try_from(MAX_HEAD).unwrap_or(u32::MAX))
            .build(connector);
        Self {
            inner: Arc::new(Inner {
                pooled,
                lean: lean_http.then(|| LeanPool::new(guard)),
                policy,
            }),
        }
    }

    /// The SSRF policy in force.
    pub fn policy(&self) -> &SsrfPolicy {
        &self.inner.policy
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
        if scheme == Scheme::HTTP
            && let Some(lean) = &self.inner.lean
        {
            let (parts, body) = req.into_parts();
            return lean.send((scheme, auth), &uri, parts, body).await;
        }
        let resp = match self.inner.pooled.request(req.map(Full::new)).await {
            Ok(r) => r,
            Err(e) => return Err(pooled_error(&e)),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Never asked for: the connection is no longer HTTP (dropping it closes it).
            return Err(TransportError::new(
                TransportErrorKind::Io,
                "unexpected 101 Switching Protocols",
            ));
        }
        // A body cut short at the cap is dropped unread, and hyper closes its connection.
        finish(resp).await
    }
}

/// Reads the response body up to [`MAX_RESPONSE_BODY`], dropping the rest unread.
async fn finish(resp: Response<Incoming>) -> Result<ClientResponse, TransportError> {
    let (parts, mut body) = resp.into_parts();
    let mut buf: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
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
    Ok(ClientResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A request the pooled client failed: an SSRF refusal or connect failure by its kind, any other
/// failure (the head limits of `interim.rs` included) as `Io` with its source chain, where the
/// cause is (hyper's own message only says "client error" or "connection error").
fn pooled_error(e: &hyper_util::client::legacy::Error) -> TransportError {
    if e.is_connect() {
        return connect_error(e);
    }
    TransportError::new(TransportErrorKind::Io, error_chain(e))
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
