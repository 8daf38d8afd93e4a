//! The HTTP routes over real sockets: fail-closed auth, the policy on every route, tenant
//! scoping, statuses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use hookwire_workflow::{
    BoxError, Caller, Engine, Next, Operation, Routes, Scope, Step, StepStatus, Wait, Workflow,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// `Bearer <user>@<org>` is a caller in `<org>`; `Bearer operator` sees every organization.
fn auth(h: &HeaderMap) -> Option<Caller> {
    let token = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    if token == "operator" {
        return Some(Caller::operator("op"));
    }
    let (user, org) = token.split_once('@')?;
    Some(Caller::in_organization(user, org))
}

struct App {
    addr: SocketAddr,
    engine: Engine,
    gate: Arc<Notify>,
}

async fn serve() -> App {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let exp = Workflow::builder("exp", 1)
        .step(Step::new("submit", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .wait("approve", Wait::signal("decision"))
        .step(Step::new("book", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let slow = Workflow::builder("slow", 1)
        .step(Step::new("block", move |v: Value, _| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, BoxError>(Next::output(v))
            }
        }))
        .build()
        .unwrap();
    let quick = Workflow::builder("quick", 1)
        .step(Step::new("one", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let engine = Engine::builder()
        .workflow(exp)
        .workflow(slow)
        .workflow(quick)
        .build()
        .await
        .unwrap();
    let router = Routes::builder(engine.clone())
        .prefix("/wf")
        .authenticator(auth)
        .policy(|c: &Caller, _op: Operation, _w: Option<&str>| c.subject != "denied")
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    App { addr, engine, gate }
}

/// One HTTP/1.1 exchange over a real socket; returns (status, JSON body or Null).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = hookwire_testkit::http_exchange(addr, method, path, &headers, &body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn start_run(app: &App, wf: &str, token: &str) -> String {
    let (st, body) = call(
        app.addr,
        "POST",
        &format!("/wf/{wf}/runs"),
        Some(token),
        Some(json!({"input": 1})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    body["run"]["id"].as_str().unwrap().to_owned()
}

async fn until_running(engine: &Engine, run: &str) {
    for _ in 0..500 {
        let r = engine.get(&Scope::All, run).await.unwrap();
        if r.steps
            .first()
            .is_some_and(|s| s.status == StepStatus::Running)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the first step of {run} never ran");
}

fn every_route(run: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let r = format!("/wf/exp/runs/{run}");
    vec![
        ("GET", "/wf".to_owned(), None),
        ("POST", "/wf/exp/runs".to_owned(), Some(json!({"input": 1}))),
        ("GET", "/wf/exp/runs".to_owned(), None),
        ("GET", r.clone(), None),
        (
            "POST",
            format!("{r}/signals/decision"),
            Some(json!({"payload": true})),
        ),
        ("POST", format!("{r}/cancel"), None),
        ("POST", format!("{r}/pause"), None),
        ("POST", format!("{r}/resume"), None),
        (
            "POST",
            format!("{r}/rewind"),
            Some(json!({"stepId": "submit"})),
        ),
        ("GET", format!("{r}/events"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_do_not_build_without_an_authenticator() {
    let wf = Workflow::builder("w", 1)
        .step(Step::new("a", |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        }))
        .build()
        .unwrap();
    let engine = Engine::builder().workflow(wf).build().await.unwrap();
    let err = Routes::builder(engine.clone()).build().unwrap_err();
    assert_eq!(err.kind(), hookwire_workflow::ErrorKind::Config);
    assert!(
        Routes::builder(engine.clone())
            .authenticator(auth)
            .prefix("wf")
            .build()
            .is_err()
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_401_without_credentials_and_403_when_the_policy_refuses() {
    let app = serve().await;
    let run = start_run(&app, "exp", "ada@acme").await;
    for (method, path, body) in every_route(&run) {
        let (st, _) = call(app.addr, method, &path, None, body.clone()).await;
        assert_eq!(st, 401, "{method} {path} without credentials");
        let (st, _) = call(app.addr, method, &path, Some("nobody"), body.clone()).await;
        assert_eq!(st, 401, "{method} {path} with a malformed token");
        let (st, _) = call(app.addr, method, &path, Some("denied@acme"), body).await;
        assert_eq!(st, 403, "{method} {path} refused by the policy");
    }
    app.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_run_is_404_on_every_route() {
    let app = serve().await;
    let run = start_run(&app, "exp", "ada@acme").await;
    for (method, path, body) in every_route(&run)
        .into_iter()
        .filter(|(_, p, _)| p.contains(&run))
    {
        let (st, b) = call(app.addr, method, &path, Some("eve@globex"), body).await;
        assert_eq!(st, 404, "{method} {path}: {b}");
    }
    let (st, page) = call(app.addr, "GET", "/wf/exp/runs", Some("eve@globex"), None).await;
    assert_eq!(st, 200);
    assert_eq!(page["runs"], json!([]));
    let (_, page) = call(
        app.addr,
        "GET",
        "/wf/exp/runs?status=waiting",
        Some("ada@acme"),
        None,
    )
    .await;
    assert!(page["runs"].as_array().unwrap().len() <= 1);
    let (st, _) = call(
        app.addr,
        "GET",
        &format!("/wf/exp/runs/{run}"),
        Some("operator"),
        None,
    )
    .await;
    assert_eq!(st, 200, "an operator sees every organization");
    let (st, _) = call(
        app.addr,
        "GET",
        &format!("/wf/quick/runs/{run}"),
        Some("ada@acme"),
        None,
    )
    .await;
    assert_eq!(st, 404, "a run is only found under its own workflow");
    let (st, _) = call(app.addr, "GET", "/wf/nope/runs", Some("ada@acme"), None).await;
    assert_eq!(st, 404);
    app.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answer_once_durable_with_their_statuses() {
    let app = serve().await;
    let t = Some("ada@acme");
    // The first step blocks: start still answers, with the run not finished.
    let (st, body) = call(
        app.addr,
        "POST",
        "/wf/slow/runs",
        t,
        Some(json!({"input": 5})),
    )
    .await;
    assert_eq!(st, 202);
    assert!(
        !["completed", "failed"].contains(&body["status"].as_str().unwrap()),
        "{body}"
    );
    assert!(
        body["links"]["self"]
            .as_str()
            .unwrap()
            .starts_with("/wf/slow/runs/")
    );
    let slow = body["run"]["id"].as_str().unwrap().to_owned();
    until_running(&app.engine, &slow).await;
    let (st, _) = call(
        app.addr,
        "POST",
        &format!("/wf/slow/runs/{slow}/rewind"),
        t,
        Some(json!({"stepId": "block"})),
    )
    .await;
    assert_eq!(st, 409, "rewind while the step runs");
    app.gate.notify_waiters();

    // Bounded long-poll: a quick run answers 200 with its output.
    let (st, body) = call(
        app.addr,
        "POST",
        "/wf/quick/runs?wait=5",
        t,
        Some(json!({"input": 7})),
    )
    .await;
    assert_eq!((st, &body["run"]["output"]), (200, &json!(7)), "{body}");
    let (st, _) = call(
        app.addr,
        "POST",
        "/wf/quick/runs?wait=soon",
        t,
        Some(json!({"input": 7})),
    )
    .await;
    assert_eq!(st, 400);

    // The same resume key twice advances once (the run is paused so it cannot finish between
    // the two signals), and the signal's payload reaches the next step.
    let run = start_run(&app, "exp", "ada@acme").await;
    let run_path = format!("/wf/exp/runs/{run}");
    let sig = format!("{run_path}/signals/decision");
    let (st, _) = call(app.addr, "POST", &format!("{run_path}/pause"), t, None).await;
    assert_eq!(st, 202);
    let first = json!({"payload": "ok", "resumeKey": "r1"});
    let (st, body) = call(app.addr, "POST", &sig, t, Some(first)).await;
    assert_eq!(st, 202, "{body}");
    assert!(["queued", "resumed"].contains(&body["signal"].as_str().unwrap()));
    let again = json!({"payload": "again", "resumeKey": "r1"});
    let (st, body) = call(app.addr, "POST", &sig, t, Some(again)).await;
    assert_eq!((st, &body["signal"]), (202, &json!("duplicate")));
    let (st, body) = call(
        app.addr,
        "POST",
        &format!("{run_path}/resume?wait=5"),
        t,
        None,
    )
    .await;
    assert_eq!(st, 202, "{body}");
    let done = app
        .engine
        .wait_for(&Scope::All, &run, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(done.output, Some(json!({"signal": "ok"})));
    let (st, _) = call(
        app.addr,
        "POST",
        &format!("{run_path}/signals/decision"),
        t,
        Some(json!({"payload": 1})),
    )
    .await;
    assert_eq!(st, 409, "a finished run takes no signal");
    let (st, _) = call(app.addr, "POST", &format!("{run_path}/pause"), t, None).await;
    assert_eq!(st, 409);
    let (st, b) = call(
        app.addr,
        "POST",
        &format!("{run_path}/rewind"),
        t,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    let (st, _) = call(
        app.addr,
        "POST",
        &format!("{run_path}/rewind"),
        t,
        Some(json!({"stepId": "zzz"})),
    )
    .await;
    assert_eq!(st, 422);
    let (st, body) = call(
        app.addr,
        "POST",
        &format!("{run_path}/rewind"),
        t,
        Some(json!({"stepId": "approve"})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["run"]["generation"], json!(1));
    let (st, body) = call(app.addr, "POST", &format!("{run_path}/pause"), t, None).await;
    assert_eq!((st, &body["run"]["paused"]), (202, &json!(true)));
    let (st, _) = call(app.addr, "POST", &format!("{run_path}/resume"), t, None).await;
    assert_eq!(st, 202);
    let (st, body) = call(app.addr, "POST", &format!("{run_path}/cancel"), t, None).await;
    assert_eq!((st, body["status"].as_str()), (202, Some("cancelled")));

    // The journal replays after a sequence, also from Last-Event-ID.
    let (st, all) = call(app.addr, "GET", &format!("{run_path}/events"), t, None).await;
    assert_eq!(st, 200);
    let all = all["events"].as_array().unwrap().clone();
    assert!(all.len() > 5);
    let (_, tail) = call(
        app.addr,
        "GET",
        &format!("{run_path}/events?after=3"),
        t,
        None,
    )
    .await;
    assert_eq!(tail["events"].as_array().unwrap().len(), all.len() - 3);
    let (st, wfs) = call(app.addr, "GET", "/wf", t, None).await;
    assert_eq!(st, 200);
    assert_eq!(wfs["workflows"].as_array().unwrap().len(), 3);
    app.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_stream_replays_after_last_event_id_and_closes_when_the_run_finishes() {
    let app = serve().await;
    let run = start_run(&app, "exp", "ada@acme").await;
    app.engine
        .wait_for(&Scope::All, &run, Duration::from_millis(300))
        .await
        .unwrap();
    let (addr, path, last) = (
        app.addr,
        format!("/wf/exp/runs/{run}/events"),
        format!("{run}-2"),
    );
    let reader = tokio::spawn(async move {
        let headers = [
            ("Authorization", "Bearer ada@acme"),
            ("Accept", "text/event-stream"),
            ("Last-Event-ID", last.as_str()),
        ];
        hookwire_testkit::http_exchange(addr, "GET", &path, &headers, "").await
    });
    // The stream is open: the run moves on while a client listens.
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.engine
        .signal(&Scope::All, &run, "decision", &"ok", None)
        .await
        .unwrap();
    let (status, text) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream closes once the run finished")
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        .collect();
    let done = app.engine.get(&Scope::All, &run).await.unwrap();
    let want: Vec<String> = (3..=done.sequence).map(|n| format!("{run}-{n}")).collect();
    assert_eq!(
        ids, want,
        "exactly the transitions after Last-Event-ID, in order"
    );
    assert!(text.contains("event: workflow.exp.completed"), "{text}");
    app.engine.shutdown().await;
}
