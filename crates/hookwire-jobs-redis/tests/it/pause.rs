//! A pause stored in Redis holds for a worker in another process, one started after the pause
//! included, until the queue is resumed.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use hookwire_jobs::conformance::eventually;
use hookwire_jobs::{DispatchOptions, JobAdmin, JobDef, JobMeta, Jobs};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

use crate::fault::spawn_child;

const CHILD_ENV: &str = "HOOKWIRE_JOBS_PAUSE_CHILD";

/// The worker process: this test binary re-executed with `CHILD_ENV` set. It prints `READY`
/// once its worker runs and `RAN <id>` for every job it runs. Without the variable there is
/// nothing to do.
#[tokio::test]
async fn pause_child_worker_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, queue) = spec.split_once(' ').expect("url and queue");
    let backend = RedisBackend::connect(url).await.expect("connect");
    let def = JobDef::new(queue, |_: u32, m: JobMeta| async move {
        #[allow(clippy::print_stdout, reason = "the parent test reads this line")]
        {
            println!("RAN {}", m.id);
        }
        Ok::<_, std::io::Error>(())
    })
    .concurrency(4)
    // A stalled check, with its safety-net claim, every 100 ms.
    .lease(Duration::from_millis(200));
    let _jobs = Jobs::builder(backend)
        .job(def)
        .start()
        .await
        .expect("start");
    #[allow(clippy::print_stdout, reason = "the parent test reads this line")]
    {
        println!("READY");
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_claimed_by_a_worker_in_another_process() {
    let server = RedisServer::start().expect("redis-server");
    let queue = "paused-across-processes";
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let producer = Jobs::builder(backend.clone()).start().await.expect("start");
    let handle = producer.queue(queue).expect("queue");
    handle.pause().await.expect("pause");

    let mut child = spawn_child(
        "pause::pause_child_worker_process",
        CHILD_ENV,
        &server,
        queue,
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test … ... " without a newline first, so look inside the line.
            let word = if l.contains("READY") {
                "READY".to_owned()
            } else if let Some((_, id)) = l.split_once("RAN ") {
                id.trim().to_owned()
            } else {
                continue;
            };
            if tx.send(word).is_err() {
                return;
            }
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("child ready in time");
    assert_eq!(ready.as_deref(), Some("READY"));

    for i in 0..5u32 {
        producer
            .dispatch(queue, &i, DispatchOptions::new().job_id(format!("p-{i}")))
            .await
            .expect("dispatch");
    }
    // Many of the child's safety-net claims (every 100 ms) pass while paused.
    let ran = tokio::time::timeout(Duration::from_millis(1000), lines.recv()).await;
    assert!(ran.is_err(), "the paused queue was claimed: {ran:?}");
    let c = backend.counts(queue).await.expect("counts");
    assert_eq!((c.waiting, c.active, c.completed), (5, 0, 0));

    handle.resume().await.expect("resume");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let id = tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("the child runs the backlog after resume")
            .expect("child output");
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, ["p-0", "p-1", "p-2", "p-3", "p-4"]);
    eventually(Duration::from_secs(5), "backlog recorded", || async {
        backend.counts(queue).await.is_ok_and(|c| c.completed == 5)
    })
    .await;
    producer.shutdown().await;
}
