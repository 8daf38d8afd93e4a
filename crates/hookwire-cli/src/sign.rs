//! `hookwire sign`: print the headers that sign a body.

use std::path::PathBuf;
use std::process::ExitCode;

use hookwire_core::Secret;
use hookwire_core::signing::{self, Scheme, SignInput};

use crate::common::{read_body, usage_error};

/// Sign a body and print the headers to send, one `Name: value` per line.
///
/// Example: `echo -n '{"a":1}' | hookwire sign --secret s3cret --scheme standard`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  echo -n '{\"a\":1}' | hookwire sign --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --scheme standard"
)]
pub(crate) struct Args {
    /// The signing secret (`whsec_…` for `standard`). Or set `HOOKWIRE_SECRET` (the environment is not shown by `ps`, the command line is).
    #[arg(long, env = "HOOKWIRE_SECRET", hide_env_values = true)]
    secret: String,
    /// hookwire, standard, github, stripe, slack or body.
    #[arg(long, default_value = "hookwire")]
    scheme: String,
    /// Message id (schemes that need one get a fresh unique id without it).
    #[arg(long)]
    id: Option<String>,
    /// Unix seconds; default now.
    #[arg(long, allow_hyphen_values = true)]
    timestamp: Option<i64>,
    /// Event type, for schemes with an event header.
    #[arg(long)]
    event: Option<String>,
    /// Read the body from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[allow(clippy::print_stdout, reason = "the headers are the command's output")]
pub(crate) fn run(a: Args) -> ExitCode {
    let scheme: Scheme = match a.scheme.parse() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let secret = Secret::new(&a.secret);
    if scheme == Scheme::Standard
        && !secret.has_standard_key()
        && let Err(why) = signing::decode_standard_secret(&a.secret)
    {
        return usage_error(format!("invalid --secret for scheme standard: {why}"));
    }
    let body = match read_body(a.file.as_deref()) {
        Ok(b) => b,
        Err(e) => return usage_error(format!("cannot read body: {e}")),
    };
    let ts = a.timestamp.unwrap_or_else(hookwire_core::time::unix_now);
    let mut input = SignInput::new(&body, ts);
    if let Some(id) = a.id.as_deref() {
        input = input.id(id);
    }
    if let Some(t) = a.event.as_deref() {
        input = input.event_type(t);
    }
    match signing::sign(scheme, &secret, &input) {
        Ok(headers) => {
            for (name, value) in headers.iter() {
                println!("{name}: {value}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(e),
    }
}
