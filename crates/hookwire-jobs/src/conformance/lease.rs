//! Leases: stalled-job recovery, stale workers, renewal, shutdown hand-back and their events.

use super::*;

/// A job whose lease expired goes back to waiting; past `max_stalled` it fails.
pub async fn stalled_jobs_are_recovered(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id("s"))],
    )
    .await
    .expect("add");
    let lease = Duration::from_millis(100);
    let c = b
        .claim(&q, ClaimRequest::new("dead-worker", vec![], 1, lease))
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert!(r.requeued.is_empty(), "recovered before the lease expired");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert_eq!(r.requeued, ["s"]);
    let c = b
        .claim(&q, ClaimRequest::new("w2", vec![], 1, lease))
        .await
        .expect("claim");
    assert_eq!(c.jobs[0].stalled, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert_eq!(r.failed, ["s"]);
    let rec = b.get(&q, "s").await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Dead);
    assert!(rec.error.expect("error").contains("stalled"));

    // Through the runtime: a job claimed by a worker that vanished completes once elsewhere.
    let q2 = queue();
    b.add(&q2, vec![NewJob::new("2")]).await.expect("add");
    b.claim(&q2, ClaimRequest::new("vanished", vec![], 1, lease))
        .await
        .expect("claim");
    let runs = Runs::default();
    let jobs = start(&b, counting(&q2, &runs).lease(Duration::from_millis(200))).await;
    eventually(
        Duration::from_secs(5),
        "recovered job completed",
        || async { b.counts(&q2).await.expect("counts").completed == 1 },
    )
    .await;
    assert_eq!(runs.duplicates(), 0);
    jobs.shutdown().await;
}

/// Acks and renewals from a worker that lost its lease are refused.
pub async fn stale_worker_acks_are_refused(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id("k"))],
    )
    .await
    .expect("add");
    let lease = Duration::from_millis(80);
    b.claim(&q, ClaimRequest::new("old", vec![], 1, lease))
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(120)).await;
    b.recover_stalled(&q, 5, false).await.expect("recover");
    let c = b
        .claim(
            &q,
            ClaimRequest::new("new", vec![], 1, Duration::from_secs(5)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let lost = b
        .renew(&q, "old", vec!["k".into()], lease)
        .await
        .expect("renew");
    assert_eq!(lost, ["k"]);
    let done = Ack::new("k", JobOutcome::Completed { result: "1".into() });
    let c = b
        .claim(&q, ClaimRequest::new("old", vec![done.clone()], 0, lease))
        .await
        .expect("ack");
    assert_eq!(c.stale_acks, ["k"]);
    assert_eq!(state(&b, &q, "k").await, Some(JobState::Active));
    let c = b
        .claim(&q, ClaimRequest::new("new", vec![done], 0, lease))
        .await
        .expect("ack");
    assert!(c.stale_acks.is_empty());
    assert_eq!(state(&b, &q, "k").await, Some(JobState::Completed));
}

/// A job running for several lease lengths keeps its lease and runs once, even with a second
/// worker checking for stalls.
pub async fn lease_renewal_keeps_long_jobs_single(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mk = || {
        let r = runs.clone();
        JobDef::new(&q, move |_: u8, m: JobMeta| {
            r.hit(&m.id);
            async {
                tokio::time::sleep(Duration::from_millis(1300)).await;
                Ok::<_, std::io::Error>(())
            }
        })
        .lease(Duration::from_millis(400))
    };
    let one = start(&b, mk()).await;
    let two = start(&b, mk()).await;
    one.dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch");
    eventually(Duration::from_secs(5), "completed", || async {
        b.counts(&q).await.expect("counts").completed == 1
    })
    .await;
    assert_eq!(runs.duplicates(), 0, "lease renewal failed: job ran twice");
    one.shutdown().await;
    two.shutdown().await;
}

/// Shutdown lets short jobs finish, releases long ones back to waiting without counting an
/// attempt, and refuses new dispatches.
pub async fn shutdown_releases_active_jobs(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |ms: u64, _| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::io::Error>(())
    })
    .concurrency(2);
    let jobs = start(&b, def).await;
    let short = jobs
        .dispatch(&q, &120u64, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let long = jobs
        .dispatch(&q, &30_000u64, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    eventually(Duration::from_secs(5), "both active", || async {
        b.counts(&q).await.expect("counts").active == 2
    })
    .await;
    let t = Instant::now();
    jobs.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown not bounded: {:?}",
        t.elapsed()
    );
    assert_eq!(state(&b, &q, &short).await, Some(JobState::Completed));
    let rec = b.get(&q, &long).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Waiting);
    assert_eq!(rec.attempts_made, 0);
    let e = jobs
        .dispatch(&q, &1u64, DispatchOptions::new())
        .await
        .expect_err("closed");
    assert_eq!(e.kind(), ErrorKind::Shutdown);
}

