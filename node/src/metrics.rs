//! The node's metrics: atomics bumped where things happen, exposed through
//! `lockstep_service::metrics` (the registry and the `GET /metrics`
//! endpoint), and the block import time as a histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lockstep_service::metrics::{self, Exposed, Exposition, Histogram, Registry};
use lockstep_service::rpc_metrics::RpcTimes;

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Height of the best block.
    pub best_height: AtomicU64,
    /// Height of the finalized block (equal to best: finality is instant).
    pub finalized_height: AtomicU64,
    /// Transactions in the pool.
    pub pool_size: AtomicU64,
    /// Bytes in the pool.
    pub pool_bytes: AtomicU64,
    /// Transactions in the last imported block.
    pub block_txs: AtomicU64,
    /// Transactions finalized since start.
    pub finalized_txs: AtomicU64,
    /// Time the last block import took, in microseconds.
    pub import_micros: AtomicU64,
    /// Transactions refused by the pool since start.
    pub rejected_txs: AtomicU64,
    /// Equivocations observed since start.
    pub equivocations: AtomicU64,
    /// Connected peers.
    pub peers: AtomicU64,
    /// How long block imports take (write, prune, notify), in seconds.
    pub import_seconds: Histogram,
    /// How long each JSON-RPC method takes.
    pub rpc_times: RpcTimes,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            best_height: AtomicU64::new(0),
            finalized_height: AtomicU64::new(0),
            pool_size: AtomicU64::new(0),
            pool_bytes: AtomicU64::new(0),
            block_txs: AtomicU64::new(0),
            finalized_txs: AtomicU64::new(0),
            import_micros: AtomicU64::new(0),
            rejected_txs: AtomicU64::new(0),
            equivocations: AtomicU64::new(0),
            peers: AtomicU64::new(0),
            import_seconds: metrics::seconds_histogram(),
            rpc_times: RpcTimes::default(),
        }
    }
}

impl Exposed for Metrics {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed);
        out.gauge(
            "lockstep_block_height_best",
            "Height of the best block",
            get(&self.best_height),
        )?;
        out.gauge(
            "lockstep_block_height_finalized",
            "Height of the finalized block",
            get(&self.finalized_height),
        )?;
        out.gauge(
            "lockstep_pool_transactions",
            "Transactions in the pool",
            get(&self.pool_size),
        )?;
        out.gauge(
            "lockstep_pool_bytes",
            "Bytes of transactions in the pool",
            get(&self.pool_bytes),
        )?;
        out.gauge(
            "lockstep_block_transactions",
            "Transactions in the last imported block",
            get(&self.block_txs),
        )?;
        out.counter(
            "lockstep_finalized_transactions",
            "Transactions finalized since start",
            get(&self.finalized_txs),
        )?;
        out.gauge(
            "lockstep_block_import_microseconds",
            "Duration of the last block import",
            get(&self.import_micros),
        )?;
        out.counter(
            "lockstep_pool_rejected",
            "Transactions refused by the pool",
            get(&self.rejected_txs),
        )?;
        out.counter(
            "lockstep_equivocations",
            "Equivocations observed",
            get(&self.equivocations),
        )?;
        out.gauge("lockstep_peers", "Connected peers", get(&self.peers))
    }
}

/// The registry the node's endpoint serves: its atomics and its histograms.
pub fn registry(metrics: &Arc<Metrics>) -> Registry {
    let mut registry = Registry::default();
    metrics::register_exposed(&mut registry, metrics.clone());
    registry.register(
        "lockstep_block_import_seconds",
        "How long block imports take",
        metrics.import_seconds.clone(),
    );
    metrics
        .rpc_times
        .register(&mut registry, "lockstep_rpc_seconds");
    registry
}
