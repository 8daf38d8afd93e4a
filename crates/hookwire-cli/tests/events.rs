//! `hookwire events` driven as a black box against a real redis-server: tail sees what publish
//! sends; a poison event's dead letter is listed, shown, redriven (the group's handler gets the
//! identical event) and discarded; bad input is a clear error with the documented exit code.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::Event;
use hookwire_events::{Bus, Group, HandlerError, NonRetryable, RedisStreams};
use hookwire_testkit::RedisServer;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");

fn events(url: &str, args: &[&str]) -> Output {
    hookwire(&["events", "--redis", url, "--stream", "cli"], args)
}

fn hookwire(head: &[&str], args: &[&str]) -> Output {
    Command::new(BIN).args(head).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tail_prints_each_published_event_that_matches_as_one_json_line() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let mut tail = Command::new(BIN)
        .args(["events", "--redis", &url, "--stream", "cli"])
        .args(["tail", "order.*", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tail.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("tailing order.*"), "{line}");

    let id = ok(&events(
        &url,
        &[
            "publish",
            "--type",
            "order.created",
            "--data",
            r#"{"total":42}"#,
            "--partition-key",
            "o-1",
            "--organization",
            "acme",
        ],
    ));
    let id = id.trim();
    assert!(id.starts_with("evt_"), "{id}");
    ok(&events(&url, &["publish", "--type", "user.created"]));
    ok(&events(
        &url,
        &["publish", "--type", "order.paid", "--id", "pay-1"],
    ));

    let out = tail.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["id"], id);
    assert_eq!(lines[0]["name"], "order.created");
    assert_eq!(lines[0]["data"], json!({"total": 42}));
    assert_eq!(lines[0]["meta"]["partitionKey"], "o-1");
    assert_eq!(lines[0]["meta"]["organizationId"], "acme");
    // `user.created` does not match the pattern.
    assert_eq!(lines[1]["id"], "pay-1");
}

/// Finds the one dead letter of the bus through the CLI.
fn only_dead_letter(url: &str) -> Option<Value> {
    let out = ok(&events(url, &["dlq", "list"]));
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() <= 1, "{rows:?}");
    rows.into_iter().next()
}

