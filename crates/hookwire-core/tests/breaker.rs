//! Circuit breaker: every transition, bounded half-open probes under concurrency, fallback,
//! reset, the registry bound, and (with `tower`) the layer over a real TCP-connecting service.

use hookwire_core::breaker::{
    BreakerRegistry, CallError, CircuitBreaker, ConfigError, RegistryFull, State, Transition,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COOL: Duration = Duration::from_millis(80);

fn breaker(
    failures: u32,
    successes: u32,
    probes: u32,
) -> (CircuitBreaker, Arc<Mutex<Vec<Transition>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = CircuitBreaker::builder()
        .failure_threshold(failures)
        .success_threshold(successes)
        .half_open_probes(probes)
        .cool_down(COOL)
        .on_state_change(move |t| s.lock().unwrap().push(t))
        .build()
        .unwrap();
    (b, seen)
}

async fn fail(b: &CircuitBreaker) -> Result<(), CallError<&'static str>> {
    b.call(async { Err("boom") }).await
}

async fn succeed(b: &CircuitBreaker) -> Result<(), CallError<&'static str>> {
    b.call(async { Ok(()) }).await
}

fn moves(seen: &Mutex<Vec<Transition>>) -> Vec<(State, State)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to))
        .collect()
}

#[test]
fn build_refuses_zero_options() {
    let b = || CircuitBreaker::builder();
    assert_eq!(
        b().failure_threshold(0).build().unwrap_err(),
        ConfigError::ZeroFailureThreshold
    );
    assert_eq!(
        b().success_threshold(0).build().unwrap_err(),
        ConfigError::ZeroSuccessThreshold
    );
    assert_eq!(
        b().half_open_probes(0).build().unwrap_err(),
        ConfigError::ZeroProbes
    );
    assert_eq!(
        b().cool_down(Duration::ZERO).build().unwrap_err(),
        ConfigError::ZeroCoolDown
    );
    assert_eq!(
        BreakerRegistry::<u8>::new(b(), 0).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        BreakerRegistry::<u8>::new(b().half_open_probes(0), 4).unwrap_err(),
        ConfigError::ZeroProbes
    );
}

#[tokio::test]
async fn closed_opens_exactly_at_the_failure_threshold_and_success_resets_the_count() {
    let (b, seen) = breaker(3, 1, 1);
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    succeed(&b).await.unwrap();
    fail(&b).await.unwrap_err();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Closed);
    assert!(matches!(fail(&b).await, Err(CallError::Inner("boom"))));
    assert_eq!(b.state(), State::Open);
    assert_eq!(moves(&seen), vec![(State::Closed, State::Open)]);
}

#[tokio::test]
async fn open_refuses_without_running_the_future() {
    let (b, _) = breaker(1, 1, 1);
    fail(&b).await.unwrap_err();
    let ran = AtomicUsize::new(0);
    let r = b
        .call(async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
    let Err(CallError::Open(open)) = r else {
        panic!("expected Open, got {r:?}")
    };
    assert!(open.retry_after.is_some_and(|d| d <= COOL));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let s = b.stats();
    assert_eq!((s.calls, s.failures, s.rejected), (1, 1, 1));
}

#[tokio::test]
async fn open_moves_to_half_open_after_the_cool_down_and_closes_after_the_success_threshold() {
    let (b, seen) = breaker(1, 2, 1);
    fail(&b).await.unwrap_err();
    tokio::time::sleep(COOL + Duration::from_millis(20)).await;
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.stats().half_open_successes, 1);
    succeed(&b).await.unwrap();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        moves(&seen),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
    let last = b.stats().last_transition.unwrap();
    assert_eq!((last.from, last.to), (State::HalfOpen, State::Closed));
}

#[tokio::test]
async fn a_failure_in_half_open_reopens_with_a_fresh_cool_down() {
    let (b, seen) = breaker(1, 3, 1);
    fail(&b).await.unwrap_err();
    tokio::time::sleep(COOL + Duration::from_millis(20)).await;
    succeed(&b).await.unwrap();
    fail(&b).await.unwrap_err();
    assert_eq!(b.state(), State::Open);
    assert!(succeed(&b).await.unwrap_err().is_open());
    assert_eq!(moves(&seen).last(), Some(&(State::HalfOpen, State::Open)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admits_only_the_configured_probes_under_concurrent_calls() {
    let (b, _) = breaker(1, 10, 3);
    fail(&b).await.unwrap_err();
    tokio::time::sleep(COOL + Duration::from_millis(20)).await;
    let running = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(51));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (b, running, release, gate) =
            (b.clone(), running.clone(), release.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            b.call(async {
                running.fetch_add(1, Ordering::SeqCst);
                // A semaphore, not a Notify: a permit added before this line runs is not lost.
                drop(release.acquire().await);
                Ok::<_, ()>(())
            })
            .await
        }));
    }
    gate.wait().await;
    // Let every task reach the breaker; admitted ones park on `release`.
    while b.stats().calls + b.stats().rejected < 50 + 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(b.stats().probes_in_flight, 3);
    release.add_permits(50);
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(CallError::Open(o)) => {
                assert_eq!(o.retry_after, None);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((admitted, refused), (3, 47));
    assert_eq!(running.load(Ordering::SeqCst), 3);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.stats().half_open_successes, 3);
}

