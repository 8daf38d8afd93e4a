//! `cargo xtask bench workflow`: the workflow engine end to end on one `redis-server` without
//! persistence — runs in `RedisRunStore`, step attempts as jobs on `hookwire-jobs-redis`, the
//! bench process pinned beside Redis when the machine allows it.
//!
//! Figures per round: three-step no-op workflows per second (starts from 64 concurrent callers
//! until the last run completed); Redis CPU (`INFO cpu` user + sys delta), commands and script
//! calls per transition, end to end and for the run store alone (jobs in memory); signal → next
//! step starts (p50, p99) with one engine, and with one API engine signalling while another
//! engine runs the steps; how late the step after a sleep starts (p99, and how many started
//! early: must be 0), also when the engine that set the timers stopped and another took over;
//! Redis memory per run parked at a wait (`INFO memory` delta ÷ runs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::{BoxFuture, Event};
use hookwire_jobs::{JobBackend, MemoryBackend};
use hookwire_jobs_redis::RedisBackend;
use hookwire_testkit::RedisServer;
use hookwire_testkit::bench::{Report, median, pin, quick_requested, redis_cpu_seconds, redis_pid};
use hookwire_workflow::{
    BoxError, Engine, Next, RedisRunStore, RunStatus, Scope, StartOptions, Step, StepCtx,
    TransitionSink, Wait, Workflow,
};
use serde_json::{Value, json};

/// Concurrent callers starting runs.
const STARTERS: usize = 64;
/// Step attempts at once per workflow and engine.
const CONCURRENCY: usize = 256;
/// The sleep of the timer figure.
const NAP: Duration = Duration::from_millis(500);
/// No single measurement may take longer than this.
const LIMIT: Duration = Duration::from_secs(600);

/// Counts published transitions and completed runs; records when steps after a signal or a
/// sleep started.
#[derive(Debug, Default)]
struct Probe {
    events: AtomicU64,
    completed: AtomicUsize,
    /// Run id → when its step after the wait started.
    resumed: Mutex<HashMap<String, Instant>>,
    /// Run id → unix ms when its step after the sleep started.
    woke: Mutex<HashMap<String, u64>>,
}

