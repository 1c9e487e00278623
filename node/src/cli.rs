//! The `lockstep-node` command line.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use lockstep_consensus::{Config as Timeouts, TimeoutSchedule};
use lockstep_runtime::{ChainSpec, Keypair};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use crate::keyfile;
use crate::network::{self, NetworkConfig};
use crate::pool::PoolConfig;
use crate::service::{self, NodeConfig};
use lockstep_service::logging::LogFormat;
use lockstep_service::tls::TlsArgs;

/// A Lockstep validator node: RocksDB storage, Tendermint consensus with
/// instant finality, and Substrate-style JSON-RPC over HTTP and WebSocket.
///
/// Start a development chain with `lockstep-node --dev`. Logs go to stderr;
/// set RUST_LOG (e.g. RUST_LOG=debug or RUST_LOG=lockstep=debug) for more.
#[derive(Debug, Parser)]
#[command(
    name = "lockstep-node",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Run a single-validator development chain: dev keys (alice validates),
    /// dev accounts endowed, a temporary base path unless --base-path is given.
    /// Dev keys are public; never use them for anything of value.
    #[arg(long)]
    dev: bool,

    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node of the chain in a chain spec file.
    Run(Box<RunArgs>),
    /// Generate or inspect key files.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write a chain spec and one key file per validator into a directory.
    BuildSpec(BuildSpecArgs),
    /// Delete a chain's database from a base path.
    PurgeChain(PurgeArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The chain spec (JSON), as written by `build-spec`.
    #[arg(long, value_name = "FILE")]
    chain: PathBuf,
    /// This validator's key file. Without it the node follows the chain as a
    /// full node and does not vote.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

/// Options shared by `--dev` and `run`.
#[derive(Debug, Args)]
struct NodeArgs {
    /// Where the node keeps its data (database, network key).
    #[arg(long, value_name = "DIR")]
    base_path: Option<PathBuf>,
    /// JSON-RPC port (HTTP and WebSocket on the same port; 0 picks a free one).
    #[arg(long, default_value_t = 9944)]
    rpc_port: u16,
    /// JSON-RPC listen address. Keep it on loopback unless the node is behind
    /// something that authenticates callers.
    #[arg(long, default_value = "127.0.0.1")]
    rpc_host: IpAddr,
    /// Most JSON-RPC connections at once.
    #[arg(long, default_value_t = 256)]
    rpc_max_connections: u32,
    /// Most subscriptions on one WebSocket connection.
    #[arg(long, default_value_t = 16_384)]
    rpc_max_subscriptions: u32,
    /// Calls a minute one JSON-RPC connection may make (each call of a
    /// batch counts); calls over it get error 1019. Off unless given.
    #[arg(long, value_name = "CALLS_PER_MINUTE")]
    rpc_rate_limit: Option<std::num::NonZeroU32>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Prometheus metrics port (on the RPC host); off unless given.
    #[arg(long, visible_alias = "metrics-port")]
    prometheus_port: Option<u16>,
    /// Log format: `text` for people, `json` (one object per line) for log
    /// shippers. `RUST_LOG` sets the filter.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Peer-to-peer (libp2p TCP) port for `run`; 0 picks a free one. The
    /// dev chain has no peers and ignores it.
    #[arg(long, default_value_t = 30333)]
    p2p_port: u16,
    /// Peer-to-peer listen address.
    #[arg(long, default_value = "0.0.0.0")]
    p2p_host: IpAddr,
    /// Peers to connect to, as multiaddrs (e.g.
    /// /ip4/127.0.0.1/tcp/30333 or .../p2p/<peer id>), comma-separated or
    /// repeated. Unconnected ones are dialled again every few seconds.
    #[arg(long, value_delimiter = ',', value_name = "MULTIADDR")]
    bootnodes: Vec<Multiaddr>,
    /// Time between blocks in milliseconds (default: the chain spec's).
    #[arg(long)]
    block_time_ms: Option<u64>,
    /// Most transactions in the pool.
    #[arg(long, default_value_t = PoolConfig::default().max_txs)]
    pool_max_txs: usize,
    /// Most bytes of transactions in the pool.
    #[arg(long, default_value_t = PoolConfig::default().max_bytes)]
    pool_max_bytes: usize,
    /// Most pending transactions per account.
    #[arg(long, default_value_t = PoolConfig::default().max_per_account)]
    pool_max_per_account: usize,
    /// Blocks a transaction may wait for a lower nonce before the pool
    /// drops it.
    #[arg(long, default_value_t = PoolConfig::default().future_ttl_blocks)]
    pool_future_ttl_blocks: u64,
    /// Most transactions in one block.
    #[arg(long, default_value_t = lockstep_runtime::BlockLimits::default().max_txs)]
    max_block_txs: usize,
    /// Propose timeout of round 0, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_propose_ms: u64,
    /// Prevote timeout of round 0, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_prevote_ms: u64,
    /// Precommit timeout of round 0, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_precommit_ms: u64,
    /// How much each timeout grows per round, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_delta_ms: u64,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a new random key. Writes a key file with --out (mode 0600),
    /// otherwise prints the key file to stdout.
    Generate {
        /// The key file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the public key (account id) of a key file.
    Inspect {
        /// The key file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct BuildSpecArgs {
    /// Number of validators (keys are generated at random).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Directory for chain-spec.json and validator-<i>.json (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The chain id (part of every consensus signature).
    #[arg(long, default_value = "lockstep-local")]
    chain_id: String,
    /// Time between blocks in milliseconds.
    #[arg(long, default_value_t = 1000)]
    block_time_ms: u64,
}

#[derive(Debug, Args)]
struct PurgeArgs {
    /// The node's base path.
    #[arg(long, value_name = "DIR")]
    base_path: PathBuf,
    /// The chain spec whose database to delete.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dev",
        required_unless_present = "dev"
    )]
    chain: Option<PathBuf>,
    /// Delete the dev chain's database.
    #[arg(long)]
    dev: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
}

/// The dev chain's id.
pub use lockstep_runtime::genesis::DEV_CHAIN_ID;

fn dev_spec() -> ChainSpec {
    ChainSpec::dev(DEV_CHAIN_ID, &[Keypair::dev("alice").public()])
}

fn read_spec(path: &Path) -> anyhow::Result<ChainSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read chain spec {}", path.display()))?;
    ChainSpec::from_json(&text).with_context(|| format!("chain spec {}", path.display()))
}

