//! `lockstep-offchain`: parses the command line and runs the event system.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lockstep_api::broker::{self, BusChoice};
use lockstep_api::client::TrustedCas;
use lockstep_api::offchain::Role;
use lockstep_offchain::bus::nats::NatsSettings;
use lockstep_offchain::confirmer::Quorum;
use lockstep_offchain::{
    Auth, Config, DEFAULT_MAX_REGISTERED_PER_CREDENTIAL, DEFAULT_REGISTER_RATE,
};
use lockstep_runtime::{AccountId, Keypair};
use lockstep_service::auth::{self, PayerScope, RateLimit, Roles};
use lockstep_service::logging::LogFormat;
use lockstep_service::tls::TlsArgs;
use lockstep_service::{keyfile, parse_duration};

/// Lockstep's off-chain event system.
#[derive(Debug, Parser)]
#[command(name = "lockstep-offchain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the event system until SIGINT or SIGTERM; SIGHUP reloads the
    /// credentials file.
    Run(Box<RunArgs>),
    /// Callers' credentials: bearer tokens, each with its roles, stored
    /// hashed in a credentials file.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The event system's key, which signs the payment instructions.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Writes a new random key file (mode 0600; never overwrites) and
    /// prints its public key, which the bridge takes as --event-system-key.
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

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates a credential: prints its new token once (on stdout; it is
    /// stored nowhere) and appends its hash to the credentials file
    /// (created with mode 0600). A running event system admits it after
    /// SIGHUP.
    Create {
        /// The credentials file.
        #[arg(long)]
        credentials: PathBuf,
        /// Its name (A-Z a-z 0-9 . _ -, at most 64), in logs and metrics.
        #[arg(long)]
        name: String,
        /// Its roles, comma-separated: submitter (registers events, reads),
        /// reader (reads), bridge (takes instructions, posts receipts).
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<Role>,
        /// For a submitter: the payers it may order payments from,
        /// comma-separated names or prefixes ending in * (default: any).
        #[arg(long)]
        payers: Option<String>,
    },
    /// Revokes a credential: removes its line from the credentials file. A
    /// running event system refuses its token after SIGHUP.
    Revoke {
        /// The credentials file.
        #[arg(long)]
        credentials: PathBuf,
        /// The credential's name.
        #[arg(long)]
        name: String,
    },
    /// Lists the credentials (names, roles, payer scopes; no secrets).
    List {
        /// The credentials file.
        #[arg(long)]
        credentials: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Node JSON-RPC URLs, comma-separated (http://host:port, or
    /// https://host:port for a node that serves TLS); the watcher follows
    /// the first that works, the quorum asks them all.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// CA certificates trusted for https:// and wss:// node URLs, instead
    /// of the system's roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
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
    #[command(flatten)]
    tls: TlsArgs,
    /// The account bridge's public key (0x-hex): receipts must be signed by it.
    #[arg(long)]
    bridge_key: AccountId,
    /// The credentials file (from `lockstep-offchain token create`; mode
    /// 0600): every caller must present one of its tokens, and each method
    /// is open to some roles only. SIGHUP reloads it.
    #[arg(long, required_unless_present = "insecure_no_auth")]
    credentials: Option<PathBuf>,
    /// Admit every caller with every role, without a token: for
    /// development only, and refused unless --rpc-host is a loopback
    /// address.
    #[arg(long, conflicts_with = "credentials")]
    insecure_no_auth: bool,
    /// Events one credential may register per second, sustained.
    #[arg(long, default_value_t = DEFAULT_REGISTER_RATE.per_second)]
    register_rate: u32,
    /// Events one credential may register at once, beyond its rate.
    #[arg(long, default_value_t = DEFAULT_REGISTER_RATE.burst)]
    register_burst: u32,
    /// Events one credential may hold in Registered at once (at least 1;
    /// there is no "unbounded"): beyond it, its registrations are refused
    /// (2054) until some of its events are confirmed or cancelled. The
    /// default is above what the open-loop `lockstep bench` holds at the
    /// default rate, and keeps one credential's events that never finalize
    /// under 1,000 reconciler re-checks a second. Not applied with
    /// --insecure-no-auth, whose anonymous caller has no rate either.
    #[arg(long, default_value_t = DEFAULT_MAX_REGISTERED_PER_CREDENTIAL)]
    max_registered_per_credential: u64,
    /// The chain spec the nodes run (JSON, as `lockstep-node build-spec`
    /// writes it): every block's justification is verified against its
    /// validators and chain id before an event moves on that block, so
    /// no node, nor a quorum of them, can prove a block the validators did
    /// not finalize.
    #[arg(long, value_name = "FILE")]
    chain_spec: PathBuf,
    /// Overrides the chain spec's maxValidityBlocks: registrations valid
    /// for more than twice this past the chain's head are refused.
    #[arg(long)]
    max_validity_blocks: Option<u64>,
    /// The event system's key file (from `lockstep-offchain key generate`;
    /// mode 0600): it signs every payment instruction, and the bridge is
    /// given its public key as --event-system-key.
    #[arg(long)]
    key_file: PathBuf,
    /// Time between reconciler passes (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    scan_interval: Duration,
    /// Age of a Registered event before the reconciler asks the nodes about
    /// its transfer (sooner if the chain will be past its validUntil
    /// before: it can be cancelled as expired then). Blocks settle every
    /// event whose transfer they hold without it; it is for what no block
    /// answered: a transfer never included, or registered after its block.
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
    /// The message bus: `embedded` (the queue in the event store, served
    /// by bus_pull/bus_ack), or NATS JetStream at
    /// nats://HOST:PORT[,HOST:PORT...]: each instruction is published to a
    /// work-queue stream once its event enters PendingAccount, and the
    /// bridges consume the stream (bus_pull/bus_ack are then refused with
    /// 2023).
    #[arg(
        long,
        default_value = "embedded",
        value_name = "embedded|nats://HOST:PORT,..."
    )]
    bus: BusChoice,
    /// With --bus nats://: the JetStream stream (created if missing).
    #[arg(long, default_value = broker::DEFAULT_STREAM)]
    bus_stream: String,
    /// With --bus nats://: the subject instructions are published on.
    #[arg(long, default_value = broker::DEFAULT_SUBJECT)]
    bus_subject: String,
    /// With --bus nats://: the stream's replicas, when it is created here
    /// (3 on a cluster that must survive the loss of a server).
    #[arg(long, default_value_t = 1)]
    bus_replicas: usize,
    /// With --bus nats://: the stream's duplicate window, when it is
    /// created here: a publish repeated within it (same event and
    /// generation) is stored once.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    bus_duplicate_window: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match Cli::parse().command {
        Command::Run(args) => *args,
        Command::Key { command } => return key(command),
        Command::Token { command } => return token(command),
    };
    lockstep_service::logging::init(args.log_format, "info");
    let instruction_key = keyfile::read(&args.key_file).context("reading the event system key")?;
    let tls = args.tls.load().context("cannot serve JSON-RPC over TLS")?;
    let node_cas = args
        .ca_file
        .as_deref()
        .map(TrustedCas::from_pem_file)
        .transpose()?;
    let mut config = Config::new(args.nodes, args.base_path, args.bridge_key);
    config.instruction_key = instruction_key;
    config.tls = tls;
    config.node_cas = node_cas;
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
    if let BusChoice::Nats(servers) = args.bus {
        broker::check_name("--bus-stream", &args.bus_stream)?;
        broker::check_subject(&args.bus_subject)?;
        if !(1..=5).contains(&args.bus_replicas) {
            anyhow::bail!("--bus-replicas: 1 to 5");
        }
        if args.bus_duplicate_window.is_zero() {
            anyhow::bail!("--bus-duplicate-window: more than 0");
        }
        let mut nats = NatsSettings::new(servers);
        nats.stream = args.bus_stream;
        nats.subject = args.bus_subject;
        nats.replicas = args.bus_replicas;
        nats.duplicate_window = args.bus_duplicate_window;
        config.nats = Some(nats);
    }
    config.auth = match (args.credentials, args.insecure_no_auth) {
        (Some(path), _) => Auth::Credentials(path),
        (None, true) => Auth::InsecureNoAuth,
        (None, false) => anyhow::bail!("give --credentials FILE (or --insecure-no-auth)"),
    };
    config.register_rate = RateLimit {
        per_second: args.register_rate,
        burst: args.register_burst,
    };
    config.max_registered_per_credential = args.max_registered_per_credential;
    let spec_text = std::fs::read_to_string(&args.chain_spec)
        .with_context(|| format!("cannot read the chain spec {}", args.chain_spec.display()))?;
    let spec = lockstep_runtime::ChainSpec::from_json(&spec_text)
        .map_err(|e| anyhow::anyhow!("chain spec {}: {e}", args.chain_spec.display()))?;
    config.chain = Some(
        lockstep_offchain::ChainTrust::from_spec(&spec).ok_or_else(|| {
            anyhow::anyhow!(
                "chain spec {}: its validator set is empty or repeats a validator",
                args.chain_spec.display()
            )
        })?,
    );
    config.max_validity_blocks = args.max_validity_blocks.unwrap_or(spec.max_validity_blocks);
    config.block_time = Duration::from_millis(spec.block_time_ms.max(1));
    // Watched before the start, so that a SIGHUP sent once the address
    // line is out reloads rather than kills.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("watching SIGHUP")?;
    let service = lockstep_offchain::start(config)
        .await
        .context("starting the event system")?;
    // A line on stdout that scripts and tests can wait for.
    println!(
        "lockstep-offchain listening on {}, signing instructions with key {}",
        service.rpc_addr, service.instruction_key
    );
    let shutdown = lockstep_service::shutdown_signal();
    tokio::pin!(shutdown);
    let signal = loop {
        tokio::select! {
            signal = &mut shutdown => break signal,
            _ = hangup.recv() => match service.reload_credentials() {
                Ok(Some(count)) => tracing::info!(target: "lockstep::offchain", "SIGHUP: credentials reloaded, {count} on record"),
                Ok(None) => tracing::warn!(target: "lockstep::offchain", "SIGHUP: no credentials file to reload (--insecure-no-auth)"),
                Err(e) => tracing::error!(target: "lockstep::offchain", "SIGHUP: credentials not reloaded, the loaded ones stay: {e}"),
            },
        }
    };
    tracing::info!(target: "lockstep::offchain", "{signal}: shutting down");
    service.stop().await;
    Ok(())
}

