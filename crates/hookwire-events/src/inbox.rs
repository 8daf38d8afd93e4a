//! The inbox: exactly-once effects for at-least-once delivery, keyed by (group, event id) on
//! any [`IdempotencyStore`].

use std::future::Future;

use hookwire_core::{Claim, Event, IdempotencyStore};

use crate::handler::HandlerError;

/// Runs a side effect at most once per (group, event id), however often the event is
/// redelivered.
///
/// The effect runs under a claim: success commits the key (later deliveries skip the effect),
/// failure releases it (the redelivery runs it again). While another node holds the claim the
/// call fails with a retryable error, so the bus redelivers later. The store's TTL must exceed
/// the longest redelivery horizon (retries + claim idle time), or a late duplicate runs again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookwire_core::{Event, MemoryStore};
/// let inbox = hookwire_events::Inbox::new(MemoryStore::new(hookwire_core::IdempotencyConfig::default()));
/// let e = Event::new("order.paid", serde_json::Value::Null);
/// let first = inbox.once("billing", &e, || async { Ok::<_, std::io::Error>(1) }).await.unwrap();
/// let again = inbox.once("billing", &e, || async { Ok::<_, std::io::Error>(1) }).await.unwrap();
/// assert_eq!((first, again), (Some(1), None));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Inbox<S> {
    store: S,
}

impl<S: IdempotencyStore> Inbox<S> {
    /// An inbox on `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Runs `effect` unless it already succeeded for (`group`, `event.id`): `Some(output)` when
    /// it ran now, `None` when it had already run.
    pub async fn once<F, Fut, T, E>(
        &self,
        group: &str,
        event: &Event,
        effect: F,
    ) -> Result<Option<T>, HandlerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<HandlerError>,
    {
        // Length-prefixing the group keeps ("a:b", "c") and ("a", "b:c") apart.
        let key = format!("inbox:{}:{group}:{}", group.len(), event.id);
        let claim = match self.store.claim_now(&key) {
            Some(c) => c,
            None => self.store.claim(&key).await,
        }?;
        let token = match claim {
            Claim::Fresh(t) => t,
            Claim::Done => return Ok(None),
            Claim::InFlight { retry_after } => {
                return Err(format!(
                    "event {} is being handled elsewhere for group {group}; retry in {retry_after:?}",
                    event.id
                )
                .into());
            }
        };
        match effect().await {
            Ok(v) => {
                let committed = match self.store.commit_now(&key, &token) {
                    Some(c) => c,
                    None => self.store.commit(&key, &token).await,
                }?;
                if !committed {
                    tracing::warn!(
                        key,
                        "inbox lease expired before commit; the effect may repeat"
                    );
                }
                Ok(Some(v))
            }
            Err(e) => {
                let released = match self.store.release_now(&key, &token) {
                    Some(r) => r,
                    None => self.store.release(&key, &token).await,
                };
                if let Err(re) = released {
                    tracing::warn!(key, error = %re, "inbox release failed; the claim expires by itself");
                }
                Err(e.into())
            }
        }
    }
}
