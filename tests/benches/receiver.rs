//! `cargo xtask bench receiver`: signed 1 KiB webhook POSTs per second through each adapter
//! versus the same framework's HMAC floor and bare handler, and through the axum adapter versus
//! an axum handler verifying with the `svix` crate and a Node receiver (express + the npm
//! `standardwebhooks` package), all verifying the same requests.
//!
//! Load comes from `wrk` (one thread, 16 keep-alive connections) on loopback. Every server runs
//! on one worker thread (Node is single-threaded too); with two or more CPUs the servers are
//! pinned to CPU 0 and `wrk` to CPU 1 (`taskset`, recorded in the JSON). Rounds interleave the
//! sides of each ratio with alternating order, and the ratio is the median of per-round ratios.
//! Any non-2xx answer fails the run: a receiver that refuses requests would look fast.
//!
//! - `*_vs_bare`: `hookwire` scheme with a fresh `Idempotency-Key` per request (set by the wrk
//!   Lua script; that scheme's key is not signed) and the signature replay cache off (every
//!   request has the same signature), so every request takes the full path: read with limit,
//!   verify, claim, handler, commit.
//! - `<framework>_vs_hmac_floor`: against the floor for any receiver that verifies signatures
//!   — the same framework with a bare handler that only checks the `hookwire` HMAC with the raw
//!   `hmac`/`sha2` crates (pre-keyed state, constant-time compare), no store, no key handling
//!   (`<framework>_hmac_floor_vs_bare` for the record; `hmac_floor_vs_bare` is axum's).
//! - `memory_store_claim_commit_ns`: one claim + commit of a fresh key in a full 100 000-key
//!   `MemoryStore`, in-process (the store's share of a request, without the network);
//!   `replay_cache_bind_ns` likewise for the signature replay cache the default gate adds.
//! - `axum_vs_node`, `axum_vs_svix`: `standard` scheme, one signed request replayed. Node and
//!   the svix handler (`svix-receiver` in `xtask/peers/sign`, a separate process on a one-thread
//!   runtime, built by this suite) verify it; axum verifies it and answers from the idempotency
//!   store (the replay path, handler skipped).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::signing::{Scheme, SignInput, sign};
use hookwire_core::{MemoryStore, Secret};
use hookwire_receiver::Gate;
use hookwire_testkit::bench::{Report, bench_dir, quick_requested};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn gate() -> Gate {
    // wrk cannot re-sign per request, so every `hookwire` request carries the same signature and
    // only the Idempotency-Key changes. The replay cache (on by default) would rightly treat all
    // of them as resends of the first one and answer from the store; switch it off so each
    // request takes the full path (verify, claim, handler, commit), the expensive one.
    Gate::new()
        .secret(SECRET)
        .replay_protection(false)
        .store(Arc::new(MemoryStore::new(Default::default())))
}

/// A 1 KiB JSON body.
fn body() -> String {
    let pad = "x".repeat(1024 - r#"{"type":"order.created","pad":""}"#.len());
    let b = format!(r#"{{"type":"order.created","pad":"{pad}"}}"#);
    assert_eq!(b.len(), 1024);
    b
}

/// Runs `f` (which starts a server and returns its address) on its own one-worker runtime.
fn tokio_server<F, Fut>(f: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    std_l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_l).unwrap();
            f(l).await;
        });
    });
    addr
}

