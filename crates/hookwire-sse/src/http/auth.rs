//! Who may open a stream

use hookwire_core::scope::Scopes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{ResponseBody, status_response};

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
    /// The client id when a service account (a machine client) connects instead of a user.
    pub client_id: Option<String>,
    /// The scopes granted to whoever connects, checked against
    /// [`SseConfig::scope_rules`](super::SseConfig::scope_rules): a stream or event filter a
    /// rule covers needs the rule's scope, else 403 `insufficient_scope`.
    pub scopes: Scopes,
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
            ..Self::default()
        }
    }

    /// The same access for a service account: a machine client `client_id` holding `scopes`
    /// (bounded as [`Scopes::new`] says). It stays scoped to the access's organization.
    ///
    /// ```
    /// use hookwire_sse::http::Access;
    /// let a = Access::organization("acme").with_service("billing-sync", ["orders:read"]);
    /// assert_eq!(a.client_id.as_deref(), Some("billing-sync"));
    /// assert!(a.scopes.contains("orders:read"));
    /// assert_eq!(a.organization.as_deref(), Some("acme"));
    /// ```
    #[must_use]
    pub fn with_service<I, S>(mut self, client_id: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.client_id = Some(client_id.into());
        self.scopes = Scopes::new(scopes);
        self
    }

    /// The same access holding `scopes` (a user's token may carry scopes too).
    ///
    /// ```
    /// let a = hookwire_sse::http::Access::all().with_scopes(["audit:read"]);
    /// assert!(a.scopes.contains("audit:read") && a.client_id.is_none());
    /// ```
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.scopes = Scopes::new(scopes);
        self
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

/// Why a request was not admitted: a status from the hook, or a scope rule it does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Status(StatusCode),
    Scope(String),
}

impl Refused {
    /// The `WWW-Authenticate` value for a missing scope (RFC 6750 §3.1), when the scope is a
    /// valid scope token (it is configuration, but a quote must not break the header).
    pub(crate) fn challenge(scope: &str) -> Option<HeaderValue> {
        let token_ok = scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !token_ok {
            return None;
        }
        HeaderValue::from_str(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
        ))
        .ok()
    }

    /// The response: the hook's status, or 403 naming the missing scope.
    pub(crate) fn response(&self) -> http::Response<ResponseBody> {
        match self {
            Refused::Status(s) => status_response(*s),
            Refused::Scope(scope) => {
                let mut r = status_response(StatusCode::FORBIDDEN);
                *r.body_mut() =
                    ResponseBody::full(format!("insufficient_scope: {scope}").into_bytes());
                if let Some(v) = Self::challenge(scope) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
        }
    }
}
