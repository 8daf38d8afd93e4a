//! Helpers shared by the subcommands: reading bodies, parsing `-H` headers, exit codes.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Exit code for bad arguments.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of `events` and `workflow` when the bus, the service or the store failed or refused.
pub(crate) const EXIT_FAILED: u8 = 1;

/// Prints `msg` on stderr and returns exit code 1.
#[allow(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
pub(crate) fn failed(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("hookwire: {msg}");
    ExitCode::from(EXIT_FAILED)
}

/// Runs `f` on a current-thread runtime (exit 1 when none can be started).
pub(crate) fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => failed(format!("cannot start the runtime: {e}")),
    }
}

/// Prints `msg` on stderr and returns exit code 2.
#[allow(
    clippy::print_stderr,
    reason = "the CLI reports usage errors on stderr"
)]
pub(crate) fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("hookwire: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// The body from `--file`, else all of stdin. Bytes, not text: signatures cover raw bytes.
pub(crate) fn read_body(file: Option<&Path>) -> std::io::Result<Vec<u8>> {
    match file {
        Some(p) => std::fs::read(p),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

/// Parses `Name: value` (the value may be empty; surrounding spaces are trimmed).
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("header name in {s:?} is not a valid token"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// A `--data` value: JSON text, or `@FILE` to read it from a file.
pub(crate) fn json_data(data: &str) -> Result<serde_json::Value, String> {
    let text = match data.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --data file {path}: {e}"))?,
        None => data.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| format!("--data is not JSON: {e}"))
}
