//! `cargo xtask bench jobs`: N jobs added in bulk, then processed with concurrency 50 by a
//! no-op handler — hookwire-jobs-redis against BullMQ (npm) on the same `redis-server`,
//! interleaved rounds, with completed jobs removed and with the last 100 kept. Figures: jobs/s
//! (processing, timed to the N-th completion stored in Redis; and add), Redis commands per job
//! (`INFO commandstats`) and Redis CPU per job (`INFO cpu` user + sys deltas).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hookwire_jobs::{Defaults, DispatchOptions, EventKind, JobDef, Jobs, Retention};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;
use hookwire_testkit::bench::{Report, bench_dir, quick_requested};

const CONCURRENCY: usize = 50;

/// Redis command calls so far (excluding INFO itself), from `INFO commandstats`.
fn commands(server: &RedisServer) -> f64 {
    let text = server.command("INFO commandstats").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|rest| !rest.starts_with("info:"))
        .filter_map(|rest| rest.split("calls=").nth(1))
        .filter_map(|v| v.split(',').next()?.parse::<f64>().ok())
        .sum()
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

/// The Redis server's CPU time so far, in seconds: `used_cpu_user + used_cpu_sys` from
/// `INFO cpu` (all its threads; unlike `commandstats` usec, neither wall-clock nor counting the
/// commands a script runs inside its own time).
fn redis_cpu_s(server: &RedisServer) -> f64 {
    let text = server.command("INFO cpu").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "used_cpu_user" | "used_cpu_sys").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Script calls (`EVALSHA` + `EVAL`) so far, from `INFO commandstats`.
fn script_calls(server: &RedisServer) -> f64 {
    let text = server.command("INFO commandstats").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|v| v.split(',').next()?.parse::<f64>().ok())
        .sum()
}

/// Completed-job retention, the same on both sides.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    /// hookwire `Retention::Remove`, BullMQ `removeOnComplete: true`.
    Remove,
    /// hookwire `Retention::KeepLast(100)`, BullMQ `removeOnComplete: 100`.
    Last100,
}

impl Keep {
    fn suffix(self) -> &'static str {
        match self {
            Self::Remove => "",
            Self::Last100 => "_keep100",
        }
    }
}

struct Round {
    /// Handler runs beyond N (at-least-once duplicates; 0 expected without faults).
    duplicates: f64,
    add_s: f64,
    /// From the start of the workers to the N-th completion stored in Redis.
    process_s: f64,
    /// Redis commands (all kinds) over add + process.
    calls: f64,
    /// Script calls during processing only.
    process_scripts: f64,
    /// Redis CPU seconds over add, and over processing.
    cpu_add_s: f64,
    cpu_process_s: f64,
}