/// Issue 14: a job failed by the stall limit emits its `failed` event (with data, the stall
/// error and the dead-letter flag), like a job failed by its handler.
pub async fn stall_limit_failure_emits_failed_event(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new(r#"{"n":5}"#).with_options(&DispatchOptions::new().job_id("gone"))],
    )
    .await
    .expect("add");
    b.claim(
        &q,
        ClaimRequest::new("vanished", vec![], 1, Duration::from_millis(100)),
    )
    .await
    .expect("claim");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runs = Runs::default();
    let jobs = Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(
            counting(&q, &runs)
                .max_stalled(0)
                .lease(Duration::from_millis(100))
                .dead_letter_queue(),
        )
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .start()
        .await
        .expect("start");
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a failed event within 5 s")
        .expect("event");
    assert_eq!(e.id, "gone");
    assert_eq!(e.data, r#"{"n":5}"#);
    assert_eq!(e.to_event().name, format!("job.{q}.failed"));
    assert_eq!(
        e.kind,
        EventKind::Failed {
            error: "job stalled more than 0 times".into(),
            dead_lettered: true
        }
    );
    assert_eq!(state(&b, &q, "gone").await, Some(JobState::Dead));
    assert_eq!(
        runs.distinct(),
        0,
        "a job failed by the stall limit never runs"
    );
    jobs.shutdown().await;
}

/// A job recovered from a vanished worker emits one `stalled` event (from whichever runtime's
/// check recovered it), then runs once and completes.
pub async fn stalled_event_is_emitted_once_per_recovery(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("3").with_options(&DispatchOptions::new().job_id("st"))],
    )
    .await
    .expect("add");
    b.claim(
        &q,
        ClaimRequest::new("vanished", vec![], 1, Duration::from_millis(100)),
    )
    .await
    .expect("claim");
    let events = Arc::new(Mutex::new(Vec::new()));
    let runs = Runs::default();
    let mut runtimes = Vec::new();
    for _ in 0..2 {
        let ev = events.clone();
        let jobs = Jobs::builder_shared(b.clone())
            .defaults(quick_defaults())
            .job(counting(&q, &runs).lease(Duration::from_millis(100)))
            .on_event(move |e| ev.lock().expect("lock").push(e.clone()))
            .start()
            .await
            .expect("start");
        runtimes.push(jobs);
    }
    eventually(
        Duration::from_secs(5),
        "recovered job completed",
        || async { state(&b, &q, "st").await == Some(JobState::Completed) },
    )
    .await;
    // Several more stalled checks on both runtimes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kinds: Vec<EventKind> = events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e.id == "st")
        .map(|e| e.kind.clone())
        .collect();
    // Each runtime emits its own events: the runtime that recovered the job may report
    // `stalled` after another one already ran it and reported `completed`. The contract is one of
    // each, not their order across runtimes.
    kinds.sort_by_key(|k| !matches!(k, EventKind::Stalled { .. }));
    assert_eq!(
        kinds,
        [
            EventKind::Stalled { stalled: 1 },
            EventKind::Completed {
                result: "null".into()
            }
        ]
    );
    let e = events
        .lock()
        .expect("lock")
        .iter()
        .find(|e| e.id == "st" && matches!(e.kind, EventKind::Stalled { .. }))
        .cloned()
        .expect("a stalled event");
    assert_eq!((e.data.as_str(), e.attempts_made), ("3", 0));
    assert_eq!(e.to_event().name, format!("job.{q}.stalled"));
    assert_eq!(runs.duplicates(), 0);
    for j in runtimes {
        j.shutdown().await;
    }
}
