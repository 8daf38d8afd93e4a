//! `cargo xtask bench sender`: signed webhook deliveries per second (and p99 latency) from the
//! sender to a local hyper sink, against `wrk` posting the same request to the same sink in the
//! same run (the rules are in `docs/benchmarks.md`).
//!
//! Topology: the sink is a child process pinned to CPU 0 (one-thread runtime); each load round is
//! a child process pinned to CPU 1 — alternately `wrk -t1 -c64` and this binary in `load` role
//! (one-thread runtime, 64 concurrent deliveries over keep-alive). Rounds are interleaved
//! (wrk, sender, wrk, sender …) and `sender_vs_wrk` is the median of the per-round ratios.
//!
//! A third load, `bare`, is the floor of the default client: hyper-util's pooled client alone
//! (plain `HttpConnector`, no SSRF guard, no signing, no timeout, no classification) posting
//! the very request wrk posts, with the sender's concurrency. `sender_vs_hyper_util` is what
//! hookwire adds to its client; `hyper_util_vs_wrk` is the most the default client can reach.

#![allow(
    clippy::print_stdout,
    reason = "child roles report their figures to the orchestrator on stdout"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookwire_core::Event;
use hookwire_testkit::bench::{Report, quick_requested};
use hookwire_webhook_sender::{HyperClient, Webhook};

const CONCURRENCY: usize = 64;
const ROLE: &str = "HOOKWIRE_SENDER_BENCH_ROLE";
const SECRET: &str = "bench-secret";