/// Publishes an `order.created` event with `args` and waits until it is the one dead letter.
fn park(url: &str, args: &[&str]) -> Value {
    let mut publish = vec!["publish", "--type", "order.created"];
    publish.extend_from_slice(args);
    ok(&events(url, &publish));
    let mut row = None;
    wait_for("the dead letter", || {
        row = only_dead_letter(url);
        row.is_some()
    });
    row.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_listed_shown_redriven_identically_and_discarded() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let transport = RedisStreams::connect(&url)
        .await
        .unwrap()
        .stream("cli")
        .node_id("billing-1");
    let bus = Bus::builder(transport).build().unwrap();
    let accept = Arc::new(AtomicBool::new(false));
    let handled: Arc<Mutex<Vec<Event>>> = Arc::default();
    let (a, h) = (accept.clone(), handled.clone());
    let _sub = bus
        .subscribe(
            Group::from_beginning("billing"),
            "order.*",
            move |e: Event| {
                let (a, h) = (a.clone(), h.clone());
                async move {
                    if e.data["poison"] == true && !a.load(Ordering::SeqCst) {
                        return Err(NonRetryable::new("order without a customer").into());
                    }
                    h.lock().unwrap().push(e);
                    Ok::<(), HandlerError>(())
                }
            },
        )
        .await
        .unwrap();

    // The CLI runs as a child process; the bus keeps handling on the runtime meanwhile.
    tokio::task::spawn_blocking(move || {
        let row = park(
            &url,
            &[
                "--id",
                "poison-1",
                "--partition-key",
                "o-7",
                "--data",
                r#"{"poison":true,"total":7}"#,
            ],
        );
        assert_eq!(row["group"], "billing");
        assert_eq!(row["eventId"], "poison-1");
        assert_eq!(row["type"], "order.created");
        assert_eq!(row["attempts"], 1);
        assert!(
            row["lastError"]
                .as_str()
                .unwrap()
                .contains("order without a customer"),
            "{row}"
        );
        let dl = row["id"].as_str().unwrap().to_owned();

        let shown: Value = serde_json::from_str(&ok(&events(&url, &["dlq", "show", &dl]))).unwrap();
        assert_eq!(shown["id"], dl);
        assert_eq!(shown["event"]["id"], "poison-1");
        assert_eq!(shown["event"]["data"], json!({"poison": true, "total": 7}));
        assert_eq!(shown["event"]["meta"]["partitionKey"], "o-7");
        assert_eq!(shown["failures"].as_array().unwrap().len(), 1);

        accept.store(true, Ordering::SeqCst);
        let out = ok(&events(&url, &["dlq", "redrive", &dl]));
        assert_eq!(out.trim(), format!("redriven {dl}"));
        wait_for("the redriven event", || !handled.lock().unwrap().is_empty());
        let got = handled.lock().unwrap()[0].clone();
        let original: Event = serde_json::from_value(shown["event"].clone()).unwrap();
        assert_eq!(got, original, "the handler receives the identical event");
        assert!(only_dead_letter(&url).is_none());
        // Gone: show and redrive say so and fail.
        let o = events(&url, &["dlq", "show", &dl]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("no dead letter"), "{}", stderr(&o));
        assert_eq!(
            events(&url, &["dlq", "redrive", &dl]).status.code(),
            Some(1)
        );

        // A second poison event is discarded instead.
        accept.store(false, Ordering::SeqCst);
        let row = park(&url, &["--id", "poison-2", "--data", r#"{"poison":true}"#]);
        let dl2 = row["id"].as_str().unwrap().to_owned();
        assert_ne!(dl2, dl);
        let out = ok(&events(&url, &["dlq", "discard", &dl2]));
        assert_eq!(out.trim(), format!("discarded {dl2}"));
        assert!(only_dead_letter(&url).is_none());
        assert_eq!(
            events(&url, &["dlq", "discard", &dl2]).status.code(),
            Some(1)
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            handled.lock().unwrap().len(),
            1,
            "discarded means not delivered"
        );
    })
    .await
    .unwrap();
    bus.shutdown().await;
}

#[test]
fn bad_input_is_a_clear_error_with_a_non_zero_exit() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let big = std::env::temp_dir().join(format!("hookwire-big-{}.json", std::process::id()));
    std::fs::write(&big, format!("\"{}\"", "x".repeat(2 << 20))).unwrap();
    let big_arg = format!("@{}", big.display());
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["publish", "--type", "a.b", "--data", &big_arg],
            2,
            "larger than an event may be",
        ),
        (
            &["publish", "--type", "a.b", "--data", "@/nonexistent/x.json"],
            2,
            "cannot read --data file",
        ),
        (
            &["publish", "--type", "a.b", "--data", "{oops"],
            2,
            "--data is not JSON",
        ),
        (&["publish", "--type", "$system"], 2, "reserved"),
        (&["publish", "--type", ""], 2, ""),
        (&["publish"], 2, "--type"),
        (&["dlq", "list", "--limit", "0"], 2, "limit"),
        (&["dlq", "redrive", "billing/1-0"], 1, "no dead letter"),
        (&["dlq", "discard", "billing/1-0"], 1, "no dead letter"),
        (&["tail"], 2, "PATTERN"),
        (&["frobnicate"], 2, ""),
    ];
    for (args, code, msg) in cases {
        let o = events(&url, args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    let _ = std::fs::remove_file(&big);
    let heads: &[(&[&str], i32, &str)] = &[
        (
            &["events", "--redis", &url, "--stream", "no spaces"],
            2,
            "stream name",
        ),
        (
            &["events", "--redis", "localhost:6379"],
            2,
            "not a Redis URL",
        ),
        // Nothing listens on port 1: a failure, not a usage error.
        (
            &["events", "--redis", "redis://127.0.0.1:1/"],
            1,
            "cannot connect",
        ),
    ];
    for (head, code, msg) in heads {
        let o = hookwire(head, &["dlq", "list"]);
        assert_eq!(o.status.code(), Some(*code), "{head:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{head:?}: {}", stderr(&o));
    }
}
