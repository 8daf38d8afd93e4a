//! The browser client in headless Chromium against a real server: snapshot, live patches,
//! overlays, `_resync` → refetch, server-side disconnect → resume with `Last-Event-ID`, and the
//! JS apply rules cross-checked against the Rust ones.

use std::net::SocketAddr;
use std::time::Duration;

use hookwire_sse::http::{Public, ResponseBody, SseApp, SseConfig};
use hookwire_sse::{BroadcastChannel, apply_patch_message};
use hookwire_testkit::browser::Chromium;
use serde_json::{Value, json};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>board</title><pre id="out"></pre>
<script type="module">
import { live, applyPatchMessage } from "/hookwire-sse.js";
window.applyPatchMessage = applyPatchMessage;
window.board = live("board", (s) => {
  window.lastState = s;
  document.getElementById("out").textContent = JSON.stringify(s, null, 1);
});
</script>"#;

const WAIT: Duration = Duration::from_secs(20);

/// Serves the test page at `/` and everything else through the SSE app.
async fn start(app: SseApp) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(hookwire_sse::http::serve_fn(l, move |m, path, q, h| {
        if path == "/" {
            let mut r = http::Response::new(ResponseBody::full(PAGE));
            r.headers_mut()
                .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
            r
        } else {
            app.handle(m, path, q, h)
        }
    }));
    addr
}

async fn browser_state(page: &Chromium) -> Value {
    page.eval("window.lastState").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_follows_the_board() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("board", json!({"_v": 0, "orders": {}}), vec![])
        .unwrap();
    let cfg = SseConfig::default()
        .auth(Public)
        .retry(Duration::from_millis(200), Duration::ZERO);
    let addr = start(SseApp::new(ch.clone(), cfg)).await;
    let page = Chromium::open(&format!("http://{addr}/"))
        .await
        .expect("chromium");

    page.wait_for("window.lastState && window.lastState._v === 0", WAIT)
        .await
        .unwrap();
    // Live patches, including a deletion and text with line breaks.
    for v in 1..=5u64 {
        let mut orders = serde_json::Map::new();
        for i in 1..=v {
            orders.insert(
                format!("o{i}"),
                json!({"status": if i % 2 == 0 { "paid" } else { "created" }, "note": "a\nb\r\nc"}),
            );
        }
        if v == 5 {
            orders.remove("o1");
        }
        ch.publish_diff("board", json!({"_v": v, "orders": orders}))
            .unwrap();
    }
    page.wait_for("window.lastState._v === 5", WAIT)
        .await
        .unwrap();
    assert_eq!(browser_state(&page).await, *ch.state("board").unwrap());
    assert_eq!(page.eval("board.snapshots").await.unwrap(), json!(1));

    // Presence as an overlay at the same version.
    ch.overlay("board", json!({"online": ["ann@acme"]}))
        .unwrap();
    page.wait_for("(window.lastState.online || []).includes('ann@acme')", WAIT)
        .await
        .unwrap();
    assert_eq!(browser_state(&page).await["_v"], 5);

    // _resync → the client refetches /state.
    ch.resync("board");
    page.wait_for("board.resyncs === 1 && board._refetching === null", WAIT)
        .await
        .unwrap();
    assert_eq!(browser_state(&page).await, *ch.state("board").unwrap());

    // The server ends the stream; patches published meanwhile arrive after the browser
    // reconnects with Last-Event-ID, without a new snapshot.
    ch.disconnect("board");
    for v in 6..=7u64 {
        let mut next = (*ch.state("board").unwrap()).clone();
        next["_v"] = json!(v);
        next["n"] = json!(v);
        ch.publish_diff("board", next).unwrap();
    }
    page.wait_for("window.lastState._v === 7", WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.eval("board.snapshots").await.unwrap(),
        json!(1),
        "resumed, not re-snapshotted"
    );
    assert_eq!(page.eval("window.lastState.n").await.unwrap(), json!(7));
    assert_eq!(browser_state(&page).await, *ch.state("board").unwrap());
    assert_eq!(ch.subscriber_count("board"), 1);

    let shot = hookwire_testkit::temp_dir("sse-shot").join("board.png");
    page.screenshot(&shot).await.unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    let _ = std::fs::remove_dir_all(shot.parent().unwrap());

    // The JS rules agree with the Rust rules on a table of cases.
    let base = json!({"_v": 3, "a": {"b": 1}, "k": [1]});
    let cases = vec![
        (json!({"4": {"a": {"b": null}}}), Some(base.clone())),
        (
            json!({"3": {"x": 1}, "4": {"y": 2}, "5": {"z": 3}}),
            Some(base.clone()),
        ),
        (json!({"4": {}, "6": {}}), Some(base.clone())),
        (json!({"5": {}}), Some(base.clone())),
        (json!({"2": {}}), Some(base.clone())),
        (
            json!({"3": {"who": ["x"]}, "_overlay": true}),
            Some(base.clone()),
        ),
        (
            json!({"4": {"who": ["x"]}, "_overlay": true}),
            Some(base.clone()),
        ),
        (json!({"_resync": true}), Some(base.clone())),
        (json!({}), Some(base.clone())),
        (json!({}), None),
        (json!({"0": {"a": 1}}), None),
        (json!({"1": {"a": 1}}), None),
        (json!({"4": 7}), Some(base.clone())),
        (json!({"x": {}, "4": {"k": {"0": 1}}}), Some(base.clone())),
        (json!([1]), Some(base)),
    ];
    let js_cases = serde_json::to_string(&cases).unwrap();
    let got = page
        .eval(&format!(
            "{js_cases}.map(([m, c]) => {{ const r = applyPatchMessage(m, c); return r.ok ? {{ok: r.state}} : {{err: r.reason}}; }})"
        ))
        .await
        .unwrap();
    for (i, (msg, cached)) in cases.iter().enumerate() {
        let want = match apply_patch_message(msg, cached.as_ref()) {
            Ok(s) => json!({"ok": s}),
            Err(e) => json!({"err": e.as_str()}),
        };
        assert_eq!(got[i], want, "case {i}: {msg} on {cached:?}");
    }
}

