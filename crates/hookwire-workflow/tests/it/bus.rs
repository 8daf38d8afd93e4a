//! Transitions reach the event bus as `workflow.<id>.<transition>` events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_events::{Bus, HandlerError, MemoryTransport};
use hookwire_workflow::{BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Workflow};

#[tokio::test]
async fn every_transition_of_a_run_is_published_on_the_bus() {
    let bus = Bus::builder(MemoryTransport::new()).build().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let _sub = bus
        .broadcast("workflow.*", move |e: hookwire_core::Event| {
            log.lock().unwrap().push(e.name.clone());
            std::future::ready(Ok::<_, HandlerError>(()))
        })
        .await
        .unwrap();
    let wf = Workflow::builder("order", 1)
        .step(Step::new("ship", |n: u64, _| async move {
            Ok::<_, BoxError>(Next::output(n + 1))
        }))
        .build()
        .unwrap();
    let engine = Engine::builder()
        .workflow(wf)
        .sink(bus.clone())
        .build()
        .await
        .unwrap();
    let started = engine
        .start(&Scope::All, "order", &1u64, StartOptions::default())
        .await
        .unwrap();
    let run = engine
        .wait_for(&Scope::All, &started.run.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    let names = seen.lock().unwrap().clone();
    assert!(
        names
            .first()
            .is_some_and(|n| n.starts_with("workflow.order.")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".completed")), "{names:?}");
    engine.shutdown().await;
}
