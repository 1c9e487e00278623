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
//! - the JSON-RPC server ([`rpc`]), HTTP and WebSocket on one port
//!   (`https://` and `wss://` with [`Config::tls`]): the
//!   event API, receipts, and the bus (`bus_pull`/`bus_ack`), each method
//!   open only to the roles the API's table names, for callers with a
//!   token from the credentials file ([`Auth`], `lockstep_service::auth`);
//! - the registration writer (a thread, [`rpc`]): group-commits concurrent
//!   `event_register` calls, one synced batch for all of them;
//! - the chain watcher ([`watcher::ChainWatcher`]): follows finalized heads
//!   on one node, fails over to the next, hands matching transfers to the
//!   confirmer;
//! - the reconciler ([`reconciler::Reconciler`]): re-checks Registered
//!   events after a grace period, hands unreceipted instructions to the bus
//!   again;
//! - with the bus on NATS JetStream ([`Config::nats`]), the relay
//!   ([`bus::nats::Relay`]): publishes each new instruction once its move
//!   committed, from a durable cursor on the transition feed;
//! - the log summary ([`summary`]): one INFO line per interval in which
//!   something happened (events per state, receipts, re-sends, the
//!   watcher's lag); each event's own lines are DEBUG;
//! - the Prometheus endpoint ([`metrics`]), if enabled.
//!
//! Every store call that writes (and so may wait for an fsync) or scans
//! runs off the async workers: on the registration writer's thread, or on
//! tokio's blocking pool ([`store::EventStore::blocking`], and the
//! `blocking` methods of the API).
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
//! implementation [`bus::EmbeddedBus`], whose queue lives in the store and
//! which signs every instruction it hands out with the event system's own
//! key ([`Config::instruction_key`]: the bridge pays nothing else).
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
pub mod summary;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod watcher;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::server::ServerHandle;
use lockstep_api::client::{ClientOptions, TrustedCas};
pub use lockstep_api::proof::ChainTrust;
use lockstep_runtime::{AccountId, Keypair};
use lockstep_service::auth::{
    AuthError, Credentials, Gate, Guard, RateLimit, RateLimiter, Refusals,
};
use lockstep_service::tls::{server_urls, ServerTls};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::nats::{NatsBus, NatsSettings};
use crate::bus::{BusError, EmbeddedBus, MessageBus};
use crate::confirmer::{Quorum, QuorumConfirmer, RecheckPolicy};
use crate::metrics::Metrics;
use crate::nodes::{Node, NodeError};
use crate::reconciler::{Reconciler, ReconcilerSettings};
use crate::store::{EventStore, StoreError};
use crate::watcher::ChainWatcher;

pub use lockstep_service::now_ms;

/// How the event system admits callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A caller must present a token of this credentials file
    /// (`--credentials`; reloaded by [`RunningService::reload_credentials`]).
    Credentials(PathBuf),
    /// Every caller is let in with every role (`--insecure-no-auth`):
    /// logged as a warning, and refused unless the RPC address is a
    /// loopback one.
    InsecureNoAuth,
}

/// The default registration rate of one credential: sustained, and at
/// once. Well above what one transaction system needs (the bench settles
/// about 3,500 events/s) and below the store's group-commit capacity, so
/// that one credential's flood leaves room for the others.
pub const DEFAULT_REGISTER_RATE: RateLimit = RateLimit {
    per_second: 5_000,
    burst: 20_000,
};

/// The default bound on the events one credential may hold in Registered
/// at once. Above what the open-loop `lockstep bench` holds at the
/// default rate (its burst of 20,000, plus what it registers during the
/// seconds by which confirmation lags behind), and small enough
/// that one credential's events that never finalize (registered and never
/// submitted, or with a nonce that never comes) cost the reconciler at most
/// 50,000 re-checks per `--recheck-cap`, under 1,000 a second at its
/// default, however long the flood goes on.
pub const DEFAULT_MAX_REGISTERED_PER_CREDENTIAL: u64 = 50_000;

