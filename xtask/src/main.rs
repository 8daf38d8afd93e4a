//! Project automation for hookwire: `cargo xtask ci`, `cargo xtask bench <suite>`,
//! `cargo xtask bench report`,
//! `cargo xtask fuzz [target]`, `cargo xtask tidy`.
//!
//! Kept dependency-light (std::process only) so it builds in seconds on a fresh machine.

use std::process::{Command, ExitCode};

mod bench;
mod ci;
mod fuzz;
mod report;
mod tidy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("tidy") => tidy::run(),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&format!("xtask: {e}"));
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask ci [--no-bench]\n       cargo xtask bench <suite|all> [--quick]\n       cargo xtask bench report [--from DIR]\n       cargo xtask fuzz [--seconds N | --runs N] [target...]\n       cargo xtask tidy";

#[allow(clippy::print_stderr, reason = "xtask reports progress on stderr")]
pub(crate) fn report(msg: &str) {
    eprintln!("{msg}");
}

/// Runs `cargo <args>` from the workspace root, streaming output; fails on non-zero exit.
pub(crate) fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    report(&format!("$ cargo {}", args.join(" ")));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// Captures `cargo <args>` stdout.
pub(crate) fn cargo_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> std::path::PathBuf {
    // `cargo xtask` sets the manifest directory at run time too. Prefer it: a target directory
    // shared by two checkouts holds whichever checkout's xtask binary was built last, and the
    // path compiled into it would point every step at the other checkout.
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.file_name().is_some_and(|n| n == "xtask") && d.join("Cargo.toml").is_file());
    runtime
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// Whether `bin` is on PATH.
pub(crate) fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}
