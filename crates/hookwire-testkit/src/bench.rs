//! The JSON report every benchmark suite writes to `target/bench/<suite>.json`
//! (format: `docs/benchmarks.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// Figures, ratios and notes of one suite run.
#[derive(Debug, Default)]
pub struct Report {
    suite: String,
    quick: bool,
    rounds: usize,
    peers: BTreeMap<String, String>,
    figures: BTreeMap<String, Vec<f64>>,
    ratios: BTreeMap<String, f64>,
    extra: BTreeMap<String, Value>,
    notes: Vec<String>,
}

/// The median of `v` (NaN for an empty slice).
///
/// ```
/// assert_eq!(hookwire_testkit::bench::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(hookwire_testkit::bench::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// ```
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

impl Report {
    /// A report for `suite`.
    pub fn new(suite: &str, quick: bool) -> Self {
        Self {
            suite: suite.to_owned(),
            quick,
            ..Self::default()
        }
    }
    /// Records the number of rounds.
    pub fn rounds(&mut self, n: usize) {
        self.rounds = n;
    }
    /// Records a peer's version.
    pub fn peer(&mut self, name: &str, version: &str) {
        self.peers.insert(name.to_owned(), version.to_owned());
    }
    /// Appends one round's figure.
    pub fn figure(&mut self, name: &str, value: f64) {
        self.figures.entry(name.to_owned()).or_default().push(value);
    }
    /// The figures recorded under `name`.
    pub fn figures(&self, name: &str) -> &[f64] {
        self.figures.get(name).map_or(&[], Vec::as_slice)
    }
    /// Sets a ratio.
    pub fn ratio(&mut self, name: &str, value: f64) {
        self.ratios.insert(name.to_owned(), value);
    }
    /// Sets the ratio `name` to the median of the per-round ratios `a[i] / b[i]`.
    pub fn ratio_of_rounds(&mut self, name: &str, a: &str, b: &str) -> f64 {
        let per: Vec<f64> = self
            .figures(a)
            .iter()
            .zip(self.figures(b))
            .map(|(x, y)| x / y)
            .collect();
        let m = median(&per);
        self.ratio(name, m);
        m
    }
    /// Any other value worth keeping (layout, CPU model…).
    pub fn extra(&mut self, key: &str, value: Value) {
        self.extra.insert(key.to_owned(), value);
    }
    /// Something not measured cleanly.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let medians: BTreeMap<&String, f64> =
            self.figures.iter().map(|(k, v)| (k, median(v))).collect();
        json!({
            "suite": self.suite,
            "quick": self.quick,
            "rounds": self.rounds,
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "machine": machine(),
            "peers": self.peers,
            "figures": self.figures,
            "medians": medians,
            "ratios": self.ratios,
            "extra": self.extra,
            "notes": self.notes,
        })
    }

    /// Writes `target/bench/<suite>.json` (under `$CARGO_TARGET_DIR` when set; a quick run
    /// writes `<suite>.quick.json`, so it never replaces a full run's figures) and prints a
    /// short table on stderr; returns the path.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let dir = bench_dir();
        std::fs::create_dir_all(&dir)?;
        let name = if self.quick {
            format!("{}.quick.json", self.suite)
        } else {
            format!("{}.json", self.suite)
        };
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        let mut table = format!("bench {} (quick: {})\n", self.suite, self.quick);
        for (k, v) in &self.figures {
            table.push_str(&format!(
                "  {k:<40} median {:>14.2}  rounds {:?}\n",
                median(v),
                v.len()
            ));
        }
        for (k, v) in &self.ratios {
            table.push_str(&format!("  ratio {k:<34} {v:>14.3}\n"));
        }
        for n in &self.notes {
            table.push_str(&format!("  note: {n}\n"));
        }
        table.push_str(&format!("  -> {}\n", path.display()));
        #[allow(
            clippy::print_stderr,
            reason = "the table is the bench's human-readable output"
        )]
        {
            eprint!("{table}");
        }
        Ok(path)
    }
}

/// The CPU model and kernel release, for the report's machine line.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned());
    // Every online CPU, not `available_parallelism`: a suite pins itself to one CPU first.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    json!({ "cpu": cpu, "kernel": kernel, "cpus": cpus })
}

/// `target/bench`, honouring `CARGO_TARGET_DIR`, else found from the workspace root.
pub fn bench_dir() -> PathBuf {
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("bench");
    }
    // CARGO_MANIFEST_DIR of this crate is <root>/crates/hookwire-testkit.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench")
}

/// Whether the suite was asked for a quick run (`--quick` argument or `HOOKWIRE_BENCH_QUICK=1`).
pub fn quick_requested() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("HOOKWIRE_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// The process id of a running `redis-server` (from `INFO server`).
pub fn redis_pid(server: &crate::RedisServer) -> Option<u32> {
    let info = server.command("INFO server").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Redis's own CPU time so far, seconds: `used_cpu_user + used_cpu_sys` of `INFO cpu` (all its
/// threads, not its children).
pub fn redis_cpu_seconds(server: &crate::RedisServer) -> f64 {
    let text = server.command("INFO cpu").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// Pins every thread of `pid` to the CPUs in `cpus` (`taskset` syntax); false when that is not
/// possible here.
pub fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-pc", cpus, &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the npm `packages` (`name@range`) under `target/bench/peers/<dir>` once, writes
/// `script` there as `bench.mjs`, and returns the directory and the installed version of the
/// first package.
pub fn npm_peer(dir: &str, script: &str, packages: &[&str]) -> Result<(PathBuf, String), String> {
    let dir = bench_dir().join("peers").join(dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("bench.mjs"), script).map_err(|e| e.to_string())?;
    let first = packages.first().ok_or("no package")?;
    let name = match first.rfind('@') {
        Some(i) if i > 0 => &first[..i],
        _ => first,
    };
    let pkg = dir.join("node_modules").join(name).join("package.json");
    if !pkg.exists() {
        std::fs::write(
            dir.join("package.json"),
            r#"{"private":true,"type":"module"}"#,
        )
        .map_err(|e| e.to_string())?;
        let out = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .args(packages)
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install {} failed: {}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&pkg).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok((dir, v["version"].as_str().unwrap_or("?").to_owned()))
}

/// Commands Redis has run so far, all kinds except `INFO` (from `INFO commandstats`).
pub fn redis_command_calls(server: &crate::RedisServer) -> f64 {
    let text = server.command("INFO commandstats").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|rest| !rest.starts_with("info:"))
        .filter_map(|rest| {
            rest.split([':', ','])
                .find_map(|kv| kv.strip_prefix("calls="))
        })
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}
