//! The conformance suite on the Redis run store, against a real redis-server per case.

use std::sync::Arc;

use hookwire_testkit::RedisServer;
use hookwire_workflow::RedisRunStore;
use hookwire_workflow::conformance::Store;

hookwire_workflow::workflow_conformance!(async {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisRunStore::connect(&server.url())
        .await
        .expect("connect");
    (Arc::new(store) as Store, server)
});

/// A durable timer outlives the engine that set it: a new engine (new job queue, new connection)
/// re-queues the run's task when it starts, and the sleep still ends no earlier than due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_wakes_on_time_after_an_engine_restart() {
    use std::time::{Duration, Instant};

    use hookwire_workflow::{
        BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Workflow,
    };
    use serde_json::{Value, json};

    let server = RedisServer::start().expect("redis-server");
    let wf = || {
        Workflow::builder("nap", 1)
            .sleep("nap", Duration::from_millis(800))
            .step(Step::new("after", |v: Value, _| async move {
                Ok::<_, BoxError>(Next::output(v))
            }))
            .build()
            .unwrap()
    };
    let first = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(wf())
        .build()
        .await
        .unwrap();
    let t0 = Instant::now();
    let run = first
        .start(&Scope::All, "nap", &json!(7), StartOptions::new())
        .await
        .unwrap()
        .run;
    assert_eq!(run.status, RunStatus::Sleeping);
    first.shutdown().await;
    drop(first);

    let second = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(wf())
        .build()
        .await
        .unwrap();
    let done = second
        .wait_for(&Scope::All, &run.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "woke early: {:?}",
        t0.elapsed()
    );
    assert!(done.steps[0].finished_ms.unwrap() >= done.steps[0].started_ms + 800);
    second.shutdown().await;
}

/// `calls=` of one command in `INFO commandstats` (0 when it never ran).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let text = server.command("INFO commandstats").unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every step transition is one script call on the run's own hash (hash-tagged by the run id):
/// a three-step no-op run costs no script to start (`SET NX` of the run, then a `ZADD` to the
/// index), one to begin
/// its first step and one per attempt settled (which also begins the next step when the same
/// job carries it, or completes the run), and a signal that resumes a parked wait is one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_is_one_script_call_on_the_runs_own_slot() {
    use std::time::Duration;

    use hookwire_workflow::{
        BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Wait, Workflow,
    };
    use serde_json::{Value, json};

    let server = RedisServer::start().expect("redis-server");
    let noop = |name: &str| {
        Step::new(name, |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        })
    };
    let three = Workflow::builder("three", 1)
        .step(noop("a"))
        .step(noop("b"))
        .step(noop("c"))
        .build()
        .unwrap();
    let parked = || {
        Workflow::builder("parked", 1)
            .wait("pay", Wait::signal("paid"))
            .step(noop("ship"))
            .build()
            .unwrap()
    };
    let engine = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(three)
        .build()
        .await
        .unwrap();
    let all = Scope::All;
    let run_three = async || {
        let run = engine
            .start(&all, "three", &json!(1), StartOptions::new())
            .await
            .unwrap()
            .run;
        let done = engine
            .wait_for(&all, &run.id, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
        done
    };
    // Loads the scripts (the first call of each answers NOSCRIPT), outside the count.
    run_three().await;
    let (evalsha, eval) = (calls(&server, "evalsha"), calls(&server, "eval"));
    let (set, zadd) = (calls(&server, "set"), calls(&server, "zadd"));
    let done = run_three().await;
    assert_eq!(
        calls(&server, "evalsha") - evalsha,
        1 + 3,
        "start: no script; the first step's begin; 3 settles, each of which also begins the \
         next step (carried by the same job) or completes the run"
    );
    assert_eq!(
        calls(&server, "set") - set,
        1 + 1 + 3,
        "the start's SET NX, then one per script"
    );
    assert_eq!(calls(&server, "zadd") - zadd, 1, "the start's index entry");
    // started, 3 × (step_started, step_completed), completed.
    assert_eq!(done.sequence, 8);
    assert_eq!(calls(&server, "eval"), eval, "scripts travel once");
    let keys = server
        .command(&format!("EXISTS hw:wf:run:{{{}}}", done.id))
        .unwrap();
    assert_eq!(
        keys.trim().trim_start_matches(':'),
        "1",
        "the run's hash is tagged by its id"
    );

    // Signalled through an engine without workers, so no step begins behind the count.
    let api = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(parked())
        .workers(false)
        .build()
        .await
        .unwrap();
    let run = api
        .start(&all, "parked", &json!(1), StartOptions::new())
        .await
        .unwrap()
        .run;
    assert_eq!(run.status, RunStatus::Waiting);
    let before = calls(&server, "evalsha");
    api.signal(&all, &run.id, "paid", &json!("ok"), None)
        .await
        .unwrap();
    assert_eq!(
        calls(&server, "evalsha") - before,
        1,
        "a signal resuming a parked wait (resumed + the next step queued) is one script"
    );
    let after = api.get(&all, &run.id).await.unwrap();
    assert_eq!(after.current_step.as_deref(), Some("ship"), "{after:#?}");
    api.shutdown().await;
    engine.shutdown().await;
}

