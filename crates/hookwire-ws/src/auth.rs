//! Who is on the other end of a socket: the [`Identity`] an [`Authenticator`] derives from the
//! upgrade request, before the upgrade (spec `ws.md`, "Options and rules": 401 before 101).

use std::fmt;
use std::sync::Arc;

use hookwire_core::BoxFuture;
use hookwire_core::scope::Scopes;

/// The authenticated party of one connection: a user, or a service account (a client id with
/// scopes, no user).
///
/// `organization_id` is the tenant: with org scoping (the default) an event carrying an
/// organization reaches only clients whose `organization_id` is equal to it. A service account
/// is scoped the same way: give it the organization it acts for; without one it is a platform
/// client that receives only events without organization (or published with
/// `publish_global`), never another tenant's.
///
/// ```
/// let who = hookwire_ws::Identity::new().with_user("u1").with_organization("acme");
/// assert_eq!(who.organization_id(), Some("acme"));
/// assert_eq!(who.user_id(), Some("u1"));
///
/// let svc = hookwire_ws::Identity::service("billing-sync", ["orders:read"]).with_organization("acme");
/// assert!(svc.is_service() && svc.has_scope("orders:read") && svc.user_id().is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    user_id: Option<Arc<str>>,
    organization_id: Option<Arc<str>>,
    client_id: Option<Arc<str>>,
    scopes: Scopes,
}

impl Identity {
    /// An anonymous identity (no user, no organization), as every client has with auth off.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::Identity::new().user_id(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the user id.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::Identity::new().with_user("u").user_id(), Some("u"));
    /// ```
    #[must_use]
    pub fn with_user(mut self, user: impl Into<Arc<str>>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Sets the organization (tenant) id.
    ///
    /// ```
    /// let who = hookwire_ws::Identity::new().with_organization("acme");
    /// assert_eq!(who.organization_id(), Some("acme"));
    /// ```
    #[must_use]
    pub fn with_organization(mut self, org: impl Into<Arc<str>>) -> Self {
        self.organization_id = Some(org.into());
        self
    }

    /// A service account: a machine client `client_id` holding `scopes`, with no user. Scopes
    /// are bounded ([`hookwire_core::scope::MAX_SCOPES`] of at most
    /// [`hookwire_core::scope::MAX_SCOPE_LEN`] bytes); the rest are dropped, never granted.
    ///
    /// ```
    /// let svc = hookwire_ws::Identity::service("etl", ["audit:read"]);
    /// assert_eq!(svc.client_id(), Some("etl"));
    /// assert_eq!(svc.scopes().iter().collect::<Vec<_>>(), ["audit:read"]);
    /// ```
    pub fn service<I, S>(client_id: impl Into<Arc<str>>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            client_id: Some(client_id.into()),
            scopes: Scopes::new(scopes),
            ..Self::default()
        }
    }

    /// Replaces the scopes (a user's token may carry scopes too; rules apply to every identity).
    ///
    /// ```
    /// let who = hookwire_ws::Identity::new().with_user("ann").with_scopes(["audit:read"]);
    /// assert!(who.has_scope("audit:read") && !who.is_service());
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

    /// The service account's client id, if this is one.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::Identity::new().client_id(), None);
    /// ```
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// Whether this is a service account (it has a client id).
    ///
    /// ```
    /// assert!(!hookwire_ws::Identity::new().is_service());
    /// ```
    pub fn is_service(&self) -> bool {
        self.client_id.is_some()
    }

    /// The scopes held.
    ///
    /// ```
    /// assert!(hookwire_ws::Identity::new().scopes().is_empty());
    /// ```
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Whether `scope` is held (exact comparison).
    ///
    /// ```
    /// assert!(!hookwire_ws::Identity::service("etl", ["a"]).has_scope("b"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The user id, if any (machine clients may have none).
    ///
    /// ```
    /// assert_eq!(hookwire_ws::Identity::new().user_id(), None);
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The organization id, if the client belongs to one.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::Identity::new().organization_id(), None);
    /// ```
    pub fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }

    pub(crate) fn org_arc(&self) -> Option<Arc<str>> {
        self.organization_id.clone()
    }
}

/// The parts of an upgrade (or stats) request an authenticator may look at.
///
/// ```
/// let req = http::Request::get("/ws?token=a@b").body(()).unwrap();
/// let (parts, ()) = req.into_parts();
/// let r = hookwire_ws::AuthRequest::new(&parts.uri, &parts.headers);
/// assert_eq!(r.query_param("token").as_deref(), Some("a@b"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
}

impl<'a> AuthRequest<'a> {
    /// Wraps a request's URI and headers.
    ///
    /// ```
    /// let uri: http::Uri = "/ws".parse().unwrap();
    /// let h = http::HeaderMap::new();
    /// assert_eq!(hookwire_ws::AuthRequest::new(&uri, &h).uri().path(), "/ws");
    /// ```
    pub fn new(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Self {
        Self { uri, headers }
    }

    /// The request URI.
    ///
    /// ```
    /// let uri: http::Uri = "/ws?x=1".parse().unwrap();
    /// let h = http::HeaderMap::new();
    /// assert_eq!(hookwire_ws::AuthRequest::new(&uri, &h).uri().query(), Some("x=1"));
    /// ```
    pub fn uri(&self) -> &'a http::Uri {
        self.uri
    }

