//! Finalizing a claim: commit after success, release after failure, release on drop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::{FencingToken, IdempotencyStore};

/// How a claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalized {
    /// The key is done: duplicates are answered as replays.
    Committed,
    /// The key is free again: the sender's retry will be processed.
    Released,
    /// The claim was no longer ours (its lease expired and another request took the key), or
    /// the store failed; nothing changed.
    Lost,
}

/// A live claim on an idempotency key.
///
/// Finish it with [`ClaimGuard::finish`] (from the response status), [`ClaimGuard::commit`] or
/// [`ClaimGuard::release`]. Dropping an unfinished guard (handler panicked, client went away,
/// future cancelled) releases the key in the background so the sender's retry is processed.
#[derive(Debug)]
pub struct ClaimGuard {
    claim: Option<(Arc<dyn IdempotencyStore>, String, FencingToken)>,
}

impl ClaimGuard {
    /// Wraps a fresh claim.
    pub fn new(store: Arc<dyn IdempotencyStore>, key: String, token: FencingToken) -> Self {
        Self {
            claim: Some((store, key, token)),
        }
    }

    /// The claimed key.
    pub fn key(&self) -> &str {
        self.claim.as_ref().map_or("", |(_, k, _)| k.as_str())
    }

    /// Extends the claim to one full lease from now (work that outlives a lease, such as a slow
    /// app behind `hookwire listen`): `false` when the claim is no longer ours, the store
    /// cannot renew, or it failed.
    pub async fn renew(&self) -> bool {
        let Some((store, key, token)) = &self.claim else {
            return false;
        };
        match store.renew(key, token).await {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::warn!(key, error = %e, "renewing the claim failed");
                false
            }
        }
    }

    /// Runs `work` while renewing this claim every third of `lease`, so a duplicate arriving
    /// while the work outlives a lease is refused (409) instead of processed a second time.
    /// Renewing stops at the first refusal (the claim is no longer ours, or the store cannot
    /// renew), which is logged. Cancel safe: dropping the future drops `work`. An example is in
    /// the crate guide ("Slow handlers").
    pub async fn renew_while<T>(&self, lease: Duration, work: impl Future<Output = T>) -> T {
        renewing(lease, self.key(), || self.renew(), work).await
    }

    /// Commits for a status below 400, releases otherwise (the rule every adapter applies).
    pub async fn finish(self, status: u16) -> Finalized {
        if status < 400 {
            self.commit().await
        } else {
            self.release().await
        }
    }

    /// Marks the key done.
    pub async fn commit(mut self) -> Finalized {
        let Some((store, key, token)) = self.claim.take() else {
            return Finalized::Lost;
        };
        let committed = match store.commit_now(&key, &token) {
            Some(r) => r,
            None => store.commit(&key, &token).await,
        };
        committed_as(&key, committed)
    }

    /// [`ClaimGuard::finish`] without waiting when the store answers at once (the in-process
    /// store); otherwise the future that finishes it. Keeps the tower layer's hot path free of
    /// boxed futures.
    pub(crate) fn finish_now(
        mut self,
        status: u16,
    ) -> Result<Finalized, Pin<Box<dyn Future<Output = Finalized> + Send + 'static>>> {
        let Some((store, key, token)) = self.claim.take() else {
            return Ok(Finalized::Lost);
        };
        let commit = status < 400;
        let now = if commit {
            store.commit_now(&key, &token)
        } else {
            store.release_now(&key, &token)
        };
        match now {
            Some(r) if commit => Ok(committed_as(&key, r)),
            Some(r) => Ok(released_as(&key, r)),
            None => Err(Box::pin(async move {
                if commit {
                    committed_as(&key, store.commit(&key, &token).await)
                } else {
                    released_as(&key, store.release(&key, &token).await)
                }
            })),
        }
    }

    /// Frees the key.
    pub async fn release(mut self) -> Finalized {
        let Some((store, key, token)) = self.claim.take() else {
            return Finalized::Lost;
        };
        release_now(&*store, &key, &token).await
    }
}

/// Runs `work`, calling `renew` every third of `lease` (at least every 10 ms) until it
/// finishes or `renew` first answers `false`: the one renewal loop of `ClaimGuard` users
/// (`hookwire listen --forward-to`) and the API idempotency layer.
pub(crate) async fn renewing<T, R, F>(
    lease: Duration,
    key: &str,
    mut renew: R,
    work: impl Future<Output = T>,
) -> T
where
    R: FnMut() -> F,
    F: Future<Output = bool>,
{
    let mut work = std::pin::pin!(work);
    let period = (lease / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewable = true;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick(), if renewable => {
                if !renew().await {
                    renewable = false;
                    tracing::warn!(
                        key,
                        "could not renew the claim; a duplicate may be processed after the lease"
                    );
                }
            }
        }
    }
}

async fn release_now(store: &dyn IdempotencyStore, key: &str, token: &FencingToken) -> Finalized {
    let released = match store.release_now(key, token) {
        Some(r) => r,
        None => store.release(key, token).await,
    };
    released_as(key, released)
}

fn committed_as(key: &str, committed: Result<bool, hookwire_core::StoreError>) -> Finalized {
    match committed {
        Ok(true) => Finalized::Committed,
        Ok(false) => {
            tracing::warn!(
                key,
                "claim expired before commit; a duplicate may be processed"
            );
            Finalized::Lost
        }
        Err(e) => {
            tracing::error!(key, error = %e, "commit failed");
            Finalized::Lost
        }
    }
}

fn released_as(key: &str, released: Result<bool, hookwire_core::StoreError>) -> Finalized {
    match released {
        Ok(true) => Finalized::Released,
        Ok(false) => Finalized::Lost,
        Err(e) => {
            // The lease expires by itself, so the key frees up after it anyway.
            tracing::error!(key, error = %e, "release failed; the key frees when its lease ends");
            Finalized::Lost
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some((store, key, token)) = self.claim.take() else {
            return;
        };
        tracing::debug!(key, "claim dropped unfinished; releasing");
        if let Some(r) = store.release_now(&key, &token) {
            released_as(&key, r);
            return;
        }
        // Stores that wait on I/O need the runtime. Without one the lease expiry frees the key.
        let mut fut = Box::pin(async move { released_as(&key, store.release(&key, &token).await) });
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if fut.as_mut().poll(&mut cx).is_pending()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(fut);
        }
    }
}