fn bullmq_round(
    server: &RedisServer,
    dir: &Path,
    n: usize,
    keep: Keep,
    pinned: bool,
) -> Result<Round, String> {
    let c0 = commands(server);
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
            match keep {
                Keep::Remove => "true".to_owned(),
                Keep::Last100 => "100".to_owned(),
            },
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
    let c1 = commands(server);
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    let cpu = |i: usize| v["cpu"][i].as_f64().unwrap_or(f64::NAN);
    Ok(Round {
        duplicates: 0.0,
        add_s: v["add_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        process_s: v["process_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        calls: c1 - c0,
        process_scripts: f64::NAN,
        cpu_add_s: cpu(1) - cpu(0),
        cpu_process_s: cpu(2) - cpu(1),
    })
}

async fn hookwire_round(server: &RedisServer, n: usize, keep: Keep) -> Round {
    let c0 = commands(server);
    let backend = RedisBackend::connect(&server.url()).await.expect("connect");
    let queue = format!("bench-{}", hookwire_core::id::random_u64() % 1_000_000);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let def = JobDef::new(&queue, move |_: serde_json::Value, _| {
        r.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, std::io::Error>(()) }
    })
    .concurrency(CONCURRENCY)
    .batch(CONCURRENCY);
    let mut defaults = Defaults::default();
    defaults.remove_on_complete = match keep {
        Keep::Remove => Retention::Remove,
        Keep::Last100 => Retention::KeepLast(100),
    };
    let producer = Jobs::builder(backend.clone())
        .defaults(defaults.clone())
        .start()
        .await
        .expect("start");
    let bulk: Vec<(String, DispatchOptions)> = (0..n)
        .map(|i| (format!("{{\"i\":{i}}}"), DispatchOptions::new()))
        .collect();
    let cpu0 = redis_cpu_s(server);
    let t0 = Instant::now();
    producer
        .dispatch_bulk(&queue, bulk)
        .await
        .expect("bulk add");
    let add_s = t0.elapsed().as_secs_f64();
    let cpu1 = redis_cpu_s(server);
    let s0 = script_calls(server);
    // The clock stops at the N-th `completed` event: the worker emits it once the script call
    // carrying the job's ack has returned, i.e. the completion is stored (as BullMQ's is).
    let stored = Arc::new(AtomicUsize::new(0));
    let end = Arc::new(Mutex::new(None::<Instant>));
    let all = Arc::new(tokio::sync::Notify::new());
    let (s, e, a) = (stored.clone(), end.clone(), all.clone());
    let t1 = Instant::now();
    let jobs = Jobs::builder(backend)
        .defaults(defaults)
        .job(def)
        .on_event(move |ev| {
            if matches!(ev.kind, EventKind::Completed { .. })
                && s.fetch_add(1, Ordering::Relaxed) + 1 == n
            {
                *e.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                a.notify_one();
            }
        })
        .start()
        .await
        .expect("start");
    all.notified().await;
    let cpu2 = redis_cpu_s(server);
    let s1 = script_calls(server);
    let done_at = end
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .unwrap_or_else(Instant::now);
    let process_s = done_at.duration_since(t1).as_secs_f64();
    jobs.shutdown().await;
    producer.shutdown().await;
    let c1 = commands(server);
    let duplicates = ran.load(Ordering::Relaxed).saturating_sub(n) as f64;
    Round {
        duplicates,
        add_s,
        process_s,
        calls: c1 - c0,
        process_scripts: s1 - s0,
        cpu_add_s: cpu1 - cpu0,
        cpu_process_s: cpu2 - cpu1,
    }
}

