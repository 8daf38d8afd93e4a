//! Failure: retries with backoff, non-retryable errors, timeouts, panics and the dead-letter queue.

use super::*;

/// A retryable error is retried after the backoff; attempts are counted.
pub async fn retries_with_backoff_then_success(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let n = r.hit(&m.id);
        t.lock().expect("lock").push(Instant::now());
        async move {
            if n < 3 {
                Err(std::io::Error::other(format!("flaky {n}")))
            } else {
                Ok(n)
            }
        }
    })
    .retries(3)
    .backoff(Backoff::fixed(Duration::from_millis(150)));
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(
        Duration::from_secs(5),
        "completed after retries",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 3);
    assert_eq!(rec.result.as_deref(), Some("3"));
    assert_eq!(rec.error.as_deref(), Some("flaky 2"));
    let t = times.lock().expect("lock").clone();
    for w in t.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(140),
            "backoff not honoured: {:?}",
            w[1] - w[0]
        );
    }
    jobs.shutdown().await;
}

/// After `retries + 1` attempts the job fails (not dead-lettered without a DLQ).
pub async fn retries_exhausted_fail(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        r.hit(&m.id);
        async { Err::<(), _>(std::io::Error::other("always")) }
    })
    .retries(2);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "failed", || async {
        state(&b, &q, &id).await == Some(JobState::Failed)
    })
    .await;
    assert_eq!(runs.0.lock().expect("lock")[&id], 3);
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 3);
    assert!(rec.finished_at_ms.is_some());
    assert_eq!(b.counts(&q).await.expect("counts").failed, 1);
    jobs.shutdown().await;
}

/// A `NonRetryableError` fails the job on its first attempt despite retries left.
pub async fn non_retryable_fails_at_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        r.hit(&m.id);
        async {
            Err::<(), _>(NonRetryableError::new(std::io::Error::other(
                "card declined",
            )))
        }
    })
    .retries(5)
    .dead_letter_queue();
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead", || async {
        state(&b, &q, &id).await == Some(JobState::Dead)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runs.0.lock().expect("lock")[&id],
        1,
        "retried a non-retryable error"
    );
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 1);
    assert!(rec.error.expect("error").contains("card declined"));
    jobs.shutdown().await;
}

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A job over its timeout fails as a retryable timeout and its future is dropped.
pub async fn timeout_drops_the_future(b: Backend) {
    let q = queue();
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (d, f) = (dropped.clone(), finished.clone());
    let def = JobDef::new(&q, move |_: u8, _| {
        let guard = DropFlag(d.clone());
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.fetch_add(1, Ordering::SeqCst);
            drop(guard);
            Ok::<_, std::io::Error>(())
        }
    })
    .timeout(Duration::from_millis(100))
    .retries(1);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "failed after timeouts", || async {
        state(&b, &q, &id).await == Some(JobState::Failed)
    })
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 2, "a timeout is retryable");
    assert!(rec.error.expect("error").contains("timed out"));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "each timed-out future was dropped"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    jobs.shutdown().await;
}

/// A job that fails with `downstream 503` until the returned flag is set, then returns its
/// payload.
fn failing_until_healed(q: &str) -> (JobDef, Arc<AtomicUsize>) {
    let heal = Arc::new(AtomicUsize::new(0));
    let h = heal.clone();
    let def = JobDef::new(q, move |v: serde_json::Value, _| {
        let ok = h.load(Ordering::SeqCst) > 0;
        async move {
            if ok {
                Ok(v)
            } else {
                Err(std::io::Error::other("downstream 503"))
            }
        }
    });
    (def, heal)
}

/// The DLQ keeps data, error, attempts and timestamps; re-drive runs the job again.
pub async fn dead_letter_contents_and_redrive(b: Backend) {
    let q = queue();
    let (def, heal) = failing_until_healed(&q);
    let def = def.retries(1).dead_letter_queue();
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &serde_json::json!({"order": 7}), DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead-lettered", || async {
        b.counts(&q).await.expect("counts").dead == 1
    })
    .await;
    let dead = jobs.dead_letters(&q, 0, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.id, id);
    assert_eq!(d.state, JobState::Dead);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&d.data).expect("json"),
        serde_json::json!({"order": 7})
    );
    assert_eq!(d.error.as_deref(), Some("downstream 503"));
    assert_eq!(d.attempts_made, 2);
    assert!(d.created_at_ms > 0 && d.finished_at_ms.expect("finished") >= d.created_at_ms);
    assert_eq!(
        b.counts(&q).await.expect("counts").failed,
        0,
        "dead jobs are not in failed"
    );

    heal.store(1, Ordering::SeqCst);
    assert_eq!(jobs.redrive(&q, None).await.expect("redrive"), 1);
    eventually(
        Duration::from_secs(5),
        "re-driven job completed",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    assert_eq!(b.counts(&q).await.expect("counts").dead, 0);
    assert_eq!(
        jobs.redrive(&q, Some(vec!["nope".into()]))
            .await
            .expect("redrive"),
        0
    );
    jobs.shutdown().await;
}

/// A handler that panics fails that attempt as retryable; the worker keeps running.
pub async fn panicking_handler_is_retried(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let n = r.hit(&m.id);
        async move {
            assert!(n > 1, "first attempt panics");
            Ok::<_, std::io::Error>(n)
        }
    })
    .retries(2);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(
        Duration::from_secs(5),
        "completed after a panic",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 2);
    assert_eq!(rec.error.as_deref(), Some("handler panicked"));
    jobs.shutdown().await;
}

/// A custom dead-letter queue name lists and re-drives the job's DLQ; bad, clashing or shared
/// names are refused by `start`.
pub async fn custom_dead_letter_queue_name(b: Backend) {
    let q = queue();
    let dlq = format!("{q}-dead");
    let (def, heal) = failing_until_healed(&q);
    let def = def.retries(0).dead_letter_queue_named(&dlq);
    assert_eq!(def.dead_letter_queue_name(), Some(dlq.as_str()));
    let jobs = start(&b, def.clone()).await;
    let id = jobs
        .dispatch(&q, &7u32, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead-lettered", || async {
        b.counts(&q).await.expect("counts").dead == 1
    })
    .await;
    let by_dlq = jobs.dead_letters(&dlq, 0, 10).await.expect("list");
    assert_eq!(by_dlq.len(), 1);
    assert_eq!(by_dlq[0].id, id);
    assert_eq!(by_dlq, jobs.dead_letters(&q, 0, 10).await.expect("list"));
    heal.store(1, Ordering::SeqCst);
    assert_eq!(jobs.redrive(&dlq, None).await.expect("redrive"), 1);
    eventually(Duration::from_secs(5), "re-driven job done", || async {
        state(&b, &q, &id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;

    let other = JobDef::new(format!("{q}-other"), |_: u32, _| async {
        Ok::<_, std::io::Error>(())
    });
    let refused = [
        vec![def.clone().dead_letter_queue_named("has space")],
        vec![
            def.clone().dead_letter_queue_named(other.name()),
            other.clone(),
        ],
        vec![def.clone(), other.clone().dead_letter_queue_named(&dlq)],
    ];
    for defs in refused {
        let mut builder = Jobs::builder_shared(b.clone());
        for d in defs {
            builder = builder.job(d);
        }
        let e = builder.start().await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    }
}
