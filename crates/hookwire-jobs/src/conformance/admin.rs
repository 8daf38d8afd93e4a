//! Administration: counts, retention, the stats handler, events and progress, pause, drain and clean.

use super::*;

/// `remove_on_complete` / `remove_on_fail`: remove, keep last N, keep.
pub async fn retention_options(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |v: i32, _| async move {
        if v < 0 {
            Err(std::io::Error::other("neg"))
        } else {
            Ok(v)
        }
    })
    .retries(0);
    let jobs = start(&b, def).await;
    let gone = jobs
        .dispatch(
            &q,
            &1,
            DispatchOptions::new().job_id("rm").remove_on_complete(true),
        )
        .await
        .expect("dispatch");
    eventually(Duration::from_secs(5), "removed", || async {
        b.get(&q, &gone.id).await.expect("get").is_none()
            && b.counts(&q).await.expect("c").active == 0
    })
    .await;
    // Removed records no longer de-duplicate.
    let again = jobs
        .dispatch(
            &q,
            &1,
            DispatchOptions::new().job_id("rm").remove_on_complete(true),
        )
        .await
        .expect("dispatch");
    assert!(again.created);
    for i in 0..5 {
        jobs.dispatch(&q, &i, DispatchOptions::new().remove_on_complete(2u32))
            .await
            .expect("d");
    }
    for i in 0..3 {
        jobs.dispatch(&q, &(-1 - i), DispatchOptions::new().remove_on_fail(1u32))
            .await
            .expect("d");
    }
    eventually(Duration::from_secs(5), "retention applied", || async {
        let c = b.counts(&q).await.expect("counts");
        c.waiting == 0 && c.active == 0 && c.completed == 2 && c.failed == 1
    })
    .await;
    let kept = jobs
        .dispatch(
            &q,
            &9,
            DispatchOptions::new()
                .job_id("keep")
                .remove_on_complete(false),
        )
        .await
        .expect("d");
    eventually(Duration::from_secs(5), "kept", || async {
        state(&b, &q, &kept.id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;
}

/// Completed and failed events carry id, data, result or error and attempts; a panicking
/// listener does not stop the worker.
pub async fn events_completed_and_failed(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |v: i32, _| async move {
        if v < 0 {
            Err(std::io::Error::other("negative"))
        } else {
            Ok(v * 2)
        }
    })
    .retries(0);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let jobs = Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(def)
        .on_event(|_| panic!("listener bug"))
        .on_event(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .await
        .expect("start");
    let mut rx = jobs.subscribe();
    let ok = jobs
        .dispatch(&q, &21, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let bad = jobs
        .dispatch(&q, &-1, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let mut got = HashMap::new();
    while got.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event")
            .expect("recv");
        got.insert(e.id.clone(), e);
    }
    let e = &got[&ok];
    assert_eq!(
        e.kind,
        EventKind::Completed {
            result: "42".into()
        }
    );
    assert_eq!((e.data.as_str(), e.attempts_made), ("21", 1));
    assert_eq!(e.to_event().name, format!("job.{q}.completed"));
    let e = &got[&bad];
    assert_eq!(
        e.kind,
        EventKind::Failed {
            error: "negative".into(),
            dead_lettered: false
        }
    );
    eventually(Duration::from_secs(2), "listener called", || async {
        seen.load(Ordering::SeqCst) == 2
    })
    .await;
    let third = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    eventually(
        Duration::from_secs(5),
        "worker survived listener panic",
        || async { state(&b, &q, &third).await == Some(JobState::Completed) },
    )
    .await;
    jobs.shutdown().await;
}

/// Counts reflect each state; `stats` reports every registered name.
pub async fn counts_per_state(b: Backend) {
    let q = queue();
    let mut d = NewJob::new("1");
    d.delay = Duration::from_secs(60);
    b.add(
        &q,
        vec![NewJob::new("1"), NewJob::new("2"), NewJob::new("3"), d],
    )
    .await
    .expect("add");
    let c = b
        .claim(
            &q,
            ClaimRequest::new("t", vec![], 2, Duration::from_secs(5)),
        )
        .await
        .expect("claim");
    let ids: Vec<String> = c.jobs.iter().map(|j| j.id.clone()).collect();
    let acks = vec![Ack::new(
        ids[0].clone(),
        JobOutcome::Completed {
            result: "null".into(),
        },
    )];
    b.claim(&q, ClaimRequest::new("t", acks, 0, Duration::from_secs(5)))
        .await
        .expect("ack");
    let c = b.counts(&q).await.expect("counts");
    assert_eq!(
        (
            c.waiting,
            c.active,
            c.completed,
            c.delayed,
            c.failed,
            c.dead
        ),
        (1, 1, 1, 1, 0, 0)
    );
    let jobs = start(&b, counting(&q, &Runs::default()).concurrency(1)).await;
    let s = jobs.stats().await.expect("stats");
    assert!(s.contains_key(&q));
    jobs.shutdown().await;
}

/// The stats handler answers only with the right bearer token and reports per-name counts.
pub async fn stats_handler_requires_the_token(b: Backend) {
    let q = queue();
    let jobs = start(&b, counting(&q, &Runs::default())).await;
    jobs.dispatch(
        &q,
        &1,
        DispatchOptions::new().delay(Duration::from_secs(60)),
    )
    .await
    .expect("dispatch");
    let h = crate::StatsHandler::new(jobs.clone(), "t0ken");
    assert_eq!(h.handle(None).await.0, 401);
    assert_eq!(h.handle(Some("Bearer t0ke")).await.0, 401);
    assert_eq!(h.handle(Some("t0ken")).await.0, 401);
    let (status, body) = h.handle(Some("Bearer t0ken")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[&q]["delayed"], 1);
    assert_eq!(v[&q]["waiting"], 0);
    let open = crate::StatsHandler::new(jobs.clone(), "");
    assert_eq!(
        open.handle(Some("Bearer ")).await.0,
        401,
        "empty token must fail closed"
    );
    jobs.shutdown().await;
}

/// `meta.progress.report` stores the value on the job and emits `job.<name>.progress`; a
/// reporter whose lease is gone stores nothing.
pub async fn progress_is_stored_and_emitted(b: Backend) {
    let q = queue();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let g = g.clone();
        async move {
            let stored = m.progress.report(&serde_json::json!({"pct": 50})).await?;
            assert!(stored);
            g.notified().await;
            Ok::<_, crate::Error>(())
        }
    });
    let jobs = start(&b, def).await;
    let mut rx = jobs.subscribe();
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event")
        .expect("recv");
    assert_eq!(e.event_name(), format!("job.{q}.progress"));
    assert_eq!(
        e.kind,
        EventKind::Progress {
            progress: r#"{"pct":50}"#.into()
        }
    );
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Active);
    assert_eq!(rec.progress.as_deref(), Some(r#"{"pct":50}"#));
    assert!(
        !b.progress(&q, "not-the-holder", &id, "1".into())
            .await
            .expect("progress")
    );
    gate.notify_one();
    eventually(Duration::from_secs(5), "completed", || async {
        state(&b, &q, &id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;
}

/// A paused queue hands no job to any worker (several runtimes, several safety-net claims, a
/// delayed job coming due); a running job still finishes and is recorded; resuming runs the
/// backlog once.
pub async fn pause_holds_for_every_worker_until_resumed(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mk = || {
        let r = runs.clone();
        JobDef::new(&q, move |ms: u64, m: JobMeta| {
            r.hit(&m.id);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, std::io::Error>(())
            }
        })
        .concurrency(4)
        // A stalled check, and with it a safety-net claim, every 100 ms on each runtime.
        .lease(Duration::from_millis(200))
    };
    let one = start(&b, mk()).await;
    let two = start(&b, mk()).await;
    let running = one
        .dispatch(&q, &400u64, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "job running", || async {
        runs.distinct() == 1
    })
    .await;
    let handle = one.queue(&q).expect("queue");
    assert!(!handle.is_paused().await.expect("is_paused"));
    handle.pause().await.expect("pause");
    handle.pause().await.expect("pause is idempotent");
    assert!(
        two.queue(&q)
            .expect("queue")
            .is_paused()
            .await
            .expect("is_paused"),
        "the pause is visible to every runtime"
    );
    for i in 0..10u64 {
        two.dispatch(&q, &i, DispatchOptions::new())
            .await
            .expect("dispatch");
    }
    one.dispatch(
        &q,
        &0u64,
        DispatchOptions::new().delay(Duration::from_millis(100)),
    )
    .await
    .expect("dispatch");
    eventually(
        Duration::from_secs(5),
        "the running job finished while paused",
        || async { state(&b, &q, &running).await == Some(JobState::Completed) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(runs.distinct(), 1, "a paused queue handed out a job");
    let c = b.counts(&q).await.expect("counts");
    assert_eq!((c.waiting, c.active, c.completed), (11, 0, 1));
    handle.resume().await.expect("resume");
    assert!(!handle.is_paused().await.expect("is_paused"));
    eventually(Duration::from_secs(5), "backlog completed", || async {
        b.counts(&q).await.expect("counts").completed == 12
    })
    .await;
    assert_eq!(runs.distinct(), 12);
    assert_eq!(runs.duplicates(), 0);
    one.shutdown().await;
    two.shutdown().await;
}

/// A drain deletes the waiting jobs (all of them, past one backend batch) and, when asked, the
/// delayed ones, with their records; leased jobs stay.
pub async fn drain_deletes_waiting_and_optionally_delayed_jobs(b: Backend) {
    let q = queue();
    let jobs = Jobs::builder_shared(b.clone())
        .start()
        .await
        .expect("start");
    let waiting: Vec<(String, DispatchOptions)> = (0..2500)
        .map(|i| {
            (
                "1".to_owned(),
                DispatchOptions::new().job_id(format!("w-{i}")),
            )
        })
        .collect();
    jobs.dispatch_bulk(&q, waiting).await.expect("bulk");
    for i in 0..3 {
        let o = DispatchOptions::new()
            .job_id(format!("d-{i}"))
            .delay(Duration::from_secs(60));
        jobs.dispatch(&q, &i, o).await.expect("dispatch");
    }
    let c = b
        .claim(
            &q,
            ClaimRequest::new("t", vec![], 1, Duration::from_secs(30)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs[0].id, "w-0");
    let h = jobs.queue(&q).expect("queue");
    assert_eq!(h.drain(false).await.expect("drain"), 2499);
    let c = h.counts().await.expect("counts");
    assert_eq!((c.waiting, c.delayed, c.active), (0, 3, 1));
    assert!(
        b.get(&q, "w-7").await.expect("get").is_none(),
        "record kept"
    );
    let again = jobs
        .dispatch(&q, &1, DispatchOptions::new().job_id("w-7"))
        .await
        .expect("dispatch");
    assert!(again.created, "a drained job id is free again");
    assert_eq!(h.drain(true).await.expect("drain"), 4);
    let c = h.counts().await.expect("counts");
    assert_eq!((c.waiting, c.delayed, c.active), (0, 0, 1));
    assert_eq!(state(&b, &q, "w-0").await, Some(JobState::Active));
    assert_eq!(h.drain(true).await.expect("drain"), 0);
    jobs.shutdown().await;
}

/// Leases `id` and records `outcome` for it, straight on the backend.
async fn finish(b: &Backend, q: &str, id: &str, outcome: JobOutcome) {
    b.add(
        q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id(id))],
    )
    .await
    .expect("add");
    let c = b
        .claim(
            q,
            ClaimRequest::new("t", vec![], 1, Duration::from_secs(30)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let c = b
        .claim(
            q,
            ClaimRequest::new("t", vec![Ack::new(id, outcome)], 0, Duration::from_secs(30)),
        )
        .await
        .expect("ack");
    assert!(c.stale_acks.is_empty());
}

/// Clean deletes finished jobs of one state that finished longer ago than the age given, oldest
/// first, up to the limit; unfinished states are refused.
pub async fn clean_deletes_old_finished_jobs_by_state(b: Backend) {
    let q = queue();
    let done = || JobOutcome::Completed { result: "1".into() };
    let failed = |dead_letter| JobOutcome::Failed {
        error: "x".into(),
        dead_letter,
    };
    finish(&b, &q, "c1", done()).await;
    finish(&b, &q, "c2", done()).await;
    finish(&b, &q, "f1", failed(false)).await;
    finish(&b, &q, "x1", failed(true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(&b, &q, "c3", done()).await;
    let jobs = Jobs::builder_shared(b.clone())
        .start()
        .await
        .expect("start");
    let h = jobs.queue(&q).expect("queue");
    let age = Duration::from_millis(200);
    let mut old = h
        .clean(JobState::Completed, age, 1000)
        .await
        .expect("clean");
    old.sort();
    assert_eq!(old, ["c1", "c2"]);
    assert!(b.get(&q, "c1").await.expect("get").is_none());
    assert_eq!(state(&b, &q, "c3").await, Some(JobState::Completed));
    assert_eq!(
        h.clean(JobState::Completed, Duration::ZERO, 0)
            .await
            .expect("clean"),
        Vec::<String>::new()
    );
    assert_eq!(
        h.clean(JobState::Completed, Duration::ZERO, 1)
            .await
            .expect("clean"),
        ["c3"]
    );
    assert_eq!(
        h.clean(JobState::Failed, age, 10).await.expect("clean"),
        ["f1"]
    );
    assert_eq!(
        h.clean(JobState::Dead, age, 10).await.expect("clean"),
        ["x1"]
    );
    let c = h.counts().await.expect("counts");
    assert_eq!((c.completed, c.failed, c.dead), (0, 0, 0));
    for s in [JobState::Waiting, JobState::Delayed, JobState::Active] {
        let e = h.clean(s, age, 10).await.expect_err("unfinished state");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
    jobs.shutdown().await;
}
