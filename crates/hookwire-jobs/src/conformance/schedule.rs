//! Repeats and cron schedules: each slot or tick runs once across runtimes.

use super::*;

/// A repeat declared by two runtimes runs once per slot.
pub async fn repeat_runs_each_slot_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let every = Duration::from_millis(300);
    let mut rts = Vec::new();
    for _ in 0..2 {
        let r =
            crate::Repeat::every(&q, every, &serde_json::json!({"tick": true})).expect("repeat");
        rts.push(
            Jobs::builder_shared(b.clone())
                .defaults(quick_defaults())
                .job(counting(&q, &runs).concurrency(2))
                .repeat(r)
                .start()
                .await
                .expect("start"),
        );
    }
    eventually(Duration::from_secs(10), "four slots ran", || async {
        runs.distinct() >= 4
    })
    .await;
    assert_eq!(runs.duplicates(), 0, "a slot ran twice");
    let ids: Vec<String> = runs.0.lock().expect("lock").keys().cloned().collect();
    assert!(
        ids.iter().all(|id| id.starts_with("repeat-300-")),
        "{ids:?}"
    );
    for r in rts {
        r.shutdown().await;
    }
    assert!(Repeat::every(&q, Duration::from_millis(1), &1).is_err());
    let zero = counting(&q, &runs).rate_limit(0, Duration::from_secs(1));
    let err = Jobs::builder_shared(b.clone())
        .job(zero)
        .start()
        .await
        .expect_err("rate 0");
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

fn every_second(q: &str) -> crate::ScheduleBuilder {
    Schedule::builder("every-second", q, "* * * * * *")
        .timezone("UTC")
        .data(&7)
}

/// Two runtimes declaring one schedule: each tick is enqueued once (the stored run count equals
/// the jobs run), tick job ids carry the tick, and the run limit holds across both.
pub async fn schedule_enqueues_each_tick_once_across_runtimes(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mut runtimes = Vec::new();
    for _ in 0..2 {
        let s = every_second(&q).limit(3).build().expect("schedule");
        let jobs = Jobs::builder_shared(b.clone())
            .defaults(quick_defaults())
            .job(counting(&q, &runs))
            .schedule(s)
            .start()
            .await
            .expect("start");
        runtimes.push(jobs);
    }
    eventually(Duration::from_secs(8), "three ticks run", || async {
        b.counts(&q).await.expect("counts").completed == 3
    })
    .await;
    // Two more ticks pass: the limit stops both runtimes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let c = b.counts(&q).await.expect("counts");
    assert_eq!((c.completed, c.waiting, c.active), (3, 0, 0));
    assert_eq!(runs.distinct(), 3);
    assert_eq!(runs.duplicates(), 0);
    let listed = runtimes[0].schedules(&q).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].runs, 3, "a tick was enqueued by both runtimes");
    let last = listed[0].last_tick_ms.expect("last tick");
    assert_eq!(last % 1000, 0, "ticks fall on whole seconds");
    let rec = b
        .get(&q, &format!("sched:every-second:{last}"))
        .await
        .expect("get")
        .expect("the last tick's job");
    assert_eq!((rec.state, rec.data.as_str()), (JobState::Completed, "7"));
    for j in runtimes {
        j.shutdown().await;
    }
}

/// Schedules are listed with their options and count; removing one stops every runtime
/// declaring it.
pub async fn schedules_are_listed_and_removed(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let s = every_second(&q).build().expect("schedule");
    let jobs = start_with(&b, counting(&q, &runs), s).await;
    eventually(Duration::from_secs(5), "a tick ran", || async {
        runs.distinct() >= 1
    })
    .await;
    let listed = jobs.schedules(&q).await.expect("list");
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(
        (info.id.as_str(), info.cron.as_str(), info.timezone.as_str()),
        ("every-second", "* * * * * *", "UTC")
    );
    assert_eq!(
        (info.limit, info.start_at_ms, info.end_at_ms),
        (None, None, None)
    );
    assert!(info.runs >= 1);
    assert!(
        jobs.remove_schedule(&q, "every-second")
            .await
            .expect("remove")
    );
    assert!(
        !jobs
            .remove_schedule(&q, "every-second")
            .await
            .expect("remove")
    );
    assert!(jobs.schedules(&q).await.expect("list").is_empty());
    let total = |c: crate::Counts| c.completed + c.waiting + c.active + c.delayed;
    let before = total(b.counts(&q).await.expect("counts"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        total(b.counts(&q).await.expect("counts")),
        before,
        "a removed schedule enqueued a tick"
    );
    jobs.shutdown().await;
}

async fn start_with(b: &Backend, def: JobDef, s: Schedule) -> Jobs {
    Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(def)
        .schedule(s)
        .start()
        .await
        .expect("start")
}
