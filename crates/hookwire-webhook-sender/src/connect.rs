//! The connectors under every HTTP path of the client: the SSRF guard on resolved addresses, and
//! the TLS + interim-response meter around it for the pooled hyper client.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use http::uri::Scheme;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::client::{TransportError, TransportErrorKind};
use crate::interim::Metered;
use crate::ssrf::{SsrfPolicy, strip_brackets};

/// The error type connectors hand to hyper.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Resolves, applies the SSRF policy to every address, connects to the first permitted one
/// (pinning the connection to a vetted address, so DNS rebinding does not get through).
#[derive(Clone, Debug)]
pub(crate) struct GuardedConnector {
    pub(crate) policy: Arc<SsrfPolicy>,
}

/// The SSRF refusal, carried through hyper's boxed errors and recognised by downcast.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<TokioIo<TcpStream>>;

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
            let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            };
            let port = uri.port_u16().unwrap_or(default_port);
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

/// A connection of the pooled client: plain or TLS, under the head-limit [`Metered`] wrapper.
pub(crate) type MeteredStream = Metered<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// The pooled client's connector: TLS by hyper-rustls when the URL is https (HTTP/2 when the
/// server picks it by ALPN), the SSRF guard underneath, the interim meter on top.
#[derive(Clone, Debug)]
pub(crate) struct MeteredConnector {
    pub(crate) guard: GuardedConnector,
    /// `None` only when no TLS configuration could be built: https then fails to connect.
    pub(crate) https: Option<HttpsConnector<GuardedConnector>>,
}

impl Service<Uri> for MeteredConnector {
    type Response = MeteredStream;
    type Error = BoxError;
    type Future = BoxFuture<MeteredStream>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let https = self.https.clone();
        let mut guard = self.guard.clone();
        Box::pin(async move {
            let io = if tls {
                let Some(mut https) = https else {
                    return Err(Box::new(std::io::Error::other("tls: no TLS provider")) as _);
                };
                https.call(uri).await?
            } else {
                // Plain http skips the TLS wrapper's boxed future.
                MaybeHttpsStream::Http(guard.call(uri).await?)
            };
            Ok(if io.connected().is_negotiated_h2() {
                Metered::h2(io)
            } else {
                Metered::h1(io)
            })
        })
    }
}

/// A failed connect as a [`TransportError`]: `Blocked` for an SSRF refusal anywhere in the
/// source chain, `Tls` for a handshake or certificate failure, `Connect` otherwise.
pub(crate) fn connect_error(e: &(dyn std::error::Error + 'static)) -> TransportError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return TransportError::new(TransportErrorKind::Blocked, r.0.clone());
        }
        cur = c.source();
    }
    let text = error_chain(e);
    let kind = if text.contains("tls") || text.contains("certificate") || text.contains("handshake")
    {
        TransportErrorKind::Tls
    } else {
        TransportErrorKind::Connect
    };
    TransportError::new(kind, text)
}

/// `e` and its sources, joined by `": "` (hyper's own messages are terse wrappers: the cause
/// is further down the chain).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}
