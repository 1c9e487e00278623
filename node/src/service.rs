//! Wiring: opens the chain, starts the RPC server, the metrics endpoint,
//! the network (when configured) and (for a validator) the consensus
//! engine, and stops them together.
//!
//! [`start`] takes everything as arguments (addresses may use port 0), so
//! tests run nodes in-process and read the bound addresses back from
//! [`RunningNode`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::server::ServerHandle;
use lockstep_runtime::{BlockLimits, ChainSpec, Keypair, SpecError};
use lockstep_service::tls::{server_urls, ServerTls};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::chain::Chain;
use crate::consensus::engine::{Engine, EngineConfig, EngineError, EngineEvent};
use crate::consensus::{ConsensusNetwork, NoNetwork};
use crate::metrics::{self, Metrics};
use crate::network::{NetworkConfig, NetworkError, NetworkService};
use crate::pool::PoolConfig;
use crate::rpc::{self, NetworkInfo, RpcConfig};
use crate::storage::StorageError;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The chain.
    pub spec: ChainSpec,
    /// Where the node keeps its data (`<base>/chains/<chain id>/db`).
    pub base_path: PathBuf,
    /// The validator key; `None` runs a full node that does not vote.
    pub validator_key: Option<Keypair>,
    /// RPC listen address (port 0 picks a free port).
    pub rpc_addr: SocketAddr,
    /// RPC limits.
    pub rpc: RpcConfig,
    /// TLS on the RPC port (`--tls-cert`/`--tls-key`): `https://` and
    /// `wss://` instead of `http://` and `ws://`; none by default.
    pub rpc_tls: Option<ServerTls>,
    /// Prometheus endpoint address, if any.
    pub prometheus_addr: Option<SocketAddr>,
    /// Pool bounds.
    pub pool: PoolConfig,
    /// Block limits.
    pub limits: BlockLimits,
    /// Consensus timeouts.
    pub timeouts: lockstep_consensus::Config,
    /// Time between blocks; the spec's block time unless overridden.
    pub block_time: Duration,
    /// Peer-to-peer networking; `None` for a node alone (the dev chain).
    pub network: Option<NetworkConfig>,
}

impl NodeConfig {
    /// Defaults for everything but the chain and where to keep it.
    pub fn new(spec: ChainSpec, base_path: PathBuf) -> NodeConfig {
        let block_time = Duration::from_millis(spec.block_time_ms);
        NodeConfig {
            spec,
            base_path,
            validator_key: None,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 9944)),
            rpc: rpc::DEFAULT_RPC_LIMITS,
            rpc_tls: None,
            prometheus_addr: None,
            pool: PoolConfig::default(),
            limits: BlockLimits::default(),
            timeouts: lockstep_consensus::Config::default(),
            block_time,
            network: None,
        }
    }

    /// The database directory.
    pub fn database_path(&self) -> PathBuf {
        self.base_path
            .join("chains")
            .join(&self.spec.chain_id)
            .join("db")
    }
}

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The chain spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The database failed to open.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The consensus engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The network could not start.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A task panicked.
    #[error("a node task failed: {0}")]
    Task(String),
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    /// The chain.
    pub chain: Arc<Chain>,
    /// The bound RPC address.
    pub rpc_addr: SocketAddr,
    /// The bound metrics address, if any.
    pub prometheus_addr: Option<SocketAddr>,
    /// What `system_health` reports; the network service updates it.
    pub network_info: Arc<NetworkInfo>,
    /// Feeds the consensus engine (peers' messages, sync); `None` when not
    /// a validator.
    pub engine_inbox: Option<mpsc::Sender<EngineEvent>>,
    shutdown: watch::Sender<bool>,
    rpc: ServerHandle,
    engine: Option<JoinHandle<Result<(), EngineError>>>,
    metrics_task: Option<JoinHandle<()>>,
    network_task: Option<JoinHandle<()>>,
}

