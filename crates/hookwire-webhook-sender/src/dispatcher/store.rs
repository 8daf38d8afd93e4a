//! Where subscriptions live: the [`WebhookStore`] trait and its in-memory implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use hookwire_core::BoxFuture;

use super::Subscription;
use crate::error::Error;

/// Persists subscriptions so they survive restarts and are shared by every node.
///
/// Failures are [`Error`]s of kind [`crate::ErrorKind::Store`] ([`Error::store`]), with the
/// backend's error as their source.
///
/// The [`crate::Dispatcher`] writes through the store before changing its in-memory view, so a
/// failed write leaves both unchanged.
pub trait WebhookStore: Send + Sync + fmt::Debug {
    /// A short name for logs (`memory`, `redis`).
    fn name(&self) -> &str;
    /// Every stored subscription.
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, Error>>;
    /// Adds or replaces `sub` (by id).
    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), Error>>;
    /// Removes a subscription; `true` when it existed.
    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, Error>>;
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
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<Subscription>, Error>> {
        let all = self.map().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
    fn save(&self, sub: Subscription) -> BoxFuture<'_, Result<(), Error>> {
        self.map().insert(sub.id.clone(), sub);
        Box::pin(async { Ok(()) })
    }
    fn remove(&self, id: String) -> BoxFuture<'_, Result<bool, Error>> {
        let existed = self.map().remove(&id).is_some();
        Box::pin(async move { Ok(existed) })
    }
}
