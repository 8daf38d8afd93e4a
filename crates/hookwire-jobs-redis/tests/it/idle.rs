//! Idle workers block on Redis instead of polling it.

use std::time::Duration;

use hookwire_jobs::{DispatchOptions, JobDef, Jobs};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

/// Total command calls so far, `INFO` itself excluded.
fn calls(server: &RedisServer) -> u64 {
    let text = server.command("INFO commandstats").expect("info");
    text.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|v| v.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_block_and_wake_on_dispatch() {
    let server = RedisServer::start().expect("redis-server");
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut jobs = Vec::new();
    for q in ["idle-a", "idle-b", "idle-c"] {
        let tx = tx.clone();
        let def = JobDef::new(q, move |v: u32, _| {
            let _ = tx.send(v);
            async { Ok::<_, std::io::Error>(()) }
        })
        .concurrency(10);
        jobs.push(
            Jobs::builder(backend.clone())
                .job(def)
                .start()
                .await
                .expect("start"),
        );
    }
    // Let start-up traffic (first claim, stalled check, script loads) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = calls(&server);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = calls(&server) - before;
    // Three idle queues for 3 s: a poller at even 10 ms would make ~900 calls; blocking makes a
    // handful (a BLPOP per queue per 5 s timeout).
    assert!(idle <= 12, "{idle} Redis calls while idle: busy polling");

    // Blocked workers wake at once on dispatch.
    let t = std::time::Instant::now();
    jobs[1]
        .dispatch("idle-b", &7u32, DispatchOptions::new())
        .await
        .expect("dispatch");
    let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("woken");
    assert_eq!(got, Some(7));
    assert!(t.elapsed() < Duration::from_secs(3));
    for j in jobs {
        j.shutdown().await;
    }
}
