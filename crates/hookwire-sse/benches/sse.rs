//! `cargo xtask bench sse`: one publish fanned out to 1k and 10k SSE subscribers on loopback,
//! following the rules in `docs/benchmarks.md`.
//!
//! The bench binary plays two roles. With `HW_SSE_SERVER=<mode>` it is a server process
//! (pinned to CPU 0 with `taskset`, one-worker runtime) driven by line commands on stdin:
//! `lean` (hookwire's lean acceptor), `axum` (hookwire's SSE body under axum), `bare` (axum's
//! own `Sse` over a `tokio::sync::broadcast`, the memory baseline) and `raw` (the limit: no
//! queues and no task per subscriber, the pre-encoded chunk written to every socket in a loop
//! from one thread; a burst of M frames goes to each socket in one write). The Node peer
//! (`node_sse.mjs`: `node:http`, one `res.write` per frame per response) speaks the same line
//! protocol. Without `HW_SSE_SERVER` the binary is the orchestrator and the load generator
//! (pinned to CPU 1): a single-threaded raw-TCP client that scans only for the `"t":` marker of
//! each frame, the same client for every server.
//!
//! The publisher embeds `CLOCK_MONOTONIC` nanoseconds in every patch (`{"v":{"t":…}}`). Rust
//! has no portable accessor for the raw value without `unsafe`, so each process reads it once
//! from `Instant`'s `Debug` output (`tv_sec`/`tv_nsec` on Linux) and adds `elapsed()`: both
//! processes then share one clock.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the server speaks a line protocol on stdout; the bench reports on stderr"
)]

use std::cell::{Cell, RefCell};
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hookwire_sse::http::{SseApp, SseConfig};
use hookwire_sse::{BroadcastChannel, Frame};
use hookwire_testkit::bench::{Report, median, quick_requested};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const STREAM: &str = "b";
const MARK: &[u8] = b"\"t\":";

// ---------------------------------------------------------------- clock

static CLOCK: OnceLock<(Instant, u64)> = OnceLock::new();

