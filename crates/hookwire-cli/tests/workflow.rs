//! `hookwire workflow` driven as a black box: against workflow routes served on a real socket
//! (with the bearer token they require) it lists, shows, signals, cancels and rewinds runs; against
//! a real redis-server it reads the run store; refusals and bad input exit with the documented
//! codes.

use std::process::{Command, Output};
use std::time::Duration;

use hookwire_testkit::RedisServer;
use hookwire_workflow::{
    BoxError, Caller, Engine, Next, RedisRunStore, Resumed, Routes, RunStatus, Scope, StartOptions,
    Step, Wait, Workflow,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");
const TOKEN: &str = "cli-test-token";

fn order() -> Workflow {
    Workflow::builder("order", 1)
        .step(Step::new("created", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .wait("payment", Wait::signal("paid"))
        .step(Step::new("ship", |r: Resumed<Value>, _| async move {
            let paid = matches!(r, Resumed::Signal(_));
            Ok::<_, BoxError>(Next::output(json!({ "shipped": paid })))
        }))
        .build()
        .unwrap()
}

/// Serves the engine's routes under `/workflows` on 127.0.0.1; returns the base URL.
async fn serve(engine: Engine) -> String {
    let routes = Routes::builder(engine)
        .prefix("/workflows")
        .authenticator(|h: &http::HeaderMap| {
            let want = format!("Bearer {TOKEN}");
            (h.get("authorization")?.as_bytes() == want.as_bytes()).then(|| Caller::operator("cli"))
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    format!("http://{addr}/workflows")
}

async fn hookwire(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
        .await
        .unwrap()
}

fn args(head: &[&str], tail: &[&str]) -> Vec<String> {
    head.iter().chain(tail).map(|s| (*s).to_owned()).collect()
}

fn ok(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "exit {:?}: {out}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn waiting(engine: &Engine) -> String {
    let run = engine
        .start(
            &Scope::All,
            "order",
            &json!({ "total": 42 }),
            StartOptions::new(),
        )
        .await
        .unwrap()
        .run;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = engine.get(&Scope::All, &run.id).await.unwrap();
        if r.status == RunStatus::Waiting {
            return run.id;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_signal_cancel_and_rewind_go_through_the_routes_with_the_token() {
    let engine = Engine::builder().workflow(order()).build().await.unwrap();
    let url = serve(engine.clone()).await;
    let head = ["workflow", "--url", url.as_str(), "--token", TOKEN];
    let paid = waiting(&engine).await;
    let dropped = waiting(&engine).await;

    let page = ok(&hookwire(args(&head, &["runs", "order", "--status", "waiting"])).await);
    let ids: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [paid.as_str(), dropped.as_str()], "{page}");

    let shown = ok(&hookwire(args(&head, &["show", "order", &paid])).await);
    assert_eq!(shown["run"]["status"], "waiting", "{shown}");

    let signalled = ok(&hookwire(args(
        &head,
        &[
            "signal",
            "order",
            &paid,
            "paid",
            "--data",
            r#"{"amount":42}"#,
            "--resume-key",
            "pay-1",
        ],
    ))
    .await);
    assert_eq!(signalled["signal"], "resumed", "{signalled}");
    let done = engine
        .wait_for(&Scope::All, &paid, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!({ "shipped": true })));

    ok(&hookwire(args(&head, &["cancel", "order", &dropped])).await);
    let cancelled = engine.get(&Scope::All, &dropped).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);

    ok(&hookwire(args(&head, &["rewind", "order", &paid, "payment"])).await);
    let rewound = engine.get(&Scope::All, &paid).await.unwrap();
    assert_eq!(rewound.generation, 1, "{rewound:#?}");
    assert_eq!(
        rewound.status,
        RunStatus::Waiting,
        "back at the payment wait"
    );

    let again = hookwire(args(&head, &["cancel", "order", &dropped])).await;
    assert_eq!(again.status.code(), Some(0), "cancelling twice is a no-op");
    // A cancelled run cannot be rewound: the service's 409 is exit 1 with its message.
    let refused = hookwire(args(&head, &["rewind", "order", &dropped, "created"])).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("409"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_routes_refuse_and_the_cli_exits_1() {
    let engine = Engine::builder().workflow(order()).build().await.unwrap();
    let url = serve(engine.clone()).await;
    let run = waiting(&engine).await;
    for head in [
        vec!["workflow", "--url", url.as_str()],
        vec!["workflow", "--url", url.as_str(), "--token", "wrong"],
    ] {
        let o = hookwire(args(&head, &["cancel", "order", &run])).await;
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("401"), "{err}");
    }
    assert_eq!(
        engine.get(&Scope::All, &run).await.unwrap().status,
        RunStatus::Waiting,
        "nothing changed"
    );
    let head = ["workflow", "--url", url.as_str(), "--token", TOKEN];
    let missing = hookwire(args(&head, &["show", "order", "run_nope"])).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    // A path-changing argument is refused before anything is sent.
    let bad = hookwire(args(&head, &["show", "order", "../../x"])).await;
    assert_eq!(bad.status.code(), Some(2));
    let bad = hookwire(args(&["workflow"], &["runs", "order"])).await;
    assert_eq!(bad.status.code(), Some(2), "neither --url nor --redis");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_runs_and_show_read_the_store_and_writes_are_refused() {
    let redis = RedisServer::start().unwrap();
    let engine = Engine::builder()
        .store(RedisRunStore::connect(&redis.url()).await.unwrap())
        .workflow(order())
        .build()
        .await
        .unwrap();
    let run = waiting(&engine).await;
    let url = redis.url();
    let head = ["workflow", "--redis", url.as_str()];
    let o = hookwire(args(&head, &["runs", "order", "--status", "waiting"])).await;
    let line = ok(&o);
    assert_eq!(line["id"], run.as_str());
    assert_eq!(line["status"], "waiting");
    let shown = ok(&hookwire(args(&head, &["show", "order", &run])).await);
    assert_eq!(shown["status"], "waiting");
    assert!(shown["revision"].as_u64().unwrap() >= 1);
    let none = hookwire(args(&head, &["runs", "order", "--status", "completed"])).await;
    assert!(none.status.success() && none.stdout.is_empty());
    let refused = hookwire(args(&head, &["signal", "order", &run, "paid"])).await;
    assert_eq!(refused.status.code(), Some(2));
    engine.shutdown().await;
}
