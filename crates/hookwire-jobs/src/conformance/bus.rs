//! Lifecycle events on the event bus (features `conformance` + `events`): not part of
//! [`jobs_conformance!`](crate::jobs_conformance) (the bus is the caller's choice), but one case
//! each backend's tests run with a bus of their own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Event, NonRetryableError};
use hookwire_events::{Bus, Group, HandlerError};

use super::{Backend, eventually, queue, quick_defaults};
use crate::{ClaimRequest, DispatchOptions, JobDef, Jobs, NewJob};

/// Completed, failed, dead-lettered and stalled jobs of a runtime built with
/// `publish_events(&bus)` reach the bus as `job.<queue>.<state>`, each transition once, with
/// the job's id as resource id.
pub async fn lifecycle_events_reach_the_bus(b: Backend, bus: Bus) {
    let (ok, dead, failed, st) = (queue(), queue(), queue(), queue());
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let s = Arc::clone(&seen);
    let _sub = bus
        .subscribe(
            Group::from_beginning(format!("audit-{ok}")),
            "job.*",
            move |e: Event| {
                s.lock().expect("lock").push(e);
                async { Ok::<(), HandlerError>(()) }
            },
        )
        .await
        .expect("subscribe");
    // A job held by a worker that vanished: recovered as stalled, then run.
    b.add(
        &st,
        vec![NewJob::new("3").with_options(&DispatchOptions::new().job_id("st"))],
    )
    .await
    .expect("add");
    b.claim(
        &st,
        ClaimRequest::new("vanished", vec![], 1, Duration::from_millis(100)),
    )
    .await
    .expect("claim");
    let refuse = |q: &str| {
        JobDef::new(q, |_: u8, _| async {
            Err::<(), _>(NonRetryableError::new(std::io::Error::other("declined")))
        })
    };
    let jobs = Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(JobDef::new(&ok, |_: u8, _| async {
            Ok::<_, std::io::Error>(7)
        }))
        .job(refuse(&dead).dead_letter_queue())
        .job(refuse(&failed))
        .job(
            JobDef::new(&st, |_: u8, _| async { Ok::<_, std::io::Error>(()) })
                .lease(Duration::from_millis(100)),
        )
        .publish_events(&bus)
        .start()
        .await
        .expect("start");
    for (q, id) in [(&ok, "o"), (&dead, "d"), (&failed, "f")] {
        jobs.dispatch(q, &1, DispatchOptions::new().job_id(id))
            .await
            .expect("dispatch");
    }
    let mut want = vec![
        (format!("job.{ok}.completed"), "o"),
        (format!("job.{dead}.dead-lettered"), "d"),
        (format!("job.{failed}.failed"), "f"),
        (format!("job.{st}.stalled"), "st"),
        (format!("job.{st}.completed"), "st"),
    ];
    want.sort();
    let names = || {
        let mut v: Vec<(String, String)> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|e| {
                let id = e.meta.resource_id.clone().unwrap_or_default();
                (e.name.clone(), id)
            })
            .collect();
        v.sort();
        v
    };
    let expected = want.len();
    eventually(Duration::from_secs(10), "five lifecycle events", || {
        let n = names().len();
        async move { n >= expected }
    })
    .await;
    // Time for a duplicate, if there were one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = names();
    let want: Vec<(String, String)> = want.into_iter().map(|(n, i)| (n, i.to_owned())).collect();
    assert_eq!(got, want);
    let completed = seen
        .lock()
        .expect("lock")
        .iter()
        .find(|e| e.name == format!("job.{ok}.completed"))
        .cloned()
        .expect("completed event");
    assert_eq!(completed.data["result"], 7);
    assert_eq!(completed.id, format!("job:{ok}:o:completed:1"));
    jobs.shutdown().await;
}