impl NodeArgs {
    /// The node's configuration; fails when the TLS files are unusable.
    fn config(&self, spec: ChainSpec, base_path: PathBuf) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::new(spec, base_path);
        config.rpc_addr = SocketAddr::new(self.rpc_host, self.rpc_port);
        config.rpc_tls = self.tls.load().context("cannot serve JSON-RPC over TLS")?;
        config.rpc.max_connections = self.rpc_max_connections;
        config.rpc.max_subscriptions_per_connection = self.rpc_max_subscriptions;
        config.rpc.rate_limit = self.rpc_rate_limit.map(|calls_per_minute| {
            lockstep_service::rpc_rate_limit::RateLimit {
                calls_per_minute,
                code: crate::rpc::error::RATE_LIMITED,
            }
        });
        config.prometheus_addr = self
            .prometheus_port
            .map(|p| SocketAddr::new(self.rpc_host, p));
        config.pool = PoolConfig {
            max_txs: self.pool_max_txs,
            max_bytes: self.pool_max_bytes,
            max_per_account: self.pool_max_per_account,
            future_ttl_blocks: self.pool_future_ttl_blocks,
            // Set from the chain spec when the chain opens.
            ..PoolConfig::default()
        };
        config.limits.max_txs = self.max_block_txs;
        let schedule = |base_ms| TimeoutSchedule {
            base_ms,
            delta_ms: self.timeout_delta_ms,
        };
        config.timeouts = Timeouts {
            propose: schedule(self.timeout_propose_ms),
            prevote: schedule(self.timeout_prevote_ms),
            precommit: schedule(self.timeout_precommit_ms),
        };
        if let Some(ms) = self.block_time_ms {
            config.block_time = Duration::from_millis(ms.max(1));
        }
        Ok(config)
    }

    fn network(&self, base_path: &Path) -> NetworkConfig {
        let listen = Multiaddr::from(self.p2p_host).with(Protocol::Tcp(self.p2p_port));
        let mut network = NetworkConfig::new(vec![listen], network::key::key_path(base_path));
        network.bootnodes = self.bootnodes.clone();
        network
    }
}

