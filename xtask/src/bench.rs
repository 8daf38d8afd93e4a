//! `cargo xtask bench <suite>`: each suite is a `harness = false` bench target in the crate it
//! measures; it writes `target/bench/<suite>.json` itself (see `shared/bench/README.md`).

use crate::cargo;

/// (suite, package, bench target).
const SUITES: &[(&str, &str, &str)] = &[("sign", "hookwire-core", "sign")];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask bench <suite|all> [--quick]")?;
    let chosen: Vec<_> = SUITES
        .iter()
        .filter(|(s, _, _)| name == "all" || s == name)
        .collect();
    if chosen.is_empty() {
        let known: Vec<&str> = SUITES.iter().map(|(s, _, _)| *s).collect();
        return Err(format!(
            "unknown suite {name:?}; known: {}",
            known.join(", ")
        ));
    }
    for (suite, package, target) in chosen {
        let mut a = vec!["bench", "-p", package, "--bench", target, "--"];
        if quick {
            a.push("--quick");
        }
        let quick_env = if quick { "1" } else { "0" };
        cargo(&a, &[("HOOKWIRE_BENCH_QUICK", quick_env)])
            .map_err(|e| format!("bench {suite}: {e}"))?;
    }
    Ok(())
}
