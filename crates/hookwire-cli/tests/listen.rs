//! `hookwire listen` as a black box: real processes, real sockets, a real redis-server, and
//! peer libraries (npm `standardwebhooks`, `stripe`, `@octokit/webhooks-methods`) and GitHub's
//! docs example signing the requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::Secret;
use hookwire_core::signing::{Scheme, SignInput, sign};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A running `hookwire listen`; its stdout lines are collected in the background.
struct Listen {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    // Held open and never read (`start_unread`): a stdout pipe nobody drains.
    _unread: Option<std::process::ChildStdout>,
}

impl Listen {
    fn start(extra: &[&str]) -> Listen {
        Self::start_with(extra, true)
    }

    /// A listener whose stdout is a pipe nobody reads.
    fn start_unread(extra: &[&str]) -> Listen {
        Self::start_with(extra, false)
    }

    fn start_with(extra: &[&str], read_stdout: bool) -> Listen {
        let mut child = Command::new(BIN)
            .args(["listen", "--secret", SECRET, "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookwire listen");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected stderr: {first:?}"));
        let addr: SocketAddr = url.split('/').next().unwrap().parse().unwrap();
        assert!(url.ends_with("/webhook"), "{url}");
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        if !read_stdout {
            return Listen {
                child,
                addr,
                lines,
                reader: None,
                _unread: Some(stdout),
            };
        }
        let out = BufReader::new(stdout);
        let l = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Listen {
            child,
            addr,
            lines,
            reader: Some(reader),
            _unread: None,
        }
    }

    /// SIGTERM, wait for a clean exit, and return every stdout line parsed.
    fn stop(mut self) -> Vec<Value> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "listen exits 0 on SIGTERM: {status:?}");
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    s: BufReader<TcpStream>,
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            s: BufReader::new(s),
        }
    }

    fn post(&mut self, path: &str, headers: &[(String, String)], body: &[u8]) -> Resp {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.s.get_mut().write_all(&bytes).unwrap();
        let mut line = String::new();
        self.s.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            self.s.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let n: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; n];
        self.s.read_exact(&mut body).unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

fn signed(body: &[u8], key: &str) -> Vec<(String, String)> {
    let now = hookwire_core::time::unix_now();
    let mut h = sign(
        Scheme::Hookwire,
        &Secret::new(SECRET),
        &SignInput::new(body, now),
    )
    .unwrap()
    .to_vec();
    h.push(("Idempotency-Key".to_owned(), key.to_owned()));
    h
}

#[test]
fn accepts_prints_dedupes_and_refuses() {
    let l = Listen::start(&["--max-body", "100"]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"type":"order.created","n":1}"#;
    let r = c.post("/webhook", &signed(body, "k1"), body);
    assert_eq!(r.status, 204);
    let r = c.post("/webhook", &signed(body, "k1"), body);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    let mut bad = signed(body, "k2");
    bad[0].1 = format!("sha256={}", "0".repeat(64));
    let r = c.post("/webhook", &bad, body);
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, r#"{"error":"bad-signature"}"#)
    );
    let big = vec![b'x'; 101];
    let r = c.post("/webhook", &signed(&big, "k3"), &big);
    assert_eq!(
        (r.status, r.body.as_str()),
        (413, r#"{"error":"body-too-large"}"#)
    );
    assert_eq!(c.post("/other", &signed(body, "k4"), body).status, 404);
    // Without --require-idempotency-key a keyless request is accepted (claimed on its
    // signature, see `a_captured_request_without_its_key_is_processed_once`).
    let mut keyless = signed(b"plain text", "x");
    keyless.pop();
    assert_eq!(c.post("/webhook", &keyless, b"plain text").status, 204);

    let lines = l.stop();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        serde_json::json!({"key":"k1","deduped":false,"scheme":"hookwire","type":"order.created","body":{"type":"order.created","n":1}})
    );
    assert_eq!(lines[1]["deduped"], true);
    assert_eq!(lines[2]["key"], Value::Null);
    assert_eq!(lines[2]["body"], "plain text");
}