/// Starts a node: with [`NodeConfig::network`], on libp2p (validators
/// exchange consensus messages, everyone gossips and syncs blocks);
/// without, alone.
pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    let genesis = config.spec.genesis()?;
    let metrics = Arc::new(Metrics::default());
    let path = config.database_path();
    std::fs::create_dir_all(&path)
        .map_err(|e| StorageError::Corrupt(format!("cannot create {}: {e}", path.display())))?;
    let chain = Arc::new(Chain::open(
        &path,
        config.spec.clone(),
        &genesis,
        config.pool,
        config.limits,
        metrics.clone(),
    )?);
    let head = chain.head();
    tracing::info!(
        target: "lockstep::node",
        "chain {} (genesis {}), finalized head #{} ({})",
        config.spec.chain_id,
        genesis.hash(),
        head.number,
        head.hash()
    );

    let network_info = Arc::new(NetworkInfo::default());
    let module = rpc::module(chain.clone(), network_info.clone());
    let tls = config.rpc_tls.is_some();
    let (rpc, rpc_addr) = rpc::start(
        config.rpc_addr,
        config.rpc,
        module,
        metrics.rpc_times.clone(),
        config.rpc_tls.clone(),
    )
    .await
    .map_err(|source| NodeError::Bind {
        addr: config.rpc_addr,
        source,
    })?;
    let (http_url, ws_url) = server_urls(rpc_addr, tls);
    tracing::info!(target: "lockstep::node", "JSON-RPC on {http_url} and {ws_url}");

    let (metrics_task, prometheus_addr) = match config.prometheus_addr {
        Some(addr) => {
            let registry = Arc::new(metrics::registry(&metrics));
            let (task, bound) = lockstep_service::metrics::start(addr, registry)
                .await
                .map_err(|source| NodeError::Bind { addr, source })?;
            tracing::info!(target: "lockstep::node", "Prometheus metrics on http://{bound}/metrics");
            (Some(task), Some(bound))
        }
        None => (None, None),
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (network_service, consensus_network): (Option<NetworkService>, Arc<dyn ConsensusNetwork>) =
        match config.network.clone() {
            Some(network_config) => {
                let (service, consensus) = NetworkService::new(
                    network_config,
                    chain.clone(),
                    network_info.clone(),
                    config.validator_key.is_some(),
                )?;
                (Some(service), Arc::new(consensus))
            }
            None => (None, Arc::new(NoNetwork)),
        };
    let (engine, engine_inbox) = match config.validator_key {
        Some(key) => {
            tracing::info!(target: "lockstep::node", "validating as {}", key.public());
            let engine_config = EngineConfig {
                timeouts: paced_timeouts(config.timeouts, config.block_time),
                block_time: config.block_time,
                rebroadcast_interval: rebroadcast_interval(&config.timeouts),
            };
            let (engine, inbox) =
                Engine::new(chain.clone(), key, engine_config, consensus_network)?;
            let shutdown = shutdown_rx.clone();
            (
                Some(tokio::task::spawn_blocking(move || {
                    run_engine(engine, shutdown)
                })),
                Some(inbox),
            )
        }
        None => {
            tracing::info!(target: "lockstep::node", "no validator key: running as a full node");
            (None, None)
        }
    };

    let network_task = network_service
        .map(|service| tokio::spawn(service.run(engine_inbox.clone(), shutdown_rx.clone())));

    Ok(RunningNode {
        chain,
        rpc_addr,
        prometheus_addr,
        network_info,
        engine_inbox,
        shutdown,
        rpc,
        engine,
        metrics_task,
        network_task,
    })
}

/// Runs the consensus engine on a thread of its own (a blocking thread of
/// the node's runtime), with a single-threaded runtime for its inbox and
/// timers. Nearly everything the engine does blocks: synced writes of its
/// checkpoint and candidates, building, executing and importing blocks.
/// On an async worker that would stall the RPC calls and the network task
/// sharing it, for as long as a block takes.
fn run_engine(engine: Engine, shutdown: watch::Receiver<bool>) -> Result<(), EngineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .thread_name("lockstep-consensus")
        .build()
        .map_err(|e| EngineError::Thread(e.to_string()))?;
    runtime.block_on(engine.run(shutdown))
}

/// Re-send consensus messages a few times per round: half the smallest
/// round-0 timeout, within 200 ms ..= 2 s.
fn rebroadcast_interval(timeouts: &lockstep_consensus::Config) -> Duration {
    let smallest = timeouts
        .propose
        .base_ms
        .min(timeouts.prevote.base_ms)
        .min(timeouts.precommit.base_ms);
    Duration::from_millis((smallest / 2).clamp(200, 2000))
}

/// The proposer waits up to one block time before proposing, and its own
/// propose timeout runs meanwhile: keep that timeout a good margin above the
/// block time, or every slow round would end in a nil block.
fn paced_timeouts(
    mut timeouts: lockstep_consensus::Config,
    block_time: Duration,
) -> lockstep_consensus::Config {
    let block_ms = u64::try_from(block_time.as_millis()).unwrap_or(u64::MAX);
    let floor = block_ms.saturating_mul(2).max(1000);
    if timeouts.propose.base_ms < floor {
        tracing::info!(
            target: "lockstep::node",
            "propose timeout raised from {} ms to {floor} ms (twice the block time)",
            timeouts.propose.base_ms
        );
        timeouts.propose.base_ms = floor;
    }
    timeouts
}

/// Starts a single validator with no network.
pub async fn start_single(mut config: NodeConfig) -> Result<RunningNode, NodeError> {
    config.network = None;
    start(config).await
}

impl RunningNode {
    /// Waits until the consensus engine stops (an error, or forever for a
    /// full node).
    pub async fn wait(&mut self) -> Result<(), NodeError> {
        match self.engine.as_mut() {
            Some(engine) => match engine.await {
                Ok(result) => {
                    self.engine = None;
                    result.map_err(NodeError::from)
                }
                Err(join) => {
                    self.engine = None;
                    Err(NodeError::Task(join.to_string()))
                }
            },
            None => std::future::pending().await,
        }
    }

    /// Stops everything and waits for it: the engine finishes the input it
    /// is handling (so nothing half-done reaches the database), then RPC.
    pub async fn stop(mut self) -> Result<(), NodeError> {
        let _ = self.shutdown.send(true);
        let result = match self.engine.take() {
            Some(engine) => match engine.await {
                Ok(result) => result.map_err(NodeError::from),
                Err(join) => Err(NodeError::Task(join.to_string())),
            },
            None => Ok(()),
        };
        let _ = self.rpc.stop();
        self.rpc.clone().stopped().await;
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
        if let Some(task) = self.network_task.take() {
            let _ = task.await;
        }
        result
    }
}