fn parse_instant(i: Instant) -> Option<u64> {
    let d = format!("{i:?}");
    let num = |key: &str| -> Option<u64> {
        let at = d.find(key)? + key.len();
        let digits: String = d[at..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some(num("tv_sec")? * 1_000_000_000 + num("tv_nsec")?)
}

fn now_ns() -> u64 {
    let (base, ns) = CLOCK.get_or_init(|| {
        let i = Instant::now();
        (
            i,
            parse_instant(i).expect("Instant's Debug output carries tv_sec/tv_nsec on Linux"),
        )
    });
    ns + u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------- memory

fn rss_kib() -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    (field(&status, "VmRSS:"), field(&smaps, "Anonymous:"))
}

fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Slab:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- server role

fn server(mode: &str) {
    let workers: usize = std::env::var("HW_SSE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    if mode == "raw" {
        raw_server();
        return;
    }
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async_server(mode));
}

fn snapshot_state(v: u64) -> Value {
    json!({"_v": v, "board": "x".repeat(100)})
}

fn patch(t: u64, pad: usize) -> Value {
    if pad == 0 {
        json!({"v": {"t": t}})
    } else {
        json!({"v": {"t": t}, "pad": "p".repeat(pad)})
    }
}

/// Reads commands from stdin on a thread.
fn commands() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn reply(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

async fn async_server(mode: &str) {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish(STREAM, snapshot_state(0), vec![]).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    reply(&format!("PORT {}", l.local_addr().unwrap().port()));
    let cfg = SseConfig::default().auth(hookwire_sse::http::Public);
    let bare_live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (bare_tx, _) = tokio::sync::broadcast::channel::<String>(1024);
    match mode {
        "lean" => {
            tokio::spawn(hookwire_sse::lean::LeanAcceptor::new(ch.clone(), cfg).serve(l));
        }
        "axum" => {
            let app = SseApp::new(ch.clone(), cfg);
            let router = axum::Router::new().route(
                "/events/{s}",
                axum::routing::get(move |req: axum::extract::Request| {
                    let app = app.clone();
                    async move {
                        app.handle(
                            req.method(),
                            req.uri().path(),
                            req.uri().query(),
                            req.headers(),
                        )
                        .map(axum::body::Body::new)
                    }
                }),
            );
            tokio::spawn(serve_axum(l, router));
        }
        "bare" => {
            let tx = bare_tx.clone();
            let live = Arc::clone(&bare_live);
            let router = axum::Router::new().route(
                "/events/{s}",
                axum::routing::get(move || {
                    let rx = tx.subscribe();
                    let guard = Live::new(&live);
                    async move { bare_sse(rx, guard) }
                }),
            );
            tokio::spawn(serve_axum(l, router));
        }
        other => panic!("unknown mode {other}"),
    }
    let count = || {
        if mode == "bare" {
            bare_live.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            ch.subscriber_count(STREAM)
        }
    };
    let mut v = 0u64;
    let mut rx = commands();
    while let Some(line) = rx.recv().await {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["WAIT", n] => {
                let n: usize = n.parse().unwrap();
                while count() < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                reply("OK");
            }
            ["PUB", k, pad] => {
                let (k, pad): (u64, usize) = (k.parse().unwrap(), pad.parse().unwrap());
                for _ in 0..k {
                    v += 1;
                    let p = patch(now_ns(), pad);
                    if mode == "bare" {
                        let _ = bare_tx.send(json!({ v.to_string(): p }).to_string());
                    } else {
                        ch.publish(STREAM, json!({"_v": v}), vec![p]).unwrap();
                    }
                }
                reply("OK");
            }
            ["RSS"] => {
                let (r, a) = rss_kib();
                reply(&format!("RSS {r} {a}"));
            }
            ["STATS"] => reply(&format!("STATS {}", ch.stats().overflow_resyncs)),
            _ => return,
        }
    }
}

async fn serve_axum(l: tokio::net::TcpListener, router: axum::Router) {
    use axum::serve::ListenerExt;
    let l = l.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(l, router).await;
}

struct Live(Arc<std::sync::atomic::AtomicUsize>);

impl Live {
    fn new(c: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(Arc::clone(c))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Bare axum SSE as an application would write it: a snapshot event, then one `Event` built
/// per subscriber per message from a broadcast receiver.
fn bare_sse(
    rx: tokio::sync::broadcast::Receiver<String>,
    guard: Live,
) -> axum::response::Sse<
    impl futures_core::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::Event;
    let first = Event::default()
        .event("snapshot")
        .id("0")
        .data(snapshot_state(0).to_string());
    let s = futures_util::stream::unfold(
        (Some(first), rx, guard),
        |(first, mut rx, guard)| async move {
            if let Some(f) = first {
                return Some((Ok(f), (None, rx, guard)));
            }
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        return Some((
                            Ok(Event::default().event("patch").data(m)),
                            (None, rx, guard),
                        ));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return None,
                }
            }
        },
    );
    axum::response::Sse::new(s).keep_alive(axum::response::sse::KeepAlive::default())
}

/// The limit: accepted sockets in a `Vec`, each publish writes the pre-encoded chunk to every
/// socket in a loop from one thread. No queues, no tasks, no wakeups.
fn raw_server() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    reply(&format!("PORT {}", l.local_addr().unwrap().port()));
    let socks: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let s2 = Arc::clone(&socks);
    std::thread::spawn(move || {
        let snap = Frame::snapshot(0, snapshot_state(0).to_string());
        for tcp in l.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_nodelay(true);
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(snap.chunked());
            if tcp.write_all(&out).is_ok() {
                s2.lock().unwrap().push(tcp);
            }
        }
    });
    let mut v = 0u64;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["WAIT", n] => {
                let n: usize = n.parse().unwrap();
                while socks.lock().unwrap().len() < n {
                    std::thread::sleep(Duration::from_millis(5));
                }
                reply("OK");
            }
            ["PUB", k, pad] => {
                let (k, pad): (u64, usize) = (k.parse().unwrap(), pad.parse().unwrap());
                let mut socks = socks.lock().unwrap();
                // A burst is encoded once and written to each socket with one call: the limit
                // coalesces as well as hookwire's one `writev` per subscriber and drain can.
                let mut burst = Vec::new();
                for _ in 0..k {
                    v += 1;
                    let msg = json!({ v.to_string(): patch(now_ns(), pad) }).to_string();
                    burst.extend_from_slice(Frame::patch(v, v, msg).chunked());
                }
                for s in socks.iter_mut() {
                    let _ = s.write_all(&burst);
                }
                reply("OK");
            }
            ["RSS"] => {
                let (r, a) = rss_kib();
                reply(&format!("RSS {r} {a}"));
            }
            ["STATS"] => reply("STATS 0"),
            _ => return,
        }
    }
}