/// Everything the event system needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node RPC URLs; the watcher follows the first that works.
    pub nodes: Vec<String>,
    /// The share of nodes that must agree.
    pub quorum: Quorum,
    /// The chain's id and validator set, from its chain spec
    /// (`--chain-spec`): every block's justification is verified against
    /// it before an event moves on that block. [`Config::new`] leaves it
    /// unset and [`start`] refuses to run without it.
    pub chain: Option<ChainTrust>,
    /// Data directory (the store is `<base>/events`).
    pub base_path: PathBuf,
    /// RPC listen address (port 0 picks one).
    pub rpc_addr: SocketAddr,
    /// TLS on the RPC port (`--tls-cert`/`--tls-key`): `https://` and
    /// `wss://` instead of `http://` and `ws://`; none by default.
    pub tls: Option<ServerTls>,
    /// The CAs trusted for `https://` and `wss://` node URLs (`--ca-file`);
    /// the system's roots when `None`.
    pub node_cas: Option<TrustedCas>,
    /// Prometheus endpoint, if any.
    pub prometheus_addr: Option<SocketAddr>,
    /// The account bridge's public key: receipts must be signed by it.
    pub bridge_key: AccountId,
    /// How callers are admitted. [`Config::new`] leaves it
    /// [`Auth::InsecureNoAuth`] (on its loopback address), for benches and
    /// tools in one process; `lockstep-offchain run` makes its operator
    /// choose.
    pub auth: Auth,
    /// How fast one credential may register events (`event_register` and
    /// each item of `event_registerBatch`).
    pub register_rate: RateLimit,
    /// How many events one credential may hold in Registered at once
    /// (at least 1): a registration beyond it is refused (2054) until some
    /// of its events are confirmed or cancelled. The count is rebuilt from
    /// the store at start, so a restart does not reset it. The anonymous
    /// caller of [`Auth::InsecureNoAuth`] has no bound, as it has no rate.
    pub max_registered_per_credential: u64,
    /// The chain spec's `maxValidityBlocks`: a registration whose
    /// `validUntil` is further than twice this past the last finalized
    /// height the watcher saw is refused (2005), so that every event is
    /// final within a known time (the pools refuse such a transfer anyway).
    /// Twice, so that a watcher a little behind the chain does not refuse
    /// a client's honest window.
    pub max_validity_blocks: u64,
    /// The chain spec's block time: with `max_validity_blocks` and each
    /// registration's `validUntil`, when an event whose transfer is never
    /// included can first be cancelled as expired (the reconciler looks
    /// then if that comes before `grace`).
    pub block_time: Duration,
    /// The event system's own key: it signs every payment instruction
    /// that leaves the outbox, and the bridge pays nothing else. A fresh
    /// random key unless set (`lockstep-offchain run` reads `--key-file`);
    /// [`RunningService::instruction_key`] tells its public key.
    pub instruction_key: Keypair,
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
    /// How often the log summary is considered ([`summary`]).
    pub summary_interval: Duration,
    /// The message bus on NATS JetStream (`--bus nats://...`); none: the
    /// embedded bus, in the store.
    pub nats: Option<NatsSettings>,
}

impl Config {
    /// Defaults for everything but the nodes, the data and the bridge key.
    pub fn new(nodes: Vec<String>, base_path: PathBuf, bridge_key: AccountId) -> Config {
        Config {
            nodes,
            quorum: Quorum::default(),
            chain: None,
            base_path,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 9955)),
            tls: None,
            node_cas: None,
            prometheus_addr: None,
            bridge_key,
            auth: Auth::InsecureNoAuth,
            register_rate: DEFAULT_REGISTER_RATE,
            max_registered_per_credential: DEFAULT_MAX_REGISTERED_PER_CREDENTIAL,
            max_validity_blocks: lockstep_runtime::DEFAULT_MAX_VALIDITY_BLOCKS,
            block_time: Duration::from_secs(1),
            instruction_key: Keypair::generate(),
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
            summary_interval: summary::SUMMARY_INTERVAL,
            nats: None,
        }
    }
}

