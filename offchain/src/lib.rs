//! # lockstep-offchain
//!
//! The off-chain event system: every transfer is registered here *before* it
//! is submitted to the chain, its outcome is confirmed with a quorum of nodes,
//! the fiat payment instruction leaves through a durable outbox and message
//! bus, and a reconciler re-checks and re-sends until every event is final
//! (`Completed` or `Cancelled`). The binary (`src/main.rs`) only parses the
//! command line and calls [`start`].
//!
//! ## Tasks
//!
//! - the JSON-RPC server ([`rpc`]), HTTP and WebSocket on one port: the
//!   event API, receipts, and the bus (`bus_pull`/`bus_ack`);
//! - the registration writer (a thread, [`rpc`]): group-commits concurrent
//!   `event_register` calls, one synced batch for all of them;
//! - the chain watcher ([`watcher::ChainWatcher`]): follows finalized heads
//!   on one node, fails over to the next, hands matching transfers to the
//!   confirmer;
//! - the reconciler ([`reconciler::Reconciler`]): re-checks Registered
//!   events after a grace period, hands unreceipted instructions to the bus
//!   again;
//! - the Prometheus endpoint ([`metrics`]), if enabled.
//!
//! ## Main types
//!
//! The interface (methods, wire types, error codes, the lifecycle's pure
//! state machine and the quorum rule) is `lockstep_api`; start reading
//! there. [`store::EventStore`] keeps events, indexes, history and the outbox in
//! RocksDB, one write batch per change, in its own record types
//! ([`store::records`]); [`confirmer::QuorumConfirmer`] and its pure rule
//! [`confirmer::decide`]; [`bus::MessageBus`] (what a bus must do: relay
//! from the outbox, leases, acks, re-sends by generation) and its embedded
//! implementation [`bus::EmbeddedBus`], whose queue lives in the store.
//!
//! With the cargo feature `test-utils`, `test_utils::EventSystem` runs the
//! event system in a test's own process (the tests of this crate and of
//! its clients use it).

pub mod bus;
pub mod confirmer;
pub mod metrics;
pub mod nodes;
pub mod reconciler;
pub mod rpc;
pub mod store;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod watcher;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::server::ServerHandle;
use lockstep_runtime::AccountId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{EmbeddedBus, MessageBus};
use crate::confirmer::{Quorum, QuorumConfirmer, RecheckPolicy};
use crate::metrics::Metrics;
use crate::nodes::{Node, NodeError};
use crate::reconciler::{Reconciler, ReconcilerSettings};
use crate::store::{EventStore, StoreError};
use crate::watcher::ChainWatcher;

pub use lockstep_service::now_ms;

/// Everything the event system needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node RPC URLs; the watcher follows the first that works.
    pub nodes: Vec<String>,
    /// The share of nodes that must agree.
    pub quorum: Quorum,
    /// Data directory (the store is `<base>/events`).
    pub base_path: PathBuf,
    /// RPC listen address (port 0 picks one).
    pub rpc_addr: SocketAddr,
    /// Prometheus endpoint, if any.
    pub prometheus_addr: Option<SocketAddr>,
    /// The account bridge's public key: receipts must be signed by it.
    pub bridge_key: AccountId,
    /// Time between reconciler passes.
    pub scan_interval: Duration,
    /// Age of a Registered event before the reconciler first re-checks it.
    pub grace: Duration,
    /// Largest delay between re-checks of an undecided event.
    pub recheck_cap: Duration,
    /// Timeout of each node call.
    pub call_timeout: Duration,
    /// First delay before an acknowledged but unreceipted instruction is
    /// re-sent.
    pub resend_base: Duration,
    /// Largest resend delay.
    pub resend_cap: Duration,
    /// PendingAccount for longer than this is overdue.
    pub overdue_after: Duration,
    /// Pause before the watcher tries the next node.
    pub watcher_retry: Duration,
    /// Most missed blocks the watcher fetches after a restart.
    pub max_catch_up: u64,
    /// fsync every write (survives power loss, not only crashes).
    pub sync_writes: bool,
}

