//! `cargo xtask bench <suite>`: each suite is a `harness = false` bench target in the crate it
//! measures, or a binary under `xtask/peers/` when it links peer crates; either way it writes
//! `target/bench/<suite>.json` itself (format: `docs/benchmarks.md`; a quick run writes
//! `<suite>.quick.json`). `cargo xtask bench report` publishes the full runs (see `report`).

use crate::cargo;

/// Where a suite's harness lives.
enum Harness {
    /// A `harness = false` bench target of a workspace package: (package, bench target).
    InTree(&'static str, &'static str),
    /// A binary under `xtask/peers/<dir>` with its own manifest and lockfile, because it links
    /// peer crates that must stay out of the workspace's dependency graph.
    Peers(&'static str),
}

/// Every suite `cargo xtask bench` knows, in the order `all` runs them.
const SUITES: &[(&str, Harness)] = &[
    ("sign", Harness::Peers("sign")),
    ("patch", Harness::InTree("hookwire-patch", "patch")),
    ("sse", Harness::InTree("hookwire-sse", "sse")),
    ("ws", Harness::InTree("hookwire-ws", "ws")),
    (
        "sender",
        Harness::InTree("hookwire-webhook-sender", "sender"),
    ),
    ("receiver", Harness::InTree("hookwire-e2e", "receiver")),
    ("jobs", Harness::InTree("hookwire-jobs-redis", "jobs")),
    ("bus", Harness::InTree("hookwire-events", "bus")),
    ("workflow", Harness::InTree("hookwire-workflow", "workflow")),
];

/// The suites' names, in the order `all` runs them.
pub(crate) fn suite_names() -> impl Iterator<Item = &'static str> {
    SUITES.iter().map(|(s, _)| *s)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.first().is_some_and(|a| a == "report") {
        return crate::report::run(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask bench <suite|all> [--quick]")?;
    let chosen: Vec<_> = SUITES
        .iter()
        .filter(|(s, _)| name == "all" || s == name)
        .collect();
    if chosen.is_empty() {
        let known: Vec<&str> = SUITES.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "unknown suite {name:?}; known: {}",
            known.join(", ")
        ));
    }
    let quick_env = if quick { "1" } else { "0" };
    let env = [("HOOKWIRE_BENCH_QUICK", quick_env)];
    for (suite, harness) in chosen {
        let manifest;
        let target_dir;
        let mut a: Vec<&str> = match harness {
            Harness::InTree(package, target) => vec!["bench", "-p", package, "--bench", target],
            Harness::Peers(dir) => {
                manifest = crate::root()
                    .join("xtask/peers")
                    .join(dir)
                    .join("Cargo.toml")
                    .display()
                    .to_string();
                // Beside the suites' JSON, so a shared `CARGO_TARGET_DIR` holds the peers too.
                target_dir = crate::report::bench_dir()
                    .join("peers")
                    .display()
                    .to_string();
                vec![
                    "run",
                    "--release",
                    "--locked",
                    "--manifest-path",
                    &manifest,
                    "--target-dir",
                    &target_dir,
                ]
            }
        };
        a.push("--");
        if quick {
            a.push("--quick");
        }
        cargo(&a, &env).map_err(|e| format!("bench {suite}: {e}"))?;
    }
    Ok(())
}
