//! Signals that arrive 0–5 ms before the step that parks on them: none may be lost.

use std::time::Duration;

use hookwire_workflow::{
    BoxError, Engine, Next, RunQuery, RunStatus, Scope, Signalled, StartOptions, Step, StepCtx,
    Wait, Workflow,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Runs in the race test.
const RUNS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr, reason = "prints the figure the test measured")]
async fn ten_thousand_signals_sent_just_before_the_wait_parks_are_all_consumed() {
    // Each run's first step reports that it started, then takes 0-5 ms; the test signals as soon
    // as it hears, so the signal lands while the step still runs, 0-5 ms before the run reaches
    // (parks on) the wait.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<String>();
    let wf = Workflow::builder("race", 1)
        .step(Step::new("work", move |n: u64, ctx: StepCtx| {
            let tx = started_tx.clone();
            async move {
                let _ = tx.send(ctx.run_id().to_owned());
                tokio::time::sleep(Duration::from_micros(n % 5001)).await;
                Ok::<_, BoxError>(Next::output(n))
            }
        }))
        .wait("approve", Wait::signal("approval"))
        .step(Step::new("done", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let engine = Engine::builder()
        .workflow(wf)
        .concurrency(512)
        .build()
        .await
        .unwrap();

    let signaller = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let (mut queued, mut resumed) = (0usize, 0usize);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..RUNS {
                let Some(run) = started_rx.recv().await else {
                    break;
                };
                let engine = engine.clone();
                tasks.spawn(async move {
                    let key = format!("{run}-approval");
                    engine
                        .signal(
                            &Scope::All,
                            &run,
                            "approval",
                            &json!({ "run": run }),
                            Some(&key),
                        )
                        .await
                        .map(|(s, _)| s)
                });
            }
            while let Some(r) = tasks.join_next().await {
                match r.unwrap().unwrap() {
                    Signalled::Queued => queued += 1,
                    Signalled::Resumed => resumed += 1,
                    Signalled::Duplicate => panic!("each run is signalled once"),
                    _ => {}
                }
            }
            (queued, resumed)
        })
    };

    let started = std::time::Instant::now();
    let mut ids = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let s = engine
            .start(&Scope::All, "race", &(i as u64 * 7919), StartOptions::new())
            .await
            .unwrap();
        ids.push(s.run.id);
    }
    let (queued, resumed) = tokio::time::timeout(Duration::from_secs(300), signaller)
        .await
        .expect("every step started and was signalled")
        .unwrap();

    // One deadline for all runs: once it passed, each run is read as it is, so a test that
    // loses signals fails in bounded time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut lost = Vec::new();
    for id in &ids {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let r = engine.wait_for(&Scope::All, id, left).await.unwrap();
        let ok = r.status == RunStatus::Completed
            && r.output == Some(json!({ "signal": { "run": id } }));
        if !ok {
            lost.push(r);
        }
    }
    let elapsed = started.elapsed();
    assert!(
        lost.is_empty(),
        "{} runs lost their signal, e.g. {:#?}",
        lost.len(),
        lost.first()
    );
    assert_eq!(queued + resumed, RUNS);
    assert!(
        queued > 0,
        "no signal arrived before its wait: the test did not race"
    );
    let waiting = engine
        .list(&Scope::All, RunQuery::new(10).status(RunStatus::Waiting))
        .await
        .unwrap();
    assert!(waiting.runs.is_empty());
    eprintln!(
        "{RUNS} runs, 0 lost signals; {queued} stored before the wait parked, {resumed} found it parked; {elapsed:?}"
    );
    engine.shutdown().await;
}