impl TransitionSink for Probe {
    fn publish<'a>(&'a self, e: &'a Event) -> BoxFuture<'a, hookwire_workflow::Result<()>> {
        self.events.fetch_add(1, Ordering::Relaxed);
        if e.name.ends_with(".completed") {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        Box::pin(async { Ok(()) })
    }
}

impl Probe {
    async fn until_completed(&self, n: usize, what: &str) {
        let t0 = Instant::now();
        while self.completed.load(Ordering::Relaxed) < n {
            assert!(
                t0.elapsed() < LIMIT,
                "{what}: {} of {n} runs completed within {LIMIT:?}",
                self.completed.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn noop(name: &str) -> Step {
    Step::new(name, |v: Value, _| async move {
        Ok::<_, BoxError>(Next::output(v))
    })
}

fn workflows(probe: &Arc<Probe>) -> Vec<Workflow> {
    let p = probe.clone();
    let resumed = Step::new("next", move |v: Value, ctx: StepCtx| {
        let p = p.clone();
        async move {
            p.resumed
                .lock()
                .unwrap()
                .insert(ctx.run_id().to_owned(), Instant::now());
            Ok::<_, BoxError>(Next::output(v))
        }
    });
    let p = probe.clone();
    let woke = Step::new("after", move |v: Value, ctx: StepCtx| {
        let p = p.clone();
        async move {
            let now = hookwire_core::time::unix_millis();
            p.woke.lock().unwrap().insert(ctx.run_id().to_owned(), now);
            Ok::<_, BoxError>(Next::output(v))
        }
    });
    vec![
        Workflow::builder("noop3", 1)
            .step(noop("a"))
            .step(noop("b"))
            .step(noop("c"))
            .build()
            .unwrap(),
        Workflow::builder("sig", 1)
            .wait("w", Wait::signal("go"))
            .step(resumed)
            .build()
            .unwrap(),
        Workflow::builder("nap", 1)
            .sleep("nap", NAP)
            .step(woke)
            .build()
            .unwrap(),
    ]
}

/// An engine on the server's run store, with jobs on Redis (or in memory for `jobs == None`).
async fn engine(
    server: &RedisServer,
    probe: &Arc<Probe>,
    jobs: Option<Arc<dyn JobBackend>>,
    workers: bool,
) -> Engine {
    let store = RedisRunStore::connect(&server.url())
        .await
        .expect("connect");
    let jobs = match jobs {
        Some(j) => j,
        None => Arc::new(MemoryBackend::new()),
    };
    let mut b = Engine::builder()
        .store(store)
        .jobs_backend(jobs)
        .sink_shared(probe.clone())
        .concurrency(CONCURRENCY)
        .workers(workers);
    for wf in workflows(probe) {
        b = b.workflow(wf);
    }
    b.build().await.expect("engine")
}

async fn redis_jobs(server: &RedisServer) -> Arc<dyn JobBackend> {
    Arc::new(
        RedisBackend::connect(&server.url())
            .await
            .expect("jobs backend"),
    )
}

/// Starts `n` runs of `workflow` from `STARTERS` concurrent callers; returns their ids and
/// the due times the start reported.
async fn start_many(engine: &Engine, workflow: &str, n: usize) -> Vec<(String, Option<u64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..STARTERS.min(n.max(1)) {
        let (engine, next, workflow) = (engine.clone(), next.clone(), workflow.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let s = engine
                    .start(
                        &Scope::All,
                        &workflow,
                        &json!({ "i": i }),
                        StartOptions::new(),
                    )
                    .await
                    .expect("start");
                out.push((s.run.id, s.run.due_ms));
            }
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await.expect("starter"));
    }
    ids
}

/// Redis (CPU seconds, commands, `EVALSHA` calls) so far.
fn redis_counters(server: &RedisServer) -> (f64, f64, f64) {
    let text = server.command("INFO commandstats").unwrap_or_default();
    let (mut cmds, mut scripts) = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        if rest.starts_with("info:") {
            continue;
        }
        let calls = rest
            .split([':', ','])
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        cmds += calls;
        if rest.starts_with("evalsha:") {
            scripts += calls;
        }
    }
    (redis_cpu_seconds(server), cmds, scripts)
}

fn used_memory(server: &RedisServer) -> f64 {
    let text = server.command("INFO memory").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Per-transition figures of one batch of three-step runs: (runs/s, Redis CPU µs, commands and
/// script calls per transition).
struct Throughput {
    runs_per_s: f64,
    cpu_us: f64,
    cmds: f64,
    scripts: f64,
}

/// `n` three-step no-op runs to completion on one engine (jobs on Redis, or in memory).
async fn throughput(server: &RedisServer, n: usize, jobs_on_redis: bool) -> Throughput {
    let probe = Arc::new(Probe::default());
    let jobs = if jobs_on_redis {
        Some(redis_jobs(server).await)
    } else {
        None
    };
    let engine = engine(server, &probe, jobs, true).await;
    // Warm-up outside the figures: scripts loaded, connections open.
    start_many(&engine, "noop3", 200).await;
    probe.until_completed(200, "warm-up").await;
    let (cpu0, cmds0, scripts0) = redis_counters(server);
    let events0 = probe.events.load(Ordering::Relaxed);
    let t0 = Instant::now();
    start_many(&engine, "noop3", n).await;
    probe.until_completed(200 + n, "throughput").await;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, cmds1, scripts1) = redis_counters(server);
    let transitions = (probe.events.load(Ordering::Relaxed) - events0) as f64;
    engine.shutdown().await;
    Throughput {
        runs_per_s: n as f64 / secs,
        cpu_us: (cpu1 - cpu0) * 1e6 / transitions,
        cmds: (cmds1 - cmds0) / transitions,
        scripts: (scripts1 - scripts0) / transitions,
    }
}

/// Signal → the next step starts, ms, for `m` parked runs signalled one at a time (every 2
/// ms) through `api`, the steps run by `worker`.
async fn signal_latency(api: &Engine, probe: &Probe, m: usize) -> Vec<f64> {
    let runs = start_many(api, "sig", m).await;
    let mut sent = HashMap::with_capacity(m);
    for (id, _) in &runs {
        let t0 = Instant::now();
        let r = api
            .signal(&Scope::All, id, "go", &json!(true), None)
            .await
            .expect("signal");
        assert!(
            matches!(r.0, hookwire_workflow::Signalled::Resumed),
            "{:?}",
            r.0
        );
        sent.insert(id.clone(), t0);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t0 = Instant::now();
    loop {
        if probe.resumed.lock().unwrap().len() >= m {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "signalled runs did not resume");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = std::mem::take(&mut *probe.resumed.lock().unwrap());
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(id, t0)| {
            resumed
                .get(id)
                .map(|t| t.duration_since(*t0).as_secs_f64() * 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// How late (ms, negative = early) the step after a `NAP` sleep started, for `k` runs started
/// over about a second; with `restart`, the engine that started them stops at once and a new
/// one (new connections, new workers) takes over the timers.
async fn sleep_lateness(server: &RedisServer, k: usize, restart: bool) -> Vec<f64> {
    let probe = Arc::new(Probe::default());
    let jobs = redis_jobs(server).await;
    let first = engine(server, &probe, Some(jobs.clone()), true).await;
    let mut due = HashMap::with_capacity(k);
    for chunk in 0..10 {
        for (id, d) in start_many(&first, "nap", k / 10).await {
            due.insert(id, d.expect("a sleeping run has a due time"));
        }
        if chunk < 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let live = if restart {
        first.shutdown().await;
        drop(first);
        engine(server, &probe, Some(redis_jobs(server).await), true).await
    } else {
        first
    };
    let t0 = Instant::now();
    while probe.woke.lock().unwrap().len() < due.len() {
        assert!(t0.elapsed() < LIMIT, "sleeping runs did not wake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    live.shutdown().await;
    let woke = probe.woke.lock().unwrap();
    let mut late: Vec<f64> = due
        .iter()
        .filter_map(|(id, d)| woke.get(id).map(|w| *w as f64 - *d as f64))
        .collect();
    late.sort_by(f64::total_cmp);
    late
}

/// Redis bytes per run parked at a wait (`INFO memory` delta ÷ `p`), and the mean size of one
/// parked run's document.
async fn parked_memory(server: &RedisServer, p: usize) -> (f64, f64) {
    let probe = Arc::new(Probe::default());
    let engine = engine(server, &probe, Some(redis_jobs(server).await), true).await;
    let before = used_memory(server);
    let runs = start_many(&engine, "sig", p).await;
    let after = used_memory(server);
    let sample: Vec<&String> = runs.iter().map(|(id, _)| id).take(100).collect();
    let mut body = 0.0;
    for id in &sample {
        let r = server
            .command(&format!("STRLEN hw:wf:run:{{{id}}}"))
            .unwrap_or_default();
        body += r
            .trim()
            .trim_start_matches(':')
            .parse::<f64>()
            .unwrap_or(0.0);
    }
    let run = engine
        .get(&Scope::All, sample[0])
        .await
        .expect("a parked run");
    assert_eq!(run.status, RunStatus::Waiting);
    engine.shutdown().await;
    ((after - before) / p as f64, body / sample.len() as f64)
}

fn main() {
    let quick = quick_requested();
    let n: usize = if quick { 2_000 } else { 10_000 };
    let m: usize = if quick { 200 } else { 1_000 };
    let k: usize = if quick { 200 } else { 1_000 };
    let parked: usize = if quick { 10_000 } else { 100_000 };
    let rounds = if quick { 1 } else { 2 };
    let mut report = Report::new("workflow", quick);
    report.rounds(rounds);
    report.extra("runs", json!(n));
    report.extra("signalled_runs", json!(m));
    report.extra("sleeping_runs", json!(k));
    report.extra("sleep_ms", json!(NAP.as_millis()));
    report.extra("parked_runs", json!(parked));
    report.extra("starters", json!(STARTERS));
    report.extra("concurrency", json!(CONCURRENCY));
    report.extra(
        "workflow",
        json!("three no-op code steps (Value in, Value out); 8 transitions per run: started, 3 × (step_started, step_completed), completed"),
    );

    let server = RedisServer::start().expect("redis-server");
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pinned = nproc >= 2
        && redis_pid(&server).is_some_and(|p| pin(p, "0"))
        && pin(std::process::id(), "1");
    report.extra("machine_nproc", json!(nproc));
    report.extra(
        "layout",
        json!(if pinned {
            "redis-server on cpu 0; the bench process (engines, workers, callers) on cpu 1"
        } else {
            "unpinned"
        }),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for _ in 0..rounds {
            let _ = server.command("FLUSHALL");
            let t = throughput(&server, n, true).await;
            report.figure("runs_per_s", t.runs_per_s);
            report.figure("e2e_redis_cpu_us_per_transition", t.cpu_us);
            report.figure("e2e_redis_cmds_per_transition", t.cmds);
            report.figure("e2e_script_calls_per_transition", t.scripts);
            let _ = server.command("FLUSHALL");
            let s = throughput(&server, n, false).await;
            report.figure("store_runs_per_s", s.runs_per_s);
            report.figure("store_redis_cpu_us_per_transition", s.cpu_us);
            report.figure("store_redis_cmds_per_transition", s.cmds);
            report.figure("store_script_calls_per_transition", s.scripts);

            let _ = server.command("FLUSHALL");
            let probe = Arc::new(Probe::default());
            let one = engine(&server, &probe, Some(redis_jobs(&server).await), true).await;
            let lat = signal_latency(&one, &probe, m).await;
            one.shutdown().await;
            report.figure("signal_next_step_p50_ms", quantile(&lat, 0.5));
            report.figure("signal_next_step_p99_ms", quantile(&lat, 0.99));

            let _ = server.command("FLUSHALL");
            let probe = Arc::new(Probe::default());
            let jobs = redis_jobs(&server).await;
            let worker = engine(&server, &probe, Some(jobs), true).await;
            let api = engine(&server, &probe, Some(redis_jobs(&server).await), false).await;
            let lat = signal_latency(&api, &probe, m).await;
            api.shutdown().await;
            worker.shutdown().await;
            report.figure("signal_two_engines_p50_ms", quantile(&lat, 0.5));
            report.figure("signal_two_engines_p99_ms", quantile(&lat, 0.99));

            for (restart, name) in [(false, "sleep"), (true, "sleep_after_restart")] {
                let _ = server.command("FLUSHALL");
                let late = sleep_lateness(&server, k, restart).await;
                report.figure(&format!("{name}_late_p50_ms"), quantile(&late, 0.5));
                report.figure(&format!("{name}_late_p99_ms"), quantile(&late, 0.99));
                report.figure(&format!("{name}_late_min_ms"), quantile(&late, 0.0));
                let early = late.iter().filter(|l| **l < 0.0).count();
                report.figure(&format!("{name}_early_runs"), early as f64);
            }

            let _ = server.command("FLUSHALL");
            let (bytes, body) = parked_memory(&server, parked).await;
            report.figure("parked_run_redis_bytes", bytes);
            report.figure("parked_run_document_bytes", body);
        }
    });
    for (name, figure) in [
        ("runs_per_s", "runs_per_s"),
        (
            "redis_cpu_us_per_transition",
            "e2e_redis_cpu_us_per_transition",
        ),
        (
            "store_script_calls_per_transition",
            "store_script_calls_per_transition",
        ),
        ("signal_p99_ms", "signal_next_step_p99_ms"),
        ("signal_two_engines_p99_ms", "signal_two_engines_p99_ms"),
        ("sleep_late_p99_ms", "sleep_late_p99_ms"),
        ("parked_run_redis_bytes", "parked_run_redis_bytes"),
    ] {
        let v = median(report.figures(figure));
        report.ratio(name, v);
    }
    report.note("transitions = events the engine published (8 per three-step run); Redis CPU and commands per transition include the jobs backend end to end (e2e_*), and only the run store with jobs in memory (store_*)");
    report.note("sleep lateness: unix ms when the step after the sleep started minus the due time the start reported; negative would be early");
    report.write().expect("write report");
}
