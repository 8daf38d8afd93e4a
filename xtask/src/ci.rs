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
    dependency_boundary()?;
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
    ("hookwire-webhook-sender", &["hookwire-core"]),
    ("hookwire-receiver", &["hookwire-core"]),
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
    ("hookwire-sse", &["hookwire-core", "hookwire-patch"]),
    ("hookwire-jobs", &["hookwire-core"]),
    ("hookwire-jobs-redis", &["hookwire-core", "hookwire-jobs"]),
    (
        "hookwire-ws",
        &["hookwire-core", "hookwire-sse", "hookwire-patch"],
    ),
    ("hookwire-testkit", &["hookwire-core"]),
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
