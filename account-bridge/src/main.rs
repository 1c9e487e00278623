//! `lockstep-bridge`: parses the command line, then runs the bridge or a
//! ledger or key operation. Exit codes: 0 success, 1 failure (the message
//! says why), 2 bad usage.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lockstep_api::broker::{self, BusChoice};
use lockstep_api::client::{TokenArg, TrustedCas};
use lockstep_bridge::ledger::{
    parse_amount, Durability, LedgerError, LedgerLocation, PaymentLedger, PaymentStatus,
};
use lockstep_bridge::source::JetStreamSettings;
use lockstep_bridge::Config;
use lockstep_runtime::{AccountId, Keypair};
use lockstep_service::logging::LogFormat;
use lockstep_service::{keyfile, parse_duration};

/// Lockstep's account bridge: pays each event exactly once in a
/// double-entry ledger and posts signed receipts. Amounts are integer minor
/// units (cents): 1250 is 12.50.
#[derive(Debug, Parser)]
#[command(name = "lockstep-bridge", version, about)]
struct Cli {
    /// Log format: `text` for people, `json` (one object per line) for log
    /// shippers. `RUST_LOG` sets the filter.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the bridge until SIGINT or SIGTERM.
    Run(Box<RunArgs>),
    /// Operates on the ledger: open and fund accounts, balances, payments.
    Ledger(LedgerArgs),
    /// Bridge keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The event system's JSON-RPC URL (http://host:port, or https:// for
    /// an event system with TLS).
    #[arg(long)]
    event_system: String,
    /// A PEM file of CA certificates: an https:// event system's
    /// certificate is verified against these alone instead of the system's
    /// roots (e.g. a testnet's own CA). The name in the URL must be one
    /// the certificate names.
    #[arg(long, env = "LOCKSTEP_BRIDGE_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// The bearer token of a credential with the bridge role (from
    /// `lockstep-offchain token create --role bridge`). Prefer the
    /// environment variable or --token-file: a command line is visible to
    /// other users of the machine.
    #[arg(
        long,
        env = "LOCKSTEP_BRIDGE_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<TokenArg>,
    /// A file holding the bearer token (mode 0600, refused when others may
    /// read it).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The event system's public key (0x-hex, as `lockstep-offchain key
    /// generate` printed it): only instructions signed by it are paid.
    #[arg(long)]
    event_system_key: AccountId,
    /// The ledger: a SQLite file (created if missing), or a PostgreSQL
    /// server as `postgres://USER[:PASSWORD]@HOST:PORT/DB` (the schema is
    /// created or migrated at start; several bridges may share one). Give
    /// a URL with a password through the environment variable: a command
    /// line is visible to other users of the machine.
    #[arg(long, env = "LOCKSTEP_BRIDGE_LEDGER", hide_env_values = true)]
    ledger: LedgerLocation,
    /// The bridge's key file (from `lockstep-bridge key generate`); the event
    /// system must be started with its public key as --bridge-key.
    #[arg(long)]
    key: PathBuf,
    /// Consumers pulling and paying batches concurrently (1 to 64).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Most instructions pulled and paid in one SQL transaction (1 to 1000).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// How long a pulled batch is held before the bus re-delivers it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lease: Duration,
    /// Pause after an empty pull; it doubles with each further empty pull,
    /// up to 1s (or this, if longer).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Timeout of each call to the event system.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    call_timeout: Duration,
    /// First delay before an unacknowledged receipt is posted again.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    receipt_retry_base: Duration,
    /// Largest delay between posts of one receipt (the backoff doubles up to it).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    receipt_retry_cap: Duration,
    /// Receipt batches (of up to 500) in flight at once (1 to 64).
    #[arg(long, default_value_t = 4)]
    post_concurrency: usize,
    /// Prometheus metrics port; off unless given.
    #[arg(long, visible_alias = "metrics-port")]
    prometheus_port: Option<u16>,
    /// Address the metrics endpoint listens on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Do not fsync each commit (SQLite synchronous=NORMAL: survives a
    /// process crash, not power loss). SQLite only: a PostgreSQL ledger is
    /// as durable as its server's synchronous_commit.
    #[arg(long)]
    no_fsync: bool,
    /// The message bus: `embedded` (bus_pull/bus_ack on the event system),
    /// or NATS JetStream at nats://HOST:PORT[,HOST:PORT...], read through a
    /// durable pull consumer that every bridge on it shares (the event
    /// system must run with the same --bus). Receipts go to the event
    /// system either way.
    #[arg(
        long,
        default_value = "embedded",
        value_name = "embedded|nats://HOST:PORT,..."
    )]
    bus: BusChoice,
    /// With --bus nats://: the stream the event system publishes to.
    #[arg(long, default_value = broker::DEFAULT_STREAM)]
    bus_stream: String,
    /// With --bus nats://: the durable consumer (created if missing, with
    /// --lease as its ack wait); bridges on one consumer share the work.
    #[arg(long, default_value = broker::DEFAULT_CONSUMER)]
    bus_consumer: String,
}