fn axum_server(layered: bool) -> SocketAddr {
    tokio_server(move |l| async move {
        async fn h(_b: bytes::Bytes) -> axum::http::StatusCode {
            axum::http::StatusCode::NO_CONTENT
        }
        let mut app = axum::Router::new().route("/webhook", axum::routing::post(h));
        if layered {
            app = app.layer(hookwire_receiver_axum::HookwireLayer::new(gate()));
        }
        axum::serve(l, app).await.unwrap();
    })
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The HMAC floor's whole check: the `hookwire` signature (`sha256=hex(HMAC(secret, ts "."
/// body))`) with the raw crates, from a pre-keyed state, compared in constant time.
fn floor_check(keyed: &HmacSha256, ts: Option<&[u8]>, sig: Option<&[u8]>, body: &[u8]) -> bool {
    use hmac::Mac;
    use subtle::ConstantTimeEq;
    let (Some(ts), Some(sig)) = (ts, sig.and_then(|s| s.strip_prefix(b"sha256="))) else {
        return false;
    };
    let mut want = [0u8; 32];
    if hex::decode_to_slice(sig, &mut want).is_err() {
        return false;
    }
    let mut mac = keyed.clone();
    mac.update(ts);
    mac.update(b".");
    mac.update(body);
    bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&want))
}

fn floor_key() -> HmacSha256 {
    use hmac::Mac;
    HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap()
}

/// The HMAC floor on axum: a bare handler that reads the body and runs [`floor_check`], with
/// nothing else around it.
fn hmac_floor_server() -> SocketAddr {
    let keyed = floor_key();
    tokio_server(move |l| async move {
        let h = move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let ok = floor_check(
                &keyed,
                headers.get("x-webhook-timestamp").map(|v| v.as_bytes()),
                headers.get("x-webhook-signature").map(|v| v.as_bytes()),
                &body,
            );
            async move {
                if ok {
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }
        };
        let app = axum::Router::new().route("/webhook", axum::routing::post(h));
        axum::serve(l, app).await.unwrap();
    })
}

/// The HMAC floor on warp: the same check in a bare filter chain.
fn warp_floor_server() -> SocketAddr {
    use warp::Filter;
    let keyed = floor_key();
    tokio_server(move |l| async move {
        let route = warp::post()
            .and(warp::path("webhook"))
            .and(warp::path::end())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |h: warp::http::HeaderMap, body: bytes::Bytes| {
                let ok = floor_check(
                    &keyed,
                    h.get("x-webhook-timestamp").map(|v| v.as_bytes()),
                    h.get("x-webhook-signature").map(|v| v.as_bytes()),
                    &body,
                );
                if ok {
                    warp::http::StatusCode::NO_CONTENT
                } else {
                    warp::http::StatusCode::UNAUTHORIZED
                }
            });
        warp::serve(route).incoming(l).run().await;
    })
}

/// The HMAC floor on actix-web: the same check in a bare handler.
fn actix_floor_server() -> SocketAddr {
    use actix_web::{App, HttpRequest, HttpResponse, web};
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            async fn h(
                req: HttpRequest,
                body: web::Bytes,
                key: web::Data<HmacSha256>,
            ) -> HttpResponse {
                let h = req.headers();
                let ok = floor_check(
                    &key,
                    h.get("x-webhook-timestamp").map(|v| v.as_bytes()),
                    h.get("x-webhook-signature").map(|v| v.as_bytes()),
                    &body,
                );
                if ok {
                    HttpResponse::NoContent().finish()
                } else {
                    HttpResponse::Unauthorized().finish()
                }
            }
            let key = web::Data::new(floor_key());
            actix_web::HttpServer::new(move || {
                App::new()
                    .app_data(key.clone())
                    .route("/webhook", web::post().to(h))
            })
            .workers(1)
            .disable_signals()
            .listen(std_l)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    addr
}

