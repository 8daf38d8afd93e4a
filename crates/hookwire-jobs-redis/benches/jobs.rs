//! `cargo xtask bench jobs`: N jobs added in bulk, then processed with concurrency 50 by a
//! no-op handler — hookwire-jobs-redis against BullMQ (npm) on the same `redis-server`,
//! interleaved rounds. Figures: jobs/s (processing and add) and Redis commands and Redis CPU
//! (`INFO commandstats` call and usec deltas, add + process) per job.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hookwire_jobs::{Defaults, DispatchOptions, JobDef, Jobs, Retention};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;
use hookwire_testkit::bench::{Report, bench_dir, quick_requested};

const CONCURRENCY: usize = 50;

/// Redis command calls and CPU microseconds so far (excluding INFO itself).
fn commandstats(server: &RedisServer) -> (f64, f64) {
    let text = server.command("INFO commandstats").unwrap_or_default();
    let (mut calls, mut usec) = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        if rest.starts_with("info:") {
            continue;
        }
        for kv in rest.split([':', ',']) {
            if let Some(v) = kv.strip_prefix("calls=") {
                calls += v.parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = kv.strip_prefix("usec=") {
                usec += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    (calls, usec)
}

fn server_pid(server: &RedisServer) -> Option<u32> {
    let info = server.command("INFO server").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

fn pin(pid: u32, cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-pc", cpu, &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs BullMQ under `target/bench/peers/bullmq` once; returns (dir, version).
fn install_bullmq() -> Result<(PathBuf, String), String> {
    let dir = bench_dir().join("peers/bullmq");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("bench.mjs"), include_str!("bullmq.mjs")).map_err(|e| e.to_string())?;
    let pkg = dir.join("node_modules/bullmq/package.json");
    if !pkg.exists() {
        std::fs::write(
            dir.join("package.json"),
            r#"{"private":true,"type":"module"}"#,
        )
        .map_err(|e| e.to_string())?;
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "bullmq@5"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install bullmq failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pkg).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    Ok((dir, v["version"].as_str().unwrap_or("?").to_owned()))
}

struct Round {
    /// Handler runs beyond N (at-least-once duplicates; 0 expected without faults).
    duplicates: f64,
    add_s: f64,
    process_s: f64,
    calls: f64,
    usec: f64,
}

fn bullmq_round(server: &RedisServer, dir: &Path, n: usize, pinned: bool) -> Result<Round, String> {
    let (c0, u0) = commandstats(server);
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "node"]);
        c
    } else {
        Command::new("node")
    };
    let out = cmd
        .arg("bench.mjs")
        .args([
            server.port().to_string(),
            n.to_string(),
            CONCURRENCY.to_string(),
        ])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bullmq run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (c1, u1) = commandstats(server);
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    Ok(Round {
        duplicates: 0.0,
        add_s: v["add_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        process_s: v["process_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        calls: c1 - c0,
        usec: u1 - u0,
    })
}

async fn hookwire_round(server: &RedisServer, n: usize) -> Round {
    let (c0, u0) = commandstats(server);
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let queue = format!("bench-{}", hookwire_core::id::random_u64() % 1_000_000);
    let done = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    let (d, a) = (done.clone(), all.clone());
    let def = JobDef::new(&queue, move |_: serde_json::Value, _| {
        if d.fetch_add(1, Ordering::Relaxed) + 1 == n {
            a.notify_one();
        }
        async { Ok::<_, std::io::Error>(()) }
    })
    .concurrency(CONCURRENCY)
    .batch(CONCURRENCY);
    let mut defaults = Defaults::default();
    defaults.remove_on_complete = Retention::Remove;
    let producer = Jobs::builder(backend.clone())
        .defaults(defaults.clone())
        .start()
        .await
        .expect("start");
    let bulk: Vec<(String, DispatchOptions)> = (0..n)
        .map(|i| (format!("{{\"i\":{i}}}"), DispatchOptions::new()))
        .collect();
    let t0 = Instant::now();
    producer
        .dispatch_bulk(&queue, bulk)
        .await
        .expect("bulk add");
    let add_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let jobs = Jobs::builder(backend)
        .defaults(defaults)
        .job(def)
        .start()
        .await
        .expect("start");
    all.notified().await;
    let process_s = t1.elapsed().as_secs_f64();
    jobs.shutdown().await;
    producer.shutdown().await;
    let (c1, u1) = commandstats(server);
    let duplicates = done.load(Ordering::Relaxed).saturating_sub(n) as f64;
    Round {
        duplicates,
        add_s,
        process_s,
        calls: c1 - c0,
        usec: u1 - u0,
    }
}

fn main() {
    let quick = quick_requested();
    let n: usize = if quick { 5_000 } else { 100_000 };
    let rounds = if quick { 1 } else { 5 };
    let mut report = Report::new("jobs", quick);
    report.rounds(rounds);
    report.extra("n", serde_json::json!(n));
    report.extra("concurrency", serde_json::json!(CONCURRENCY));
    report.extra(
        "retention",
        serde_json::json!("remove on complete, both sides"),
    );

    let server = RedisServer::start().expect("redis-server");
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pinned = nproc >= 2
        && server_pid(&server).is_some_and(|p| pin(p, "0"))
        && pin(std::process::id(), "1");
    report.extra("machine_nproc", serde_json::json!(nproc));
    if pinned {
        report.note("`nproc` is read after pinning (this process's affinity: 1 CPU); `machine_nproc` is the machine's");
    }
    report.extra(
        "layout",
        serde_json::json!(if pinned {
            "redis-server on cpu 0; hookwire process and node on cpu 1"
        } else {
            "unpinned"
        }),
    );
    if !pinned {
        report.note("taskset pinning unavailable: figures from an unpinned layout");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let bull = match install_bullmq() {
        Ok((dir, version)) => {
            report.peer("bullmq", &version);
            Some(dir)
        }
        Err(e) => {
            report.note(format!("BullMQ not measured: {e}"));
            None
        }
    };
    // One warm-up of each side (script loading, JIT, connection set-up) outside the figures.
    let warm = n.min(2_000);
    rt.block_on(hookwire_round(&server, warm));
    if let Some(dir) = &bull
        && let Err(e) = bullmq_round(&server, dir, warm, pinned)
    {
        report.note(format!("BullMQ warm-up failed: {e}"));
    }
    let nf = n as f64;
    for _ in 0..rounds {
        let _ = server.command("FLUSHALL");
        let h = rt.block_on(hookwire_round(&server, n));
        report.figure("hookwire_jobs_per_s", nf / h.process_s);
        report.figure("hookwire_add_jobs_per_s", nf / h.add_s);
        report.figure("hookwire_cmds_per_job", h.calls / nf);
        report.figure("hookwire_redis_usec_per_job", h.usec / nf);
        report.figure("hookwire_duplicate_executions", h.duplicates);
        if let Some(dir) = &bull {
            let _ = server.command("FLUSHALL");
            match bullmq_round(&server, dir, n, pinned) {
                Ok(b) => {
                    report.figure("bullmq_jobs_per_s", nf / b.process_s);
                    report.figure("bullmq_add_jobs_per_s", nf / b.add_s);
                    report.figure("bullmq_cmds_per_job", b.calls / nf);
                    report.figure("bullmq_redis_usec_per_job", b.usec / nf);
                }
                Err(e) => report.note(format!("BullMQ round failed: {e}")),
            }
        }
    }
    if bull.is_some() && !report.figures("bullmq_jobs_per_s").is_empty() {
        report.ratio_of_rounds("jobs_vs_bullmq", "hookwire_jobs_per_s", "bullmq_jobs_per_s");
        report.ratio_of_rounds(
            "cmds_per_job_vs_bullmq",
            "hookwire_cmds_per_job",
            "bullmq_cmds_per_job",
        );
        report.ratio_of_rounds(
            "redis_cpu_per_job_vs_bullmq",
            "hookwire_redis_usec_per_job",
            "bullmq_redis_usec_per_job",
        );
        report.ratio_of_rounds(
            "add_vs_bullmq",
            "hookwire_add_jobs_per_s",
            "bullmq_add_jobs_per_s",
        );
    }
    report.write().expect("write report");
}