/// Keys that name members of JavaScript objects (`__proto__`, `constructor`, …) are plain data
/// in both clients: the browser once dropped `__proto__` silently while Rust kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_applies_object_member_keys_like_the_rust_client() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("board", json!({"_v": 0}), vec![]).unwrap();
    let addr = start(SseApp::new(ch, SseConfig::default().auth(Public))).await;
    let page = Chromium::open(&format!("http://{addr}/"))
        .await
        .expect("chromium");
    page.wait_for("typeof window.applyPatchMessage === 'function'", WAIT)
        .await
        .unwrap();
    let mut cases = Vec::new();
    for key in [
        "__proto__",
        "constructor",
        "prototype",
        "toString",
        "hasOwnProperty",
        "valueOf",
        "__defineGetter__",
    ] {
        let base = json!({"_v": 1, key: {"kept": 1}, "other": 1});
        let empty = json!({"_v": 1});
        cases.push((json!({"2": {key: {"x": 1}}}), Some(base.clone())));
        cases.push((json!({"2": {key: {"x": 1}}}), Some(empty.clone())));
        cases.push((json!({"2": {key: 5}}), Some(empty.clone())));
        cases.push((json!({"2": {key: "s"}}), Some(base.clone())));
        cases.push((json!({"2": {key: null}}), Some(base.clone())));
        cases.push((json!({"2": {key: {"kept": null}}}), Some(base.clone())));
        cases.push((
            json!({"2": {"n": {key: {"deep": [1]}}}}),
            Some(empty.clone()),
        ));
        cases.push((json!({"0": {key: {"a": 1}}}), None));
        cases.push((
            json!({"1": {key: {"who": 1}}, "_overlay": true}),
            Some(base),
        ));
    }
    // JSON.parse, not a JS literal: in a literal `"__proto__": …` sets the prototype.
    let literal = serde_json::to_string(&serde_json::to_string(&cases).unwrap()).unwrap();
    let got = page
        .eval(&format!(
            "JSON.stringify(JSON.parse({literal}).map(([m, c]) => {{ const r = applyPatchMessage(m, c); return r.ok ? {{ok: r.state}} : {{err: r.reason}}; }}))"
        ))
        .await
        .unwrap();
    let got: Value = serde_json::from_str(got.as_str().expect("a JSON string")).unwrap();
    for (i, (msg, cached)) in cases.iter().enumerate() {
        let want = match apply_patch_message(msg, cached.as_ref()) {
            Ok(s) => json!({"ok": s}),
            Err(e) => json!({"err": e.as_str()}),
        };
        assert_eq!(got[i], want, "case {i}: {msg} on {cached:?}");
    }
}
