//! The demo's order flow as a black box: the real `hookwire demo`, a headless Chromium clicking
//! the page's order buttons, the `hookwire workflow` CLI against the running demo, a real
//! redis-server.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hookwire_testkit::browser::Chromium;
use serde_json::{Value, json};
use support::{BIN, Demo, eventually, http, http_body, screenshot_path};

/// ann@acme's demo token, as the page sends it to the workflow routes.
const ANN: (&str, &str) = ("Authorization", "Bearer ann@acme");

/// A run as the engine holds it, read through the demo's workflow routes with ann's token.
fn run_of(addr: SocketAddr, id: &str) -> Value {
    let (status, _, body) = http(addr, "GET", &format!("/workflows/order/runs/{id}"), &[ANN]);
    assert_eq!(status, 200, "GET run {id}: {body}");
    serde_json::from_str::<Value>(&body).unwrap()["run"].clone()
}

/// The names of a run's stored transitions (its journal), oldest first.
fn transitions(addr: SocketAddr, id: &str) -> Vec<String> {
    let path = format!("/workflows/order/runs/{id}/events");
    let (status, _, body) = http(addr, "GET", &path, &[ANN]);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A JS expression for the element `css` inside run `id`'s row.
fn in_row(id: &str, css: &str) -> String {
    format!("document.querySelector('tr[data-run=\"{id}\"] {css}')")
}

/// Waits until the element `css` in run `id`'s row reads `want`.
async fn row_text(page: &Chromium, id: &str, css: &str, want: &str) {
    let js = format!("{}?.textContent === '{want}'", in_row(id, css));
    page.wait_for(&js, Duration::from_secs(30)).await.unwrap();
}

/// Waits until the page shows run `id` with `status`.
async fn shows(page: &Chromium, id: &str, status: &str) {
    row_text(page, id, ".run-status", status).await;
}

/// Clicks a row's button once it is enabled.
async fn click(page: &Chromium, id: &str, button: &str) {
    let b = in_row(id, &format!("button.{button}"));
    page.wait_for(&format!("{b} && !{b}.disabled"), Duration::from_secs(30))
        .await
        .unwrap();
    page.eval(&format!("{b}.click()")).await.unwrap();
}

/// Clicks "New order" and returns the id of the run it started.
async fn new_order(page: &Chromium) -> String {
    page.eval("demo.lastCreated = null; document.getElementById('new-order').click()")
        .await
        .unwrap();
    page.wait_for("demo.lastCreated", Duration::from_secs(30))
        .await
        .unwrap();
    let id = page.eval("demo.lastCreated").await.unwrap();
    id.as_str().unwrap().to_owned()
}

/// The order flow on the page: an order created there is parked waiting for its payment; Pay
/// makes it sleep (`pack`) and ship; Cancel ends another; a third is paid, rewound to the
/// payment wait (it waits again, the first payment kept as superseded history) and paid again.
/// Every step is checked on the page and in the engine through the routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_drives_order_runs_through_pay_cancel_and_rewind() {
    let demo = Demo::start(&["--interval-ms", "500", "--ship-after-ms", "3000"]);
    let addr = demo.addr;
    let page = Chromium::open(&demo.url("/?user=ann@acme"))
        .await
        .expect("chromium");
    // The generator's orders are runs too; their transitions reach the page over the
    // WebSocket, acme's only.
    page.wait_for(
        "demo.wfEvents.length > 0 && document.querySelectorAll('#runs tr').length > 0",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let foreign = page
        .eval("demo.wfEvents.filter(e => e.meta.organizationId !== 'acme').length")
        .await
        .unwrap();
    assert_eq!(foreign, 0, "another tenant's transition reached acme");

    // Pay: parked at `payment`, then `pack` sleeps and `ship` completes the run.
    let paid = new_order(&page).await;
    shows(&page, &paid, "waiting").await;
    let r = run_of(addr, &paid);
    assert_eq!(
        (&r["status"], &r["waiting_for"]),
        (&json!("waiting"), &json!("payment")),
        "{r}"
    );
    click(&page, &paid, "pay").await;
    shows(&page, &paid, "completed").await;
    row_text(&page, &paid, "[data-step=ship]", "ship: completed").await;
    let r = run_of(addr, &paid);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"]["shipped"], true, "{r}");
    assert_eq!(r["output"]["payment"]["by"], "ann@acme", "{r}");
    let names = transitions(addr, &paid);
    let at = |t: &str| {
        names
            .iter()
            .position(|n| n == &format!("workflow.order.{t}"))
            .unwrap_or_else(|| panic!("no {t} in {names:?}"))
    };
    assert!(at("waiting") < at("resumed") && at("resumed") < at("sleeping"));
    assert!(at("sleeping") < at("completed"), "{names:?}");

    // Cancel: terminal, and Pay is no longer offered.
    let dropped = new_order(&page).await;
    shows(&page, &dropped, "waiting").await;
    click(&page, &dropped, "cancel").await;
    shows(&page, &dropped, "cancelled").await;
    assert_eq!(run_of(addr, &dropped)["status"], "cancelled");
    let pay_off = page
        .eval(&format!("{}.disabled", in_row(&dropped, "button.pay")))
        .await
        .unwrap();
    assert_eq!(pay_off, true);

    // Rewind after paying (during `pack`, or after shipping on a slow machine): the run goes
    // back to the payment wait in a new generation, then a second payment completes it.
    let rewound = new_order(&page).await;
    shows(&page, &rewound, "waiting").await;
    click(&page, &rewound, "pay").await;
    row_text(&page, &rewound, "[data-step=payment]", "payment: completed").await;
    click(&page, &rewound, "rewind").await;
    page.wait_for(
        &in_row(&rewound, ".steps .superseded[data-step=payment]"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    shows(&page, &rewound, "waiting").await;
    let r = run_of(addr, &rewound);
    assert_eq!(
        (&r["status"], &r["generation"]),
        (&json!("waiting"), &json!(1)),
        "{r}"
    );
    let steps = r["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["step"] == "payment"
            && s["superseded"] == true
            && s["status"] == "completed"),
        "{r}"
    );
    click(&page, &rewound, "pay").await;
    shows(&page, &rewound, "completed").await;
    let r = run_of(addr, &rewound);
    assert_eq!(
        (&r["status"], &r["generation"]),
        (&json!("completed"), &json!(1)),
        "{r}"
    );
    assert_eq!(r["output"]["shipped"], true, "{r}");

    // The routes stay behind the demo token: none is 401, another organization sees nothing.
    let path = format!("/workflows/order/runs/{paid}");
    assert_eq!(http(addr, "GET", &path, &[]).0, 401);
    let globex = [("Authorization", "Bearer bob@globex")];
    assert_eq!(http(addr, "GET", &path, &globex).0, 404);
    page.eval("document.getElementById('flow').scrollIntoView()")
        .await
        .unwrap();
    page.screenshot(screenshot_path("demo-orders.png"))
        .await
        .unwrap();
}

/// Runs `hookwire workflow` with `args`; returns (exit code, stdout, stderr).
fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .arg("workflow")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `hookwire workflow` against a running demo on Redis: through its routes with the demo token
/// it lists, shows, signals (pays), cancels and rewinds order runs; with `--redis` it reads the
/// demo's run store; without the token or in another organization it is refused.
#[test]
fn the_workflow_cli_operates_the_demos_order_runs() {
    let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let redis_url = redis.url();
    let demo = Demo::start(&[
        "--redis",
        &redis_url,
        "--interval-ms",
        "60000",
        "--ship-after-ms",
        "200",
    ]);
    let addr = demo.addr;
    let start = |order: &str| {
        let body = format!(r#"{{"input": {{"order": "{order}", "amount": 5}}}}"#);
        let json = ("Content-Type", "application/json");
        let (status, _, out) =
            http_body(addr, "POST", "/workflows/order/runs", &[ANN, json], &body);
        assert_eq!(status, 202, "{out}");
        serde_json::from_str::<Value>(&out).unwrap()["run"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (paid, dropped) = (start("cli-1"), start("cli-2"));
    let t = Duration::from_secs(30);
    for id in [&paid, &dropped] {
        eventually(t, "the run to wait for its payment", || {
            run_of(addr, id)["status"] == "waiting"
        });
    }
    let url = format!("http://{addr}/workflows");
    let head = ["--url", url.as_str(), "--token", "ann@acme"];
    let with = |tail: &[&str]| -> Vec<String> {
        head.iter().chain(tail).map(|s| (*s).to_owned()).collect()
    };

    let (code, out, err) = cli(&with(&["runs", "order", "--status", "waiting"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&paid) && out.contains(&dropped), "{out}");
    let (code, out, _) = cli(&with(&["show", "order", &paid]));
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["run"]["status"],
        "waiting"
    );

    let (code, out, err) = cli(&with(&[
        "signal",
        "order",
        &paid,
        "payment",
        "--data",
        r#"{"by":"cli"}"#,
    ]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["signal"],
        "resumed"
    );
    eventually(t, "the paid run to ship", || {
        run_of(addr, &paid)["status"] == "completed"
    });
    assert_eq!(run_of(addr, &paid)["output"]["payment"]["by"], "cli");

    assert_eq!(cli(&with(&["cancel", "order", &dropped])).0, Some(0));
    assert_eq!(run_of(addr, &dropped)["status"], "cancelled");

    let (code, _, err) = cli(&with(&["rewind", "order", &paid, "payment"]));
    assert_eq!(code, Some(0), "{err}");
    eventually(t, "the rewound run to wait again", || {
        let r = run_of(addr, &paid);
        r["status"] == "waiting" && r["generation"] == 1
    });

    // The demo's run store, read straight from its Redis.
    let (code, out, err) = cli(&[
        "--redis", &redis_url, "runs", "order", "--status", "waiting",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&paid) && !out.contains(&dropped), "{out}");
    let (code, out, _) = cli(&["--redis", &redis_url, "show", "order", &dropped]);
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "cancelled"
    );

    // Fail-closed: no token is 401; another organization's token does not find acme's run.
    let (code, _, err) = cli(&["--url", &url, "show", "order", &paid]);
    assert_eq!(code, Some(1));
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(&[
        "--url",
        &url,
        "--token",
        "bob@globex",
        "cancel",
        "order",
        &paid,
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");
    assert_eq!(run_of(addr, &paid)["status"], "waiting", "nothing changed");
}