/// Nanoseconds per claim + commit of a fresh key in a full default `MemoryStore` (100 000 keys,
/// so every claim evicts): the store's share of a request, in-process, through the synchronous
/// path the adapters take.
fn memory_store_claim_commit_ns(ops: usize) -> f64 {
    use hookwire_core::{Claim, IdempotencyStore};
    let store = MemoryStore::new(Default::default());
    let fill = hookwire_core::idempotency::DEFAULT_MAX_ENTRIES;
    let keys: Vec<String> = (0..fill + ops).map(|i| format!("bench-{i:012}")).collect();
    let run = |keys: &[String]| {
        for k in keys {
            let Some(Ok(Claim::Fresh(t))) = store.claim_now(k) else {
                panic!("fresh key {k} was not claimable");
            };
            assert_eq!(store.commit_now(k, &t).map(Result::ok), Some(Some(true)));
        }
    };
    run(&keys[..fill]);
    let t = std::time::Instant::now();
    run(&keys[fill..]);
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// Nanoseconds per bind of a fresh signature in a full default `ReplayCache` (100 000
/// signatures): what the default gate adds per request for the `hookwire`, `stripe` and `slack`
/// schemes, which the `*_vs_bare` runs switch off.
fn replay_cache_bind_ns(ops: usize) -> f64 {
    let fill = hookwire_receiver::DEFAULT_REPLAY_ENTRIES;
    let cache = hookwire_receiver::ReplayCache::new(Duration::from_secs(600), fill);
    // A verified `hookwire` request's fingerprint: its 32 MAC bytes and timestamp.
    let sigs: Vec<hookwire_receiver::Fingerprint> = (0..fill + ops)
        .map(|i| {
            let mut mac = [0u8; 32];
            mac[..16].copy_from_slice(
                &(i as u128)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .to_be_bytes(),
            );
            hookwire_receiver::Fingerprint {
                scheme: Scheme::Hookwire,
                mac,
                timestamp: Some(1_700_000_000),
            }
        })
        .collect();
    let run = |sigs: &[hookwire_receiver::Fingerprint]| {
        for (i, s) in sigs.iter().enumerate() {
            let key = format!("key-{i}");
            assert_eq!(cache.bind(s, &key), key);
        }
    };
    run(&sigs[..fill]);
    let t = std::time::Instant::now();
    run(&sigs[fill..]);
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// Pins this process (and every thread it starts later) to CPU 0 so `wrk` can have CPU 1;
/// returns whether it did.
fn pin_servers() -> bool {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return false;
    }
    Command::new("taskset")
        .args(["-a", "-p", "-c", "0"])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn warp_server(layered: bool) -> SocketAddr {
    use warp::Filter;
    tokio_server(move |l| async move {
        let base = warp::post()
            .and(warp::path("webhook"))
            .and(warp::path::end());
        if layered {
            let route = base
                .and(hookwire_receiver_warp::webhook(gate()))
                .and_then(|w: hookwire_receiver_warp::WebhookRequest| async move {
                    Ok::<_, warp::Rejection>(w.finish(warp::http::StatusCode::NO_CONTENT).await)
                })
                .recover(hookwire_receiver_warp::recover);
            warp::serve(route).incoming(l).run().await;
        } else {
            let route = base
                .and(warp::body::bytes())
                .map(|_b: bytes::Bytes| warp::http::StatusCode::NO_CONTENT);
            warp::serve(route).incoming(l).run().await;
        }
    })
}

fn actix_server(layered: bool) -> SocketAddr {
    use actix_web::{App, HttpResponse, web};
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            async fn h(_b: web::Bytes) -> HttpResponse {
                HttpResponse::NoContent().finish()
            }
            // Two distinct apps: the bare one has no middleware slot at all.
            let server = if layered {
                actix_web::HttpServer::new(|| {
                    App::new()
                        .wrap(hookwire_receiver_actix::HookwireLayer::new(gate()))
                        .route("/webhook", web::post().to(h))
                })
                .workers(1)
                .disable_signals()
                .listen(std_l)
                .unwrap()
                .run()
            } else {
                actix_web::HttpServer::new(|| App::new().route("/webhook", web::post().to(h)))
                    .workers(1)
                    .disable_signals()
                    .listen(std_l)
                    .unwrap()
                    .run()
            };
            server.await.unwrap();
        });
    });
    addr
}

