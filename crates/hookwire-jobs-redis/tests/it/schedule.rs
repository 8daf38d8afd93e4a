//! Two runtimes on separate Redis connections (as two processes would be) declaring one
//! schedule: each tick is enqueued by exactly one of them.

use std::sync::Arc;
use std::time::Duration;

use hookwire_jobs::conformance::{Runs, eventually};
use hookwire_jobs::{JobBackend, JobDef, JobMeta, Jobs, Schedule};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_on_separate_connections_enqueue_each_tick_once() {
    let server = RedisServer::start().expect("redis-server");
    let queue = "sched-two-conns";
    let runs = Runs::default();
    let mut runtimes = Vec::new();
    let mut backends: Vec<Arc<dyn JobBackend>> = Vec::new();
    for _ in 0..2 {
        let backend: Arc<dyn JobBackend> =
            Arc::new(RedisBackend::connect(&server.url()).await.expect("connect"));
        let r = runs.clone();
        let def = JobDef::new(queue, move |_: u8, m: JobMeta| {
            r.hit(&m.id);
            async { Ok::<_, std::io::Error>(()) }
        });
        let s = Schedule::builder("tick", queue, "* * * * * *")
            .timezone("Europe/Berlin")
            .data(&1)
            .build()
            .expect("schedule");
        let jobs = Jobs::builder_shared(backend.clone())
            .job(def)
            .schedule(s)
            .start()
            .await
            .expect("start");
        runtimes.push(jobs);
        backends.push(backend);
    }
    eventually(Duration::from_secs(10), "four ticks run", || async {
        runs.distinct() >= 4
    })
    .await;
    for j in &runtimes {
        j.shutdown().await;
    }
    // Listing works on a stopped runtime: it only reads the backend.
    let info = runtimes[0].schedules(queue).await.expect("list");
    assert_eq!(info.len(), 1);
    let c = backends[1].counts(queue).await.expect("counts");
    let jobs_stored = c.completed + c.waiting + c.active;
    assert_eq!(
        u64::from(info[0].runs),
        jobs_stored,
        "a tick was enqueued twice"
    );
    assert_eq!(runs.duplicates(), 0);
}