/// A run stored by an earlier version as a hash (rev, body, status, workflow, org) is still
/// read, listed and signalled, and its next transition stores it in the current layout: one
/// string per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stored_as_a_hash_by_an_earlier_version_is_read_and_rewritten_as_a_string() {
    use hookwire_workflow::{
        BoxError, Engine, Next, RunQuery, RunStatus, Scope, Signalled, StartOptions, Step, Wait,
        Workflow,
    };
    use serde_json::{Value, json};

    let server = RedisServer::start().expect("redis-server");
    let wf = Workflow::builder("parked", 1)
        .wait("pay", Wait::signal("paid"))
        .step(Step::new("ship", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let api = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(wf)
        .workers(false)
        .build()
        .await
        .unwrap();
    let org = Scope::organization("acme org\nwith a newline");
    let run = api
        .start(&org, "parked", &json!({"n": 1}), StartOptions::new())
        .await
        .unwrap()
        .run;
    let key = format!("hw:wf:run:{{{}}}", run.id);
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let packed: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (head, rest) = packed.split_once('\n').unwrap();
    let head: Vec<&str> = head.split(' ').collect();
    let org_len: usize = head[3].parse().unwrap();
    let (org_field, body) = rest.split_at(org_len);
    assert_eq!(org_field, "=acme org\nwith a newline");
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg(&[
            "rev", head[0], "body", body, "status", head[1], "workflow", head[2],
        ])
        .arg("org")
        .arg(org_field)
        .query_async(&mut conn)
        .await
        .map(|_: i64| ())
        .unwrap();

    let old = api.get(&org, &run.id).await.unwrap();
    assert_eq!(old.status, RunStatus::Waiting);
    assert_eq!(
        old.organization.as_deref(),
        Some("acme org\nwith a newline")
    );
    let listed = api.list(&org, RunQuery::new(10)).await.unwrap();
    assert_eq!(listed.runs.len(), 1);
    assert!(
        api.get(&Scope::organization("other"), &run.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let (s, after) = api
        .signal(&org, &run.id, "paid", &json!("ok"), None)
        .await
        .unwrap();
    assert!(matches!(s, Signalled::Resumed), "{s:?}");
    assert_eq!(after.current_step.as_deref(), Some("ship"));
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        kind, "string",
        "the transition moved the run to the string layout"
    );
    let again = api.get(&org, &run.id).await.unwrap();
    assert_eq!(again.current_step.as_deref(), Some("ship"));
    assert_eq!(again.sequence, after.sequence);
    api.shutdown().await;
}

/// A run store that stays away longer than any fixed number of job retries still does not
/// strand a run: the task job is retried until it runs (a job failed for good would keep its id
/// in the failed set, where it blocks every re-queue of that task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_wakes_after_a_store_outage_longer_than_any_retry_budget() {
    use std::time::{Duration, Instant};

    use hookwire_core::Backoff;
    use hookwire_jobs::{JobAdmin, JobBackend, MemoryBackend};
    use hookwire_workflow::{
        BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Workflow,
    };
    use serde_json::{Value, json};

    let mut server = RedisServer::builder().aof().start().expect("redis-server");
    let wf = Workflow::builder("outage", 1)
        .sleep("nap", Duration::from_millis(200))
        .step(Step::new("after", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let engine = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .jobs_backend(backend.clone() as Arc<dyn JobBackend>)
        .task_backoff(Backoff::fixed(Duration::from_millis(5)))
        .workflow(wf)
        .build()
        .await
        .unwrap();
    let run = engine
        .start(&Scope::All, "outage", &json!(3), StartOptions::new())
        .await
        .unwrap()
        .run;
    assert_eq!(run.status, RunStatus::Sleeping);
    // Down before the wake-up is due: every attempt to wake the run fails on the store.
    server.kill();

    // Keep the store away until the wake-up job has failed more often than a generous fixed
    // budget would allow (the engine used to give up after 11 attempts).
    let queue = "workflow.outage";
    let t0 = Instant::now();
    let attempts = loop {
        let mut most = 0;
        for n in 0..4 {
            if let Some(job) = backend
                .get(queue, &format!("{}.t{n}", run.id))
                .await
                .unwrap()
            {
                most = most.max(job.attempts_made);
            }
        }
        let counts = backend.counts(queue).await.unwrap();
        assert_eq!(
            (counts.failed, counts.dead),
            (0, 0),
            "a task job failed for good: {counts:?}"
        );
        if most >= 15 {
            break most;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the wake-up job made only {most} attempts: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.restart().expect("redis-server restarts");

    let done = engine
        .wait_for(&Scope::All, &run.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        done.status,
        RunStatus::Completed,
        "after {attempts} attempts: {done:#?}"
    );
    assert_eq!(done.output, Some(json!(3)));
    engine.shutdown().await;
}

/// Concurrent transitions share script calls (group commit), and each keeps its own answer:
/// 200 runs moved at once by 400 racing writers, two per run with the same expected revision,
/// so exactly one of each pair wins and the loser is answered with the winner's document, in
/// the same batch or the next. The lone transitions of the other tests go out one per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transitions_share_calls_and_each_pair_has_one_winner() {
    use hookwire_workflow::{Replaced, RunDoc, RunStatus, RunStore};

    let server = RedisServer::start().expect("redis-server");
    let store = Arc::new(RedisRunStore::connect(&server.url()).await.unwrap());
    let doc = |i: usize, rev: u64, body: &str| {
        RunDoc::new(
            format!("run-{i}"),
            "wf",
            None,
            RunStatus::Running,
            rev,
            body.to_owned(),
        )
    };
    for i in 0..200 {
        store.insert(doc(i, 1, "{}"), None).await.unwrap();
    }
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    let mut tasks = Vec::new();
    for i in 0..200 {
        for w in ["a", "b"] {
            let store = store.clone();
            let body = format!("{{\"w\":\"{w}\"}}");
            tasks.push(tokio::spawn(async move {
                (
                    i,
                    store.replace_or_current(doc(i, 2, &body), 1).await.unwrap(),
                )
            }));
        }
    }
    let mut won = vec![0; 200];
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Replaced::Written => won[i] += 1,
            Replaced::Stale(Some(current)) => assert_eq!(current.rev, 2, "{current:?}"),
            other => panic!("run {i}: {other:?}"),
        }
    }
    assert!(won.iter().all(|&w| w == 1), "one winner per run: {won:?}");
    for i in 0..200 {
        let stored = store.load(&format!("run-{i}")).await.unwrap().unwrap();
        assert_eq!(stored.rev, 2);
    }
    let used = calls(&server, "evalsha") + calls(&server, "eval") - before;
    assert!(
        used < 200,
        "{used} script calls for 400 transitions: none was batched"
    );
}
