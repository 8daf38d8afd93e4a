//! Fault tests: a worker process killed with SIGKILL mid-job, Redis restarted with AOF during a
//! run, and Redis unreachable for a while. Nothing may be lost.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hookwire_jobs::conformance::{Runs, eventually};
use hookwire_jobs::{
    Defaults, DispatchOptions, JobBackend, JobDef, JobMeta, JobState, Jobs, Retention,
};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;

const CHILD_ENV: &str = "HOOKWIRE_JOBS_FAULT_CHILD";

/// Kills the worker process when the test ends, even on a failed assertion.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-executes this test binary to run only `test` (a child worker) with `env` set to
/// `"<redis url> <queue>"`, its stdout piped to the caller.
pub(crate) fn spawn_child(test: &str, env: &str, server: &RedisServer, queue: &str) -> KillOnDrop {
    KillOnDrop(
        Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, format!("{} {queue}", server.url()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker process"),
    )
}

fn defaults(lease_ms: u64) -> Defaults {
    let mut d = Defaults::default();
    d.backoff = None;
    d.remove_on_complete = Retention::Keep;
    d.lease = Duration::from_millis(lease_ms);
    d.max_stalled = 5;
    d.shutdown_grace = Duration::from_millis(200);
    d
}

/// A runtime on `server` whose handler for `queue` records each run in `runs`.
async fn counting_runtime(
    server: &RedisServer,
    queue: &str,
    concurrency: usize,
    work: Duration,
) -> (Arc<dyn JobBackend>, Runs, Jobs) {
    let backend: Arc<dyn JobBackend> =
        Arc::new(RedisBackend::connect(&server.url()).await.expect("connect"));
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(queue, move |_: u32, m: JobMeta| {
        r.hit(&m.id);
        async move {
            tokio::time::sleep(work).await;
            Ok::<_, std::io::Error>(())
        }
    })
    .concurrency(concurrency);
    let jobs = Jobs::builder_shared(backend.clone())
        .defaults(defaults(1000))
        .job(def)
        .start()
        .await
        .expect("start");
    (backend, runs, jobs)
}

/// The worker process the kill test spawns: this same test binary re-executed with
/// `CHILD_ENV` set. It claims the job, prints `STARTED <id>` and hangs until killed. Without the
/// variable (a normal test run) there is nothing to do.
#[tokio::test]
async fn child_worker_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, queue) = spec.split_once(' ').expect("url and queue");
    let backend = RedisBackend::connect(url).await.expect("connect");
    let def = JobDef::new(queue, |_: u32, m: JobMeta| async move {
        #[allow(clippy::print_stdout, reason = "the parent test reads this line")]
        {
            println!("STARTED {}", m.id);
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, std::io::Error>(())
    });
    let _jobs = Jobs::builder(backend)
        .defaults(defaults(400))
        .job(def)
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_is_recovered_and_completes_once() {
    let server = RedisServer::start().expect("redis-server");
    let queue = "fault-kill";
    let mut child = spawn_child("fault::child_worker_process", CHILD_ENV, &server, queue);
    let backend: Arc<dyn JobBackend> =
        Arc::new(RedisBackend::connect(&server.url()).await.expect("connect"));
    let producer = Jobs::builder_shared(backend.clone())
        .defaults(defaults(400))
        .start()
        .await
        .expect("start");
    let id = producer
        .dispatch(queue, &7u32, DispatchOptions::new().job_id("victim"))
        .await
        .expect("dispatch")
        .id;

    let stdout = child.0.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test … ... " without a newline first, so look inside the line.
            .find_map(|l| l.split_once("STARTED ").map(|(_, id)| id.trim().to_owned()))
    })
    .await
    .expect("reader");
    assert_eq!(
        line.as_deref(),
        Some("victim"),
        "child never started the job"
    );
    assert_eq!(
        backend
            .get(queue, &id)
            .await
            .expect("get")
            .expect("job")
            .state,
        JobState::Active
    );
    child.0.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.0.wait().expect("reap");

    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(queue, move |_: u32, m: JobMeta| {
        r.hit(&m.id);
        async { Ok::<_, std::io::Error>(()) }
    });
    let jobs = Jobs::builder_shared(backend.clone())
        .defaults(defaults(400))
        .job(def)
        .start()
        .await
        .expect("start");
    eventually(
        Duration::from_secs(10),
        "recovered job completed",
        || async {
            backend
                .get(queue, &id)
                .await
                .expect("get")
                .is_some_and(|j| j.state == JobState::Completed)
        },
    )
    .await;
    let rec = backend.get(queue, &id).await.expect("get").expect("job");
    assert_eq!(rec.stalled, 1, "recovered by the stalled check");
    assert_eq!(rec.attempts_made, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.distinct(), 1);
    assert_eq!(runs.duplicates(), 0, "completed more than once");
    assert_eq!(backend.counts(queue).await.expect("counts").completed, 1);
    jobs.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_loses_no_job() {
    let mut server = RedisServer::builder().aof().start().expect("redis-server");
    let queue = "fault-restart";
    let (backend, runs, jobs) =
        counting_runtime(&server, queue, 10, Duration::from_millis(2)).await;
    let n = 1500;
    let bulk = (0..n)
        .map(|i| {
            (
                i.to_string(),
                DispatchOptions::new().job_id(format!("r-{i}")),
            )
        })
        .collect();
    jobs.dispatch_bulk(queue, bulk).await.expect("bulk");
    eventually(Duration::from_secs(20), "a third done", || async {
        runs.distinct() >= n / 3
    })
    .await;
    server.restart().expect("restart");
    eventually(Duration::from_secs(40), "every job completed", || async {
        backend
            .counts(queue)
            .await
            .is_ok_and(|c| c.completed == n as u64)
    })
    .await;
    assert_eq!(runs.distinct(), n, "a job was lost");
    let c = backend.counts(queue).await.expect("counts");
    assert_eq!((c.waiting, c.active, c.delayed, c.failed), (0, 0, 0, 0));
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_dispatch_errors_workers_reconnect() {
    let mut server = RedisServer::builder().aof().start().expect("redis-server");
    let queue = "fault-outage";
    let (backend, runs, jobs) = counting_runtime(&server, queue, 5, Duration::ZERO).await;
    let mut stored = Vec::new();
    for i in 0..50u32 {
        stored.push(
            jobs.dispatch(
                queue,
                &i,
                DispatchOptions::new().delay(Duration::from_millis(1500)),
            )
            .await
            .expect("dispatch")
            .id,
        );
    }
    server.kill();
    let mut refused = 0;
    for i in 0..20u32 {
        match jobs.dispatch(queue, &i, DispatchOptions::new()).await {
            Ok(a) => stored.push(a.id),
            Err(e) => {
                assert!(e.is_backend(), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 20, "dispatch must fail while Redis is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().expect("restart");
    // The runtime keeps going after the outage: new work is taken as well as the old.
    let mut after = None;
    for _ in 0..50 {
        if let Ok(a) = jobs.dispatch(queue, &99u32, DispatchOptions::new()).await {
            after = Some(a.id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored.push(after.expect("dispatch works again after the outage"));
    eventually(
        Duration::from_secs(20),
        "every stored job completed",
        || async {
            let mut all = true;
            for id in &stored {
                let done = backend
                    .get(queue, id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|j| j.state == JobState::Completed);
                all &= done;
            }
            all
        },
    )
    .await;
    assert_eq!(runs.distinct(), stored.len());
    jobs.shutdown().await;
}

/// Issue 14 (17): a job that finished while Redis was down longer than the lease is acked before
/// the worker's own stalled check runs, so it is not re-queued and run a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_buffered_during_an_outage_are_flushed_before_the_stalled_check() {
    let mut server = RedisServer::builder().aof().start().expect("redis-server");
    let queue = "fault-ack-outage";
    let backend: Arc<dyn JobBackend> =
        Arc::new(RedisBackend::connect(&server.url()).await.expect("connect"));
    let runs = Runs::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, g) = (runs.clone(), gate.clone());
    let def = JobDef::new(queue, move |_: u32, m: JobMeta| {
        r.hit(&m.id);
        let g = g.clone();
        async move {
            // The first run waits for the outage; a second run (the defect) finishes at once.
            if m.stalled == 0 {
                let _permit = g.acquire().await;
            }
            Ok::<_, std::io::Error>(())
        }
    });
    let jobs = Jobs::builder_shared(backend.clone())
        .defaults(defaults(300))
        .job(def)
        .start()
        .await
        .expect("start");
    let id = jobs
        .dispatch(queue, &1u32, DispatchOptions::new().job_id("done-offline"))
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "job running", || async {
        runs.distinct() == 1
    })
    .await;
    server.kill();
    // The handler finishes while Redis is gone: its ack can only be buffered.
    gate.add_permits(1);
    // Far longer than the lease (300 ms): on return the job's lease has expired in Redis, and
    // the worker's reconnect backoff has grown to seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.restart().expect("restart");
    // Heal the shared connection at once (its first command after the restart fails), so the
    // worker's next round finds Redis answering whichever command it sends first.
    eventually(Duration::from_secs(5), "Redis answers again", || async {
        backend.counts(queue).await.is_ok()
    })
    .await;
    eventually(Duration::from_secs(15), "job completed", || async {
        backend
            .get(queue, &id)
            .await
            .ok()
            .flatten()
            .is_some_and(|j| j.state == JobState::Completed)
    })
    .await;
    // Give a wrongly re-queued copy time to run.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rec = backend.get(queue, &id).await.expect("get").expect("job");
    assert_eq!(runs.duplicates(), 0, "the finished job ran again");
    assert_eq!(rec.stalled, 0, "the finished job was recovered as stalled");
    assert_eq!(rec.attempts_made, 1);
    jobs.shutdown().await;
}
