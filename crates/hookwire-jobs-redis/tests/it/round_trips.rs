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

/// The keys every job passes through leave Redis's scanned listpack encoding at the first
/// claim, and the entry that keeps them out is invisible to the counts and to job reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_job_keys_use_hash_tables_and_the_pin_stays_invisible() {
    let server = RedisServer::start().expect("redis-server");
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let jobs = Jobs::builder(backend.clone())
        .start()
        .await
        .expect("producer");
    let batch = (0..5u64)
        .map(|i| (i.to_string(), DispatchOptions::new()))
        .collect();
    jobs.dispatch_bulk("pinned", batch).await.expect("bulk");
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let def = JobDef::new("pinned", move |_: u64, _| {
        let _ = started_tx.send(());
        let g = g.clone();
        async move {
            let _held = g.acquire().await;
            Ok::<_, std::io::Error>(())
        }
    })
    .concurrency(3);
    let worker = Jobs::builder(backend)
        .job(def)
        .start()
        .await
        .expect("start");
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("job started")
            .expect("open");
    }
    let encoding = |suffix: &str| {
        server
            .command(&format!("OBJECT ENCODING hw:{{pinned}}:{suffix}"))
            .expect("encoding")
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(encoding("lease"), "hashtable");
    assert_eq!(encoding("active"), "skiplist");
    let c = worker.counts("pinned").await.expect("counts");
    assert_eq!((c.active, c.waiting), (3, 2), "{c:?}");
    gate.add_permits(5);
    let c = loop {
        let c = worker.counts("pinned").await.expect("counts");
        if c.completed == 5 {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(c.active, 0, "{c:?}");
    assert_eq!(encoding("fin"), "hashtable");
    worker.shutdown().await;
    jobs.shutdown().await;
}
