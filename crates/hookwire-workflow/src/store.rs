//! The storage boundary: what a run store must do, and the in-memory store next to it.
//!
//! A store keeps one document per run with a revision. Every transition of a run is one
//! [`RunStore::replace`] (compare-and-set on the revision): the run's state, its journal and the
//! next task it expects change together or not at all. A Redis store does this with one script
//! per call over keys that share the run's hash tag, so a run lives in one Cluster slot.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use hookwire_core::BoxFuture;

use crate::error::{Error, Result};
use crate::run::RunStatus;

/// One run as a store keeps it: the fields it indexes, a revision for compare-and-set, and the
/// document itself (JSON text the store never needs to read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunDoc {
    /// The run id (time-sortable: id order is start order to the millisecond).
    pub id: String,
    /// The workflow id (listing filter).
    pub workflow: String,
    /// The owning organization (listing filter and tenant scope).
    pub organization: Option<String>,
    /// The status (listing filter).
    pub status: RunStatus,
    /// Bumped by every write; [`RunStore::replace`] compares it.
    pub rev: u64,
    /// The run document (JSON).
    pub body: String,
}

impl RunDoc {
    /// A document (for store implementations and tests).
    pub fn new(
        id: impl Into<String>,
        workflow: impl Into<String>,
        organization: Option<String>,
        status: RunStatus,
        rev: u64,
        body: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            workflow: workflow.into(),
            organization,
            status,
            rev,
            body: body.into(),
        }
    }
}

/// What [`RunStore::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inserted {
    /// The run is stored.
    New,
    /// A run with the same idempotency key exists (whatever its status): nothing was stored.
    Existing(RunDoc),
}

/// What [`RunStore::replace_or_current`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replaced {
    /// The document is stored.
    Written,
    /// The stored revision was not the expected one: nothing was written. Holds the stored
    /// document (`None`: the run is gone), so the caller can retry without another read.
    Stale(Option<RunDoc>),
}

/// A page request for [`RunStore::list`]; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunQuery {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this organization (`None`: any, including none).
    pub organization: Option<String>,
    /// Only runs whose id sorts after this one (the previous page's last id).
    pub after: Option<String>,
    /// Most runs returned (the engine caps it at [`crate::MAX_PAGE`]).
    pub limit: usize,
}

impl RunQuery {
    /// A query for the first `limit` runs.
    ///
    /// ```
    /// use hookwire_workflow::{RunQuery, RunStatus};
    /// let q = RunQuery::new(50).workflow("order").status(RunStatus::Waiting);
    /// assert_eq!(q.limit, 50);
    /// ```
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }
    /// Filters by workflow.
    #[must_use]
    pub fn workflow(mut self, id: impl Into<String>) -> Self {
        self.workflow = Some(id.into());
        self
    }
    /// Filters by status.
    #[must_use]
    pub fn status(mut self, s: RunStatus) -> Self {
        self.status = Some(s);
        self
    }
    /// Starts after the run id `after`.
    #[must_use]
    pub fn after(mut self, after: impl Into<String>) -> Self {
        self.after = Some(after.into());
        self
    }
    /// True when `doc` passes the filters (for store implementations).
    pub fn matches(&self, doc: &RunDoc) -> bool {
        self.workflow.as_ref().is_none_or(|w| *w == doc.workflow)
            && self.status.is_none_or(|s| s == doc.status)
            && self
                .organization
                .as_ref()
                .is_none_or(|o| doc.organization.as_ref() == Some(o))
            && self.after.as_ref().is_none_or(|a| doc.id > *a)
    }
}

/// Where runs live. Every method is one atomic operation.
///
/// Cancel safety: dropping a returned future may or may not have applied the operation; the
/// engine treats that like a failed call and re-reads the run before trying again.
pub trait RunStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new run. With an idempotency key, a second insert with the same key stores
    /// nothing and returns the first run, for as long as that run is stored.
    fn insert<'a>(
        &'a self,
        doc: RunDoc,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Inserted>>;

    /// One run's document.
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDoc>>>;

    /// Writes `doc` if the stored revision is `expected_rev` (then stored as `doc.rev`); returns
    /// whether it did.
    fn replace<'a>(&'a self, doc: RunDoc, expected_rev: u64) -> BoxFuture<'a, Result<bool>>;

    /// [`RunStore::replace`], answering a lost compare-and-set with the stored document. The
    /// engine writes every transition through this; the default is `replace` then `load`, a
    /// store that can do both in one round trip (the Redis store's transition script) should.
    fn replace_or_current<'a>(
        &'a self,
        doc: RunDoc,
        expected_rev: u64,
    ) -> BoxFuture<'a, Result<Replaced>> {
        Box::pin(async move {
            let id = doc.id.clone();
            if self.replace(doc, expected_rev).await? {
                return Ok(Replaced::Written);
            }
            Ok(Replaced::Stale(self.load(&id).await?))
        })
    }

    /// Runs matching `query`, in id order, at most `query.limit`.
    fn list<'a>(&'a self, query: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunDoc>>>;
}

/// Runs kept by [`MemoryRunStore`] before it evicts the oldest finished ones.
pub const DEFAULT_MEMORY_RUNS: usize = 100_000;

