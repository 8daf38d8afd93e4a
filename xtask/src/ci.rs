//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{cargo, cargo_output, have, report};

/// Packages the tests need on the machine, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("chromium", "chromium"),
    ("wrk", "wrk"),
    ("npm", "npm"),
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let benches = !args.iter().any(|a| a == "--no-bench");
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(bin, pkg)| format!("{bin} (apt-get install {pkg})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing tools the test suite needs: {}; `.ci/run` installs them",
            missing.join(", ")
        ));
    }
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    crate::tidy::run()?;
    dependency_boundary()?;
    msrv()?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        &["test", "--workspace", "--all-features", "--no-fail-fast"],
        &[],
    )?;
    cargo(
        &["doc", "--workspace", "--all-features", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    fuzz_smoke()?;
    if benches {
        crate::bench::run(&["all".to_owned(), "--quick".to_owned()])?;
    }
    report("xtask ci: all green");
    Ok(())
}

/// Seconds each fuzz target runs in CI: a smoke test that the targets build and their
/// properties hold on the seeds and a little more; long runs are `cargo xtask fuzz`.
const FUZZ_SMOKE_SECONDS: &str = "5";

/// Builds and briefly runs every fuzz target when nightly and cargo-fuzz are installed; says
/// plainly that it skipped them otherwise.
fn fuzz_smoke() -> Result<(), String> {
    if let Some(why) = crate::fuzz::missing_tools() {
        report(&format!(
            "fuzz smoke SKIPPED: {why}; `.ci/run` installs cargo-fuzz when nightly is present"
        ));
        return Ok(());
    }
    crate::fuzz::run(&["--seconds".to_owned(), FUZZ_SMOKE_SECONDS.to_owned()])
}

/// Architecture invariant: hookwire-core has no runtime, HTTP stack or Redis client.
fn dependency_boundary() -> Result<(), String> {
    let tree = cargo_output(&[
        "tree",
        "-p",
        "hookwire-core",
        "-e",
        "normal",
        "--all-features",
        "--prefix",
        "none",
    ])?;
    for banned in ["tokio ", "hyper ", "redis ", "reqwest "] {
        if tree.lines().any(|l| l.starts_with(banned)) {
            return Err(format!(
                "hookwire-core must not depend on {} (docs/architecture.md)",
                banned.trim()
            ));
        }
    }
    report("dependency boundary: hookwire-core has no runtime, HTTP stack or Redis");
    sibling_rule()
}

/// Which hookwire crates each library crate may depend on (normal dependencies). Everything
/// stands on core and nothing on a sibling, except where a layer is the point (docs/architecture.md).
const ALLOWED: &[(&str, &[&str])] = &[
    ("hookwire-core", &[]),
    ("hookwire-patch", &[]),
    // Feature `events`: the dispatcher runs as a consumer group of the bus (`BusDispatcher`).
    (
        "hookwire-webhook-sender",
        &["hookwire-core", "hookwire-events"],
    ),
    // `server`: the built-in server is hookwire-server's accept loop (feature `server`).
    ("hookwire-receiver", &["hookwire-core", "hookwire-server"]),
    // The one accept loop; it needs nothing from core.
    ("hookwire-server", &[]),
    (
        "hookwire-receiver-axum",
        &["hookwire-core", "hookwire-receiver"],
    ),
    (
        "hookwire-receiver-actix",
        &["hookwire-core", "hookwire-receiver"],
    ),
    (
        "hookwire-receiver-warp",
        &["hookwire-core", "hookwire-receiver"],
    ),
    // `server`: `serve*` and the lean acceptor run hookwire-server's accept loop.
    // Feature `events`: `SseBusFanOut`, the fan-out across nodes as a broadcast subscriber of
    // the bus (one mechanism with the WebSocket fan-out and the event gateway).
    (
        "hookwire-sse",
        &[
            "hookwire-core",
            "hookwire-patch",
            "hookwire-server",
            "hookwire-events",
        ],
    ),
    // Feature `events`: job lifecycle events published on the bus.
    ("hookwire-jobs", &["hookwire-core", "hookwire-events"]),
    ("hookwire-jobs-redis", &["hookwire-core", "hookwire-jobs"]),
    // Feature `events`: the event gateway and the fan-out `BusFanOut` as broadcast subscribers
    // of the bus.
    (
        "hookwire-ws",
        &[
            "hookwire-core",
            "hookwire-sse",
            "hookwire-patch",
            "hookwire-events",
        ],
    ),
    ("hookwire-events", &["hookwire-core"]),
    // The outbox conformance suite (feature `outbox`) runs against the events crate's trait.
    ("hookwire-testkit", &["hookwire-core", "hookwire-events"]),
    (
        "hookwire-workflow",
        &["hookwire-core", "hookwire-jobs", "hookwire-events"],
    ),
];

/// Checks [`ALLOWED`] against `cargo metadata`; the CLI and the end-to-end tests may use anything.
fn sibling_rule() -> Result<(), String> {
    let text = cargo_output(&["metadata", "--format-version", "1", "--no-deps"])?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let mut broken = Vec::new();
    for p in &packages {
        let name = p["name"].as_str().unwrap_or_default();
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            let normal = d["kind"].is_null();
            if normal && dep.starts_with("hookwire-") && !allowed.contains(&dep) {
                broken.push(format!("{name} -> {dep}"));
            }
        }
    }
    if broken.is_empty() {
        report("dependency rule: no crate depends on a sibling it should not");
        Ok(())
    } else {
        Err(format!(
            "dependency rule broken (docs/architecture.md): {}",
            broken.join(", ")
        ))
    }
}

/// Builds the workspace with the toolchain named by `rust-version` when it is installed; rustup
/// cannot fetch toolchains on every machine, so a missing one is reported, not fatal.
fn msrv() -> Result<(), String> {
    let manifest = std::fs::read_to_string(crate::root().join("Cargo.toml"))
        .map_err(|e| format!("read Cargo.toml: {e}"))?;
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or("Cargo.toml has no workspace rust-version")?;
    let installed = std::process::Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let toolchain = installed
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .find(|t| {
            t.strip_prefix(version.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        });
    let Some(toolchain) = toolchain else {
        report(&format!(
            "msrv: toolchain {version} is not installed; skipped (install it with rustup to check)"
        ));
        return Ok(());
    };
    let plus = format!("+{toolchain}");
    cargo(
        &[
            plus.as_str(),
            "check",
            "--workspace",
            "--lib",
            "--all-features",
        ],
        &[("CARGO_TARGET_DIR", "target/msrv")],
    )
}