/// The Node receiver process, killed when dropped (also when a run panics).
struct NodeServer(Child);

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// express + standardwebhooks, installed with npm under `target/bench/peers/node`.
fn node_server(dir: &Path, pinned: bool) -> (NodeServer, SocketAddr) {
    let script = dir.join("receiver.js");
    std::fs::write(
        &script,
        r#"
const express = require("express");
const { Webhook } = require("standardwebhooks");
const wh = new Webhook(process.argv[2]);
const app = express();
app.post("/webhook", express.raw({ type: "*/*", limit: "1mb" }), (req, res) => {
  try { wh.verify(req.body.toString("utf8"), req.headers); }
  catch (e) { return res.status(401).json({ error: "bad-signature" }); }
  res.status(204).end();
});
const server = app.listen(0, "127.0.0.1", () => console.log(server.address().port));
"#,
    )
    .unwrap();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", "node"]);
        c
    } else {
        Command::new("node")
    };
    let mut child = cmd
        .arg(&script)
        .arg(SECRET)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().unwrap();
    let child = NodeServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("node printed its port");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn node_peers() -> (PathBuf, String, String) {
    let dir = bench_dir().join("peers/node");
    if !dir.join("node_modules/express/package.json").exists()
        || !dir
            .join("node_modules/standardwebhooks/package.json")
            .exists()
    {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "standardwebhooks",
                "express",
            ])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(st.success(), "npm install failed");
    }
    let version = |m: &str| {
        let p = dir.join("node_modules").join(m).join("package.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["version"].as_str().unwrap_or("?").to_owned()
    };
    let (sw, ex) = (version("standardwebhooks"), version("express"));
    (dir, sw, ex)
}

fn lua_escape(s: &str) -> String {
    format!("{s:?}")
}

/// A wrk script: fixed signed headers, plus a fresh Idempotency-Key per request when
/// `key_prefix` is given.
fn script(path: &Path, headers: &[(String, String)], body: &str, key_prefix: Option<&str>) {
    let mut s = String::from("wrk.method = \"POST\"\n");
    s.push_str(&format!("wrk.body = {}\n", lua_escape(body)));
    s.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
    for (k, v) in headers {
        s.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_escape(k),
            lua_escape(v)
        ));
    }
    if let Some(p) = key_prefix {
        s.push_str(&format!(
            "local n = 0\nrequest = function()\n  n = n + 1\n  wrk.headers[\"Idempotency-Key\"] = {} .. n\n  return wrk.format()\nend\n",
            lua_escape(p)
        ));
    }
    std::fs::write(path, s).unwrap();
}