/// Runs the command line.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None if cli.dev => run_dev(&cli.node),
        None => {
            bail!("nothing to do: use --dev for a development chain, or `run --chain <spec>` (see --help)")
        }
        Some(Command::Run(args)) => run_spec(&args),
        Some(Command::Key(KeyCommand::Generate { out })) => {
            let key = Keypair::generate();
            match out {
                Some(path) => {
                    keyfile::write(&path, &key)?;
                    println!("wrote {}", path.display());
                    println!("public key (account id): {}", key.public());
                }
                None => {
                    eprintln!(
                        "warning: printing a secret key; use --out FILE to write it to a 0600 file"
                    );
                    println!(
                        "{}",
                        serde_json::json!({
                            "type": "ed25519",
                            "publicKey": key.public(),
                            "secretSeed": lockstep_runtime::primitives::to_hex(&key.seed()),
                        })
                    );
                }
            }
            Ok(())
        }
        Some(Command::Key(KeyCommand::Inspect { file })) => {
            let key = keyfile::read(&file)?;
            println!("public key (account id): {}", key.public());
            Ok(())
        }
        Some(Command::BuildSpec(args)) => build_spec(&args),
        Some(Command::PurgeChain(args)) => purge_chain(&args),
    }
}

fn build_spec(args: &BuildSpecArgs) -> anyhow::Result<()> {
    if args.validators == 0 || args.validators > 100 {
        bail!("--validators must be between 1 and 100");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let keys: Vec<Keypair> = (0..args.validators).map(|_| Keypair::generate()).collect();
    let mut spec = ChainSpec::dev(
        &args.chain_id,
        &keys.iter().map(Keypair::public).collect::<Vec<_>>(),
    );
    spec.name = format!("Lockstep {}", args.chain_id);
    spec.block_time_ms = args.block_time_ms.max(1);
    spec.validate()?;
    let spec_path = args.out.join("chain-spec.json");
    if spec_path.exists() {
        bail!(
            "{} exists already; choose another --out",
            spec_path.display()
        );
    }
    for (i, key) in keys.iter().enumerate() {
        keyfile::write(&args.out.join(format!("validator-{i}.json")), key)?;
    }
    std::fs::write(&spec_path, spec.to_json())
        .with_context(|| format!("cannot write {}", spec_path.display()))?;
    println!(
        "wrote {} and {} validator key files",
        spec_path.display(),
        keys.len()
    );
    println!("genesis hash: {}", spec.genesis()?.hash());
    Ok(())
}

fn purge_chain(args: &PurgeArgs) -> anyhow::Result<()> {
    let chain_id = match &args.chain {
        Some(path) => read_spec(path)?.chain_id,
        None => DEV_CHAIN_ID.to_owned(),
    };
    let dir = args.base_path.join("chains").join(&chain_id);
    if !dir.exists() {
        println!("nothing to purge: {} does not exist", dir.display());
        return Ok(());
    }
    if !args.yes {
        eprint!("delete {} and everything in it? [y/N] ", dir.display());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("aborted");
            return Ok(());
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    println!("deleted {}", dir.display());
    Ok(())
}

fn init_logging(format: LogFormat) {
    // gossipsub warns whenever a block announcement another validator
    // published first is published again: expected here, so quieted.
    lockstep_service::logging::init(format, "info,libp2p_gossipsub=error");
}

fn run_dev(args: &NodeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    // Kept alive until the node stops, then deleted.
    let (base_path, _temporary) = match &args.base_path {
        Some(path) => (path.clone(), None),
        None => {
            let dir = tempfile::Builder::new().prefix("lockstep-dev-").tempdir()?;
            tracing::info!(
                "temporary base path {} (deleted on exit)",
                dir.path().display()
            );
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let mut config = args.config(dev_spec(), base_path)?;
    config.validator_key = Some(Keypair::dev("alice"));
    run(config)
}

fn run_spec(args: &RunArgs) -> anyhow::Result<()> {
    init_logging(args.node.log_format);
    let spec = read_spec(&args.chain)?;
    let base_path = args
        .node
        .base_path
        .clone()
        .context("--base-path is required with `run` (the chain's data lives there)")?;
    let mut config = args.node.config(spec, base_path.clone())?;
    config.network = Some(args.node.network(&base_path));
    if let Some(key) = &args.key {
        config.validator_key = Some(keyfile::read(key)?);
    }
    run(config)
}

fn run(config: NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut node = service::start(config).await?;
        let result = tokio::select! {
            result = node.wait() => result.map_err(anyhow::Error::from),
            signal = lockstep_service::shutdown_signal() => {
                tracing::info!("{signal}: shutting down");
                Ok(())
            }
        };
        node.stop().await?;
        result
    })
}