// ---------------------------------------------------------------- Node peer

/// Writes the Node peer's script under `target/bench/peers/sse-node/` (it needs no npm
/// package: `node:http` only) and returns its path.
fn node_script() -> std::path::PathBuf {
    let dir = hookwire_testkit::bench::bench_dir().join("peers/sse-node");
    std::fs::create_dir_all(&dir).expect("peer dir");
    let path = dir.join("bench.mjs");
    std::fs::write(&path, include_str!("node_sse.mjs")).expect("peer script");
    path
}

/// `node --version`, or `None` when Node is not installed.
fn node_version() -> Option<String> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

// ---------------------------------------------------------------- client role

struct Server {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    addr: SocketAddr,
}

impl Server {
    async fn spawn(mode: &str, pinned: bool) -> Self {
        let exe = std::env::current_exe().unwrap();
        // The Node peer runs its script; every other mode is this binary re-executed.
        let argv: Vec<std::ffi::OsString> = if mode == "node" {
            vec!["node".into(), node_script().into()]
        } else {
            vec![exe.into()]
        };
        let mut cmd = if pinned {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg("0").args(&argv);
            c
        } else {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        };
        cmd.env("HW_SSE_SERVER", mode)
            .env("HW_SSE_WORKERS", if pinned { "1" } else { "2" })
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn server");
        let stdin = child.stdin.take().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next_line()
            .await
            .unwrap()
            .expect("server prints its port");
        let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        Self {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    async fn send(&mut self, cmd: &str) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn answer(&mut self) -> String {
        self.lines
            .next_line()
            .await
            .unwrap()
            .expect("server answers")
    }

    async fn cmd(&mut self, cmd: &str) -> String {
        self.send(cmd).await;
        self.answer().await
    }

    async fn rss(&mut self) -> (f64, f64) {
        let r = self.cmd("RSS").await;
        let v: Vec<f64> = r
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0], v[1])
    }

