//! What the demo's black-box tests share: the real `hookwire demo` on a free port and a plain
//! HTTP/1.1 client over real sockets.
#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hookwire");

/// A running demo, killed on drop; stderr (its log) is drained in the background.
pub(crate) struct Demo {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Demo {
    /// `extra` may set its own `--interval-ms` (150 otherwise).
    pub(crate) fn start(extra: &[&str]) -> Demo {
        let interval: &[&str] = if extra.contains(&"--interval-ms") {
            &[]
        } else {
            &["--interval-ms", "150"]
        };
        let mut child = Command::new(BIN)
            .args(["demo", "--addr", "127.0.0.1:0"])
            .args(interval)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookwire demo");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let rest = first
            .split("listening on http://")
            .nth(1)
            .unwrap_or_else(|| panic!("demo did not report its URL: {first:?}"));
        let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Demo { child, addr }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, head, body).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    http_body(addr, method, path, headers, "")
}

/// [`http`] with a request body.
pub(crate) fn http_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Waits until `f` is true, polling; panics with `what` after `limit`.
pub(crate) fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a test saves a screenshot of the page: `<target>/<name>`.
pub(crate) fn screenshot_path(name: &str) -> std::path::PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`: the screenshot lands in `<target>/`.
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join(name)
}
