//! `lockstep-offchain`: parses the command line and runs the event system.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lockstep_offchain::confirmer::Quorum;
use lockstep_offchain::Config;
use lockstep_runtime::AccountId;
use lockstep_service::logging::LogFormat;
use lockstep_service::parse_duration;

/// Lockstep's off-chain event system.
#[derive(Debug, Parser)]
#[command(name = "lockstep-offchain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the event system until SIGINT or SIGTERM.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Node JSON-RPC URLs, comma-separated (http://host:port); the watcher
    /// follows the first that works, the quorum asks them all.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Share of the nodes that must agree before an event moves (more than
    /// 1/2, at most 1).
    #[arg(long, default_value = "2/3")]
    quorum: Quorum,
    /// Data directory (the store is <base-path>/events).
    #[arg(long)]
    base_path: PathBuf,
    /// JSON-RPC port (HTTP and WebSocket); 0 picks a free one.
    #[arg(long, default_value_t = 9955)]
    rpc_port: u16,
    /// Address to listen on for JSON-RPC and metrics (as the node's
    /// `--rpc-host`; `--listen` is the older spelling).
    #[arg(long, visible_alias = "listen", default_value = "127.0.0.1")]
    rpc_host: std::net::IpAddr,
    /// The account bridge's public key (0x-hex): receipts must be signed by it.
    #[arg(long)]
    bridge_key: AccountId,
    /// Time between reconciler passes (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    scan_interval: Duration,
    /// Age of a Registered event before the reconciler re-checks it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// Largest delay between re-checks of an undecided Registered event.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recheck_cap: Duration,
    /// Timeout of each node call.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    call_timeout: Duration,
    /// First delay before an acknowledged but unreceipted instruction is re-sent.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resend_base: Duration,
    /// Largest resend delay (the backoff doubles up to it, without end).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    resend_cap: Duration,
    /// A PendingAccount event without receipt for this long is overdue.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    overdue_after: Duration,
    /// Prometheus metrics port (on the RPC host); off unless given.
    #[arg(long, visible_alias = "metrics-port")]
    prometheus_port: Option<u16>,
    /// Log format: `text` for people, `json` (one object per line) for log
    /// shippers. `RUST_LOG` sets the filter.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Do not fsync writes (faster; survives process crashes but not power loss).
    #[arg(long)]
    no_fsync: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Run(args) = Cli::parse().command;
    lockstep_service::logging::init(args.log_format, "info");
    let mut config = Config::new(args.nodes, args.base_path, args.bridge_key);
    config.quorum = args.quorum;
    config.rpc_addr = SocketAddr::new(args.rpc_host, args.rpc_port);
    config.prometheus_addr = args
        .prometheus_port
        .map(|p| SocketAddr::new(args.rpc_host, p));
    config.scan_interval = args.scan_interval;
    config.grace = args.grace;
    config.recheck_cap = args.recheck_cap;
    config.call_timeout = args.call_timeout;
    config.resend_base = args.resend_base;
    config.resend_cap = args.resend_cap;
    config.overdue_after = args.overdue_after;
    config.sync_writes = !args.no_fsync;
    let service = lockstep_offchain::start(config)
        .await
        .context("starting the event system")?;
    // A line on stdout that scripts and tests can wait for.
    println!("lockstep-offchain listening on {}", service.rpc_addr);
    let signal = lockstep_service::shutdown_signal().await;
    tracing::info!(target: "lockstep::offchain", "{signal}: shutting down");
    service.stop().await;
    Ok(())
}