#[test]
fn require_idempotency_key_refuses_keyless_requests() {
    let l = Listen::start(&["--require-idempotency-key", "--scheme", "hookwire"]);
    let mut c = Conn::open(l.addr);
    let mut h = signed(b"{}", "x");
    h.pop();
    let r = c.post("/webhook", &h, b"{}");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"{"error":"missing-key"}"#)
    );
    assert!(l.stop().is_empty());
}

/// A tiny app for `--forward-to`: answers 500 to the first `fail_first` requests, then 200.
fn app(fail_first: usize) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let mut r = BufReader::new(conn);
            loop {
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                if head.is_empty() {
                    break;
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                s.lock().unwrap().push(head);
                n += 1;
                let resp: &[u8] = if n <= fail_first {
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                if r.get_mut().write_all(resp).is_err() {
                    break;
                }
            }
        }
    });
    (addr, seen)
}

#[test]
fn forward_to_relays_status_and_releases_on_app_failure() {
    let (app_addr, seen) = app(1);
    let url = format!("http://{app_addr}/hooks");
    let l = Listen::start(&["--forward-to", &url]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"n":1}"#;
    let r = c.post("/webhook", &signed(body, "f1"), body);
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "oops"),
        "the app's answer is relayed"
    );
    // The claim was released: the sender's retry reaches the app and succeeds.
    let r = c.post("/webhook", &signed(body, "f1"), body);
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = c.post("/webhook", &signed(body, "f1"), body);
    assert_eq!(r.status, 204, "now a replay");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    assert!(heads[1].starts_with("POST /hooks HTTP/1.1"), "{}", heads[1]);
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("x-webhook-signature: sha256=")
    );
    let lines = l.stop();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["deduped"], false);
    assert_eq!(lines[1]["deduped"], true);
}