fn event() -> Event {
    Event::new(
        "order.created",
        serde_json::json!({"order": "o-123456", "total": 99.5, "currency": "EUR",
            "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}], "note": "x".repeat(160)}),
    )
    .with_id("evt_01HZXBENCHMARK000000000000")
    .with_stream("order-123456", 7)
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sink") => sink(),
        Ok("load") => load(),
        Ok("bare") => bare(),
        // For profiling the sender's own CPU: `perf record` this role.
        Ok("noio") => println!("{}", no_io_ns_per_delivery(1_000_000)),
        _ => orchestrate(),
    }
}

/// The sink: answers every request `200` with an empty body, on one thread.
fn sink() {
    use http_body_util::{BodyExt, Full};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", l.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        // Read the whole body, as a real receiver must before verifying.
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::new(),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

/// A load role's port, seconds and one-thread runtime (from `PORT` and `SECS`).
fn load_role() -> (u16, f64, tokio::runtime::Runtime) {
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let secs: f64 = std::env::var("SECS").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (port, secs, rt)
}

/// The sender under load: `CONCURRENCY` tasks deliver signed events for the given seconds.
/// Prints `deliveries_per_s p99_ms errors deliveries`.
fn load() {
    let (port, secs, rt) = load_role();
    rt.block_on(async move {
        // The default client (hyper-util's pool); LEAN=1 opts plain http into the lean HTTP/1.1
        // exchange: the same run shows what the lean path buys.
        let lean = std::env::var("LEAN").is_ok_and(|v| v == "1");
        let client = HyperClient::builder().lean_http(lean).build().unwrap();
        let hook = Webhook::builder()
            .url(format!("http://127.0.0.1:{port}/hook"))
            .secret(SECRET)
            .client(Arc::new(client))
            .build()
            .unwrap();
        let event = Arc::new(event());
        drive(secs, move || {
            let (hook, event) = (hook.clone(), Arc::clone(&event));
            async move { hook.deliver(&event).await.is_ok() }
        })
        .await;
    });
}

/// Runs `CONCURRENCY` tasks, each sending one request after another with `one` (true when it
/// succeeded) for `secs`, then prints `per_s p99_ms errors requests` for the orchestrator.
async fn drive<F, Fut>(secs: f64, one: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (one, stop) = (one.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if one().await {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "{} {p99} {errors} {}",
        all.len() as f64 / elapsed,
        all.len()
    );
}

/// The default client's floor: hyper-util's pooled client alone, 64 tasks posting the request
/// wrk posts (prebuilt headers and body). Prints what [`load`] prints.
fn bare() {
    use http_body_util::{BodyExt, Full};
    let (port, secs, rt) = load_role();
    rt.block_on(async move {
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/hook").parse().unwrap();
        let body = bytes::Bytes::from(event().to_json_bytes());
        let mut headers = http::HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json".to_owned()),
            (
                "idempotency-key",
                "evt_01HZXBENCHMARK000000000000".to_owned(),
            ),
            ("x-webhook-signature", format!("sha256={}", "0".repeat(64))),
            ("x-webhook-timestamp", "1700000000".to_owned()),
        ] {
            headers.insert(k, v.parse().unwrap());
        }
        drive(secs, move || {
            let mut req = http::Request::new(Full::new(body.clone()));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            let sent = client.request(req);
            async move {
                match sent.await {
                    Ok(resp) => {
                        resp.status().is_success() && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
    });
}

/// A wrk Lua script posting the same request the sender sends (same body and header set; the
/// signature is a fixed value since wrk does not sign).
fn wrk_script() -> std::path::PathBuf {
    let hook_body = String::from_utf8(event().to_json_bytes()).unwrap();
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{hook_body}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Idempotency-Key\"] = \"evt_01HZXBENCHMARK000000000000\"\n\
         wrk.headers[\"X-Webhook-Signature\"] = \"sha256={}\"\n\
         wrk.headers[\"X-Webhook-Timestamp\"] = \"1700000000\"\n",
        "0".repeat(64)
    );
    let dir = hookwire_testkit::temp_dir("sender-bench");
    let p = dir.join("post.lua");
    std::fs::write(&p, lua).unwrap();
    p
}

fn pinned(cpu: &str, exe: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", cpu, exe]);
    c
}

/// A load generator pinned to CPU 1 under `/usr/bin/time`, so its CPU seconds are known: on a
/// shared machine, work per CPU-second is far steadier than work per wall-second.
/// Without `/usr/bin/time` (Debian package `time`) the rounds still run, without CPU figures.
fn measured(exe: &str) -> Command {
    let mut c = Command::new("taskset");
    if std::path::Path::new("/usr/bin/time").exists() {
        c.args(["-c", "1", "/usr/bin/time", "-f", "HWCPU %U %S", exe]);
    } else {
        c.args(["-c", "1", exe]);
    }
    c
}

/// User + system CPU seconds from `/usr/bin/time`'s line on stderr.
fn cpu_seconds(stderr: &[u8]) -> Option<f64> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().find_map(|l| l.strip_prefix("HWCPU "))?;
    let mut it = line.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some(it.next()?? + it.next()??)
}

/// One load round: throughput, p99 (ms), requests per CPU-second of the load generator.
struct Round {
    per_s: f64,
    p99_ms: f64,
    per_cpu_s: Option<f64>,
    errors: f64,
}

/// Runs wrk.
fn run_wrk(port: u16, secs: u32, script: &std::path::Path) -> Option<Round> {
    let out = measured("wrk")
        .args([
            "-t1",
            &format!("-c{CONCURRENCY}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/hook"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let per_s = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .and_then(parse_wrk_duration)?;
    let total: Option<f64> = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0);
    let per_cpu_s = total.zip(cpu_seconds(&out.stderr)).map(|(n, c)| n / c);
    Some(Round {
        per_s,
        p99_ms,
        per_cpu_s,
        errors,
    })
}

fn parse_wrk_duration(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mul)
}

/// Runs one sender load round.
fn run_sender(exe: &str, port: u16, secs: u32, lean: bool) -> Option<Round> {
    run_role(exe, "load", port, secs, lean)
}

/// Runs this binary in `role` (`load` or `bare`) and reads its figures.
fn run_role(exe: &str, role: &str, port: u16, secs: u32, lean: bool) -> Option<Round> {
    let out = measured(exe)
        .env(ROLE, role)
        .env("LEAN", if lean { "1" } else { "0" })
        .env("PORT", port.to_string())
        .env("SECS", secs.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    let (per_s, p99_ms, errors, total) = (it.next()??, it.next()??, it.next()??, it.next()??);
    Some(Round {
        per_s,
        p99_ms,
        per_cpu_s: cpu_seconds(&out.stderr).map(|c| total / c),
        errors,
    })
}

/// A client that answers 200 at once: what a delivery costs in CPU besides the socket
/// (serialize, sign, headers, classification, the timeout).
#[derive(Debug)]
struct NoIo;

impl hookwire_webhook_sender::HttpClient for NoIo {
    fn send(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> hookwire_core::BoxFuture<
        '_,
        Result<hookwire_webhook_sender::ClientResponse, hookwire_webhook_sender::TransportError>,
    > {
        drop(req);
        Box::pin(async {
            Ok(hookwire_webhook_sender::ClientResponse::new(
                http::StatusCode::OK,
                http::HeaderMap::new(),
                bytes::Bytes::new(),
            ))
        })
    }
}

/// Nanoseconds of CPU per delivery without I/O, on one thread.
fn no_io_ns_per_delivery(n: u32) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hook = Webhook::builder()
            .url("http://127.0.0.1:9/hook")
            .secret(SECRET)
            .client(Arc::new(NoIo))
            .build()
            .unwrap();
        let e = event();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(hook.deliver(&e).await.unwrap());
        }
        t.elapsed().as_nanos() as f64 / f64::from(n)
    })
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn orchestrate() {
    let quick = quick_requested();
    // Many short interleaved rounds: on a shared 2-core machine a burst of foreign load spoils one
    // round, not the median of the per-round ratios.
    let (rounds, secs) = if quick { (2, 2) } else { (11, 3) };
    let exe = std::env::current_exe().unwrap().display().to_string();
    let mut report = Report::new("sender", quick);
    report.rounds(rounds);
    let wrk_version = Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    report.peer("wrk", wrk_version.trim());
    report.extra(
        "layout",
        serde_json::json!({"sink": "taskset -c 0, 1-thread tokio + hyper http1",
            "load": "taskset -c 1; wrk -t1 -c64 vs sender 1-thread runtime, 64 concurrent deliveries",
            "body_bytes": event().to_json_bytes().len(), "signed": "hookwire scheme (sender only)"}),
    );
    let mut child = pinned("0", &exe)
        .env(ROLE, "sink")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _sink = Killed(child);
    let port: u16 = line.trim().parse().expect("sink port");
    let script = wrk_script();

    // Warm-up of both (connections, caches, CPU frequency), not recorded.
    let _ = run_wrk(port, 1, &script);
    let _ = run_sender(&exe, port, 1, false);
    for r in 0..rounds {
        // Alternate which goes first so drift does not favour one side.
        // Arms: 0 = wrk, 1 = sender (default client), 2 = sender over the opt-in lean exchange,
        // 3 = hyper-util's client alone (the default client's floor).
        let order: [u8; 4] = if r % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for arm in order {
            let is_wrk = arm == 0;
            let (name, round) = match arm {
                0 => ("wrk", run_wrk(port, secs, &script)),
                1 => ("sender", run_sender(&exe, port, secs, false)),
                2 => ("sender_lean", run_sender(&exe, port, secs, true)),
                _ => ("hyper_util", run_role(&exe, "bare", port, secs, false)),
            };
            let Some(x) = round else {
                report.note(format!("round {r}: {name} produced no figures"));
                continue;
            };
            let unit = if is_wrk || arm == 3 {
                "requests"
            } else {
                "deliveries"
            };
            report.figure(&format!("{name}_{unit}_per_s"), x.per_s);
            report.figure(&format!("{name}_p99_ms"), x.p99_ms);
            match x.per_cpu_s {
                Some(c) => report.figure(&format!("{name}_{unit}_per_cpu_s"), c),
                None => report.note(format!("round {r}: no CPU time for {name}")),
            }
            if x.errors > 0.0 {
                report.note(format!("round {r}: {} failed {name} requests", x.errors));
            }
        }
    }
    let n = if quick { 20_000 } else { 200_000 };
    report.figure("sender_no_io_ns_per_delivery", no_io_ns_per_delivery(n));
    report.ratio_of_rounds(
        "sender_vs_wrk",
        "sender_deliveries_per_s",
        "wrk_requests_per_s",
    );
    // The same comparison per CPU-second of each load generator: what each would reach with a
    // core to itself. Foreign load on a shared machine moves it far less than wall-clock rates.
    report.ratio_of_rounds(
        "sender_vs_wrk_per_cpu",
        "sender_deliveries_per_cpu_s",
        "wrk_requests_per_cpu_s",
    );
    report.ratio_of_rounds(
        "sender_lean_vs_wrk_per_cpu",
        "sender_lean_deliveries_per_cpu_s",
        "wrk_requests_per_cpu_s",
    );
    report.ratio_of_rounds(
        "sender_vs_hyper_util",
        "sender_deliveries_per_s",
        "hyper_util_requests_per_s",
    );
    report.ratio_of_rounds(
        "hyper_util_vs_wrk",
        "hyper_util_requests_per_s",
        "wrk_requests_per_s",
    );
    report.note(
        "hyper_util rounds: hyper-util's pooled client alone (HttpConnector) posting wrk's prebuilt request, 64 concurrent tasks on a 1-thread runtime: the default client's floor",
    );
    report.note(
        "sender rounds serialize the event and sign it (hookwire scheme) per delivery; wrk \
         replays one prebuilt request with the same headers and body",
    );
    let p99 = hookwire_testkit::bench::median(report.figures("sender_p99_ms"));
    report.ratio("p99_ms", p99);
    report.write().unwrap();
}
