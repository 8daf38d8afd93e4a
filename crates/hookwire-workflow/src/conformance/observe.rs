//! Cases on what callers observe: paged, organization-scoped listing and the per-run
//! sequence of published transitions.

use std::sync::Arc;

use serde_json::json;

use super::{LIMIT, Store, add, engine, finished, until};
use crate::{Engine, MemorySink, RunQuery, RunStatus, Scope, StartOptions, Wait, Workflow};

/// Listing is paged in id order (start order to the millisecond) and filtered by workflow and status; a scoped caller sees only
/// its organization's runs, and another organization's run is not found for every operation.
pub async fn list_is_paged_and_scoped_by_organization(store: Store) {
    let wf = Workflow::builder("lst", 1)
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let acme = Scope::organization("acme");
    let globex = Scope::organization("globex");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            e.start(&acme, "lst", &0, StartOptions::new())
                .await
                .unwrap()
                .run
                .id,
        );
    }
    let theirs = e
        .start(&globex, "lst", &0, StartOptions::new())
        .await
        .unwrap()
        .run
        .id;
    e.start(&Scope::All, "lst", &0, StartOptions::new())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut q = RunQuery::new(2).workflow("lst");
    loop {
        let page = e.list(&acme, q.clone()).await.unwrap();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.iter().map(|r| r.id.clone()));
        match page.next {
            Some(n) => q = q.after(n),
            None => break,
        }
    }
    // Ids sort by start time at millisecond resolution; within a millisecond, by chance.
    ids.sort();
    assert_eq!(seen, ids, "every acme run once, in id order");
    let mut sneaky = RunQuery::new(100);
    sneaky.organization = Some("globex".to_owned());
    let page = e.list(&acme, sneaky).await.unwrap();
    assert!(
        page.runs
            .iter()
            .all(|r| r.organization.as_deref() == Some("acme"))
    );
    let all = e
        .list(&Scope::All, RunQuery::new(100).workflow("lst"))
        .await
        .unwrap();
    assert_eq!(all.runs.len(), 7);
    e.signal(&acme, &ids[0], "go", &1, None).await.unwrap();
    finished(&e, &ids[0]).await;
    let waiting = e
        .list(&acme, RunQuery::new(100).status(RunStatus::Waiting))
        .await
        .unwrap();
    assert_eq!(waiting.runs.len(), 4);

    assert!(e.get(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(
        e.signal(&acme, &theirs, "go", &1, None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(e.cancel(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(e.pause(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(
        e.rewind(&acme, &theirs, "w", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        e.journal(&acme, &theirs, 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        e.get(&globex, &theirs).await.unwrap().status,
        RunStatus::Waiting
    );
    e.shutdown().await;
}

/// Every transition reaches the sink as `workflow.<id>.<transition>` with the run id as stream
/// and a per-run sequence 1, 2, 3…; the journal replays the ones after a given sequence.
pub async fn transitions_carry_a_per_run_sequence(store: Store) {
    let sink = Arc::new(MemorySink::new());
    let wf = Workflow::builder("seq", 1)
        .step(add("a", 1))
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = Engine::builder()
        .store_shared(store.clone())
        .sink_shared(sink.clone())
        .workflow(wf)
        .build()
        .await
        .unwrap();
    let s = e
        .start(&Scope::organization("acme"), "seq", &0, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    e.signal(&Scope::All, &s.run.id, "go", &1, None)
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    let mut events = sink.events_of(&s.run.id);
    events.sort_by_key(|e| e.version);
    let seqs: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(seqs, (1..=r.sequence).collect::<Vec<_>>());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let expect = [
        "workflow.seq.started",
        "workflow.seq.step_started",
        "workflow.seq.step_completed",
        "workflow.seq.waiting",
        "workflow.seq.resumed",
        "workflow.seq.step_completed",
        "workflow.seq.completed",
    ];
    assert_eq!(names, expect);
    assert!(events.iter().all(|e| e.organization_id() == Some("acme")));
    assert!(events.iter().all(|e| e.data["runId"] == json!(s.run.id)));
    let replay = e.journal(&Scope::All, &s.run.id, 3).await.unwrap();
    assert_eq!(
        replay.iter().map(|e| e.version).collect::<Vec<_>>(),
        (4..=r.sequence).collect::<Vec<_>>()
    );
    e.shutdown().await;
}