#[test]
fn forward_to_a_dead_app_is_502_and_the_retry_is_processed() {
    let dead = hookwire_testkit::free_port();
    let url = format!("http://127.0.0.1:{dead}/");
    let l = Listen::start(&["--forward-to", &url]);
    let mut c = Conn::open(l.addr);
    let body = b"{}";
    let r = c.post("/webhook", &signed(body, "d1"), body);
    assert_eq!(
        (r.status, r.body.as_str()),
        (502, r#"{"error":"forward-failed"}"#)
    );
    let r = c.post("/webhook", &signed(body, "d1"), body);
    assert_eq!(r.status, 502, "released, so tried again (not deduped)");
    assert!(l.stop().is_empty());
}

#[test]
fn two_redis_listeners_never_both_process_a_key_across_10000_requests() {
    let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let url = redis.url();
    let a = Listen::start(&["--redis", &url, "--require-idempotency-key"]);
    let b = Listen::start(&["--redis", &url, "--require-idempotency-key"]);
    // 4 000 keys sent twice, the first 2 000 a third time: 10 000 requests, spread over both
    // listeners and 16 concurrent clients so duplicates race each other.
    let mut plan: Vec<(usize, usize)> = Vec::new();
    for k in 0..4000 {
        plan.push((k, k % 2));
        plan.push((k, (k + 1) % 2));
        if k < 2000 {
            plan.push((k, k % 2));
        }
    }
    assert_eq!(plan.len(), 10_000);
    let addrs = [a.addr, b.addr];
    let workers = 16;
    let plan = Arc::new(plan);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let plan = plan.clone();
            std::thread::spawn(move || {
                let mut conns = [Conn::open(addrs[0]), Conn::open(addrs[1])];
                let (mut ok, mut conflicts) = (0, 0);
                // Worker w takes every `workers`-th request, so copies of one key (adjacent in
                // the plan) are sent at the same moment by different workers.
                for &(k, target) in plan.iter().skip(w).step_by(workers) {
                    let body = format!(r#"{{"k":{k}}}"#);
                    loop {
                        let r = conns[target].post(
                            "/webhook",
                            &signed(body.as_bytes(), &format!("key-{k}")),
                            body.as_bytes(),
                        );
                        if r.status == 409 {
                            conflicts += 1;
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        assert_eq!(r.status, 204, "{}", r.body);
                        ok += 1;
                        break;
                    }
                }
                (ok, conflicts)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().unwrap().0;
    }
    assert_eq!(total, 10_000);
    let mut lines = a.stop();
    lines.extend(b.stop());
    assert_eq!(lines.len(), 10_000);
    let mut processed: HashMap<String, usize> = HashMap::new();
    for l in &lines {
        if l["deduped"] == false {
            *processed
                .entry(l["key"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(processed.len(), 4000, "every key processed");
    let twice: Vec<_> = processed.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "keys processed more than once: {twice:?}");
}

/// Requests signed by the npm `standardwebhooks` package are accepted by `--scheme auto`.
#[test]
fn npm_standardwebhooks_requests_are_accepted_by_scheme_auto() {
    let dir = node_peers();
    let l = Listen::start(&["--scheme", "auto", "--require-idempotency-key"]);
    let script = format!(
        r#"
const {{ Webhook }} = require({module:?});
const wh = new Webhook({SECRET:?});
(async () => {{
  const out = [];
  for (const [id, body] of [["msg_npm_1", '{{"type":"order.created","id":1}}'], ["msg_npm_1", '{{"type":"order.created","id":1}}'], ["msg_npm_2", '{{"big": 12345678901234567890}}']]) {{
    const ts = new Date();
    const sig = wh.sign(id, ts, body);
    const res = await fetch("http://{addr}/webhook", {{ method: "POST", body, headers: {{
      "webhook-id": id, "webhook-timestamp": String(Math.floor(ts.getTime() / 1000)),
      "webhook-signature": sig, "content-type": "application/json" }} }});
    out.push(res.status + " " + (res.headers.get("idempotent-replayed") || "-"));
  }}
  const bad = await fetch("http://{addr}/webhook", {{ method: "POST", body: "{{}}", headers: {{
      "webhook-id": "msg_x", "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
      "webhook-signature": new Webhook("whsec_" + Buffer.from("another-secret-of-24-bytes").toString("base64")).sign("msg_x", new Date(), "{{}}") }} }});
  out.push(bad.status + " " + await bad.text());
  console.log(out.join("\n"));
}})();
"#,
        module = dir
            .join("node_modules/standardwebhooks")
            .display()
            .to_string(),
        addr = l.addr,
    );
    let text = node(&["-e"], &script, &dir);
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(
        got,
        [
            "204 -",
            "204 true",
            "204 -",
            r#"401 {"error":"bad-signature"}"#
        ],
        "{text}"
    );
    let lines = l.stop();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["key"], "msg_npm_1");
    assert_eq!(lines[0]["scheme"], "standard");
    assert_eq!(lines[0]["type"], "order.created");
}

/// GitHub's own docs example (secret "It's a Secret to Everybody", body "Hello, World!"),
/// byte for byte, is accepted by `--scheme auto` with the delivery id as the key; the same
/// listener holds a second secret, so this also proves rotation picks the right one.
#[test]
fn github_docs_example_is_accepted_by_scheme_auto() {
    let l = Listen::start(&["--scheme", "auto", "--secret", "It's a Secret to Everybody"]);
    let mut c = Conn::open(l.addr);
    let headers = |sig: &str| {
        vec![
            ("X-GitHub-Event".to_owned(), "ping".to_owned()),
            (
                "X-GitHub-Delivery".to_owned(),
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
            ),
            ("X-Hub-Signature-256".to_owned(), sig.to_owned()),
        ]
    };
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let r = c.post("/webhook", &headers(sig), b"Hello, World!");
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.post("/webhook", &headers(sig), b"Hello, World!");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    let r = c.post("/webhook", &headers(sig), b"Hello, World?");
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, r#"{"error":"bad-signature"}"#)
    );
    let lines = l.stop();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["scheme"], "github");
    assert_eq!(lines[0]["key"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(lines[0]["type"], "ping");
    assert_eq!(lines[0]["body"], "Hello, World!");
    assert_eq!(lines[1]["deduped"], true);
}

/// Requests signed by GitHub's and Stripe's own libraries (npm `@octokit/webhooks-methods`
/// `sign`, and `stripe`'s `webhooks.generateTestHeaderString`) are accepted by
/// `--scheme auto`, retries are replays, and the same signatures under another secret are
/// refused.
#[test]
fn octokit_and_stripe_signed_requests_are_accepted_by_scheme_auto() {
    let dir = node_peers();
    let l = Listen::start(&["--scheme", "auto"]);
    let script = format!(
        r#"
import {{ sign }} from "@octokit/webhooks-methods";
import Stripe from "stripe";
const stripe = new Stripe("sk_test_not_used_offline");
const url = "http://{addr}/webhook";
const out = [];
const post = async (body, headers) => {{
  const res = await fetch(url, {{ method: "POST", body, headers: {{ "content-type": "application/json", ...headers }} }});
  out.push(res.status + " " + (res.headers.get("idempotent-replayed") || "-") + " " + await res.text());
}};
const gh = JSON.stringify({{ action: "opened", number: 7 }});
for (const secret of [{SECRET:?}, "not-the-secret"]) {{
  await post(gh, {{ "x-github-event": "pull_request", "x-github-delivery": "d-" + secret.length,
    "x-hub-signature-256": await sign(secret, gh) }});
}}
await post(gh, {{ "x-github-event": "pull_request", "x-github-delivery": "d-" + {SECRET:?}.length,
  "x-hub-signature-256": await sign({SECRET:?}, gh) }});
const evt = JSON.stringify({{ id: "evt_1", type: "invoice.paid" }});
for (const secret of [{SECRET:?}, {SECRET:?}, "whsec_not_the_secret"]) {{
  await post(evt, {{ "stripe-signature": stripe.webhooks.generateTestHeaderString({{ payload: evt, secret }}) }});
}}
console.log(out.join("\n"));
"#,
        addr = l.addr,
    );
    let text = node(&["--input-type=module", "-e"], &script, &dir);
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(
        got,
        [
            "204 - ",
            r#"401 - {"error":"bad-signature"}"#,
            "204 true ",
            "204 - ",
            "204 true ",
            r#"401 - {"error":"bad-signature"}"#,
        ],
        "{text}"
    );
    let lines = l.stop();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["scheme"], "github");
    assert_eq!(lines[0]["type"], "pull_request");
    assert_eq!(lines[0]["key"], format!("d-{}", SECRET.len()));
    assert_eq!(lines[2]["scheme"], "stripe");
    assert_eq!(lines[2]["type"], "invoice.paid");
    // Stripe sends no delivery id header and no Idempotency-Key: the event's signed body id is
    // the key, so Stripe's retry of the event is a replay.
    assert_eq!(lines[2]["key"], "evt_1");
    assert_eq!(lines[3]["deduped"], true);
}

/// Runs a Node script from the peers directory (so its packages resolve); its stdout.
fn node(args: &[&str], script: &str, dir: &std::path::Path) -> String {
    let out = Command::new("node")
        .args(args)
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The npm peers (`standardwebhooks`, `stripe`, `@octokit/webhooks-methods`, and express for
/// the bench), installed once under the target dir.
fn node_peers() -> std::path::PathBuf {
    // Tests run in parallel; two npm installs into one directory would corrupt it.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = hookwire_testkit::bench::bench_dir().join("peers/node");
    let modules = [
        "standardwebhooks",
        "express",
        "stripe",
        "@octokit/webhooks-methods",
    ];
    if !modules.iter().all(|m| {
        dir.join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
    }) {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .args(modules)
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the peer-library test");
        assert!(st.success(), "npm install of the peer libraries failed");
    }
    dir
}

/// Headers of `scheme` signed now over `body` with the listener's secret.
fn signed_as(scheme: Scheme, body: &[u8], id: Option<&str>) -> Vec<(String, String)> {
    let now = hookwire_core::time::unix_now();
    let mut input = SignInput::new(body, now);
    if let Some(id) = id {
        input = input.id(id);
    }
    sign(scheme, &Secret::new(SECRET), &input).unwrap().to_vec()
}

/// `headers` with `name` (any case) set to `value`, or removed for `None`.
fn with(headers: &[(String, String)], name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    if let Some(v) = value {
        h.push((name.to_owned(), v.to_owned()));
    }
    h
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap()
}

fn is_replay(r: &Resp) -> bool {
    r.status == 204 && r.headers.get("idempotent-replayed").map(String::as_str) == Some("true")
}

/// Issue 14: one captured request, re-spelled (uppercase hex, an extra `v0=` entry, spaces)
/// and sent with a new `Idempotency-Key` each time, is processed once under every scheme whose
/// key is not signed.
#[test]
fn a_captured_request_respelled_with_new_keys_is_processed_once() {
    let l = Listen::start(&[]);
    let mut c = Conn::open(l.addr);
    let upper_hex = |v: &str| {
        let (prefix, hex) = v.split_at(v.len() - 64);
        format!("{prefix}{}", hex.to_uppercase())
    };
    for (scheme, sig_header) in [
        (Scheme::Hookwire, "X-Webhook-Signature"),
        (Scheme::Slack, "X-Slack-Signature"),
        (Scheme::Stripe, "Stripe-Signature"),
    ] {
        let body = format!(r#"{{"scheme":"{scheme}"}}"#);
        let original = with(
            &signed_as(scheme, body.as_bytes(), None),
            "Idempotency-Key",
            Some(&format!("{scheme}-orig")),
        );
        let r = c.post("/webhook", &original, body.as_bytes());
        assert!(r.status == 204 && !is_replay(&r), "{scheme}: {}", r.status);
        let sig = header(&original, sig_header).to_owned();
        let mut spellings = vec![upper_hex(&sig)];
        if scheme == Scheme::Stripe {
            let (t, v1) = sig.split_once(',').unwrap();
            spellings.push(format!("{t}, v0={}, {v1}", "ab".repeat(32)));
            spellings.push(format!(" {t} ,  {} ", upper_hex(v1)));
        }
        for (i, spelled) in spellings.iter().enumerate() {
            let h = with(&original, sig_header, Some(spelled));
            let h = with(
                &h,
                "Idempotency-Key",
                Some(&format!("{scheme}-attacker-{i}")),
            );
            let r = c.post("/webhook", &h, body.as_bytes());
            assert!(
                is_replay(&r),
                "{scheme} {spelled:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    let lines = l.stop();
    let fresh: Vec<_> = lines.iter().filter(|l| l["deduped"] == false).collect();
    assert_eq!(fresh.len(), 3, "one processing per scheme: {lines:?}");
}

/// Issue 14: with keys optional (the default), a captured request with its key header removed
/// is de-duplicated on its verified signature, and so is a keyless request replayed as is.
#[test]
fn a_captured_request_without_its_key_is_processed_once() {
    let l = Listen::start(&[]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"n":"keyed"}"#;
    let keyed = signed(body, "k-original");
    assert!(!is_replay(&c.post("/webhook", &keyed, body)));
    let stripped = with(&keyed, "Idempotency-Key", None);
    for _ in 0..3 {
        let r = c.post("/webhook", &stripped, body);
        assert!(is_replay(&r), "{} {}", r.status, r.body);
    }
    let body = br#"{"n":"keyless"}"#;
    let keyless = signed_as(Scheme::Slack, body, None);
    let r = c.post("/webhook", &keyless, body);
    assert!(r.status == 204 && !is_replay(&r), "{}", r.status);
    for _ in 0..3 {
        assert!(is_replay(&c.post("/webhook", &keyless, body)));
    }
    // The same message with a key added later is the same message.
    let r = c.post(
        "/webhook",
        &with(&keyless, "Idempotency-Key", Some("late")),
        body,
    );
    assert!(is_replay(&r));
    let lines = l.stop();
    let fresh = lines.iter().filter(|l| l["deduped"] == false).count();
    assert_eq!(fresh, 2, "{lines:?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Issue 14: an idempotency key over 255 bytes is refused with 400 `key-too-long`, so 1 000
/// requests with 60 KB keys leave the process's memory where it was (before, each one stayed
/// in the store for a day).
#[test]
fn over_long_idempotency_keys_are_refused_and_memory_stays_bounded() {
    let l = Listen::start(&["--scheme", "github"]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"zen":"keep it small"}"#;
    let h = signed_as(Scheme::Github, body, Some("d-1"));
    let r = c.post(
        "/webhook",
        &with(&h, "Idempotency-Key", Some(&"k".repeat(255))),
        body,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    for (name, value) in [
        ("Idempotency-Key", "k".repeat(256)),
        ("X-GitHub-Delivery", "d".repeat(256)),
    ] {
        let r = c.post("/webhook", &with(&h, name, Some(&value)), body);
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, r#"{"error":"key-too-long"}"#),
            "{name}"
        );
    }
    let before = rss_kib(l.child.id());
    for i in 0..1000 {
        let key = format!("{i:06}{}", "x".repeat(60_000));
        let r = c.post("/webhook", &with(&h, "Idempotency-Key", Some(&key)), body);
        assert_eq!(r.status, 400);
    }
    let grown = rss_kib(l.child.id()).saturating_sub(before);
    assert!(grown < 30 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(l.stop().len(), 1);
}

/// Issue 14: GitHub signs neither a timestamp nor `X-GitHub-Delivery`; a verified signature is
/// bound to its first delivery id for `--replay-horizon`, so a resend under a new delivery id
/// is a duplicate inside it (and only a new delivery after it).
#[test]
fn a_github_delivery_resent_under_a_new_delivery_id_is_a_duplicate() {
    let l = Listen::start(&["--replay-horizon", "2"]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"action":"opened"}"#;
    let h = signed_as(Scheme::Github, body, Some("d-first"));
    assert!(!is_replay(&c.post("/webhook", &h, body)));
    for id in ["d-second", "d-third"] {
        let r = c.post("/webhook", &with(&h, "X-GitHub-Delivery", Some(id)), body);
        assert!(is_replay(&r), "{id}: {} {}", r.status, r.body);
    }
    let r = c.post("/webhook", &with(&h, "X-GitHub-Delivery", None), body);
    assert!(is_replay(&r), "without a delivery id: {}", r.status);
    std::thread::sleep(Duration::from_millis(2_300));
    let r = c.post(
        "/webhook",
        &with(&h, "X-GitHub-Delivery", Some("d-later")),
        body,
    );
    assert!(
        r.status == 204 && !is_replay(&r),
        "the horizon is configurable"
    );
    let lines = l.stop();
    assert_eq!(lines[0]["key"], "d-first");
    assert!(
        lines[1..3]
            .iter()
            .all(|l| l["key"] == "d-first" && l["deduped"] == true)
    );
    assert_eq!(lines[3]["deduped"], true);
}

/// An app for `--forward-to` that handles each request on its own thread with `answer`
/// (given the request head) and counts the requests.
fn app_with(
    answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let (s, answer) = (s.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn);
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                s.lock().unwrap().push(head.clone());
                answer(&head, r.get_mut());
            });
        }
    });
    (addr, seen)
}

/// Issue 14: a slow app keeps its claim (renewed while it answers), so a duplicate arriving
/// after the lease gets 409 instead of reaching the app a second time.
#[test]
fn a_slow_app_is_called_once_per_key_while_its_claim_is_renewed() {
    let (app_addr, seen) = app_with(|_, s| {
        std::thread::sleep(Duration::from_millis(3_500));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    });
    let url = format!("http://{app_addr}/hooks");
    let l = Listen::start(&["--forward-to", &url, "--lease", "1"]);
    let body = br#"{"slow":true}"#;
    let h = signed(body, "slow-1");
    let addr = l.addr;
    let first = {
        let h = h.clone();
        std::thread::spawn(move || Conn::open(addr).post("/webhook", &h, body).status)
    };
    for wait in [1_500, 1_000] {
        std::thread::sleep(Duration::from_millis(wait));
        let r = Conn::open(addr).post("/webhook", &h, body);
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.headers.contains_key("retry-after"));
    }
    assert_eq!(first.join().unwrap(), 200);
    assert!(is_replay(&Conn::open(addr).post("/webhook", &h, body)));
    assert_eq!(seen.lock().unwrap().len(), 1, "the app was called once");
    l.stop();
}

/// Issue 14: reading the app's response body is bounded by `--forward-timeout`: an app that
/// sends its head and stalls its body gets the request answered 502 and the claim released.
#[test]
fn an_app_that_stalls_its_response_body_is_a_502_after_the_forward_timeout() {
    let (app_addr, seen) = app_with(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nok");
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!("http://{app_addr}/hooks");
    let l = Listen::start(&["--forward-to", &url, "--forward-timeout", "1"]);
    let mut c = Conn::open(l.addr);
    let body = br#"{"stall":true}"#;
    let started = std::time::Instant::now();
    let r = c.post("/webhook", &signed(body, "stall-1"), body);
    assert_eq!(
        (r.status, r.body.as_str()),
        (502, r#"{"error":"forward-failed"}"#)
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    let r = c.post("/webhook", &signed(body, "stall-1"), body);
    assert_eq!(r.status, 502, "released: the retry reached the app again");
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(l.stop().is_empty());
}

/// Issue 14: with stdout a pipe nobody reads, `listen` keeps answering: refusals at once, and
/// accepted requests 503 `output-busy` with `Retry-After` (claim released) once the output
/// queue is full, instead of every connection hanging on a blocked write.
#[test]
fn a_stdout_nobody_reads_never_blocks_answers() {
    let l = Listen::start_unread(&[]);
    let mut c = Conn::open(l.addr);
    let pad = "x".repeat(32 * 1024);
    let mut busy = None;
    for i in 0..200 {
        let body = format!(r#"{{"i":{i},"pad":"{pad}"}}"#);
        let key = format!("out-{i}");
        let r = c.post("/webhook", &signed(body.as_bytes(), &key), body.as_bytes());
        match r.status {
            204 => {}
            503 => {
                assert_eq!(r.body, r#"{"error":"output-busy"}"#);
                assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
                busy = Some((key, body));
                break;
            }
            s => panic!("request {i}: {s} {}", r.body),
        }
    }
    let (key, body) = busy.expect("the output queue filled up within 200 requests");
    // Not claimed: the retry is refused the same way, never a 409 or a replay.
    let r = c.post("/webhook", &signed(body.as_bytes(), &key), body.as_bytes());
    assert_eq!(r.status, 503);
    let mut bad = signed(b"{}", "bad");
    bad[0].1 = format!("sha256={}", "0".repeat(64));
    let r = Conn::open(l.addr).post("/webhook", &bad, b"{}");
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, r#"{"error":"bad-signature"}"#)
    );
    let long = signed(b"{}", &"k".repeat(300));
    let r = Conn::open(l.addr).post("/webhook", &long, b"{}");
    assert_eq!(r.status, 400);
}
