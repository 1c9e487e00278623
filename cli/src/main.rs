//! `lockstep`: the user-facing command line.
//!
//! Registers and submits transfers with their fiat payment, inspects events
//! and the chain, manages keys, audits the whole system against the
//! protocol's invariants, and generates load. Human output by default,
//! `--json` for scripts.
//!
//! Exit codes: 0 success; 1 error (or audit violations); 2 bad usage
//! (clap, or a malformed token or unusable CA file); 3 the transfer failed
//! on chain, expired, or its event was cancelled; 4 `event verify`: the
//! event's outcome is not proven ([`EXIT_UNPROVEN`]); 5 `event verify`:
//! nothing to prove ([`EXIT_NOTHING_TO_PROVE`]).
//!
//! ## Layout
//!
//! - [`args`]: every command and flag, with their help and input checks.
//! - [`transfer`]: sign, register, submit, follow.
//! - [`event`]: the event system's client and `lockstep event`.
//! - [`chain`]: a node's client and `lockstep chain`.
//! - [`key`]: key and account arguments, `lockstep key`.
//! - [`verify`]: an event's proof checked against the chain spec alone
//!   (`lockstep event verify`, and the audit's proof check).
//! - [`audit`]: the invariant checks over chain, event store and ledger.
//! - [`ledger`]: the account bridge's ledger, read-only, as the audit sees it.
//! - [`bench`]: the load generator.
//! - [`rpc`], [`output`]: JSON-RPC calls with readable errors; printing.

#[macro_use]
mod output;
mod args;
mod audit;
mod bench;
mod chain;
mod event;
mod key;
mod ledger;
mod rpc;
mod transfer;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, EventCommand};
use crate::event::EventsEndpoint;

/// Exit code for a transfer that failed on chain or expired, or an event
/// that was cancelled.
pub const EXIT_CANCELLED: u8 = 3;
/// Exit code of `event verify` when the event's outcome is not proven: its
/// proof does not verify against the chain spec, or a decided event
/// (PendingAccount, Completed, Cancelled on an included transfer) comes
/// without one.
pub const EXIT_UNPROVEN: u8 = 4;
/// Exit code of `event verify` when there is nothing to prove: the event is
/// Registered (not decided yet) or Cancelled as expired (nothing was
/// included).
pub const EXIT_NOTHING_TO_PROVE: u8 = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code for bad usage found after parsing (clap uses it too).
const EXIT_USAGE: u8 = 2;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let nodes = cli.node_urls();
    // Checking a saved proof is offline: it reads no token and connects
    // to nothing.
    let offline = matches!(
        cli.command,
        Command::Key(_)
            | Command::Event(EventCommand::Verify {
                from_file: Some(_),
                ..
            })
    );
    // Only the event system takes a token; keys and chain reads never
    // look at it.
    let uses_events = !offline && !matches!(cli.command, Command::Chain(_));
    let token = match cli
        .token
        .as_ref()
        .filter(|_| uses_events)
        .map(|arg| arg.token())
        .transpose()
    {
        Ok(token) => token,
        Err(e) => {
            // The message says what a token looks like, not what was given.
            eprintln!("error: --token (or LOCKSTEP_TOKEN): {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    // Keys and saved proofs never connect, so a CA file is read only by
    // commands that do.
    let ca_file = cli.ca_file.as_deref().filter(|_| !offline);
    let options = match rpc::options(ca_file) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: --ca-file (or LOCKSTEP_CA_FILE): {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let events = EventsEndpoint {
        url: cli.events.clone(),
        options: options.clone().with_token(token),
    };
    // The nodes are never sent the event system's token.
    let node_options = &options;
    match cli.command {
        Command::Key(command) => key::run(cli.json, command)?,
        Command::Chain(command) => chain::run(&cli.rpc, node_options, cli.json, command).await?,
        Command::Event(command) => return event::run(&events, cli.json, command).await,
        Command::Transfer(args) => {
            return transfer::run(&nodes, node_options, &events, cli.json, args).await
        }
        Command::Audit(args) => {
            return audit::run(&nodes, node_options, &events, cli.json, args).await
        }
        Command::Bench(args) => {
            return bench::run(&nodes, node_options, &events, cli.json, args).await
        }
    }
    Ok(ExitCode::SUCCESS)
}