/// Requests/s from one wrk run; panics on any non-2xx answer or socket error.
fn wrk(addr: SocketAddr, script: &Path, secs: u32, pinned: bool) -> f64 {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    let out = cmd
        .args(["-t1", "-c16", "--latency"])
        .arg(format!("-d{secs}s"))
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/webhook"))
        .output()
        .expect("wrk (install the `wrk` package)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx or 3xx responses"),
        "a receiver refused requests:\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

/// One framework's three servers: the adapter, a bare body-reading handler, the HMAC floor.
struct Servers {
    name: &'static str,
    hookwire: SocketAddr,
    bare: SocketAddr,
    floor: SocketAddr,
}

/// Builds the `svix-receiver` peer (`xtask/peers/sign`, its own manifest and lockfile, so svix
/// stays out of the workspace's dependency graph) into `target/bench/peers`, the directory the
/// `sign` suite builds the same crate into, and returns the binary.
fn build_svix_peer() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/bench/peers");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "svix-receiver",
            "--manifest-path",
        ])
        .arg(root.join("xtask/peers/sign/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building svix-receiver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target.join("release/svix-receiver"))
}

/// The svix peer on CPU 0 (when pinned), killed when dropped.
fn svix_server(exe: &Path, pinned: bool) -> (NodeServer, SocketAddr) {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let mut child = cmd
        .arg(SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .expect("svix-receiver");
    let stdout = child.stdout.take().unwrap();
    let child = NodeServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("svix-receiver printed its port");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Profiling aid (`HOOKWIRE_BENCH_SERVE=1`): keeps the servers up and prints where they listen,
/// so `perf` can watch one server while `wrk` drives it by hand. Never returns.
#[allow(clippy::print_stdout, reason = "the addresses are the output")]
fn serve_for_profiling(servers: &[Servers]) -> ! {
    let body = body();
    let ts = hookwire_core::time::unix_now();
    let headers = sign(
        Scheme::Hookwire,
        &Secret::new(SECRET),
        &SignInput::new(body.as_bytes(), ts),
    )
    .unwrap()
    .to_vec();
    let path = bench_dir().join("receiver-wrk/serve.lua");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    script(&path, &headers, &body, Some(&format!("serve-{ts}-")));
    println!("wrk script: {}", path.display());
    for s in servers {
        println!(
            "{}: hookwire http://{}/webhook bare http://{}/webhook hmac floor http://{}/webhook",
            s.name, s.hookwire, s.bare, s.floor
        );
    }
    loop {
        std::thread::park();
    }
}

fn main() {
    let machine_nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pinned = pin_servers();
    let quick = quick_requested();
    let (rounds, secs) = if quick { (3, 1) } else { (8, 3) };
    let mut report = Report::new("receiver", quick);
    report.rounds(rounds);
    report.extra("machine_nproc", serde_json::json!(machine_nproc));
    if pinned {
        report.note("`nproc` is read after pinning (this process's affinity: 1 CPU); `machine_nproc` is the machine's");
    }
    let (node_dir, sw_version, express_version) = node_peers();
    report.peer("standardwebhooks (npm)", &sw_version);
    report.peer("express (npm)", &express_version);
    let node_version = Command::new("node").arg("--version").output().map_or_else(
        |_| "?".to_owned(),
        |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
    );
    report.peer("node", &node_version);

    let store_ops = if quick { 100_000 } else { 1_000_000 };
    report.figure(
        "memory_store_claim_commit_ns",
        memory_store_claim_commit_ns(store_ops),
    );
    report.figure("replay_cache_bind_ns", replay_cache_bind_ns(store_ops));

    let servers = [
        Servers {
            name: "axum",
            hookwire: axum_server(true),
            bare: axum_server(false),
            floor: hmac_floor_server(),
        },
        Servers {
            name: "actix",
            hookwire: actix_server(true),
            bare: actix_server(false),
            floor: actix_floor_server(),
        },
        Servers {
            name: "warp",
            hookwire: warp_server(true),
            bare: warp_server(false),
            floor: warp_floor_server(),
        },
    ];
    if std::env::var_os("HOOKWIRE_BENCH_SERVE").is_some() {
        serve_for_profiling(&servers);
    }
    let (node, node_addr) = node_server(&node_dir, pinned);
    let svix = match build_svix_peer() {
        Ok(exe) => {
            report.peer("svix (crate, axum handler)", "2.9.1");
            Some(svix_server(&exe, pinned))
        }
        Err(e) => {
            report.note(format!("axum_vs_svix not measured: {e}"));
            None
        }
    };
    std::thread::sleep(Duration::from_millis(300));

    let body = body();
    // Signed afresh for each script: a full run outlasts the 5-minute replay window, and a
    // receiver that refuses a stale timestamp would fail the run (Node's refusals also throw).
    let signed = |scheme, id: Option<&str>| {
        let ts = hookwire_core::time::unix_now();
        let input = SignInput::new(body.as_bytes(), ts);
        let input = match id {
            Some(id) => input.id(id),
            None => input,
        };
        sign(scheme, &Secret::new(SECRET), &input).unwrap().to_vec()
    };
    let hookwire_headers = signed(Scheme::Hookwire, None);
    let standard_headers = signed(Scheme::Standard, Some("msg_bench"));
    let dir = bench_dir().join("receiver-wrk");
    std::fs::create_dir_all(&dir).unwrap();
    let standard = dir.join("standard.lua");
    script(&standard, &standard_headers, &body, None);

    // Warm up every server once (JIT for Node, connection pools, allocator).
    let warm = dir.join("warm.lua");
    script(&warm, &hookwire_headers, &body, Some("warm-"));
    for s in &servers {
        for addr in [s.hookwire, s.bare, s.floor] {
            wrk(addr, &warm, 1, pinned);
        }
    }
    wrk(servers[0].hookwire, &standard, 1, pinned);
    wrk(node_addr, &standard, 1, pinned);
    if let Some((_, addr)) = &svix {
        wrk(*addr, &standard, 1, pinned);
    }

    for round in 0..rounds {
        let fresh = dir.join(format!("round{round}.lua"));
        let ts = hookwire_core::time::unix_now();
        script(
            &fresh,
            &signed(Scheme::Hookwire, None),
            &body,
            Some(&format!("r{round}-{ts}-")),
        );
        script(
            &standard,
            &signed(Scheme::Standard, Some("msg_bench")),
            &body,
            None,
        );
        for s in &servers {
            let mut runs = [
                ("hookwire", s.hookwire),
                ("bare", s.bare),
                ("hmac_floor", s.floor),
            ];
            if round % 2 == 1 {
                runs.reverse();
            }
            for (fig, addr) in runs {
                let rps = wrk(addr, &fresh, secs, pinned);
                report.figure(&format!("{}_{fig}_rps", s.name), rps);
            }
        }
        let mut standard_runs = vec![
            ("axum_hookwire_standard", servers[0].hookwire),
            ("node_standardwebhooks", node_addr),
        ];
        if let Some((_, addr)) = &svix {
            standard_runs.push(("axum_svix", *addr));
        }
        if round % 2 == 1 {
            standard_runs.reverse();
        }
        for (fig, addr) in standard_runs {
            report.figure(&format!("{fig}_rps"), wrk(addr, &standard, secs, pinned));
        }
    }
    drop(node);
    drop(svix);

    for name in ["axum", "actix", "warp"] {
        report.ratio_of_rounds(
            &format!("{name}_vs_bare"),
            &format!("{name}_hookwire_rps"),
            &format!("{name}_bare_rps"),
        );
        report.ratio_of_rounds(
            &format!("{name}_vs_hmac_floor"),
            &format!("{name}_hookwire_rps"),
            &format!("{name}_hmac_floor_rps"),
        );
        report.ratio_of_rounds(
            &format!("{name}_hmac_floor_vs_bare"),
            &format!("{name}_hmac_floor_rps"),
            &format!("{name}_bare_rps"),
        );
    }
    // The name earlier reports used for the axum floor.
    report.ratio_of_rounds("hmac_floor_vs_bare", "axum_hmac_floor_rps", "axum_bare_rps");
    report.ratio_of_rounds(
        "axum_vs_node",
        "axum_hookwire_standard_rps",
        "node_standardwebhooks_rps",
    );
    if !report.figures("axum_svix_rps").is_empty() {
        report.ratio_of_rounds(
            "axum_vs_svix",
            "axum_hookwire_standard_rps",
            "axum_svix_rps",
        );
    }
    report.extra(
        "method",
        serde_json::json!({
            "load": "wrk -t1 -c16, keep-alive, loopback",
            "layout": if pinned { "pinned: servers and node on CPU 0, wrk on CPU 1 (taskset)" } else { "shared: no pinning" },
            "body_bytes": 1024,
            "server_threads": 1,
            "seconds_per_run": secs,
            "targets": {"each_vs_hmac_floor": 0.92, "axum_vs_svix": 1.0, "axum_vs_node": 5.0},
        }),
    );
    report.note("vs_bare: hookwire scheme, fresh Idempotency-Key per request, replay cache off (full verify+claim+commit path)");
    report.note("axum_vs_node, axum_vs_svix: standard scheme, one signed request replayed; node and the svix handler verify, axum verifies and answers from the store");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        report.extra("loadavg_at_end", serde_json::json!(load.trim()));
    }
    report.write().unwrap();
}