/// Records one round's figures under `<side>_…<suffix>`.
fn record(report: &mut Report, side: &str, keep: Keep, r: &Round, n: f64) {
    let k = keep.suffix();
    report.figure(&format!("{side}_jobs_per_s{k}"), n / r.process_s);
    report.figure(&format!("{side}_add_jobs_per_s{k}"), n / r.add_s);
    report.figure(&format!("{side}_cmds_per_job{k}"), r.calls / n);
    report.figure(
        &format!("{side}_redis_cpu_us_per_job{k}"),
        (r.cpu_add_s + r.cpu_process_s) * 1e6 / n,
    );
    report.figure(
        &format!("{side}_redis_cpu_us_per_job_process{k}"),
        r.cpu_process_s * 1e6 / n,
    );
    if side == "hookwire" {
        report.figure(&format!("hookwire_duplicate_executions{k}"), r.duplicates);
        report.figure(
            &format!("hookwire_script_calls_per_job_process{k}"),
            r.process_scripts / n,
        );
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
        serde_json::json!({
            "default": "remove on complete, both sides",
            "_keep100": "keep the last 100 completed, both sides (hookwire KeepLast(100), BullMQ removeOnComplete: 100)",
        }),
    );
    report.extra(
        "timer",
        serde_json::json!("from the start of the workers to the N-th completion stored in Redis (hookwire: N-th `completed` event, emitted after the ack's script call returned; BullMQ: N-th `completed` event, emitted after moveToCompleted)"),
    );
    report.extra(
        "redis_cpu",
        serde_json::json!("INFO cpu used_cpu_user + used_cpu_sys deltas; `redis_cpu_us_per_job` = add + process, `_process` = processing only"),
    );

    let server = RedisServer::start().expect("redis-server");
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let want_pinned = std::env::var("HOOKWIRE_BENCH_LAYOUT").map_or(true, |v| v != "shared");
    let pinned = want_pinned
        && nproc >= 2
        && server_pid(&server).is_some_and(|p| pin(p, "0"))
        && pin(std::process::id(), "1");
    report.extra("machine_nproc", serde_json::json!(nproc));
    if pinned {
        report.note("`nproc` is read after pinning (this process's affinity: 1 CPU); `machine_nproc` is the machine's");
    }
    report.extra("pinned", serde_json::json!(pinned));
    report.extra(
        "layout",
        serde_json::json!(if pinned {
            "pinned: redis-server on cpu 0; the hookwire process (one-thread runtime) and node on cpu 1"
        } else {
            "shared: no pinning (HOOKWIRE_BENCH_LAYOUT=shared, or taskset unavailable)"
        }),
    );
    if want_pinned && !pinned {
        report.note("taskset pinning unavailable: figures from an unpinned layout");
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        report.extra("loadavg_at_start", serde_json::json!(load.trim()));
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
    rt.block_on(hookwire_round(&server, warm, Keep::Remove));
    if let Some(dir) = &bull
        && let Err(e) = bullmq_round(&server, dir, warm, Keep::Remove, pinned)
    {
        report.note(format!("BullMQ warm-up failed: {e}"));
    }
    let nf = n as f64;
    for round in 0..rounds {
        for keep in [Keep::Remove, Keep::Last100] {
            // Alternate which side goes first, so a trend in the machine's load hits both.
            let sides = if round % 2 == 0 {
                ["hookwire", "bullmq"]
            } else {
                ["bullmq", "hookwire"]
            };
            for side in sides {
                let _ = server.command("FLUSHALL");
                if side == "hookwire" {
                    let h = rt.block_on(hookwire_round(&server, n, keep));
                    record(&mut report, side, keep, &h, nf);
                } else if let Some(dir) = &bull {
                    match bullmq_round(&server, dir, n, keep, pinned) {
                        Ok(b) => record(&mut report, side, keep, &b, nf),
                        Err(e) => report.note(format!("BullMQ round failed: {e}")),
                    }
                }
            }
        }
    }
    let complete = |r: &Report, k: &str| {
        let b = r.figures(&format!("bullmq_jobs_per_s{k}")).len();
        b > 0 && b == r.figures(&format!("hookwire_jobs_per_s{k}")).len()
    };
    for keep in [Keep::Remove, Keep::Last100] {
        let k = keep.suffix();
        if !complete(&report, k) {
            report.note(format!("ratios{k} not computed: BullMQ rounds missing"));
            continue;
        }
        for (ratio, fig) in [
            ("jobs_vs_bullmq", "jobs_per_s"),
            ("cmds_per_job_vs_bullmq", "cmds_per_job"),
            ("redis_cpu_per_job_vs_bullmq", "redis_cpu_us_per_job"),
            (
                "redis_cpu_per_job_process_vs_bullmq",
                "redis_cpu_us_per_job_process",
            ),
            ("add_vs_bullmq", "add_jobs_per_s"),
        ] {
            report.ratio_of_rounds(
                &format!("{ratio}{k}"),
                &format!("hookwire_{fig}{k}"),
                &format!("bullmq_{fig}{k}"),
            );
        }
    }
    report.extra(
        "targets",
        serde_json::json!({
            "jobs_vs_bullmq": ">= 4",
            "redis_cpu_per_job_vs_bullmq": "<= 0.2",
            "redis_cpu_per_job_vs_bullmq_keep100": "<= 0.3",
        }),
    );
    report.write().expect("write report");
}