#[tokio::test]
async fn a_cancelled_probe_frees_its_slot() {
    let (b, _) = breaker(1, 1, 1);
    fail(&b).await.unwrap_err();
    tokio::time::sleep(COOL + Duration::from_millis(20)).await;
    let permit = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(permit);
    assert_eq!(b.state(), State::HalfOpen);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn a_late_failure_from_before_a_transition_does_not_move_the_state() {
    let (b, _) = breaker(1, 1, 1);
    let slow = b.try_acquire().unwrap();
    b.trip();
    tokio::time::sleep(COOL + Duration::from_millis(20)).await;
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
    slow.failure();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().failures, 1);
}

#[tokio::test]
async fn fallback_answers_only_refused_calls() {
    let (b, _) = breaker(1, 1, 1);
    let r = b.call_or(async { Err::<u32, _>("real") }, |_| Ok(7)).await;
    assert_eq!(r, Err("real"));
    let r = b.call_or(async { Ok::<u32, &str>(1) }, |o| {
        assert!(o.retry_after.is_some());
        Ok(7)
    });
    assert_eq!(r.await, Ok(7));
}

#[tokio::test]
async fn reset_closes_and_clears_counters() {
    let (b, seen) = breaker(1, 1, 1);
    fail(&b).await.unwrap_err();
    assert!(succeed(&b).await.unwrap_err().is_open());
    b.reset();
    let s = b.stats();
    assert_eq!(s.state, State::Closed);
    assert_eq!(
        (s.calls, s.failures, s.rejected, s.consecutive_failures),
        (0, 0, 0, 0)
    );
    assert_eq!(s.last_transition, None);
    assert_eq!(
        moves(&seen),
        vec![(State::Closed, State::Open), (State::Open, State::Closed)]
    );
    succeed(&b).await.unwrap();
}

#[tokio::test]
async fn registry_is_bounded_and_never_evicts_an_open_breaker() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let reg = BreakerRegistry::new(
        CircuitBreaker::builder()
            .failure_threshold(1)
            .cool_down(COOL),
        2,
    )
    .unwrap()
    .on_state_change(move |k: &&str, t| h.lock().unwrap().push((*k, t.to)));
    let a = reg.get(&"a").unwrap();
    fail(&a).await.unwrap_err();
    let b1 = reg.get(&"b").unwrap();
    assert_eq!(reg.len(), 2);
    // Full: "c" evicts the closed "b", not the open "a".
    reg.get(&"c").unwrap();
    assert_eq!(reg.len(), 2);
    assert!(reg.peek(&"b").is_none());
    assert_eq!(reg.peek(&"a").unwrap().state(), State::Open);
    drop(b1);
    let c = reg.get(&"c").unwrap();
    fail(&c).await.unwrap_err();
    assert_eq!(reg.get(&"d").unwrap_err(), RegistryFull);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![("a", State::Open), ("c", State::Open)]
    );
    reg.reset_all();
    assert!(reg.stats().iter().all(|(_, s)| s.state == State::Closed));
    reg.get(&"d").unwrap();
    assert_eq!(reg.len(), 2);
}

#[cfg(feature = "tower")]
mod tower_layer_tests {
    use super::*;
    use hookwire_core::breaker::BreakerLayer;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower_layer::Layer;
    use tower_service::Service;

    /// Opens a real TCP connection to the address it is given.
    #[derive(Clone)]
    struct Connect;

    impl Service<SocketAddr> for Connect {
        type Response = ();
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = Result<(), std::io::Error>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, addr: SocketAddr) -> Self::Future {
            Box::pin(async move { tokio::net::TcpStream::connect(addr).await.map(drop) })
        }
    }

    #[tokio::test]
    async fn layer_opens_on_refused_connections_and_closes_once_the_server_is_back() {
        // Reserve a port, then close the listener so connections are refused.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let breaker = CircuitBreaker::builder()
            .failure_threshold(2)
            .cool_down(COOL)
            .build()
            .unwrap();
        let mut svc = BreakerLayer::new(breaker.clone()).layer(Connect);
        for _ in 0..2 {
            assert!(matches!(svc.call(addr).await, Err(CallError::Inner(_))));
        }
        assert!(svc.call(addr).await.unwrap_err().is_open());
        let _server = tokio::net::TcpListener::bind(addr).await.unwrap();
        assert!(
            svc.call(addr).await.unwrap_err().is_open(),
            "still cooling down"
        );
        tokio::time::sleep(COOL + Duration::from_millis(20)).await;
        svc.call(addr).await.unwrap();
        assert_eq!(svc.breaker().state(), State::Closed);
        assert_eq!(breaker.stats().rejected, 2);
    }
}
