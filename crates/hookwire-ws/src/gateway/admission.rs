//! Who may join a room: the scope rules first, then the room policy — synchronous, or
//! asynchronous under a time limit. Every doubt refuses (fail closed): a policy that errs, or
//! does not answer within its limit, refuses the join.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::BoxFuture;
use hookwire_core::scope::ScopeRules;

use crate::Identity;
use crate::frame::ErrorCode;

/// The error an asynchronous room policy may return (it refuses the join and is logged).
pub(crate) type PolicyError = Box<dyn std::error::Error + Send + Sync + 'static>;

type SyncPolicy = Arc<dyn Fn(&Identity, &str) -> bool + Send + Sync>;
type AsyncPolicy =
    Arc<dyn Fn(Identity, String) -> BoxFuture<'static, Result<bool, PolicyError>> + Send + Sync>;

/// Longest an asynchronous room policy may take by default before the join is refused.
pub const DEFAULT_POLICY_TIMEOUT: Duration = Duration::from_secs(5);

/// A room policy: a plain predicate, or a future (a lookup) with a time limit.
#[derive(Clone)]
pub(crate) enum RoomPolicy {
    Sync(SyncPolicy),
    Async(AsyncPolicy),
}

impl RoomPolicy {
    pub(crate) fn sync(f: impl Fn(&Identity, &str) -> bool + Send + Sync + 'static) -> Self {
        Self::Sync(Arc::new(f))
    }

    pub(crate) fn from_async<F, Fut, E>(f: F) -> Self
    where
        F: Fn(Identity, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, E>> + Send + 'static,
        E: Into<PolicyError> + 'static,
    {
        Self::Async(Arc::new(move |who, room| {
            let fut = f(who, room);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }))
    }
}

/// Why a join (or an SSE stream) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A scope rule applies and the identity lacks this scope.
    Scope(Box<str>),
    /// The policy said no.
    Denied,
    /// The asynchronous policy failed (or is asynchronous where only a synchronous answer can
    /// be used).
    Failed,
    /// The asynchronous policy did not answer within its limit.
    TimedOut,
}

impl Refusal {
    /// The `error` frame code and message for a WebSocket client.
    pub(crate) fn frame(&self) -> (ErrorCode, String) {
        match self {
            Refusal::Scope(s) => (
                ErrorCode::InsufficientScope,
                format!("this room requires scope {s}"),
            ),
            Refusal::Denied => (ErrorCode::Forbidden, "subscription denied".to_owned()),
            Refusal::Failed => (
                ErrorCode::PolicyUnavailable,
                "the room policy failed; the join is refused".to_owned(),
            ),
            Refusal::TimedOut => (
                ErrorCode::PolicyUnavailable,
                "the room policy did not answer in time; the join is refused".to_owned(),
            ),
        }
    }
}

/// Scope rules + room policy + the policy's time limit: one value shared by the WebSocket side
/// and the event gateway's SSE side.
#[derive(Clone)]
pub(crate) struct Admission {
    pub(crate) rules: ScopeRules,
    pub(crate) policy: Option<RoomPolicy>,
    pub(crate) timeout: Duration,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            rules: ScopeRules::new(),
            policy: None,
            timeout: DEFAULT_POLICY_TIMEOUT,
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("rules", &self.rules)
            .field(
                "policy",
                &match &self.policy {
                    None => "none",
                    Some(RoomPolicy::Sync(_)) => "sync",
                    Some(RoomPolicy::Async(_)) => "async",
                },
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Admission {
    fn scope(&self, who: &Identity, room: &str) -> Result<(), Refusal> {
        match self.rules.missing_for_room(room, who.scopes()) {
            Some(s) => Err(Refusal::Scope(Box::from(s))),
            None => Ok(()),
        }
    }

    /// The decision without awaiting: an asynchronous policy cannot answer here and refuses
    /// ([`Refusal::Failed`]).
    pub(crate) fn decide_now(&self, who: &Identity, room: &str) -> Result<(), Refusal> {
        self.scope(who, room)?;
        match &self.policy {
            None => Ok(()),
            Some(RoomPolicy::Sync(p)) => p(who, room).then_some(()).ok_or(Refusal::Denied),
            Some(RoomPolicy::Async(_)) => Err(Refusal::Failed),
        }
    }

    /// The room policy alone (no scope rules) for every room in `rooms`, under one time limit.
    pub(crate) async fn policy_for_all(
        &self,
        who: &Identity,
        rooms: &[&str],
    ) -> Result<(), Refusal> {
        let Some(RoomPolicy::Async(p)) = &self.policy else {
            return match &self.policy {
                Some(RoomPolicy::Sync(p)) if !rooms.iter().all(|r| p(who, r)) => {
                    Err(Refusal::Denied)
                }
                _ => Ok(()),
            };
        };
        let all = async {
            for room in rooms {
                match p(who.clone(), (*room).to_owned()).await {
                    Ok(true) => {}
                    Ok(false) => return Err(Refusal::Denied),
                    Err(e) => {
                        tracing::warn!(room = %room, error = %e, "room policy failed; join refused");
                        return Err(Refusal::Failed);
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, all).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "room policy timed out; join refused");
                Err(Refusal::TimedOut)
            }
        }
    }

    /// The full decision for one room: scope rules, then the policy (awaited under the time
    /// limit when asynchronous).
    pub(crate) async fn decide(&self, who: &Identity, room: &str) -> Result<(), Refusal> {
        self.scope(who, room)?;
        self.policy_for_all(who, &[room]).await
    }
}
