//! `hookwire send`: one delivery with the sender's full behaviour (`docs/hookwire-cli.md`, "send").

use std::process::ExitCode;
use std::time::Duration;

use hookwire_core::{Backoff, Event, Jitter, RetryPolicy, Scheme};
use hookwire_webhook_sender::{DeliveryOutcome, Webhook, envelope_body};

use crate::common::{json_data, parse_header, usage_error};

/// Exit code when the receiver answered non-retryable (3xx/4xx).
const EXIT_BLOCKED: u8 = 3;
/// Exit code when retries ran out.
const EXIT_EXHAUSTED: u8 = 4;

/// Deliver one signed event to URL: timeout, Idempotency-Key, classification, retries with
/// exponential backoff and jitter. The body is `{"type","payload","meta"}` as the dispatcher sends.
///
/// Exit 0 delivered (prints the status), 3 blocked (`blocked: <status>`), 4 retries exhausted
/// (`failed: <last status or error>`), 2 bad arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  hookwire send http://127.0.0.1:4001/webhook --secret s3cret --event order.created --data '{\"id\":\"o-1\"}'"
)]
pub(crate) struct Args {
    /// The receiver's URL (http or https).
    url: String,
    /// The signing secret (`whsec_…` for `standard`). Or set `HOOKWIRE_SECRET` (the environment is not shown by `ps`, the command line is).
    #[arg(long, env = "HOOKWIRE_SECRET", hide_env_values = true)]
    secret: String,
    /// hookwire, standard, github, stripe, slack or body.
    #[arg(long, default_value = "hookwire")]
    scheme: String,
    /// The event type.
    #[arg(long, default_value = "hookwire.test")]
    event: String,
    /// The payload: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    data: String,
    /// The event id (default: a fresh unique id).
    #[arg(long)]
    id: Option<String>,
    /// The Idempotency-Key (default: the event id).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Timeout of each attempt (connect, send, response), milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Base of the exponential backoff, milliseconds (±20 % jitter, capped at 60 s); a
    /// `Retry-After` is honoured up to the longest delay this backoff reaches.
    #[arg(long, default_value_t = 500)]
    backoff_ms: u64,
    /// Extra header `Name: value` (repeatable); wins over derived headers.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
}

#[allow(
    clippy::print_stdout,
    reason = "the status line is the command's output"
)]
pub(crate) fn run(a: Args) -> ExitCode {
    let scheme: Scheme = match a.scheme.parse() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let data = match json_data(&a.data) {
        Ok(d) => d,
        Err(e) => return usage_error(e),
    };
    let mut event = Event::new(a.event.clone(), data);
    if let Some(id) = &a.id {
        event = event.with_id(id.clone());
    }
    let mut b = Webhook::builder()
        .url(a.url.clone())
        .secret(a.secret.clone())
        .scheme(scheme)
        .timeout(Duration::from_millis(a.timeout_ms))
        .body(envelope_body(&event))
        .header("X-Webhook-Id", event.id.clone())
        .header("X-Webhook-Event", event.name.clone());
    if let Some(k) = a.idempotency_key.clone() {
        b = b.idempotency_key(move |_| Some(k.clone()));
    }
    for h in &a.headers {
        match parse_header(h) {
            Ok((k, v)) => b = b.header(k, v),
            Err(e) => return usage_error(e),
        }
    }
    let hook = match b.build() {
        Ok(h) => h,
        Err(e) => return usage_error(e),
    };
    // A receiver's `Retry-After` cannot make the command sleep longer than its own backoff would.
    let policy = RetryPolicy::new(a.retries)
        .with_backoff(
            Backoff::exponential(Duration::from_millis(a.backoff_ms))
                .with_max(Duration::from_secs(60))
                .with_jitter(Jitter::Proportional(0.2)),
        )
        .cap_retry_after_at_max_delay();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    let d = rt.block_on(hook.deliver_with_retry(&event, &policy));
    let status_or_error = |e: &hookwire_core::HttpError| {
        if e.status() == 0 {
            e.to_string()
        } else {
            e.status().to_string()
        }
    };
    match &d.outcome {
        DeliveryOutcome::Delivered { status } => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        DeliveryOutcome::Blocked(e) => {
            println!("blocked: {}", status_or_error(e));
            ExitCode::from(EXIT_BLOCKED)
        }
        DeliveryOutcome::Exhausted(e) => {
            println!("failed: {}", status_or_error(e));
            ExitCode::from(EXIT_EXHAUSTED)
        }
        _ => ExitCode::from(EXIT_EXHAUSTED),
    }
}
