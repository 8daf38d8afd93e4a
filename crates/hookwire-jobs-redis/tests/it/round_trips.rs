//! Round trips per job: a busy worker stores finished jobs and claims the next ones in one
//! script call; a backend over one plain connection (`RedisBackend::new`) still wakes idle
//! workers; a Redis error stays reachable under the jobs error.

use std::time::Duration;

use hookwire_jobs::{DispatchOptions, JobDef, Jobs};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

/// Script calls (`EVALSHA` + `EVAL`) so far.
fn script_calls(server: &RedisServer) -> u64 {
    let text = server.command("INFO commandstats").expect("info");
    text.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|v| v.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_acks_and_claims_in_one_script_call() {
    let server = RedisServer::start().expect("redis-server");
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    const N: u64 = 60;
    let producer = Jobs::builder(backend.clone())
        .start()
        .await
        .expect("producer");
    let batch = (0..N)
        .map(|i| (i.to_string(), DispatchOptions::new()))
        .collect();
    producer.dispatch_bulk("busy", batch).await.expect("bulk");
    let before = script_calls(&server);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Concurrency 1: every finished job frees the only slot, so each ack could claim the next.
    let def = JobDef::new("busy", move |v: u64, _| {
        let _ = tx.send(v);
        async { Ok::<_, std::io::Error>(()) }
    })
    .concurrency(1);
    let jobs = Jobs::builder(backend.clone())
        .job(def)
        .start()
        .await
        .expect("start");
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("job ran")
            .expect("open");
    }
    let counts = loop {
        let c = jobs.counts("busy").await.expect("counts");
        if c.completed == N {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counts.completed, N);
    let used = script_calls(&server) - before;
    // One claim per job (acking the previous one) plus the first claim, the start-up stalled
    // check and the counts calls above: well under two calls per job.
    assert!(
        used < N + N / 2,
        "{used} script calls for {N} jobs: acks and claims travel separately"
    );
    jobs.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_over_one_connection_runs_and_wakes_idle_workers() {
    let server = RedisServer::start().expect("redis-server");
    let client = redis::Client::open(server.url()).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let backend = RedisBackend::new(conn).with_prefix("one:");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let def = JobDef::new("solo", move |v: u32, _| {
        let _ = tx.send(v);
        async { Ok::<_, std::io::Error>(()) }
    });
    let jobs = Jobs::builder(backend)
        .job(def)
        .start()
        .await
        .expect("start");
    // Let the worker go idle, then wake it with a dispatch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    jobs.dispatch("solo", &5u32, DispatchOptions::new())
        .await
        .expect("dispatch");
    let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("woken");
    assert_eq!(got, Some(5));
    jobs.shutdown().await;
}

#[tokio::test]
async fn a_redis_error_stays_a_redis_error_underneath() {
    // Nothing listens on port 1: the connection is refused.
    let err = RedisBackend::connect("redis://127.0.0.1:1/")
        .await
        .expect_err("refused");
    assert!(err.is_backend(), "{err}");
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        source.downcast_ref::<redis::RedisError>().is_some(),
        "source is not a RedisError: {source:?}"
    );
}
