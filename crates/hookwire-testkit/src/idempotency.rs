//! The `IdempotencyStore` conformance suite.
//!
//! Each case is a `pub async fn` taking a factory that builds a fresh, empty store for a given
//! configuration; [`crate::idempotency_conformance!`] expands one `#[tokio::test]` per case. The
//! memory store, the Redis store and anything a user writes run the same cases, so they cannot
//! drift.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::{Claim, FencingToken, IdempotencyConfig, IdempotencyStore};

/// Builds a fresh store (with unique keys space) for a configuration.
pub type Factory = dyn Fn(IdempotencyConfig) -> Arc<dyn IdempotencyStore> + Send + Sync;

fn cfg(lease_ms: u64, ttl_ms: u64) -> IdempotencyConfig {
    IdempotencyConfig::default()
        .with_lease(Duration::from_millis(lease_ms))
        .with_ttl(Duration::from_millis(ttl_ms))
}

async fn fresh(s: &dyn IdempotencyStore, key: &str) -> FencingToken {
    match s.claim(key).await {
        Ok(Claim::Fresh(t)) => t,
        other => panic!("expected a fresh claim of {key:?}, got {other:?}"),
    }
}

/// claim → in flight → commit → done.
pub async fn claim_commit_then_done(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    let t = fresh(&*s, "k1").await;
    match s.claim("k1").await.unwrap() {
        Claim::InFlight { retry_after } => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("duplicate while in flight must be InFlight, got {other:?}"),
    }
    assert!(s.commit("k1", &t).await.unwrap());
    assert_eq!(s.claim("k1").await.unwrap(), Claim::Done);
    assert_eq!(s.claim("k1").await.unwrap(), Claim::Done);
}

/// A release frees the key so the sender's retry is processed.
pub async fn release_frees_the_key(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    let t = fresh(&*s, "k2").await;
    assert!(s.release("k2", &t).await.unwrap());
    let t2 = fresh(&*s, "k2").await;
    assert_ne!(t, t2, "a new claim gets a new token");
}

/// Commit and release need the current token; a second finalization is refused.
pub async fn finalizing_twice_or_with_a_foreign_token_is_refused(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    let t = fresh(&*s, "k3").await;
    assert!(!s.commit("k3", &FencingToken::new("forged")).await.unwrap());
    assert!(!s.release("k3", &FencingToken::new("forged")).await.unwrap());
    assert!(s.commit("k3", &t).await.unwrap());
    assert!(!s.commit("k3", &t).await.unwrap());
    assert!(
        !s.release("k3", &t).await.unwrap(),
        "release after commit must not free a done key"
    );
    assert_eq!(s.claim("k3").await.unwrap(), Claim::Done);
}

/// An expired lease frees the key, and the stale holder can no longer commit or release it.
pub async fn stale_holder_cannot_touch_a_newer_claim(make: &Factory) {
    let s = make(cfg(150, 60_000));
    let old = fresh(&*s, "k4").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = fresh(&*s, "k4").await;
    assert!(
        !s.release("k4", &old).await.unwrap(),
        "stale release must be fenced off"
    );
    assert!(
        !s.commit("k4", &old).await.unwrap(),
        "stale commit must be fenced off"
    );
    assert!(matches!(
        s.claim("k4").await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(s.commit("k4", &new).await.unwrap());
    assert_eq!(s.claim("k4").await.unwrap(), Claim::Done);
}

/// A committed key is fresh again after the TTL.
pub async fn done_keys_expire_after_the_ttl(make: &Factory) {
    let s = make(cfg(60_000, 200));
    let t = fresh(&*s, "k5").await;
    assert!(s.commit("k5", &t).await.unwrap());
    assert_eq!(s.claim("k5").await.unwrap(), Claim::Done);
    tokio::time::sleep(Duration::from_millis(400)).await;
    fresh(&*s, "k5").await;
}

/// Keys do not interfere.
pub async fn keys_are_independent(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    let a = fresh(&*s, "a").await;
    let _b = fresh(&*s, "b").await;
    assert!(s.commit("a", &a).await.unwrap());
    assert!(matches!(
        s.claim("b").await.unwrap(),
        Claim::InFlight { .. }
    ));
    fresh(&*s, "c").await;
    // Keys that only differ in case or in characters a separator might use stay distinct.
    fresh(&*s, "A").await;
    fresh(&*s, "a:b").await;
    fresh(&*s, "a}b{").await;
}

/// Many tasks claim one key at once: exactly one wins; after its commit all see Done.
pub async fn concurrent_claims_have_exactly_one_winner(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    for round in 0..20 {
        let key = format!("race-{round}");
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = s.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move { s.claim(&key).await }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Claim::Fresh(tok) = t.await.unwrap().unwrap() {
                winners.push(tok);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one claim must win"
        );
        assert!(s.commit(&key, &winners[0]).await.unwrap());
    }
}

/// Many keys, many tasks, claim/commit/release interleaved: every key ends done exactly once.
pub async fn concurrent_mixed_workload_processes_each_key_once(make: &Factory) {
    let s = make(cfg(60_000, 60_000));
    let processed = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let s = s.clone();
        let processed = processed.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("mix-{}", (i * 7 + worker) % 50);
                let mut failed_once = false;
                loop {
                    match s.claim(&key).await.unwrap() {
                        Claim::Fresh(t) => {
                            // Every third request's first attempt "fails" and releases; the
                            // retry must then be processed.
                            if (i + worker) % 3 == 0 && !failed_once {
                                failed_once = true;
                                assert!(s.release(&key, &t).await.unwrap());
                                tokio::task::yield_now().await;
                                continue;
                            }
                            *processed.lock().unwrap().entry(key.clone()).or_default() += 1;
                            assert!(s.commit(&key, &t).await.unwrap());
                            break;
                        }
                        Claim::InFlight { .. } => tokio::task::yield_now().await,
                        Claim::Done => break,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = processed.lock().unwrap();
    assert_eq!(p.len(), 50);
    assert!(
        p.values().all(|&n| n == 1),
        "each key processed once: {p:?}"
    );
}

/// Expands one `#[tokio::test]` per conformance case for a store factory expression of type
/// `Fn(IdempotencyConfig) -> Arc<dyn IdempotencyStore>`.
#[macro_export]
macro_rules! idempotency_conformance {
    ($factory:expr) => {
        $crate::idempotency_conformance!(@cases $factory;
            claim_commit_then_done,
            release_frees_the_key,
            finalizing_twice_or_with_a_foreign_token_is_refused,
            stale_holder_cannot_touch_a_newer_claim,
            done_keys_expire_after_the_ttl,
            keys_are_independent,
            concurrent_claims_have_exactly_one_winner,
            concurrent_mixed_workload_processes_each_key_once,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::idempotency::$case(&factory).await;
            }
        )*
    };
}