/// `lockstep-offchain token ...`.
fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            credentials,
            name,
            role,
            payers,
        } => {
            let payers = match payers {
                Some(list) => PayerScope::parse(&list).map_err(anyhow::Error::msg)?,
                None => PayerScope::any(),
            };
            let token = auth::create_credential(&credentials, &name, Roles::of(&role), payers)?;
            // The only place a token is ever shown: stdout, for the
            // operator (or a script) to store it now.
            println!("{}", token.expose_secret());
            eprintln!(
                "created credential {name:?} ({}) in {}; its token, on stdout, is shown only this once (a running event system admits it after SIGHUP)",
                Roles::of(&role),
                credentials.display()
            );
        }
        TokenCommand::Revoke { credentials, name } => {
            auth::revoke_credential(&credentials, &name)?;
            println!(
                "revoked {name:?} in {}; send SIGHUP to a running event system (or restart it)",
                credentials.display()
            );
        }
        TokenCommand::List { credentials } => {
            for credential in auth::read_file(&credentials)?.credentials() {
                println!(
                    "{} {} payers={}",
                    credential.name, credential.roles, credential.payers
                );
            }
        }
    }
    Ok(())
}

/// `lockstep-offchain key ...`.
fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate { out } => {
            let key = Keypair::generate();
            keyfile::write(&out, &key)?;
            println!("{}", key.public());
        }
        KeyCommand::Inspect { file } => {
            println!("{}", keyfile::read(&file)?.public());
        }
    }
    Ok(())
}
