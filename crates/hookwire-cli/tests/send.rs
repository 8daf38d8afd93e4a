//! `hookwire send` driven as a black box against a real HTTP server on 127.0.0.1: output lines and
//! exit codes (0 delivered, 2 bad arguments, 3 blocked, 4 exhausted) exactly as `cli.md` says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use hookwire_core::signing::{VerifyOptions, verify};
use hookwire_core::{KeyRing, Scheme};

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");

/// A request the sink received: lowercase header pairs and the body.
#[derive(Debug, Clone)]
struct Hit {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A one-request-per-connection HTTP/1.1 server thread answering `statuses[n]` (the last one
/// repeats) to the n-th request.
fn sink(statuses: &'static [u16]) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", l.local_addr().unwrap());
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut len = 0usize;
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // request line
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                let (k, v) = line.trim_end().split_once(':').unwrap();
                let (k, v) = (k.to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    len = v.parse().unwrap();
                }
                headers.push((k, v));
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let n = {
                let mut g = h.lock().unwrap();
                g.push(Hit { headers, body });
                g.len() - 1
            };
            let status = statuses[n.min(statuses.len() - 1)];
            let extra = match status {
                302 => "location: http://127.0.0.1:1/\r\n",
                // A hostile receiver asking for an hour's pause.
                429 => "retry-after: 3600\r\n",
                _ => "",
            };
            let mut w = s;
            let _ = write!(
                w,
                "HTTP/1.1 {status} X\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, hits)
}

fn send(args: &[&str]) -> (i32, String, String) {
    let o: Output = Command::new(BIN).arg("send").args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim_end().to_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn delivered_prints_the_status_and_the_request_verifies() {
    let (url, hits) = sink(&[200]);
    let (code, out, err) = send(&[
        &url,
        "--secret",
        "s3cret",
        "--event",
        "order.created",
        "--data",
        r#"{"id":"o-1"}"#,
        "--id",
        "evt_1",
    ]);
    assert_eq!((code, out.as_str()), (0, "200"), "{err}");
    let hit = hits.lock().unwrap()[0].clone();
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["payload"]["id"], "o-1");
    assert_eq!(hit.header("idempotency-key"), Some("evt_1"));
    assert_eq!(hit.header("x-webhook-event"), Some("order.created"));
    verify(
        &hit.headers,
        &hit.body,
        &KeyRing::from("s3cret"),
        &VerifyOptions::new(Scheme::Hookwire),
    )
    .unwrap();
}

#[test]
fn standard_scheme_and_overrides() {
    let (url, hits) = sink(&[204]);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = hookwire_testkit::temp_dir("send");
    let file = dir.join("data.json");
    std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
    let data = format!("@{}", file.display());
    let (code, out, err) = send(&[
        &url,
        "--secret",
        secret,
        "--scheme",
        "standard",
        "--data",
        &data,
        "--idempotency-key",
        "k-9",
        "-H",
        "X-Tenant: acme",
    ]);
    assert_eq!((code, out.as_str()), (0, "204"), "{err}");
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(hit.header("idempotency-key"), Some("k-9"));
    assert_eq!(hit.header("x-tenant"), Some("acme"));
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["payload"]["from"], "file");
    verify(
        &hit.headers,
        &hit.body,
        &KeyRing::from(secret),
        &VerifyOptions::new(Scheme::Standard),
    )
    .unwrap();
}

#[test]
fn retries_a_server_error_then_delivers() {
    let (url, hits) = sink(&[500, 503, 200]);
    let (code, out, _) = send(&[
        &url,
        "--secret",
        "s",
        "--retries",
        "3",
        "--backoff-ms",
        "10",
    ]);
    assert_eq!((code, out.as_str()), (0, "200"));
    assert_eq!(hits.lock().unwrap().len(), 3);
}

#[test]
fn client_error_and_redirect_block_without_retrying() {
    for (status, line) in [(404u16, "blocked: 404"), (302, "blocked: 302")] {
        let statuses: &'static [u16] = Box::leak(vec![status].into_boxed_slice());
        let (url, hits) = sink(statuses);
        let (code, out, _) = send(&[
            &url,
            "--secret",
            "s",
            "--retries",
            "5",
            "--backoff-ms",
            "10",
        ]);
        assert_eq!((code, out.as_str()), (3, line));
        assert_eq!(hits.lock().unwrap().len(), 1);
    }
}

#[test]
fn exhausted_retries_print_the_last_status_or_error() {
    let (url, hits) = sink(&[500]);
    let (code, out, _) = send(&[
        &url,
        "--secret",
        "s",
        "--retries",
        "2",
        "--backoff-ms",
        "10",
    ]);
    assert_eq!((code, out.as_str()), (4, "failed: 500"));
    assert_eq!(hits.lock().unwrap().len(), 3);

    let port = hookwire_testkit::free_port();
    let (code, out, _) = send(&[
        &format!("http://127.0.0.1:{port}/"),
        "--secret",
        "s",
        "--retries",
        "1",
        "--backoff-ms",
        "10",
    ]);
    assert_eq!(code, 4);
    assert!(
        out.starts_with("failed: ") && out.contains("failed: connect"),
        "{out}"
    );
}

#[test]
fn retry_after_does_not_outlast_the_backoff() {
    let (url, hits) = sink(&[429]);
    let mut child = Command::new(BIN)
        .args(["send", &url, "--secret", "s", "--retries", "2"])
        .args(["--backoff-ms", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The backoff's longest delay is 20 ms (+20 %): `Retry-After: 3600` is honoured up to that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`hookwire send` slept for Retry-After: 3600");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!((status.code(), out.trim_end()), (Some(4), "failed: 429"));
    assert_eq!(hits.lock().unwrap().len(), 3);
}

#[test]
fn timeout_is_reported_as_failed() {
    // A listener that accepts but never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let _held: Vec<_> = l.incoming().take(4).collect();
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let (code, out, _) = send(&[
        &url,
        "--secret",
        "s",
        "--retries",
        "1",
        "--backoff-ms",
        "10",
        "--timeout-ms",
        "200",
    ]);
    assert_eq!(code, 4);
    assert!(out.contains("timed out after 200ms"), "{out}");
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    for args in [
        vec![
            "http://127.0.0.1:9/",
            "--secret",
            "s",
            "--data",
            "{not json",
        ],
        vec![
            "http://127.0.0.1:9/",
            "--secret",
            "s",
            "--data",
            "@/nonexistent/file",
        ],
        vec![
            "http://127.0.0.1:9/",
            "--secret",
            "plain",
            "--scheme",
            "standard",
        ],
        vec!["http://127.0.0.1:9/", "--secret", "s", "--scheme", "rot13"],
        vec!["not a url", "--secret", "s"],
        vec!["ftp://127.0.0.1/", "--secret", "s"],
        vec!["http://127.0.0.1:9/", "--secret", "s", "-H", "no colon"],
        vec!["http://127.0.0.1:9/"],
    ] {
        let (code, out, err) = send(&args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(!err.trim().is_empty(), "{args:?} gives a reason");
    }
}
