//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{cargo, cargo_output, have, report};

/// Packages the tests need on the machine, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[("redis-server", "redis-server"), ("chromium", "chromium")];

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
    if benches {
        crate::bench::run(&["all".to_owned(), "--quick".to_owned()])?;
    }
    report("xtask ci: all green");
    Ok(())
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
    Ok(())
}
