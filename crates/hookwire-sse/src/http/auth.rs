//! Who may open a stream

use http::{HeaderMap, StatusCode};

/// What the authorization hook sees of a request.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The requested stream (`""` for the event stream).
    pub stream: &'a str,
    /// Request headers (e.g. `Authorization`, `Cookie`).
    pub headers: &'a HeaderMap,
    /// The raw query string, if any (e.g. `token=…`).
    pub query: Option<&'a str>,
}

/// What an authorized request may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// When set, the event stream only carries events of this organization (no cross-tenant
    /// delivery). State streams are authorized per stream name by the hook itself.
    pub organization: Option<String>,
    /// Who is connecting; with [`SseApp::with_presence`](super::SseApp::with_presence) each open state stream counts this
    /// identity as online on that stream.
    pub identity: Option<String>,
}

impl Access {
    /// Unrestricted access.
    pub fn all() -> Self {
        Self::default()
    }

    /// Access scoped to one organization.
    pub fn organization(org: impl Into<String>) -> Self {
        Self {
            organization: Some(org.into()),
            identity: None,
        }
    }

    /// The same access, naming who connects (for presence).
    #[must_use]
    pub fn with_identity(mut self, id: impl Into<String>) -> Self {
        self.identity = Some(id.into());
        self
    }
}

/// Who may read a stream. Returning an error status answers with it (and no stream); any
/// failure inside the hook must return an error (fail closed). The organization must come
/// from the authenticated principal, never from a client-chosen header.
///
/// ```
/// use hookwire_sse::http::{Access, Authorize, RequestInfo};
/// let demo = |r: &RequestInfo<'_>| match r.headers.get("authorization").and_then(|v| v.to_str().ok()) {
///     Some(t) if t.starts_with("Bearer ") => Ok(Access::organization(t.rsplit('@').next().unwrap_or(""))),
///     _ => Err(http::StatusCode::UNAUTHORIZED),
/// };
/// let h = http::HeaderMap::new();
/// let req = RequestInfo::new("board", &h, None);
/// assert_eq!(demo.authorize(&req), Err(http::StatusCode::UNAUTHORIZED));
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// Decides for one request.
    fn authorize(&self, req: &RequestInfo<'_>) -> Result<Access, StatusCode>;
}

impl<F> Authorize for F
where
    F: Fn(&RequestInfo<'_>) -> Result<Access, StatusCode> + Send + Sync + 'static,
{
    fn authorize(&self, req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        self(req)
    }
}

/// Allows every request: for public streams only; say so where you use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Public;

impl Authorize for Public {
    fn authorize(&self, _req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        Ok(Access::all())
    }
}

/// The hook of a configuration that never chose one: refuses every stream with 401 (fail
/// closed, like the WebSocket gateway without an authenticator) and says why once in the log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Unchosen;

impl Authorize for Unchosen {
    fn authorize(&self, _req: &RequestInfo<'_>) -> Result<Access, StatusCode> {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::error!(
                "hookwire-sse: no authorization hook chosen, every stream answers 401; \
                 call SseConfig::auth(hook), or SseConfig::auth(Public) for public streams"
            );
        });
        Err(StatusCode::UNAUTHORIZED)
    }
}

impl<'a> RequestInfo<'a> {
    /// Describes a request for the hook.
    pub fn new(stream: &'a str, headers: &'a HeaderMap, query: Option<&'a str>) -> Self {
        Self {
            stream,
            headers,
            query,
        }
    }
}
