//! Cases on signals: waits resumed by a payload or a timeout, signals kept until the wait,
//! resume keys de-duplicated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::{LIMIT, Store, engine, finished, pass, until};
use crate::{
    BoxError, ErrorKind, Next, Resumed, RunStatus, Scope, Signalled, StartOptions, Step,
    StepStatus, Wait, Workflow,
};

/// A wait parks the run; the signal's payload becomes the wait's output (`Resumed::Signal`),
/// and a wait with a timeout resumes with `Resumed::Timeout`.
pub async fn wait_resumes_with_the_payload_or_the_timeout(store: Store) {
    let wf = Workflow::builder("approve", 1)
        .step(pass("submit"))
        .wait(
            "approval",
            Wait::signal("decision").timeout(Duration::from_millis(400)),
        )
        .step(Step::new("apply", |r: Resumed<String>, _| async move {
            Ok::<_, BoxError>(Next::output(match r {
                Resumed::Signal(s) => s,
                Resumed::Timeout => "timed out".to_owned(),
            }))
        }))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "approve", &0, StartOptions::new())
        .await
        .unwrap();
    let w = until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    assert_eq!(w.waiting_for.as_deref(), Some("decision"));
    let (sig, _) = e
        .signal(&Scope::All, &s.run.id, "decision", &"yes", None)
        .await
        .unwrap();
    assert_eq!(sig, Signalled::Resumed);
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.output, Some(json!("yes")));
    assert_eq!(r.steps[1].output, Some(json!({"signal": "yes"})));

    let s = e
        .start(&Scope::All, "approve", &0, StartOptions::new())
        .await
        .unwrap();
    let t0 = Instant::now();
    let r = finished(&e, &s.run.id).await;
    assert!(t0.elapsed() >= Duration::from_millis(350));
    assert_eq!(r.output, Some(json!("timed out")));
    e.shutdown().await;
}

/// A signal that arrives while an earlier step still runs is stored and consumed when the run
/// reaches the wait.
pub async fn signal_before_wait_is_kept(store: Store) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let wf = Workflow::builder("early", 1)
        .step(Step::new("slow", move |v: Value, _| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, BoxError>(Next::output(v))
            }
        }))
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "early", &0, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "slow running", |r| {
        r.steps
            .first()
            .is_some_and(|s| s.status == StepStatus::Running)
    })
    .await;
    let (sig, run) = e
        .signal(&Scope::All, &s.run.id, "go", &json!({"n": 1}), Some("k1"))
        .await
        .unwrap();
    assert_eq!(sig, Signalled::Queued);
    assert_eq!(run.pending_signals, 1);
    gate.notify_one();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output, Some(json!({"signal": {"n": 1}})));
    assert_eq!(r.pending_signals, 0);
    e.shutdown().await;
}

/// The same resume key twice advances the run once; a signal to a finished run is a conflict.
pub async fn duplicate_resume_key_advances_once(store: Store) {
    let wf = Workflow::builder("twice", 1)
        .wait("first", Wait::signal("go"))
        .wait("second", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "twice", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;
    until(&e, &id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    let (a, _) = e
        .signal(&Scope::All, &id, "go", &1, Some("k1"))
        .await
        .unwrap();
    let (b, run) = e
        .signal(&Scope::All, &id, "go", &1, Some("k1"))
        .await
        .unwrap();
    assert_eq!((a, b), (Signalled::Resumed, Signalled::Duplicate));
    assert_eq!(run.current_step.as_deref(), Some("second"));
    assert_eq!(run.status, RunStatus::Waiting);
    assert_eq!(run.pending_signals, 0, "a duplicate is not queued either");
    let (c, run) = e
        .signal(&Scope::All, &id, "go", &2, Some("k2"))
        .await
        .unwrap();
    assert_eq!(c, Signalled::Resumed);
    assert_eq!(run.status, RunStatus::Completed);
    let late = e
        .signal(&Scope::All, &id, "go", &3, Some("k3"))
        .await
        .unwrap_err();
    assert_eq!((late.kind(), late.status()), (ErrorKind::Conflict, 409));
    e.shutdown().await;
}
