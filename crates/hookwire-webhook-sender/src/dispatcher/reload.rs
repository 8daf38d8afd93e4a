//! Re-reading the store: [`Dispatcher::reload`] makes this node's view equal to the store, so
//! changes made through another node (or by hand) take effect here.

use std::collections::HashMap;
use std::sync::Arc;

use hookwire_core::PatternSet;

use super::{Dispatcher, Entry, State};
use crate::error::Error;

impl State {
    /// Rebuilds the matcher from the entries: registration is rare, matching is per event.
    pub(super) fn rebuild_set(&mut self) {
        let mut ids: Vec<&Arc<Entry>> = self.entries.values().collect();
        ids.sort_by(|a, b| a.sub.id.cmp(&b.sub.id));
        let mut set = PatternSet::new();
        for e in ids {
            for p in &e.sub.events {
                set.insert(p.clone(), e.sub.id.clone());
            }
        }
        self.set = set;
    }
}

impl Dispatcher {
    /// Makes this dispatcher's subscriptions exactly those in the store: new ones are added,
    /// changed ones replaced, removed ones dropped. A subscription that did not change keeps its
    /// endpoint health (breaker state, failure streak) and rate bucket. Returns how many
    /// subscriptions are installed. Invalid stored subscriptions are skipped with a warning,
    /// and at most `max_subscriptions` are installed (by id order).
    ///
    /// Use it when another node may have changed the store; [`Dispatcher::load`] only adds.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use hookwire_webhook_sender::{Dispatcher, MemoryWebhookStore, Subscription, WebhookStore};
    /// let store = Arc::new(MemoryWebhookStore::default());
    /// let d = Dispatcher::builder().store(store.clone()).build().unwrap();
    /// d.register(Subscription::new("a", "https://a.example/", &["*"]).unwrap()).await.unwrap();
    /// // Another node removes `a` and adds `b` in the shared store.
    /// store.remove("a".into()).await.unwrap();
    /// store.save(Subscription::new("b", "https://b.example/", &["*"]).unwrap()).await.unwrap();
    /// assert_eq!(d.reload().await.unwrap(), 1);
    /// assert!(d.get("a").is_none() && d.get("b").is_some());
    /// # });
    /// ```
    pub async fn reload(&self) -> Result<usize, Error> {
        let _w = self.inner.write.lock().await;
        let mut all = self.inner.store.get_all().await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let current: HashMap<String, Arc<Entry>> = self.state().entries.clone();
        let mut next = HashMap::with_capacity(all.len().min(self.inner.max_subscriptions));
        for sub in all {
            if next.len() >= self.inner.max_subscriptions {
                tracing::warn!(
                    limit = self.inner.max_subscriptions,
                    "the store holds more subscriptions than max_subscriptions; the rest are ignored"
                );
                break;
            }
            match current.get(&sub.id) {
                Some(e) if e.sub == sub => {
                    next.insert(sub.id.clone(), Arc::clone(e));
                }
                _ => {
                    let id = sub.id.clone();
                    match self.build_entry(sub) {
                        Ok(e) => {
                            next.insert(id, Arc::new(e));
                        }
                        Err(e) => tracing::warn!(%id, error = %e, "skipping stored subscription"),
                    }
                }
            }
        }
        let n = next.len();
        let mut st = self
            .inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.entries = next;
        st.rebuild_set();
        Ok(n)
    }
}
