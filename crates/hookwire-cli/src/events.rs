//! `hookwire events`: tail, publish and manage dead letters on a Redis Streams event bus.
//!
//! Every subcommand builds a [`Bus`] over [`RedisStreams`] with the given URL, key prefix and
//! stream name, so it sees exactly what the services on that bus see. Exit codes: 0 success,
//! 1 failed (Redis unreachable, dead letter not found), 2 bad arguments.

use std::process::ExitCode;

use hookwire_core::Event;
use hookwire_events::{
    Bus, DEFAULT_MAX_EVENT_BYTES, DeadLetter, ErrorKind, Group, HandlerError, RedisStreams,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{block_on, failed, json_data, usage_error};

/// Tail, publish and manage dead letters of a Redis Streams event bus.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hookwire events --redis redis://127.0.0.1:6379/ tail 'order.*'\n  hookwire events publish --type order.created --data '{\"total\":42}' --partition-key o-1\n  hookwire events dlq list"
)]
pub(crate) struct Args {
    /// The Redis URL of the bus.
    #[arg(long, global = true, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Key prefix of the bus (the services' `RedisStreams::prefix`).
    #[arg(long, global = true, default_value = "hw:")]
    prefix: String,
    /// Stream name of the bus (the services' `RedisStreams::stream`).
    #[arg(long, global = true, default_value = "events")]
    stream: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Print every event matching PATTERN as one JSON line, from now on.
    Tail(TailArgs),
    /// Publish one event; prints its id.
    Publish(PublishArgs),
    /// The dead letters: list, show, redrive, discard.
    #[command(subcommand)]
    Dlq(DlqCmd),
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    /// `*`, an exact type, or `prefix.*`.
    pattern: String,
    /// Consume as this group (competing with its other consumers, acknowledging each event)
    /// instead of watching every event.
    #[arg(long)]
    group: Option<String>,
    /// With `--group`: a new group starts at the beginning of the stream, not at its end.
    #[arg(long, requires = "group")]
    from_beginning: bool,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// The event type (`order.created`).
    #[arg(long = "type")]
    kind: String,
    /// The payload: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    data: String,
    /// Events with one partition key are handled in order.
    #[arg(long)]
    partition_key: Option<String>,
    /// The tenant (`meta.organizationId`).
    #[arg(long)]
    organization: Option<String>,
    /// The event id (default: a fresh unique id).
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCmd {
    /// One JSON line per dead letter, oldest first.
    List {
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// The whole dead letter (event, failures, attempts, times) as JSON.
    Show {
        /// The dead letter's id (`<group>/<entry id>`).
        id: String,
    },
    /// Deliver the identical event again to the group that failed it, and remove the dead letter.
    Redrive {
        /// The dead letter's id.
        id: String,
    },
    /// Delete the dead letter.
    Discard {
        /// The dead letter's id.
        id: String,
    },
}

/// A bad option, a bad event or a bad pattern is the caller's mistake (2); the rest is the
/// bus failing (1).
fn report(e: &hookwire_events::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::Config | ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Schema => {
            usage_error(e)
        }
        _ => failed(e),
    }
}

pub(crate) fn run(a: Args) -> ExitCode {
    block_on(run_async(a))
}

async fn connect(a: &Args) -> Result<Bus, ExitCode> {
    if redis::Client::open(a.redis.as_str()).is_err() {
        return Err(usage_error(format!(
            "--redis {:?} is not a Redis URL",
            a.redis
        )));
    }
    let t = RedisStreams::connect(&a.redis)
        .await
        .map_err(|e| failed(format!("cannot connect to {}: {e}", a.redis)))?
        .prefix(a.prefix.clone())
        .stream(a.stream.clone());
    // `hookwire events tail --group` runs as a consumer of its own, never in a service's name.
    let t = t.node_id(hookwire_core::id::new_id("cli"));
    Bus::builder(t).build().map_err(|e| report(&e))
}

async fn run_async(a: Args) -> ExitCode {
    // Checked before connecting, so a typo is reported as such even when Redis is down.
    let event = match &a.command {
        Cmd::Publish(p) => match build_event(p) {
            Ok(e) => Some(e),
            Err(e) => return usage_error(e),
        },
        _ => None,
    };
    let bus = match connect(&a).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let code = match (a.command, event) {
        (Cmd::Tail(t), _) => tail(&bus, t).await,
        (Cmd::Publish(_), Some(e)) => publish(&bus, e).await,
        (Cmd::Publish(_), None) => usage_error("no event"),
        (Cmd::Dlq(d), _) => dlq(&bus, d).await,
    };
    bus.shutdown().await;
    code
}

fn build_event(p: &PublishArgs) -> Result<Event, String> {
    // A file larger than the bus accepts is refused before it is read into memory.
    if let Some(path) = p.data.strip_prefix('@')
        && std::fs::metadata(path).is_ok_and(|m| m.len() > DEFAULT_MAX_EVENT_BYTES as u64)
    {
        return Err(format!(
            "--data file {path} is larger than an event may be ({DEFAULT_MAX_EVENT_BYTES} bytes)"
        ));
    }
    let mut e = Event::new(p.kind.clone(), json_data(&p.data)?);
    if let Some(id) = &p.id {
        if id.is_empty() {
            return Err("--id must not be empty".to_owned());
        }
        e = e.with_id(id.clone());
    }
    if let Some(k) = &p.partition_key {
        e = e.with_partition_key(k.clone());
    }
    if let Some(o) = &p.organization {
        e = e.with_organization(o.clone());
    }
    Ok(e)
}

#[allow(clippy::print_stdout, reason = "the event id is the command's output")]
async fn publish(bus: &Bus, e: Event) -> ExitCode {
    let id = e.id.clone();
    match bus.publish(e).await {
        Ok(()) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "events are the command's output; the ready line goes to stderr"
)]
async fn tail(bus: &Bus, t: TailArgs) -> ExitCode {
    // Bounded: a stdout that stops draining slows the handler down instead of growing memory.
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let handler = move |e: Event| {
        let tx = tx.clone();
        async move {
            let line = serde_json::to_string(&e)?;
            // The receiver is gone only when the command is ending.
            let _ = tx.send(line).await;
            Ok::<(), HandlerError>(())
        }
    };
    let sub = match &t.group {
        Some(g) => {
            let group = if t.from_beginning {
                Group::from_beginning(g.clone())
            } else {
                Group::at_end(g.clone())
            };
            bus.subscribe(group, &t.pattern, handler).await
        }
        None => bus.broadcast(&t.pattern, handler).await,
    };
    let sub = match sub {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    eprintln!("tailing {} (Ctrl-C ends)", t.pattern);
    let mut seen = 0u64;
    if t.count != Some(0) {
        loop {
            let line = tokio::select! {
                l = rx.recv() => l,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(line) = line else { break };
            println!("{line}");
            seen += 1;
            if t.count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    sub.stop().await;
    ExitCode::SUCCESS
}

/// The list line of a dead letter: what to look at to decide what to do with it.
fn summary(d: &DeadLetter) -> Value {
    json!({
        "id": d.id,
        "group": d.group,
        "eventId": d.event.id,
        "type": d.event.name,
        "attempts": d.attempts,
        "lastError": d.failures.last().and_then(|f| f.chain.first()),
        "firstFailedAt": d.first_failed_at_ms,
        "lastFailedAt": d.last_failed_at_ms,
    })
}

fn detail(d: &DeadLetter) -> Value {
    let mut v = summary(d);
    v["originalId"] = json!(d.original_id);
    v["event"] = serde_json::from_slice(&d.event_bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.event_bytes).into_owned()));
    v["failures"] = d
        .failures
        .iter()
        .map(|f| json!({"attempt": f.attempt, "at": f.at_ms, "chain": f.chain}))
        .collect();
    v
}

#[allow(
    clippy::print_stdout,
    reason = "dead letters and outcomes are the command's output"
)]
async fn dlq(bus: &Bus, cmd: DlqCmd) -> ExitCode {
    let dl = bus.dead_letters();
    match cmd {
        DlqCmd::List { limit } => match dl.list(usize::try_from(limit).unwrap_or(1000)).await {
            Ok(all) => {
                for d in &all {
                    println!("{}", summary(d));
                }
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        },
        DlqCmd::Show { id } => match dl.get(&id).await {
            Ok(Some(d)) => {
                let text = serde_json::to_string_pretty(&detail(&d))
                    .unwrap_or_else(|_| detail(&d).to_string());
                println!("{text}");
                ExitCode::SUCCESS
            }
            Ok(None) => failed(format!("no dead letter {id}")),
            Err(e) => report(&e),
        },
        DlqCmd::Redrive { id } => match dl.redrive(&id).await {
            Ok(()) => {
                println!("redriven {id}");
                ExitCode::SUCCESS
            }
            Err(e) if e.kind() == ErrorKind::NotFound => failed(format!("no dead letter {id}")),
            Err(e) => report(&e),
        },
        DlqCmd::Discard { id } => match dl.discard(&id).await {
            Ok(true) => {
                println!("discarded {id}");
                ExitCode::SUCCESS
            }
            Ok(false) => failed(format!("no dead letter {id}")),
            Err(e) => report(&e),
        },
    }
}
