//! The `hookwire` command: sign, verify, send and receive webhooks, run the demo, and work
//! with the event bus and workflow runs.
//!
//! Each subcommand lives in its own module with an `Args` struct (clap derive) and a
//! `run(args) -> ExitCode` function; this file only dispatches. Exit codes are a contract
//! (`docs/hookwire-cli.md`): 0 success, 1 verification failed, 2 bad arguments, 3 blocked, 4 exhausted.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod demo;
mod events;
mod listen;
mod send;
mod sign;
mod verify;
mod workflow;

/// Send, receive, sign and verify webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookwire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::Args),
    Send(send::Args),
    Sign(sign::Args),
    Verify(verify::Args),
    Listen(listen::Args),
    Events(events::Args),
    Workflow(workflow::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version on stdout with exit 0 and usage errors on stderr; map
            // every usage error to the contract's exit code 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Send(a) => send::run(a),
        Command::Sign(a) => sign::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Listen(a) => listen::run(a),
        Command::Events(a) => events::run(a),
        Command::Workflow(a) => workflow::run(a),
    }
}