    /// The request headers.
    ///
    /// ```
    /// let uri: http::Uri = "/ws".parse().unwrap();
    /// let h = http::HeaderMap::new();
    /// assert!(hookwire_ws::AuthRequest::new(&uri, &h).headers().is_empty());
    /// ```
    pub fn headers(&self) -> &'a http::HeaderMap {
        self.headers
    }

    /// The token of an `Authorization: Bearer <token>` header, if present and valid UTF-8.
    ///
    /// ```
    /// let uri: http::Uri = "/ws".parse().unwrap();
    /// let mut h = http::HeaderMap::new();
    /// h.insert("authorization", "Bearer t0k".parse().unwrap());
    /// assert_eq!(hookwire_ws::AuthRequest::new(&uri, &h).bearer_token(), Some("t0k"));
    /// ```
    pub fn bearer_token(&self) -> Option<&'a str> {
        let v = self
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// The first value of query parameter `name`, decoded as
    /// `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes; a malformed escape
    /// stays as written, invalid UTF-8 becomes U+FFFD): the same reading as `hookwire-sse`.
    /// Browsers cannot set headers on a WebSocket, so tokens often travel as `?token=`.
    ///
    /// ```
    /// let uri: http::Uri = "/ws?a=1&token=u%40acme".parse().unwrap();
    /// let h = http::HeaderMap::new();
    /// let r = hookwire_ws::AuthRequest::new(&uri, &h);
    /// assert_eq!(r.query_param("token").as_deref(), Some("u@acme"));
    /// assert_eq!(r.query_param("nope"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.uri.query()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Decides who an upgrade request is; `None` refuses it (401 before the upgrade).
///
/// Implemented for any `Fn(&AuthRequest<'_>) -> Option<Identity>`; implement the trait itself
/// for an asynchronous lookup (a session store, a token introspection endpoint).
///
/// ```
/// use hookwire_ws::{AuthRequest, Authenticator, Identity};
/// let auth = |r: &AuthRequest<'_>| r.bearer_token().map(|t| Identity::new().with_user(t));
/// let uri: http::Uri = "/ws".parse().unwrap();
/// let h = http::HeaderMap::new();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(auth.authenticate(AuthRequest::new(&uri, &h))), None);
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the request, or `None` to refuse it. Must not panic on any input.
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, Option<Identity>>;
}

impl<F> Authenticator for F
where
    F: Fn(&AuthRequest<'_>) -> Option<Identity> + Send + Sync + 'static,
{
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, Option<Identity>> {
        let out = self(&request);
        Box::pin(std::future::ready(out))
    }
}

/// The demo authenticator of `hookwire demo`: a token `user@org` from `Authorization: Bearer`
/// or `?token=`. **Not for production**: anyone can claim any user and organization.
///
/// ```
/// use hookwire_ws::{AuthRequest, Authenticator, DemoAuthenticator};
/// let uri: http::Uri = "/ws?token=ann@acme".parse().unwrap();
/// let h = http::HeaderMap::new();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let who = rt.block_on(DemoAuthenticator.authenticate(AuthRequest::new(&uri, &h))).unwrap();
/// assert_eq!((who.user_id(), who.organization_id()), (Some("ann"), Some("acme")));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoAuthenticator;

impl Authenticator for DemoAuthenticator {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, Option<Identity>> {
        let token = request
            .bearer_token()
            .map(str::to_owned)
            .or_else(|| request.query_param("token"));
        let who = token.and_then(|t| {
            let (user, org) = t.split_once('@')?;
            (!user.is_empty() && !org.is_empty())
                .then(|| Identity::new().with_user(user).with_organization(org))
        });
        Box::pin(std::future::ready(who))
    }
}

/// A shared, type-erased authenticator.
#[derive(Clone)]
pub(crate) struct SharedAuth(pub(crate) Arc<dyn Authenticator>);

impl SharedAuth {
    /// The identity of `req` under `auth`: the authenticator's answer, or an anonymous
    /// identity when auth is off (`None`).
    pub(crate) async fn identify(auth: Option<&Self>, req: AuthRequest<'_>) -> Option<Identity> {
        match auth {
            Some(a) => a.0.authenticate(req).await,
            None => Some(Identity::new()),
        }
    }
}

impl fmt::Debug for SharedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A malformed escape never matches a real token: it is kept as written (the token `%zz`,
    /// not a decoded byte), so an authenticator compares it like any other unknown token.
    #[test]
    fn malformed_percent_escapes_are_kept_as_written() {
        let param = |q: &str| {
            let uri: http::Uri = format!("/ws?{q}").parse().unwrap();
            AuthRequest::new(&uri, &http::HeaderMap::new()).query_param("token")
        };
        assert_eq!(param("token=%zz").as_deref(), Some("%zz"));
        assert_eq!(param("token=%4").as_deref(), Some("%4"));
        assert_eq!(param("token=a+b%21").as_deref(), Some("a b!"));
    }

    #[test]
    fn bearer_needs_a_token() {
        let uri: http::Uri = "/ws".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(AuthRequest::new(&uri, &h).bearer_token(), None);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(AuthRequest::new(&uri, &h).bearer_token(), None);
    }
}
