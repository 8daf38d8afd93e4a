//! Where subscriptions live: the [`WebhookStore`] trait and its in-memory implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use hookwire_core::BoxFuture;

use super::Subscription;

/// A store operation failed; the subscription change did not happen.
///
/// ```
/// let e = hookwire_webhook_sender::StoreError::new("redis down");
/// assert_eq!(e.to_string(), "webhook store failed: redis down");
/// ```
#[derive(Debug)]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl StoreError {
    /// Wraps the backend's error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(source.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook store failed: {}", self.0)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Persists subscriptions so they survive restarts and are shared by every node.
///
/// The [`crate::Dispatcher`] writes through the store before changing its in-memory view, so a
/// failed write leaves both unchanged.
pub trait WebhookStore: Send + Sync + fmt::Debug {
    /// A short name for logs (`memory`, `redis`).
    fn name(&self) -> &str;
    /// Every stored subscription.
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, StoreError>>;
    /// Adds or replaces `sub` (by id).
    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Removes a subscription; `true` when it existed.
    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// The default store: a map in memory (lost on restart).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use hookwire_webhook_sender::{MemoryWebhookStore, Subscription, WebhookStore};
/// let s = MemoryWebhookStore::default();
/// s.save(Subscription::new("a", "https://x.test/", &["*"]).unwrap()).await.unwrap();
/// assert_eq!(s.get_all().await.unwrap().len(), 1);
/// assert!(s.remove("a".into()).await.unwrap());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryWebhookStore {
    subs: Mutex<BTreeMap<String, Subscription>>,
}

impl MemoryWebhookStore {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Subscription>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl WebhookStore for MemoryWebhookStore {
    fn name(&self) -> &str {
        "memory"
    }
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, StoreError>> {
        let all = self.map().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), StoreError>> {
        self.map().insert(sub.id.clone(), sub);
        Box::pin(async { Ok(()) })
    }
    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        let existed = self.map().remove(&id).is_some();
        Box::pin(async move { Ok(existed) })
    }
}
