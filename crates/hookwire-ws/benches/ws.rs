//! `cargo xtask bench ws`: a soak of N WebSocket clients (2 000; quick: 200) on one gateway with
//! heartbeats on, for 30 s (quick: 5 s).
//!
//! The server runs in a child process (this binary re-executed with `HOOKWIRE_WS_BENCH_SERVER`),
//! so its RSS is the gateway's alone; the clients (tokio-tungstenite, 4 KiB read buffers) and
//! the publisher live in this process. Reported:
//! - `rss_kib_per_client`: server `VmRSS` with N idle subscribed clients minus with one, / N;
//!   the same for a bare axum WebSocket server with axum's default socket config (the baseline,
//!   interleaved rounds) → ratio `rss_vs_bare_axum`;
//! - `rss_growth_kib`: server RSS at the end of the soak minus at its start, and
//!   `rss_growth_second_half_kib` (end minus middle: buffers reach their working size early, a
//!   leak keeps growing), with one RSS sample per second in `soak_rss_kib_each_s`;
//! - `connected_end`: clients still connected at the end (every client answers pings, so any
//!   drop is a bug);
//! - `p50_vs_limit` / `p99_vs_limit`: per publish, the delay from sending the publish command
//!   to each client's receipt (one loopback hop for the command included), median over
//!   publishes, against the limit measured in the same run, interleaved: a "raw" server that
//!   writes the pre-encoded frame to every socket in a loop (no rooms, queues or tasks);
//! - `soak_p50_ms` / `soak_p99_ms`: the same latency during the soak (absolute);
//! - `fanout_vs_node_ws` / `rss_per_client_vs_node_ws`: room fan-out (burst deliveries/s) at
//!   10 000 clients and RSS per idle client against a Node server on the `ws` package
//!   (`node_ws.mjs`, installed from npm under `target/bench/peers/ws-node/`), same client, same
//!   run, interleaved rounds; the fan-out phase is described in `ws/fanout.rs`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Message as AxMessage;
use futures_util::{SinkExt, StreamExt};
use hookwire_core::Event;
use hookwire_testkit::bench::{Report, median, quick_requested};
use hookwire_ws::{DemoAuthenticator, ExposeStats, HookReply, WsGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "ws/fanout.rs"]
mod fanout;

const ROLE_ENV: &str = "HOOKWIRE_WS_BENCH_SERVER";
const HEARTBEAT_ENV: &str = "HOOKWIRE_WS_BENCH_HEARTBEAT_MS";
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeat of both servers in the fan-out phase: 30 s, the usual `ws` keep-alive period, so
/// neither spends the measured seconds on pings.
const FANOUT_HEARTBEAT: Duration = Duration::from_secs(30);

/// The Node peer's script, once installed.
static NODE_SCRIPT: OnceLock<std::path::PathBuf> = OnceLock::new();

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        server(&role);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

// ---------------------------------------------------------------- server child

fn server(role: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let app = match role {
            "bare" => axum::Router::new().route("/ws", axum::routing::get(bare_upgrade)),
            "raw" => axum::Router::new().route("/ws", axum::routing::get(raw_upgrade)),
            _ => hookwire_router(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        #[allow(clippy::print_stdout, reason = "the parent reads the port from stdout")]
        {
            println!("{}", listener.local_addr().expect("addr").port());
        }
        // Small frames must not wait for Nagle's algorithm (as in production, see the guide).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.expect("serve");
    });
}

fn hookwire_router() -> axum::Router {
    static GW: OnceLock<WsGateway> = OnceLock::new();
    let heartbeat = std::env::var(HEARTBEAT_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(HEARTBEAT, Duration::from_millis);
    let gw = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["bench"])
        .heartbeat_interval(heartbeat)
        .expose_stats(ExposeStats::On)
        .on_message(|_, msg| {
            // `bench.publish`: one event; `bench.burst`: `n` events back to back.
            let n = match msg["type"].as_str() {
                Some("bench.publish") => 1,
                Some("bench.burst") => msg["n"].as_u64().unwrap_or(1),
                _ => return HookReply::Unknown,
            };
            let seq0 = msg["seq"].as_u64().unwrap_or(0);
            if let Some(gw) = GW.get() {
                for seq in seq0..seq0 + n {
                    let e = Event::new("bench.tick", json!({"seq": seq, "pad": "x".repeat(96)}))
                        .with_organization("acme");
                    gw.publish(&e);
                }
            }
            HookReply::Handled
        })
        .build()
        .expect("gateway");
    let _ = GW.set(gw.clone());
    hookwire_ws::axum::ws_router(gw)
}