/// The embedded run store: for tests, demos and single-process apps (runs do not survive the
/// process). Holds at most `capacity` runs: when full, the oldest finished run is evicted; if
/// every run is still active, a new run is refused with [`crate::ErrorKind::Limit`].
///
/// ```
/// let store = hookwire_workflow::MemoryRunStore::new();
/// assert_eq!(store.len(), 0);
/// ```
pub struct MemoryRunStore {
    capacity: usize,
    inner: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    runs: BTreeMap<String, (RunDoc, Option<String>)>,
    keys: HashMap<String, String>,
}

impl fmt::Debug for MemoryRunStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRunStore")
            .field("runs", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for MemoryRunStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRunStore {
    /// An empty store holding up to [`DEFAULT_MEMORY_RUNS`] runs.
    pub fn new() -> Self {
        Self::sized(DEFAULT_MEMORY_RUNS)
    }
    /// An empty store holding up to `capacity` runs. A capacity of 0 (no run could ever be
    /// stored) is refused (`ErrorKind::Config`).
    pub fn with_capacity(capacity: usize) -> crate::Result<Self> {
        if capacity == 0 {
            return Err(crate::Error::config(
                "MemoryRunStore capacity must be at least 1, got 0",
            ));
        }
        Ok(Self::sized(capacity))
    }
    fn sized(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Tables::default()),
        }
    }
    /// Runs stored.
    pub fn len(&self) -> usize {
        self.tables().runs.len()
    }
    /// True when no run is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-written entry: every write is one
        // insert of a complete document.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RunStore for MemoryRunStore {
    fn insert<'a>(
        &'a self,
        doc: RunDoc,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Inserted>> {
        Box::pin(async move {
            let mut t = self.tables();
            if let Some(k) = idempotency_key
                && let Some(id) = t.keys.get(k)
                && let Some((existing, _)) = t.runs.get(id)
            {
                return Ok(Inserted::Existing(existing.clone()));
            }
            if t.runs.len() >= self.capacity {
                let victim = t
                    .runs
                    .iter()
                    .find(|(_, (d, _))| d.status.is_terminal())
                    .map(|(id, (_, k))| (id.clone(), k.clone()));
                let Some((id, key)) = victim else {
                    return Err(Error::limit(format!(
                        "the memory store holds {} active runs, its capacity",
                        self.capacity
                    )));
                };
                t.runs.remove(&id);
                if let Some(k) = key {
                    t.keys.remove(&k);
                }
            }
            if t.runs.contains_key(&doc.id) {
                return Err(Error::invalid(format!("run {} exists", doc.id)));
            }
            let key = idempotency_key.map(str::to_owned);
            if let Some(k) = &key {
                t.keys.insert(k.clone(), doc.id.clone());
            }
            t.runs.insert(doc.id.clone(), (doc, key));
            Ok(Inserted::New)
        })
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDoc>>> {
        Box::pin(async move { Ok(self.tables().runs.get(id).map(|(d, _)| d.clone())) })
    }

    fn replace<'a>(&'a self, doc: RunDoc, expected_rev: u64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut t = self.tables();
            match t.runs.get_mut(&doc.id) {
                Some((cur, _)) if cur.rev == expected_rev => {
                    *cur = doc;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn replace_or_current<'a>(
        &'a self,
        doc: RunDoc,
        expected_rev: u64,
    ) -> BoxFuture<'a, Result<Replaced>> {
        Box::pin(async move {
            let mut t = self.tables();
            match t.runs.get_mut(&doc.id) {
                Some((cur, _)) if cur.rev == expected_rev => {
                    *cur = doc;
                    Ok(Replaced::Written)
                }
                Some((cur, _)) => Ok(Replaced::Stale(Some(cur.clone()))),
                None => Ok(Replaced::Stale(None)),
            }
        })
    }

    fn list<'a>(&'a self, query: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunDoc>>> {
        Box::pin(async move {
            let t = self.tables();
            let start = query.after.clone().unwrap_or_default();
            Ok(t.runs
                .range(start..)
                .map(|(_, (d, _))| d)
                .filter(|d| query.matches(d))
                .take(query.limit)
                .cloned()
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, status: RunStatus) -> RunDoc {
        RunDoc::new(id, "w", None, status, 1, "{}")
    }

    #[tokio::test]
    async fn a_full_store_evicts_the_oldest_finished_run_and_refuses_when_all_are_active() {
        let s = MemoryRunStore::with_capacity(2).unwrap();
        let zero = MemoryRunStore::with_capacity(0).unwrap_err();
        assert_eq!(zero.kind(), crate::ErrorKind::Config);
        s.insert(doc("r1", RunStatus::Completed), Some("k1"))
            .await
            .unwrap();
        s.insert(doc("r2", RunStatus::Running), None).await.unwrap();
        s.insert(doc("r3", RunStatus::Running), None).await.unwrap();
        assert!(s.load("r1").await.unwrap().is_none());
        let full = s.insert(doc("r4", RunStatus::Running), None).await;
        assert!(full.unwrap_err().is_limit());
        // The evicted run's idempotency key is free again.
        assert_eq!(s.tables().keys.len(), 0);
    }

    #[tokio::test]
    async fn replace_is_a_compare_and_set_on_the_revision() {
        let s = MemoryRunStore::new();
        s.insert(doc("r1", RunStatus::Running), None).await.unwrap();
        let mut d = doc("r1", RunStatus::Waiting);
        d.rev = 2;
        assert!(!s.replace(d.clone(), 7).await.unwrap());
        assert!(s.replace(d.clone(), 1).await.unwrap());
        assert!(!s.replace(d, 1).await.unwrap(), "the old revision is gone");
    }
}