/// Why the event system could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No node configured.
    #[error("at least one node URL is required")]
    NoNodes,
    /// No chain spec: blocks could not be verified.
    #[error("the chain spec is required (--chain-spec): block justifications are verified against its validators")]
    NoChainSpec,
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
    /// The credentials file is unusable.
    #[error("credentials: {0}")]
    Credentials(#[from] AuthError),
    /// No authentication asked for on an address others can reach.
    #[error(
        "--insecure-no-auth is refused on {0}: it would let anyone who can reach it order payments; listen on a loopback address or give --credentials"
    )]
    InsecureNotLoopback(SocketAddr),
    /// A registration rate of zero.
    #[error("the registration rate and burst must be at least 1")]
    ZeroRate,
    /// A bound of zero Registered events per credential: no credential
    /// could register anything, and it is not "unbounded" either.
    #[error("--max-registered-per-credential must be at least 1")]
    ZeroRegisteredBound,
    /// The message bus could not be set up.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A started event system.
#[derive(Debug)]
pub struct RunningService {
    /// The bound RPC address.
    pub rpc_addr: SocketAddr,
    /// The bound metrics address.
    pub prometheus_addr: Option<SocketAddr>,
    /// The public key instructions are signed with (a bridge's
    /// `--event-system-key`).
    pub instruction_key: AccountId,
    /// The store.
    pub store: Arc<EventStore>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Refused calls by reason (also on the metrics endpoint as
    /// `lockstep_offchain_auth_refusals_total`).
    pub refusals: Refusals,
    credentials: Option<Arc<Credentials>>,
    shutdown: watch::Sender<bool>,
    rpc: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
    registrar_done: rpc::RegistrarDone,
}

/// How long [`RunningService::stop`] waits for the registration writer.
pub const STOP_WAIT: Duration = Duration::from_secs(10);

/// Opens the store and starts every task.
pub async fn start(config: Config) -> Result<RunningService, ServiceError> {
    if config.nodes.is_empty() {
        return Err(ServiceError::NoNodes);
    }
    let Some(trust) = config.chain.clone() else {
        return Err(ServiceError::NoChainSpec);
    };
    let metrics = Arc::new(Metrics::default());
    let node_options = ClientOptions::new(config.call_timeout).with_cas(config.node_cas.clone());
    let nodes = config
        .nodes
        .iter()
        .map(|url| Node::new(url, &node_options, metrics.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    // Credentials before anything is opened: a bad file stops the start.
    let credentials = match &config.auth {
        Auth::Credentials(path) => {
            let credentials = Arc::new(Credentials::load(path)?);
            tracing::info!(target: "lockstep::offchain", "{} credentials from {}", credentials.len(), path.display());
            Some(credentials)
        }
        Auth::InsecureNoAuth if !config.rpc_addr.ip().is_loopback() => {
            return Err(ServiceError::InsecureNotLoopback(config.rpc_addr))
        }
        Auth::InsecureNoAuth => {
            tracing::warn!(target: "lockstep::offchain", "no authentication (--insecure-no-auth): every caller on {} may register events, take instructions and post receipts", config.rpc_addr);
            None
        }
    };
    if config.register_rate.per_second == 0 || config.register_rate.burst == 0 {
        return Err(ServiceError::ZeroRate);
    }
    if config.max_registered_per_credential == 0 {
        return Err(ServiceError::ZeroRegisteredBound);
    }
    let refusals = Refusals::default();
    let gate = match &credentials {
        Some(credentials) => Gate::Credentials(credentials.clone()),
        None => Gate::Open,
    };
    let guard = Guard::new(gate, lockstep_api::offchain::access, refusals.clone());
    let path = config.base_path.join("events");
    std::fs::create_dir_all(&path)
        .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", path.display())))?;
    let store = Arc::new(EventStore::open(&path, config.sync_writes)?);
    let confirmer = Arc::new(QuorumConfirmer::new(
        nodes,
        config.quorum,
        trust,
        store.clone(),
        metrics.clone(),
        RecheckPolicy {
            base: config.grace.max(Duration::from_millis(10)),
            cap: config.recheck_cap,
        },
        config.resend_base,
    ));
    let instruction_key = config.instruction_key.public();
    tracing::info!(target: "lockstep::offchain", "payment instructions are signed with key {instruction_key}");
    let (bus, relay): (Arc<dyn MessageBus>, _) = match &config.nats {
        None => {
            let embedded = EmbeddedBus::new(store.clone(), config.instruction_key.clone());
            (Arc::new(embedded), None)
        }
        Some(settings) => {
            let nats = NatsBus::connect(settings.clone(), config.instruction_key.clone()).await?;
            tracing::info!(target: "lockstep::offchain", "message bus: NATS JetStream at {}, stream {:?}, subject {:?}", settings.servers, settings.stream, settings.subject);
            let relay = nats.relay(store.clone());
            (Arc::new(nats), Some(relay))
        }
    };
    let handler = rpc::EventRpc::new(
        store.clone(),
        bus.clone(),
        config.bridge_key,
        config.grace,
        config.overdue_after,
    )
    .with_caller_limits(
        Some(Arc::new(RateLimiter::new(config.register_rate))),
        refusals.clone(),
    )
    .with_registered_bound(config.max_registered_per_credential)
    .with_validity_bound(config.max_validity_blocks, metrics.clone())
    .with_block_time(config.block_time)
    .with_metrics(metrics.clone());
    let handler = match relay {
        Some(_) => handler.with_broker_depth(metrics.clone()),
        None => handler,
    };
    let registrar_done = handler.registrar_done();
    let tls = config.tls.is_some();
    let (rpc, rpc_addr) = rpc::start(
        config.rpc_addr,
        rpc::module(handler),
        metrics.rpc_times.clone(),
        guard,
        config.tls.clone(),
    )
    .await
    .map_err(|source| ServiceError::Bind {
        addr: config.rpc_addr,
        source,
    })?;
    let (http_url, ws_url) = server_urls(rpc_addr, tls);
    tracing::info!(target: "lockstep::offchain", "JSON-RPC on {http_url} and {ws_url}");

    let (metrics_task, prometheus_addr) = match config.prometheus_addr {
        Some(addr) => {
            let mut registry = metrics::registry(&metrics);
            refusals.register(&mut registry, "lockstep_offchain_auth_refusals");
            let registry = Arc::new(registry);
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
    let mut tasks = Vec::new();
    if let Some(relay) = relay {
        tasks.push(tokio::spawn(relay.run(shutdown_rx.clone())));
    }
    tasks.extend([
        tokio::spawn(watcher.run(shutdown_rx.clone())),
        tokio::spawn(reconciler.run(shutdown_rx.clone())),
        tokio::spawn(summary::run(
            store.clone(),
            metrics.clone(),
            config.summary_interval,
            shutdown_rx,
        )),
    ]);
    Ok(RunningService {
        rpc_addr,
        prometheus_addr,
        instruction_key,
        store,
        metrics,
        refusals,
        credentials,
        shutdown,
        rpc,
        tasks,
        metrics_task,
        registrar_done,
    })
}

impl RunningService {
    /// Reads the credentials file again (SIGHUP): a removed line's token
    /// is refused from its next call on, an added one admitted. Returns
    /// how many credentials are loaded, or `None` without credentials
    /// ([`Auth::InsecureNoAuth`]); on an error the loaded ones stay.
    pub fn reload_credentials(&self) -> Result<Option<usize>, AuthError> {
        self.credentials
            .as_ref()
            .map(|credentials| credentials.reload())
            .transpose()
    }

    /// Stops the tasks (each finishes the write it is making: every write
    /// is one batch, so nothing is left half-done), then the RPC server,
    /// then waits for the registration writer and every store call still
    /// running off the async workers to let go of the store, so that the
    /// store may be opened again once this returns (bounded: a store still
    /// held after [`STOP_WAIT`] is logged and left).
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
        let done = self.registrar_done.clone();
        let closed = self.store.on_close();
        drop(self);
        if tokio::time::timeout(STOP_WAIT, done.wait()).await.is_err() {
            tracing::warn!(target: "lockstep::offchain", "the registration writer has not ended {STOP_WAIT:?} after the server stopped");
            return;
        }
        if tokio::time::timeout(STOP_WAIT, closed.wait())
            .await
            .is_err()
        {
            tracing::warn!(target: "lockstep::offchain", "the event store is still held {STOP_WAIT:?} after the server stopped");
        }
    }
}