#[derive(Debug, clap::Args)]
struct LedgerArgs {
    /// The ledger: a SQLite file (created if missing) or a
    /// `postgres://` URL, as for `run`.
    #[arg(
        long,
        global = true,
        env = "LOCKSTEP_BRIDGE_LEDGER",
        hide_env_values = true
    )]
    ledger: Option<LedgerLocation>,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Opens accounts, optionally funded.
    ///
    /// Idempotent: an account that exists on the same terms is left alone
    /// and gets no deposit, so seeding can be re-run. Example, seeding a
    /// testnet: `ledger open alice bob charlie --currency USD --deposit 100000000`.
    Open {
        /// Account ids (printable ASCII, no spaces, not starting with @).
        #[arg(required = true)]
        accounts: Vec<String>,
        /// Three upper-case letters, e.g. USD.
        #[arg(long)]
        currency: String,
        /// How far below zero the account may go, in minor units.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        overdraft: String,
        /// Minor units deposited into each newly opened account.
        #[arg(long, allow_hyphen_values = true)]
        deposit: Option<String>,
    },
    /// Deposits money into an account (from the currency's external system
    /// account, as a double entry).
    Deposit {
        /// The account.
        account: String,
        /// Minor units, a positive integer.
        #[arg(allow_hyphen_values = true)]
        amount: String,
    },
    /// Shows one account, or every account with the per-currency totals
    /// (zero while money is conserved).
    Balance {
        /// The account (all when omitted).
        account: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists every payment, oldest first.
    Payments {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Writes a new random key file (mode 0600; never overwrites) and
    /// prints its public key.
    Generate {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a key file's public key.
    Inspect {
        /// The key file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lockstep_service::logging::init(cli.log_format, "info");
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Ledger(args) => ledger(args),
        Command::Key { command } => key(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let key = keyfile::read(&args.key).context("reading the bridge key")?;
    let durability = if args.no_fsync {
        Durability::Normal
    } else {
        Durability::Full
    };
    if args.no_fsync && matches!(args.ledger, LedgerLocation::Postgres(_)) {
        anyhow::bail!(
            "--no-fsync applies to a SQLite ledger only: a PostgreSQL ledger is as durable as its server's synchronous_commit"
        );
    }
    let ledger: Arc<dyn PaymentLedger> = args
        .ledger
        .open(durability)
        .with_context(|| format!("opening the ledger {}", args.ledger))?;
    let mut config = Config::new(args.event_system, args.event_system_key);
    config.token = match (&args.token, &args.token_file) {
        // The message says what a token looks like, never what was given.
        (Some(arg), _) => Some(arg.token().context("--token (or LOCKSTEP_BRIDGE_TOKEN)")?),
        (None, Some(path)) => {
            Some(lockstep_service::auth::read_token_file(path).context("reading the token file")?)
        }
        (None, None) => None,
    };
    config.cas = args
        .ca_file
        .as_deref()
        .map(TrustedCas::from_pem_file)
        .transpose()
        .context("--ca-file (or LOCKSTEP_BRIDGE_CA_FILE)")?;
    config.concurrency = args.concurrency;
    config.batch = args.batch;
    config.lease = args.lease;
    config.poll_interval = args.poll_interval;
    config.call_timeout = args.call_timeout;
    config.receipt_retry_base = args.receipt_retry_base;
    config.receipt_retry_cap = args.receipt_retry_cap;
    config.post_concurrency = args.post_concurrency;
    config.metrics_addr = args
        .prometheus_port
        .map(|p| SocketAddr::new(args.listen, p));
    if let BusChoice::Nats(servers) = args.bus {
        broker::check_name("--bus-stream", &args.bus_stream)?;
        broker::check_name("--bus-consumer", &args.bus_consumer)?;
        let mut nats = JetStreamSettings::new(servers, args.lease);
        nats.stream = args.bus_stream;
        nats.consumer = args.bus_consumer;
        nats.timeout = args.call_timeout;
        config.nats = Some(nats);
    }
    #[cfg(feature = "test-hooks")]
    {
        config.crash_after_commit =
            std::env::var(lockstep_bridge::CRASH_AFTER_COMMIT_ENV).is_ok_and(|v| v == "1");
    }
    let event_system_key = config.event_system_key;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let public = key.public();
        let bridge = lockstep_bridge::start(config, ledger, key)
            .await
            .context("starting the bridge")?;
        // A line on stdout that scripts and tests can wait for.
        println!(
            "lockstep-bridge running with key {public}, paying instructions signed by {event_system_key}"
        );
        let signal = lockstep_service::shutdown_signal().await;
        tracing::info!(target: "lockstep::bridge", "{signal}: shutting down");
        bridge.stop().await;
        Ok(())
    })
}

fn open_ledger(location: Option<&LedgerLocation>) -> anyhow::Result<Arc<dyn PaymentLedger>> {
    let location = location
        .context("--ledger <file or postgres:// URL> is required (or LOCKSTEP_BRIDGE_LEDGER)")?;
    location
        .open(Durability::Full)
        .with_context(|| format!("opening the ledger {location}"))
}

fn optional_amount(text: &str) -> Result<i128, LedgerError> {
    if text == "0" {
        Ok(0)
    } else {
        parse_amount(text)
    }
}

fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let now = lockstep_bridge::now_ms();
    match args.command {
        LedgerCommand::Open {
            accounts,
            currency,
            overdraft,
            deposit,
        } => {
            let overdraft = optional_amount(&overdraft).map_err(|e| rename(e, "overdraft"))?;
            let deposit = match deposit {
                Some(text) => parse_amount(&text).map_err(|e| rename(e, "deposit"))?,
                None => 0,
            };
            let ledger = open_ledger(args.ledger.as_ref())?;
            let created = ledger.open_accounts(&accounts, &currency, overdraft, deposit, now)?;
            for (account, created) in accounts.iter().zip(created) {
                if created {
                    println!(
                        "opened {account} ({currency}, overdraft {overdraft}, deposit {deposit})"
                    );
                } else {
                    println!("{account} exists on the same terms; left unchanged");
                }
            }
        }
        LedgerCommand::Deposit { account, amount } => {
            let amount = parse_amount(&amount)?;
            let ledger = open_ledger(args.ledger.as_ref())?;
            let reference = ledger.deposit(&account, amount, now)?;
            let balance = ledger
                .account(&account)?
                .map(|a| a.balance)
                .unwrap_or_default();
            println!("{reference}: deposited {amount} into {account}; balance {balance}");
        }
        LedgerCommand::Balance { account, json } => {
            let ledger = open_ledger(args.ledger.as_ref())?;
            let accounts = match &account {
                Some(id) => vec![ledger
                    .account(id)?
                    .ok_or_else(|| LedgerError::UnknownAccount(id.clone()))?],
                None => ledger.accounts()?,
            };
            let totals = ledger.totals()?;
            if json {
                let totals: Vec<_> = totals
                    .iter()
                    .map(|(currency, sum)| serde_json::json!({"currency": currency, "sum": sum.to_string()}))
                    .collect();
                let accounts: Vec<_> = accounts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "id": a.id, "currency": a.currency, "balance": a.balance.to_string(),
                            "overdraft": a.overdraft.to_string(), "system": a.system,
                        })
                    })
                    .collect();
                let out = if account.is_some() {
                    accounts.into_iter().next().unwrap_or_default()
                } else {
                    serde_json::json!({"accounts": accounts, "totals": totals})
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<32} {:<8} {:>22} {:>20}",
                    "account", "currency", "balance", "overdraft"
                );
                for a in &accounts {
                    let overdraft = if a.system {
                        "system".to_string()
                    } else {
                        a.overdraft.to_string()
                    };
                    println!(
                        "{:<32} {:<8} {:>22} {:>20}",
                        a.id, a.currency, a.balance, overdraft
                    );
                }
                if account.is_none() {
                    for (currency, sum) in totals {
                        println!("total {currency}: {sum} (zero while money is conserved)");
                    }
                }
            }
        }
        LedgerCommand::Payments { json } => {
            let ledger = open_ledger(args.ledger.as_ref())?;
            let payments = ledger.payments()?;
            if json {
                let rows: Vec<_> = payments
                    .iter()
                    .map(|p| {
                        let mut row = serde_json::to_value(p).unwrap_or_default();
                        row["amount"] = serde_json::json!(p.amount.to_string());
                        row
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{} payments", payments.len());
                for p in payments {
                    let status = match p.status {
                        PaymentStatus::Paid => "paid".to_string(),
                        PaymentStatus::Failed => {
                            format!("failed: {}", p.failure.as_deref().unwrap_or("?"))
                        }
                    };
                    println!(
                        "{} {} {} -> {} {} {} (attempts {}) {status}",
                        p.reference, p.event_id, p.payer, p.payee, p.amount, p.currency, p.attempts
                    );
                }
            }
        }
    }
    Ok(())
}

fn rename(e: LedgerError, name: &'static str) -> LedgerError {
    match e {
        LedgerError::Invalid { reason, .. } => LedgerError::Invalid {
            field: name,
            reason,
        },
        other => other,
    }
}

fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate { out } => {
            let key = Keypair::generate();
            keyfile::write(&out, &key)?;
            println!("{}", key.public());
        }
        KeyCommand::Inspect { file } => {
            let key = keyfile::read(&file)?;
            println!("{}", key.public());
        }
    }
    Ok(())
}
