//! `hookwire verify`: check a request's signature headers against one or more secrets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hookwire_core::signing::{self, SchemeChoice, VerifyOptions};
use hookwire_core::{KeyRing, Secret};

use crate::common::{parse_header, read_body, usage_error};

/// Verify a signed body. Prints `ok <scheme>` (exit 0) or `invalid: <reason>` (exit 1).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  hookwire verify --secret It\\'s\\ a\\ Secret\\ to\\ Everybody --scheme github \\\n    -H 'X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' <<< 'Hello, World!'"
)]
pub(crate) struct Args {
    /// A secret; repeat for key rotation (valid if any verifies). Or set `HOOKWIRE_SECRET` (the
    /// environment is not shown by `ps`, the command line is).
    #[arg(long, required = true, env = "HOOKWIRE_SECRET", hide_env_values = true)]
    secret: Vec<String>,
    /// auto, hookwire, standard, github, stripe, slack or body.
    #[arg(long, default_value = "auto")]
    scheme: String,
    /// A request header, `Name: value`; repeat for each.
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Verify as of this Unix time instead of now.
    #[arg(long, allow_hyphen_values = true)]
    now: Option<i64>,
    /// Allowed clock difference, seconds (default 300).
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
    /// Read the body from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[allow(clippy::print_stdout, reason = "the verdict is the command's output")]
pub(crate) fn run(a: Args) -> ExitCode {
    let scheme: SchemeChoice = match a.scheme.parse() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let body = match read_body(a.file.as_deref()) {
        Ok(b) => b,
        Err(e) => return usage_error(format!("cannot read body: {e}")),
    };
    let keys: KeyRing = a.secret.iter().map(Secret::new).collect();
    let mut opts = VerifyOptions::new(scheme).tolerance(Duration::from_secs(a.tolerance));
    if let Some(now) = a.now {
        opts = opts.at(now);
    }
    match signing::verify(&a.headers, &body, &keys, &opts) {
        Ok(v) => {
            println!("ok {}", v.scheme);
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("invalid: {reason}");
            ExitCode::from(1)
        }
    }
}