impl Config {
    /// Defaults for everything but the nodes, the data and the bridge key.
    pub fn new(nodes: Vec<String>, base_path: PathBuf, bridge_key: AccountId) -> Config {
        Config {
            nodes,
            quorum: Quorum::default(),
            base_path,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 9955)),
            prometheus_addr: None,
            bridge_key,
            scan_interval: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            recheck_cap: Duration::from_secs(60),
            call_timeout: Duration::from_secs(5),
            resend_base: Duration::from_secs(30),
            resend_cap: Duration::from_secs(600),
            overdue_after: Duration::from_secs(900),
            watcher_retry: Duration::from_secs(1),
            max_catch_up: 10_000,
            sync_writes: true,
        }
    }
}

/// Why the event system could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No node configured.
    #[error("at least one node URL is required")]
    NoNodes,
    /// A node URL is unusable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started event system.
#[derive(Debug)]
pub struct RunningService {
    /// The bound RPC address.
    pub rpc_addr: SocketAddr,
    /// The bound metrics address.
    pub prometheus_addr: Option<SocketAddr>,
    /// The store.
    pub store: Arc<EventStore>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    rpc: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
}

/// Opens the store and starts every task.
pub async fn start(config: Config) -> Result<RunningService, ServiceError> {
    if config.nodes.is_empty() {
        return Err(ServiceError::NoNodes);
    }
    let nodes = config
        .nodes
        .iter()
        .map(|url| Node::new(url, config.call_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let path = config.base_path.join("events");
    std::fs::create_dir_all(&path)
        .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", path.display())))?;
    let store = Arc::new(EventStore::open(&path, config.sync_writes)?);
    let metrics = Arc::new(Metrics::default());
    let confirmer = Arc::new(QuorumConfirmer::new(
        nodes,
        config.quorum,
        store.clone(),
        metrics.clone(),
        RecheckPolicy {
            base: config.grace.max(Duration::from_millis(10)),
            cap: config.recheck_cap,
        },
        config.resend_base,
    ));
    let bus: Arc<dyn MessageBus> = Arc::new(EmbeddedBus::new(store.clone()));
    let handler = rpc::EventRpc::new(
        store.clone(),
        bus.clone(),
        config.bridge_key,
        config.grace,
        config.overdue_after,
    );
    let (rpc, rpc_addr) = rpc::start(
        config.rpc_addr,
        rpc::module(handler),
        metrics.rpc_times.clone(),
    )
    .await
    .map_err(|source| ServiceError::Bind {
        addr: config.rpc_addr,
        source,
    })?;
    tracing::info!(target: "lockstep::offchain", "JSON-RPC on http://{rpc_addr} and ws://{rpc_addr}");

    let (metrics_task, prometheus_addr) = match config.prometheus_addr {
        Some(addr) => {
            let registry = Arc::new(metrics::registry(&metrics));
            let (task, bound) = lockstep_service::metrics::start(addr, registry)
                .await
                .map_err(|source| ServiceError::Bind { addr, source })?;
            tracing::info!(target: "lockstep::offchain", "Prometheus metrics on http://{bound}/metrics");
            (Some(task), Some(bound))
        }
        None => (None, None),
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let watcher = ChainWatcher::new(
        store.clone(),
        confirmer.clone(),
        metrics.clone(),
        config.watcher_retry,
        config.max_catch_up,
    );
    let reconciler = Reconciler::new(
        store.clone(),
        confirmer,
        bus,
        metrics.clone(),
        ReconcilerSettings {
            scan_interval: config.scan_interval,
            resend_base: config.resend_base,
            resend_cap: config.resend_cap,
            overdue_after: config.overdue_after,
        },
    );
    let tasks = vec![
        tokio::spawn(watcher.run(shutdown_rx.clone())),
        tokio::spawn(reconciler.run(shutdown_rx)),
    ];
    Ok(RunningService {
        rpc_addr,
        prometheus_addr,
        store,
        metrics,
        shutdown,
        rpc,
        tasks,
        metrics_task,
    })
}

impl RunningService {
    /// Stops the tasks (each finishes the write it is making: every write
    /// is one batch, so nothing is left half-done), then the RPC server.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let _ = self.rpc.stop();
        self.rpc.clone().stopped().await;
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
    }
}