type RawSink = futures_util::stream::SplitSink<axum::extract::ws::WebSocket, AxMessage>;

/// Every socket of the "raw" limit server.
fn raw_sinks() -> &'static tokio::sync::Mutex<Vec<RawSink>> {
    static SINKS: OnceLock<tokio::sync::Mutex<Vec<RawSink>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

/// The limit: no rooms, queues or per-client tasks on the send path; a publish writes the
/// pre-encoded frame to each socket in a loop (same socket config as hookwire).
async fn raw_upgrade(ws: axum::extract::ws::WebSocketUpgrade) -> axum::response::Response {
    let ws = ws
        .read_buffer_size(hookwire_ws::axum::READ_BUFFER_BYTES)
        .max_message_size(16 * 1024)
        .max_frame_size(16 * 1024);
    ws.on_upgrade(|socket| async move {
        let (sink, mut stream) = socket.split();
        raw_sinks().lock().await.push(sink);
        while let Some(Ok(msg)) = stream.next().await {
            let AxMessage::Text(t) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            if v["type"] == "bench.publish" {
                let e = Event::new(
                    "bench.tick",
                    json!({"seq": v["seq"], "pad": "x".repeat(96)}),
                )
                .with_organization("acme");
                let frame = raw_frame(&e);
                let mut sinks = raw_sinks().lock().await;
                for s in sinks.iter_mut() {
                    let _ = s.send(AxMessage::Text(frame.clone())).await;
                }
            }
        }
    })
}

/// The same JSON shape as hookwire's event frame.
fn raw_frame(e: &Event) -> axum::extract::ws::Utf8Bytes {
    json!({"type": e.name, "data": e.data, "meta": {"timestamp": e.meta.created_at,
        "organizationId": e.meta.organization_id}})
    .to_string()
    .into()
}

async fn bare_upgrade(ws: axum::extract::ws::WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(|mut socket| async move { while let Some(Ok(_)) = socket.recv().await {} })
}

