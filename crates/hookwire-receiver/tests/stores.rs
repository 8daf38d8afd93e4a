//! Both stores pass the testkit's `IdempotencyStore` conformance suite; the Redis one against a
//! real redis-server.

use std::sync::Arc;

use hookwire_core::{IdempotencyConfig, IdempotencyStore, MemoryStore};

mod memory {
    use super::*;
    hookwire_testkit::idempotency_conformance!(|c: IdempotencyConfig| {
        Arc::new(MemoryStore::new(c)) as Arc<dyn IdempotencyStore>
    });
}

#[cfg(feature = "redis")]
mod redis {
    use hookwire_core::idempotency::BoxFuture;
    use hookwire_core::{Claim, FencingToken, StoreError};
    use hookwire_receiver::RedisIdempotencyStore;
    use hookwire_testkit::RedisServer;

    use super::*;

    /// A store with its own redis-server, stopped when the store is dropped (a static server
    /// would outlive the test process).
    #[derive(Debug)]
    struct WithServer {
        store: RedisIdempotencyStore,
        _server: RedisServer,
    }

    impl IdempotencyStore for WithServer {
        fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>> {
            self.store.claim(key)
        }
        fn commit<'a>(
            &'a self,
            key: &'a str,
            token: &'a FencingToken,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.store.commit(key, token)
        }
        fn release<'a>(
            &'a self,
            key: &'a str,
            token: &'a FencingToken,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.store.release(key, token)
        }
        fn renew<'a>(
            &'a self,
            key: &'a str,
            token: &'a FencingToken,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.store.renew(key, token)
        }
    }

    fn make(c: IdempotencyConfig) -> Arc<dyn IdempotencyStore> {
        let server = RedisServer::start().expect("redis-server");
        let store = RedisIdempotencyStore::open(&server.url(), c).expect("url");
        Arc::new(WithServer {
            store,
            _server: server,
        })
    }

    hookwire_testkit::idempotency_conformance!(make);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_redis_is_an_unavailable_error_not_a_hang() {
        let port = hookwire_testkit::free_port();
        let s = RedisIdempotencyStore::open(
            &format!("redis://127.0.0.1:{port}"),
            IdempotencyConfig::default(),
        )
        .unwrap();
        let e = s.claim("k").await.unwrap_err();
        assert!(e.is_unavailable(), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_hash_tagged_keys_with_the_lease_as_ttl() {
        let server = RedisServer::start().expect("redis-server");
        let s = RedisIdempotencyStore::open(
            &server.url(),
            IdempotencyConfig::default().with_lease(std::time::Duration::from_secs(7)),
        )
        .unwrap()
        .with_prefix("tagcheck");
        let hookwire_core::Claim::Fresh(_) = s.claim("evt{1}").await.unwrap() else {
            panic!("fresh")
        };
        let ttl = server.command("PTTL tagcheck:{evt%7B1%7D}").unwrap();
        let ms: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!((1..=7000).contains(&ms), "pttl {ms}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_values_read_back_plain_commits_stay_done_and_remove_frees() {
        let server = RedisServer::start().expect("redis-server");
        let s = RedisIdempotencyStore::open(&server.url(), IdempotencyConfig::default()).unwrap();
        let hookwire_core::Claim::Fresh(t) = s.claim("a").await.unwrap() else {
            panic!("fresh")
        };
        assert_eq!(s.value("a").await.unwrap(), None, "in flight has no value");
        // Binary-safe, including a leading `d` and NUL bytes.
        let v = b"d\0\xffresp".to_vec();
        assert!(
            !s.commit_value("a", &FencingToken::random(), &v)
                .await
                .unwrap()
        );
        assert!(s.commit_value("a", &t, &v).await.unwrap());
        assert_eq!(s.value("a").await.unwrap(), Some(v));
        assert_eq!(s.claim("a").await.unwrap(), hookwire_core::Claim::Done);
        // A plain commit (the webhook path) is still done and carries no value.
        let hookwire_core::Claim::Fresh(t) = s.claim("b").await.unwrap() else {
            panic!("fresh")
        };
        assert!(s.commit("b", &t).await.unwrap());
        assert_eq!(s.claim("b").await.unwrap(), hookwire_core::Claim::Done);
        assert_eq!(s.value("b").await.unwrap(), None);
        assert!(s.remove("a").await.unwrap());
        assert!(!s.remove("a").await.unwrap());
        assert!(matches!(
            s.claim("a").await.unwrap(),
            hookwire_core::Claim::Fresh(_)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renew_extends_only_the_holders_live_claim() {
        let lease = std::time::Duration::from_millis(600);
        let s = make(IdempotencyConfig::default().with_lease(lease));
        let hookwire_core::Claim::Fresh(t) = s.claim("k").await.unwrap() else {
            panic!("fresh")
        };
        for _ in 0..3 {
            tokio::time::sleep(lease / 2).await;
            assert!(s.renew("k", &t).await.unwrap());
        }
        // 900 ms after the claim, past its first lease: still in flight.
        assert!(matches!(
            s.claim("k").await.unwrap(),
            hookwire_core::Claim::InFlight { .. }
        ));
        assert!(!s.renew("k", &FencingToken::random()).await.unwrap());
        assert!(s.commit("k", &t).await.unwrap());
        assert!(!s.renew("k", &t).await.unwrap(), "a done key is no claim");
        tokio::time::sleep(lease * 2).await;
        assert!(!s.renew("gone", &t).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_server_share_claims() {
        let server = RedisServer::start().expect("redis-server");
        let a = RedisIdempotencyStore::open(&server.url(), IdempotencyConfig::default()).unwrap();
        let b = RedisIdempotencyStore::open(&server.url(), IdempotencyConfig::default()).unwrap();
        let hookwire_core::Claim::Fresh(t) = a.claim("k").await.unwrap() else {
            panic!("fresh")
        };
        assert!(matches!(
            b.claim("k").await.unwrap(),
            hookwire_core::Claim::InFlight { .. }
        ));
        assert!(a.commit("k", &t).await.unwrap());
        assert_eq!(b.claim("k").await.unwrap(), hookwire_core::Claim::Done);
    }
}