    async fn stop(mut self) {
        let _ = self.send("QUIT").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

#[derive(Default)]
struct ConnState {
    carry: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    conns: RefCell<Vec<ConnState>>,
    got: Cell<usize>,
    target: Cell<usize>,
    lat: RefCell<Vec<u64>>,
    max_recv: Cell<u64>,
    min_t: Cell<u64>,
    connected: Cell<usize>,
    notify: tokio::sync::Notify,
    scratch: RefCell<Vec<u8>>,
}

impl Shared {
    fn arm(&self, target: usize) {
        self.got.set(0);
        self.target.set(target);
        self.lat.borrow_mut().clear();
        self.max_recv.set(0);
        self.min_t.set(u64::MAX);
    }

    fn record(&self, t: u64, now: u64) {
        self.got.set(self.got.get() + 1);
        self.lat.borrow_mut().push(now.saturating_sub(t));
        self.max_recv.set(self.max_recv.get().max(now));
        self.min_t.set(self.min_t.get().min(t));
        if self.got.get() == self.target.get() {
            self.notify.notify_one();
        }
    }

    /// Scans `data` (after the connection's carried bytes) for `"t":<digits>` markers.
    fn scan(&self, i: usize, data: &[u8], now: u64) {
        let mut conns = self.conns.borrow_mut();
        let cs = &mut conns[i];
        let joined;
        let buf: &[u8] = if cs.carry.is_empty() {
            data
        } else {
            let mut j = std::mem::take(&mut cs.carry);
            j.extend_from_slice(data);
            joined = j;
            &joined
        };
        let mut pos = 0;
        while let Some(k) = buf[pos..].windows(MARK.len()).position(|w| w == MARK) {
            let start = pos + k + MARK.len();
            let end = buf[start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map(|e| start + e);
            match end {
                Some(e) => {
                    let t: u64 = std::str::from_utf8(&buf[start..e])
                        .unwrap()
                        .parse()
                        .unwrap_or(0);
                    self.record(t, now);
                    pos = e;
                }
                None => {
                    cs.carry = buf[pos + k..].to_vec();
                    return;
                }
            }
        }
        let keep = buf.len().saturating_sub(MARK.len() - 1).max(pos);
        cs.carry = buf[keep..].to_vec();
    }
}

async fn subscriber(i: usize, addr: SocketAddr, sh: Rc<Shared>) {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        eprintln!("connect {i} failed");
        return;
    };
    let _ = tcp.set_nodelay(true);
    let req = format!(
        "GET /events/{STREAM} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    );
    if tcp.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    sh.connected.set(sh.connected.get() + 1);
    loop {
        if tcp.readable().await.is_err() {
            return;
        }
        let mut scratch = sh.scratch.borrow_mut();
        match tcp.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => {
                let now = now_ns();
                sh.scan(i, &scratch[..n], now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

struct Fleet {
    sh: Rc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    fn new() -> Self {
        let sh = Rc::new(Shared::default());
        sh.scratch.borrow_mut().resize(64 * 1024, 0);
        Self {
            sh,
            tasks: Vec::new(),
        }
    }

    /// Connects until `n` subscribers, in batches of ≤ 1000 (somaxconn is 4096).
    async fn grow(&mut self, addr: SocketAddr, n: usize, server: &mut Server) {
        self.grow_by(addr, n, server, 1000).await;
    }

    /// Like [`grow`](Self::grow) with batches of `step` connections.
    async fn grow_by(&mut self, addr: SocketAddr, n: usize, server: &mut Server, step: usize) {
        while self.tasks.len() < n {
            let batch = (n - self.tasks.len()).min(step);
            for _ in 0..batch {
                let i = self.tasks.len();
                self.sh.conns.borrow_mut().push(ConnState::default());
                self.tasks.push(tokio::task::spawn_local(subscriber(
                    i,
                    addr,
                    Rc::clone(&self.sh),
                )));
            }
            let want = self.tasks.len();
            while self.sh.connected.get() < want {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let r = server.cmd(&format!("WAIT {n}")).await;
        assert_eq!(r, "OK");
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Publishes `k` frames and waits until every subscriber has them. Returns
    /// (latencies ns, first publish t, last receive).
    async fn publish(
        &self,
        server: &mut Server,
        k: usize,
        pad: usize,
    ) -> Option<(Vec<u64>, u64, u64)> {
        self.sh.arm(self.len() * k);
        let notified = self.sh.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        server.send(&format!("PUB {k} {pad}")).await;
        let done = tokio::time::timeout(Duration::from_secs(30), notified)
            .await
            .is_ok();
        assert_eq!(server.answer().await, "OK");
        if !done {
            eprintln!(
                "publish timed out: {} of {}",
                self.sh.got.get(),
                self.sh.target.get()
            );
            return None;
        }
        Some((
            self.sh.lat.borrow().clone(),
            self.sh.min_t.get(),
            self.sh.max_recv.get(),
        ))
    }

    fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e6
}

struct Params {
    rounds: usize,
    sizes: [usize; 2],
    publishes: usize,
    warmup: usize,
    spacing: Duration,
    idle: Duration,
    burst: usize,
    /// Bursts per round and size; the round's figure is their median.
    bursts: usize,
    mem_n: usize,
    mem_rounds: usize,
    slow_n: usize,
}

/// Fan-out latency and burst throughput of one server mode at the fleet's current size.
async fn fanout(p: &Params, server: &mut Server, fleet: &Fleet, report: &mut Report, tag: &str) {
    let (mut p50s, mut p99s, mut maxs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.warmup + p.publishes {
        tokio::time::sleep(p.spacing).await;
        let Some((mut lat, _, _)) = fleet.publish(server, 1, 0).await else {
            continue;
        };
        if i < p.warmup {
            continue;
        }
        lat.sort_unstable();
        p50s.push(pct(&lat, 0.5));
        p99s.push(pct(&lat, 0.99));
        maxs.push(pct(&lat, 1.0));
    }
    report.figure(&format!("{tag}_p50_ms"), median(&p50s));
    report.figure(&format!("{tag}_p99_ms"), median(&p99s));
    report.figure(&format!("{tag}_last_ms"), median(&maxs));
    // One burst lasts a fraction of a second at 10k subscribers, short enough for one
    // scheduling hiccup of the machine to halve its rate: each round takes the median of a few.
    let mut rates = Vec::new();
    for _ in 0..p.bursts {
        tokio::time::sleep(p.spacing).await;
        if let Some((_, t0, last)) = fleet.publish(server, p.burst, 0).await {
            let secs = (last.saturating_sub(t0)) as f64 / 1e9;
            rates.push((fleet.len() * p.burst) as f64 / secs);
        }
    }
    if !rates.is_empty() {
        report.figure(&format!("{tag}_deliveries_per_s"), median(&rates));
    }
}

/// One server of `mode`: fan-out at the small size, then grown to the large size.
async fn fanout_mode(p: &Params, mode: &str, pinned: bool, prefix: &str, report: &mut Report) {
    let [small, large] = p.sizes;
    let mut server = Server::spawn(mode, pinned).await;
    let mut fleet = Fleet::new();
    fleet.grow(server.addr, small, &mut server).await;
    tokio::time::sleep(p.idle).await;
    fanout(
        p,
        &mut server,
        &fleet,
        report,
        &format!("{prefix}{mode}_1k"),
    )
    .await;
    fleet.grow(server.addr, large, &mut server).await;
    tokio::time::sleep(p.idle).await;
    fanout(
        p,
        &mut server,
        &fleet,
        report,
        &format!("{prefix}{mode}_10k"),
    )
    .await;
    fleet.close();
    server.stop().await;
}

async fn memory(p: &Params, mode: &str, pinned: bool, report: &mut Report) {
    let mut server = Server::spawn(mode, pinned).await;
    let mut fleet = Fleet::new();
    fleet.grow(server.addr, 1, &mut server).await;
    tokio::time::sleep(p.idle).await;
    let (a, a_anon) = server.rss().await;
    let slab0 = slab_kib();
    // Small batches: connection set-up state (request parsing) is transient; connecting
    // thousands at once would leave its peak in the allocator and inflate the idle figure.
    fleet
        .grow_by(server.addr, p.mem_n + 1, &mut server, 100)
        .await;
    tokio::time::sleep(p.idle).await;
    let (b, b_anon) = server.rss().await;
    let slab1 = slab_kib();
    let n = p.mem_n as f64;
    report.figure(&format!("{mode}_rss_kib_per_sub"), (b - a) / n);
    report.figure(&format!("{mode}_anon_kib_per_sub"), (b_anon - a_anon) / n);
    report.figure(
        &format!("{mode}_slab_kib_per_sub_both_ends"),
        (slab1 as f64 - slab0 as f64) / n,
    );
    if mode == "lean" {
        for _ in 0..3 {
            let _ = fleet.publish(&mut server, p.burst, 0).await;
        }
        tokio::time::sleep(p.idle).await;
        let (c, _) = server.rss().await;
        report.figure("lean_rss_kib_per_sub_after_bursts", (c - a) / n);
    }
    fleet.close();
    server.stop().await;
}

async fn slow_consumer(p: &Params, pinned: bool, report: &mut Report) {
    let mut server = Server::spawn("lean", pinned).await;
    let mut fleet = Fleet::new();
    fleet.grow(server.addr, p.slow_n, &mut server).await;
    tokio::time::sleep(p.idle).await;
    let sample = |lat: Vec<u64>| {
        let mut l = lat;
        l.sort_unstable();
        pct(&l, 0.99)
    };
    let mut base = Vec::new();
    for _ in 0..p.publishes.min(10) {
        tokio::time::sleep(p.spacing).await;
        if let Some((lat, _, _)) = fleet.publish(&mut server, 1, 0).await {
            base.push(sample(lat));
        }
    }
    let (rss0, _) = server.rss().await;
    // The slow subscriber: a tiny receive buffer, never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(server.addr).await.unwrap();
    slow.write_all(format!("GET /events/{STREAM} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(server.cmd(&format!("WAIT {}", p.slow_n + 1)).await, "OK");
    // Overflow its queue (256 frames / 256 KiB) behind a send buffer the kernel may grow to
    // 4 MiB: 6 MiB of 4 KiB frames, in steps the others keep up with (each step waits until
    // every other subscriber has it).
    for _ in 0..60 {
        let _ = fleet.publish(&mut server, 25, 4096).await;
    }
    let mut with_slow = Vec::new();
    for _ in 0..p.publishes.min(10) {
        tokio::time::sleep(p.spacing).await;
        if let Some((lat, _, _)) = fleet.publish(&mut server, 1, 0).await {
            with_slow.push(sample(lat));
        }
    }
    let (rss1, _) = server.rss().await;
    let resyncs: f64 = server
        .cmd("STATS")
        .await
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // Now read the slow one: it must have been told to resync.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.windows(7).any(|w| w == b"_resync") {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout_at(deadline, slow.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                seen.extend_from_slice(&buf[..n]);
                if seen.len() > 4096 {
                    seen.drain(..seen.len() - 4096);
                }
            }
            _ => break,
        }
    }
    let got_resync = seen.windows(7).any(|w| w == b"_resync");
    report.figure("slow_p99_ms_without", median(&base));
    report.figure("slow_p99_ms_with", median(&with_slow));
    report.figure("slow_rss_growth_kib", rss1 - rss0);
    report.figure("slow_overflow_resyncs", resyncs);
    report.ratio(
        "slow_consumer_p99_vs_without",
        median(&with_slow) / median(&base),
    );
    report.extra("slow_consumer_got_resync", json!(got_resync));
    if !got_resync {
        report.note("slow consumer did not receive _resync");
    }
    fleet.close();
    server.stop().await;
}

async fn orchestrate() {
    let quick = quick_requested();
    let p = if quick {
        Params {
            rounds: 1,
            sizes: [1000, 2000],
            publishes: 9,
            warmup: 2,
            spacing: Duration::from_millis(60),
            idle: Duration::from_millis(300),
            burst: 20,
            bursts: 3,
            mem_n: 1000,
            mem_rounds: 1,
            slow_n: 200,
        }
    } else {
        Params {
            rounds: 5,
            sizes: [1000, 10_000],
            publishes: 20,
            warmup: 3,
            spacing: Duration::from_millis(250),
            idle: Duration::from_secs(2),
            burst: 50,
            bursts: 5,
            mem_n: 10_000,
            mem_rounds: 3,
            slow_n: 300,
        }
    };
    let pinned = std::process::Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // `HW_SSE_ROUNDS` overrides the number of rounds (for investigating drift).
    let mut p = p;
    if let Some(r) = std::env::var("HW_SSE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        p.rounds = r;
    }
    let mut report = Report::new("sse", quick);
    report.rounds(p.rounds);
    report.extra(
        "layout",
        json!(if pinned {
            "pinned: server taskset -c 0 with a 1-worker runtime, client taskset -c 1"
        } else {
            "shared (taskset unavailable)"
        }),
    );
    report.extra("subscribers", json!(p.sizes));
    report.extra("publishes_per_round", json!(p.publishes));
    report.extra("burst_frames", json!(p.burst));
    report.extra("bursts_per_round", json!(p.bursts));
    report.extra(
        "cpu",
        json!(
            std::fs::read_to_string("/proc/cpuinfo")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        ),
    );
    report.extra(
        "kernel",
        json!(
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ),
    );
    if quick {
        report.note("quick: 1 round, N = 1000 and 2000 (the *_10k figures are at 2000), memory at 1000 subscribers");
    }
    if quick {
        report.note("quick: shared layout (2 workers, no pinning) not measured; pinned only");
    }
    report.note("the limit writes a burst of M frames to each socket with one write (N writes per burst); a single publish is one write per socket");
    let node = node_version();
    match &node {
        Some(v) => report.peer("node", v),
        None => report.note("node not installed: the Node peer was not measured"),
    }
    report.extra(
        "node_peer",
        json!("node:http server holding every response, res.write(frame) per frame per response"),
    );
    for round in 0..p.rounds {
        eprintln!("round {}/{}", round + 1, p.rounds);
        // Rotate which mode goes first, so slow drifts in machine load hit every mode alike.
        let mut order = vec!["lean", "raw"];
        if node.is_some() {
            order.push("node");
        }
        let k = round % order.len();
        order.rotate_left(k);
        for mode in order {
            fanout_mode(&p, mode, pinned, "", &mut report).await;
        }
    }
    if !quick && pinned {
        // The shared layout: no pinning, a 2-worker server runtime, one round.
        eprintln!("shared layout");
        let _ = std::process::Command::new("taskset")
            .args(["-cp", "0,1", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        for mode in ["lean", "raw"] {
            fanout_mode(&p, mode, false, "shared_", &mut report).await;
        }
        let _ = std::process::Command::new("taskset")
            .args(["-cp", "1", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        report.ratio_of_rounds(
            "shared_fanout_vs_limit",
            "shared_lean_10k_deliveries_per_s",
            "shared_raw_10k_deliveries_per_s",
        );
        report.ratio_of_rounds(
            "shared_p99_vs_limit_10k",
            "shared_lean_10k_p99_ms",
            "shared_raw_10k_p99_ms",
        );
    }
    for mode in ["axum", "bare"] {
        memory(&p, mode, pinned, &mut report).await;
    }
    // The lean acceptor against the Node peer, interleaved rounds.
    for round in 0..p.mem_rounds {
        let mut order = vec!["lean"];
        if node.is_some() {
            order.push("node");
        }
        let k = round % order.len();
        order.rotate_left(k);
        for mode in order {
            memory(&p, mode, pinned, &mut report).await;
        }
    }
    slow_consumer(&p, pinned, &mut report).await;

    let fan = report.ratio_of_rounds(
        "fanout_vs_limit",
        "lean_10k_deliveries_per_s",
        "raw_10k_deliveries_per_s",
    );
    report.ratio_of_rounds(
        "fanout_vs_limit_1k",
        "lean_1k_deliveries_per_s",
        "raw_1k_deliveries_per_s",
    );
    let p99 = report.ratio_of_rounds("p99_vs_limit_10k", "lean_10k_p99_ms", "raw_10k_p99_ms");
    let p99_1k = median(report.figures("lean_1k_p99_ms"));
    report.ratio("p99_ms_1k", p99_1k);
    let lean = median(report.figures("lean_rss_kib_per_sub"));
    report.ratio("rss_kib_per_sub_lean", lean);
    let axum_vs = median(report.figures("axum_rss_kib_per_sub"))
        / median(report.figures("bare_rss_kib_per_sub"));
    report.ratio("rss_vs_bare_axum", axum_vs);
    let mut checks = vec![
        ("fanout_vs_limit >= 0.8", fan >= 0.8),
        ("p99_vs_limit_10k <= 1.3", p99 <= 1.3),
        ("p99_ms_1k < 20", p99_1k < 20.0),
        ("rss_kib_per_sub_lean <= 4", lean <= 4.0),
        ("rss_vs_bare_axum <= 1.1", axum_vs <= 1.1),
    ];
    if node.is_some() {
        let vs_node = report.ratio_of_rounds(
            "fanout_vs_node",
            "lean_10k_deliveries_per_s",
            "node_10k_deliveries_per_s",
        );
        report.ratio_of_rounds(
            "fanout_vs_node_1k",
            "lean_1k_deliveries_per_s",
            "node_1k_deliveries_per_s",
        );
        report.ratio_of_rounds("p99_vs_node_10k", "lean_10k_p99_ms", "node_10k_p99_ms");
        let rss_vs_node = report.ratio_of_rounds(
            "rss_per_sub_vs_node",
            "lean_rss_kib_per_sub",
            "node_rss_kib_per_sub",
        );
        checks.push(("fanout_vs_node >= 3", vs_node >= 3.0));
        checks.push(("rss_per_sub_vs_node <= 0.5", rss_vs_node <= 0.5));
    }
    for (what, ok) in &checks {
        if !ok {
            report.note(format!("target missed: {what}"));
        }
    }
    report.extra("targets_met", json!(checks.iter().all(|(_, ok)| *ok)));
    if let Err(e) = report.write() {
        eprintln!("could not write the report: {e}");
        std::process::exit(1);
    }
}

fn main() {
    if let Ok(mode) = std::env::var("HW_SSE_SERVER") {
        server(&mode);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, orchestrate());
}