// ---------------------------------------------------------------- client side

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(role: &str) -> Self {
        Self::start_with(role, HEARTBEAT).await
    }

    /// Starts the server for `role` (`hookwire`, `bare`, `raw`: this binary; `node`: the Node
    /// peer) with application heartbeats every `heartbeat` (hookwire, node).
    async fn start_with(role: &str, heartbeat: Duration) -> Self {
        let mut cmd = match NODE_SCRIPT.get() {
            Some(script) if role == "node" => {
                let mut c = Command::new("node");
                c.arg(script);
                c
            }
            _ => Command::new(std::env::current_exe().expect("exe")),
        };
        let mut child = cmd
            .env(ROLE_ENV, role)
            .env(HEARTBEAT_ENV, heartbeat.as_millis().to_string())
            .env("HEARTBEAT_MS", heartbeat.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        raise_nofile(child.id());
        pin(child.id(), 0);
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().expect("stdout"))
            .expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("port");
        let port: u16 = line.trim().parse().expect("port number");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn rss_kib(&self) -> f64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `node --version`, or `None` when Node is not installed.
fn node_version() -> Option<String> {
    let out = Command::new("node").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn proc_status_kib(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Raises a process's soft open-file limit to its hard limit (no `unsafe` needed: `prlimit`).
fn raise_nofile(pid: u32) {
    let _ = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=unlimited:"])
        .stderr(Stdio::null())
        .status();
    let hard = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "-o",
            "HARD",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let hard = hard.trim();
    if !hard.is_empty() {
        let _ = Command::new("prlimit")
            .args([
                "--pid",
                &pid.to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status();
    }
}

/// Pins every thread of `pid` to `cpu` with `taskset` (bench README: load generator and server
/// on one core each); `false` when that is not possible (one core, no taskset).
fn pin(pid: u32, cpu: usize) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cpus >= 2
        && Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

type Sent = Arc<Mutex<Vec<Instant>>>;
type Lat = Arc<Mutex<Vec<Vec<f64>>>>;

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Connects one client, subscribes (hookwire role), then answers pings and records latencies.
async fn client(
    addr: SocketAddr,
    i: usize,
    hookwire: bool,
    sent: Sent,
    lat: Lat,
    live: Arc<AtomicUsize>,
) {
    let url = format!("ws://{addr}/ws?token=u{i}@acme");
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async_with_config(url, Some(client_config()), false).await
    else {
        return;
    };
    if hookwire {
        let _ = ws.next().await; // connected
        let _ = ws
            .send(Message::text(r#"{"type":"subscribe","resource":"bench"}"#))
            .await;
        let _ = ws.next().await; // subscribed
    }
    live.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        match v["type"].as_str() {
            Some("ping") if ws.send(Message::text(r#"{"type":"pong"}"#)).await.is_err() => break,
            Some("bench.tick") => {
                let Some(seq) = v["data"]["seq"].as_u64() else {
                    continue;
                };
                let seq = seq as usize;
                let at = sent.lock().expect("lock").get(seq).copied();
                if let Some(at) = at {
                    let ms = now.duration_since(at).as_secs_f64() * 1e3;
                    lat.lock().expect("lock")[seq].push(ms);
                }
            }
            _ => {}
        }
    }
    live.fetch_sub(1, Ordering::SeqCst);
}

/// Connects `n` clients, at most 200 handshakes at a time; returns once all are in.
async fn connect_all(
    addr: SocketAddr,
    n: usize,
    hookwire: bool,
    sent: &Sent,
    lat: &Lat,
) -> Arc<AtomicUsize> {
    let live = Arc::new(AtomicUsize::new(0));
    for start in (0..n).step_by(200) {
        let end = (start + 200).min(n);
        for i in start..end {
            tokio::spawn(client(
                addr,
                i,
                hookwire,
                Arc::clone(sent),
                Arc::clone(lat),
                Arc::clone(&live),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while live.load(Ordering::SeqCst) < end && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    live
}

/// Idle memory with `n` clients: (RSS with one client, RSS with n + 1), in KiB.
async fn idle_rss(role: &str, n: usize) -> (f64, f64) {
    let server = Server::start(role).await;
    let sent: Sent = Arc::default();
    let lat: Lat = Arc::default();
    // The Node peer speaks the same subscribe protocol.
    let hookwire = role != "bare";
    let _one = connect_all(server.addr, 1, hookwire, &sent, &lat).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = server.rss_kib();
    let _many = connect_all(server.addr, n, hookwire, &sent, &lat).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = server.rss_kib();
    (a, b)
}

async fn stats(addr: SocketAddr) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return Value::Null;
    };
    let req = format!("GET /ws/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return Value::Null;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// A control WebSocket (user `ctl`, not subscribed) that sends publish commands; it answers
/// the server's pings so it is never dropped. Returns the command sender.
async fn control(addr: SocketAddr) -> tokio::sync::mpsc::UnboundedSender<String> {
    let url = format!("ws://{addr}/ws?token=ctl@acme");
    let (ctl, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("control client");
    let (mut tx, mut rx) = ctl.split();
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(c) = cmd_rx.recv().await {
            if tx.send(Message::text(c)).await.is_err() {
                break;
            }
        }
    });
    let pong = cmd_tx.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Text(t) = msg
                && t.as_str().contains("\"ping\"")
            {
                let _ = pong.send(r#"{"type":"pong"}"#.to_owned());
            }
        }
    });
    cmd_tx
}

/// Records the send time of publish `seq` and sends its command.
fn publish(
    cmd: &tokio::sync::mpsc::UnboundedSender<String>,
    sent: &Sent,
    lat: &Lat,
    n: usize,
    seq: usize,
) {
    lat.lock().expect("lock").push(Vec::with_capacity(n));
    sent.lock().expect("lock").push(Instant::now());
    let _ = cmd.send(format!(r#"{{"type":"bench.publish","seq":{seq}}}"#));
}

/// One latency round against `role`: `n` clients, `publishes` publishes 250 ms apart; the
/// medians over publishes of the per-publish p50 and p99, in ms.
async fn latency_round(role: &str, n: usize, publishes: usize) -> (f64, f64) {
    let server = Server::start(role).await;
    let sent: Sent = Arc::default();
    let lat: Lat = Arc::default();
    let _live = connect_all(server.addr, n, role == "hookwire", &sent, &lat).await;
    let cmd = control(server.addr).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for seq in 0..publishes {
        publish(&cmd, &sent, &lat, n, seq);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lat = lat.lock().expect("lock").clone();
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for mut per_publish in lat {
        p50.push(percentile(&mut per_publish, 0.50));
        p99.push(percentile(&mut per_publish, 0.99));
    }
    (median(&p50), median(&p99))
}

async fn run() {
    let quick = quick_requested();
    let n: usize = if quick { 200 } else { 2_000 };
    let soak = Duration::from_secs(if quick { 5 } else { 30 });
    let rounds = if quick { 1 } else { 3 };
    let mut report = Report::new("ws", quick);
    report.rounds(rounds);
    report.extra("clients", json!(n));
    report.extra("soak_s", json!(soak.as_secs()));
    report.extra("heartbeat_ms", json!(HEARTBEAT.as_millis()));
    raise_nofile(std::process::id());
    let pinned = pin(std::process::id(), 1);
    report.extra(
        "layout",
        json!(if pinned {
            "pinned: server child process (1 worker) on CPU 0, clients (1 worker) on CPU 1"
        } else {
            "shared: server child process (1 worker) and clients (1 worker), no pinning"
        }),
    );
    if !pinned {
        report.note("taskset unavailable or refused: server and clients share the cores");
    }
    report.extra(
        "nofile_limit",
        json!(
            std::fs::read_to_string("/proc/self/limits")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .unwrap_or_default()
        ),
    );

    // The Node peer (npm `ws`), installed once under target/bench/peers/ws-node.
    match hookwire_testkit::bench::npm_peer("ws-node", include_str!("node_ws.mjs"), &["ws@8"]) {
        Ok((dir, version)) => {
            report.peer("ws", &version);
            if let Some(v) = node_version() {
                report.peer("node", &v);
            }
            let _ = NODE_SCRIPT.set(dir.join("bench.mjs"));
        }
        Err(e) => report.note(format!("Node ws peer not measured: {e}")),
    }
    let node = NODE_SCRIPT.get().is_some();

    // Room fan-out, interleaved hookwire / Node ws, on a single-threaded client of its own.
    let fp = fanout::Params {
        // A Node round at 10 000 clients takes minutes: 3 rounds, as the other ws phases.
        rounds: if quick { 1 } else { 3 },
        sizes: if quick { [200, 1000] } else { [2_000, 10_000] },
        warmup: if quick { 1 } else { 3 },
        publishes: if quick { 5 } else { 15 },
        spacing: Duration::from_millis(if quick { 50 } else { 150 }),
        bursts: 2,
        burst: if quick { 20 } else { 50 },
    };
    report.extra("fanout_clients", json!(fp.sizes));
    report.extra("fanout_burst_frames", json!(fp.burst));
    report.extra("fanout_heartbeat_ms", json!(FANOUT_HEARTBEAT.as_millis()));
    if quick {
        report.note("quick: fan-out at 200 and 1000 clients (the *_2k / *_10k figures), 1 round");
    }
    let roles: &[&str] = if node {
        &["hookwire", "node"]
    } else {
        &["hookwire"]
    };
    let (figures, notes) = tokio::task::spawn_blocking(move || fanout::run(&fp, roles))
        .await
        .expect("fan-out phase");
    for (k, v) in figures {
        report.figure(&k, v);
    }
    for note in notes {
        report.note(note);
    }

    // Idle memory, interleaved A (hookwire) / B (bare axum defaults) / C (Node ws).
    for _ in 0..rounds {
        let (a, b) = idle_rss("hookwire", n).await;
        report.figure("hookwire_rss_kib_per_client", (b - a) / n as f64);
        let (a, b) = idle_rss("bare", n).await;
        report.figure("bare_axum_rss_kib_per_client", (b - a) / n as f64);
        if node {
            let (a, b) = idle_rss("node", n).await;
            report.figure("node_ws_rss_kib_per_client", (b - a) / n as f64);
        }
    }
    report.ratio_of_rounds(
        "rss_vs_bare_axum",
        "hookwire_rss_kib_per_client",
        "bare_axum_rss_kib_per_client",
    );
    let mut checks = Vec::new();
    if node {
        let fan = report.ratio_of_rounds(
            "fanout_vs_node_ws",
            "hookwire_10k_deliveries_per_s",
            "node_10k_deliveries_per_s",
        );
        report.ratio_of_rounds(
            "fanout_vs_node_ws_2k",
            "hookwire_2k_deliveries_per_s",
            "node_2k_deliveries_per_s",
        );
        report.ratio_of_rounds(
            "p99_vs_node_ws_10k",
            "hookwire_10k_p99_ms",
            "node_10k_p99_ms",
        );
        let rss = report.ratio_of_rounds(
            "rss_per_client_vs_node_ws",
            "hookwire_rss_kib_per_client",
            "node_ws_rss_kib_per_client",
        );
        checks.push(("fanout_vs_node_ws >= 3", fan >= 3.0));
        checks.push(("rss_per_client_vs_node_ws <= 0.5", rss <= 0.5));
    }
    for (what, ok) in &checks {
        if !ok {
            report.note(format!("target missed: {what}"));
        }
    }
    report.extra("targets_met", json!(checks.iter().all(|(_, ok)| *ok)));
    let per = median(report.figures("hookwire_rss_kib_per_client"));
    report.ratio("rss_kib_per_client", per);

    // Delivery latency, interleaved A (hookwire) / B (raw limit): 20 publishes per round.
    let per_round = if quick { 10 } else { 20 };
    for _ in 0..rounds {
        for role in ["hookwire", "raw"] {
            let (p50, p99) = latency_round(role, n, per_round).await;
            report.figure(&format!("{role}_p50_ms"), p50);
            report.figure(&format!("{role}_p99_ms"), p99);
        }
    }
    report.ratio_of_rounds("p50_vs_limit", "hookwire_p50_ms", "raw_p50_ms");
    report.ratio_of_rounds("p99_vs_limit", "hookwire_p99_ms", "raw_p99_ms");

    // The soak: n clients answering heartbeats, a publish every 250 ms.
    let server = Server::start("hookwire").await;
    let sent: Sent = Arc::default();
    let lat: Lat = Arc::default();
    let live = connect_all(server.addr, n, true, &sent, &lat).await;
    let connected_start = live.load(Ordering::SeqCst);
    let cmd = control(server.addr).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_start = server.rss_kib();
    let started = Instant::now();
    let mut seq = 0usize;
    let mut rss_max = rss_start;
    let mut rss_mid = f64::NAN;
    let mut last_sample = Instant::now();
    while started.elapsed() < soak {
        if rss_mid.is_nan() && started.elapsed() >= soak / 2 {
            rss_mid = server.rss_kib();
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            report.figure("soak_rss_kib_each_s", server.rss_kib());
        }
        publish(&cmd, &sent, &lat, n, seq);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_max = rss_max.max(server.rss_kib());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_end = server.rss_kib();
    let connected_end = live.load(Ordering::SeqCst);
    let server_stats = stats(server.addr).await;

    let lat = lat.lock().expect("lock").clone();
    let mut complete = 0;
    for mut per_publish in lat {
        if per_publish.len() == n {
            complete += 1;
        }
        report.figure("soak_p50_ms", percentile(&mut per_publish, 0.50));
        report.figure("soak_p99_ms", percentile(&mut per_publish, 0.99));
        report.figure("soak_max_ms", percentile(&mut per_publish, 1.0));
    }
    report.ratio("soak_p50_ms", median(report.figures("soak_p50_ms")));
    report.ratio("soak_p99_ms", median(report.figures("soak_p99_ms")));
    report.extra("publishes", json!(seq));
    report.extra("publishes_reaching_every_client", json!(complete));
    report.extra("connected_start", json!(connected_start));
    report.extra("connected_end", json!(connected_end));
    report.extra("server_stats_end", server_stats);
    report.extra(
        "soak_rss_kib",
        json!({"start": rss_start, "mid": rss_mid, "end": rss_end, "max": rss_max}),
    );
    report.ratio("rss_growth_kib", rss_end - rss_start);
    // Buffers grow to their working size in the first seconds; a leak keeps growing after.
    report.ratio("rss_growth_second_half_kib", rss_end - rss_mid);
    if connected_end != n {
        report.note(format!(
            "{} of {n} clients were dropped during the soak",
            n - connected_end
        ));
    }
    if complete != seq {
        report.note(format!(
            "{} of {seq} publishes did not reach every client",
            seq - complete
        ));
    }
    report.note("latency includes one loopback hop for the publish command (control WebSocket)");
    report.note(
        "memory baseline: bare axum WebSocket with axum's default socket config, same client",
    );
    report.write().expect("write report");
}
