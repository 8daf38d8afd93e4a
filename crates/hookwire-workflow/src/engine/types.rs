//! The values engine operations take and return: the caller's scope, start options, a started
//! run and a page of runs.

use serde::Serialize;

use crate::run::Run;

/// Whose runs an operation may see. Runs started under an organization are invisible (404) to
/// every other organization; [`Scope::All`] is for trusted, operator-side code.
///
/// ```
/// use hookwire_workflow::Scope;
/// let s = Scope::organization("acme");
/// assert_eq!(s.org(), Some("acme"));
/// assert_eq!(Scope::All.org(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Every run (operators, internal code).
    All,
    /// The runs of one organization.
    Organization(String),
}

impl Scope {
    /// The scope of organization `org`.
    pub fn organization(org: impl Into<String>) -> Self {
        Self::Organization(org.into())
    }
    /// The organization, if scoped.
    pub fn org(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Organization(o) => Some(o),
        }
    }
    pub(super) fn allows(&self, run_org: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Organization(o) => run_org == Some(o.as_str()),
        }
    }
}

/// Options of [`Engine::start`](crate::Engine::start).
///
/// ```
/// let o = hookwire_workflow::StartOptions::new().idempotency_key("order-7");
/// assert_eq!(o.idempotency_key.as_deref(), Some("order-7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// A second start with the same key (same workflow and organization) returns the first run,
    /// whatever its status, for as long as it is stored.
    pub idempotency_key: Option<String>,
}

impl StartOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What [`Engine::start`](crate::Engine::start) returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Started {
    /// The run, as stored.
    pub run: Run,
    /// False when the idempotency key matched an earlier run (returned instead).
    pub created: bool,
}

/// One page of [`Engine::list`](crate::Engine::list).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs, in id order.
    pub runs: Vec<Run>,
    /// Pass as [`RunQuery::after`] for the next page; `None` on the last page.
    ///
    /// [`RunQuery::after`]: crate::RunQuery::after
    pub next: Option<String>,
}
