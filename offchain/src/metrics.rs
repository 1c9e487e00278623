//! The event system's metrics: atomics bumped where things happen, exposed
//! through `lockstep_service::metrics` (the registry and the `GET /metrics`
//! endpoint), and the confirmation latency as a histogram.
//!
//! Besides the counters, [`Metrics::changed`] is bumped after every quorum
//! round and reconciler pass, so tests (and operators' tools) can await
//! progress instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lockstep_service::metrics::{Exposed, Exposition, Histogram, Registry};
use lockstep_service::rpc_metrics::RpcTimes;
use tokio::sync::watch;

/// The event system's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Events per state (refreshed by the reconciler and on every transition).
    pub registered: AtomicU64,
    /// Events in PendingAccount.
    pub pending_account: AtomicU64,
    /// Events completed.
    pub completed: AtomicU64,
    /// Events cancelled.
    pub cancelled: AtomicU64,
    /// Transitions recorded, registrations included (the global sequence).
    pub transitions: AtomicU64,
    /// Quorum checks of single events since start.
    pub quorum_checks: AtomicU64,
    /// Checks where nodes disagreed (conflicting answers).
    pub quorum_disagreements: AtomicU64,
    /// Checks that decided nothing (too few answers or not final yet).
    pub quorum_undecided: AtomicU64,
    /// Node calls that failed or timed out.
    pub node_errors: AtomicU64,
    /// JSON-RPC calls made to nodes (each call of a batch counts).
    pub node_calls: AtomicU64,
    /// Blocks whose proof did not verify from any node (justification,
    /// transaction or receipt roots): their events did not move.
    pub proof_failures: AtomicU64,
    /// Messages in the bus not acknowledged.
    pub bus_depth: AtomicU64,
    /// PendingAccount events past the overdue threshold.
    pub overdue: AtomicU64,
    /// Instructions re-queued by the reconciler.
    pub resends: AtomicU64,
    /// Failure receipts recorded (the bridge could not pay).
    pub failure_receipts: AtomicU64,
    /// Events cancelled because their finalized transfer does not commit
    /// to them (registered by hash for someone else's transfer, or for one
    /// committing to another event or instruction).
    pub not_committed: AtomicU64,
    /// Last finalized height the watcher processed.
    pub watcher_height: AtomicU64,
    /// Last finalized height a node reported to the watcher.
    pub finalized_head: AtomicU64,
    /// Times the watcher switched to another node.
    pub watcher_failovers: AtomicU64,
    /// From a finalized block reaching the watcher to the quorum's decision
    /// on its events, in seconds.
    pub confirmation_seconds: Histogram,
    /// How long each JSON-RPC method takes.
    pub rpc_times: RpcTimes,
    changed: watch::Sender<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registered: AtomicU64::new(0),
            pending_account: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            quorum_checks: AtomicU64::new(0),
            quorum_disagreements: AtomicU64::new(0),
            quorum_undecided: AtomicU64::new(0),
            node_errors: AtomicU64::new(0),
            node_calls: AtomicU64::new(0),
            proof_failures: AtomicU64::new(0),
            bus_depth: AtomicU64::new(0),
            overdue: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            failure_receipts: AtomicU64::new(0),
            not_committed: AtomicU64::new(0),
            watcher_height: AtomicU64::new(0),
            finalized_head: AtomicU64::new(0),
            watcher_failovers: AtomicU64::new(0),
            confirmation_seconds: lockstep_service::metrics::seconds_histogram(),
            rpc_times: RpcTimes::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Signals that a round (quorum check, reconciler pass, watcher block)
    /// finished.
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Changes each time [`Metrics::bump`] is called.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl Exposed for Metrics {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed);
        out.gauge_family(
            "lockstep_offchain_events",
            "Events per state",
            "state",
            &[
                ("Registered", get(&self.registered)),
                ("PendingAccount", get(&self.pending_account)),
                ("Completed", get(&self.completed)),
                ("Cancelled", get(&self.cancelled)),
            ],
        )?;
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "lockstep_offchain_transitions",
                "Transitions recorded, registrations included",
                &self.transitions,
            ),
            (
                "lockstep_offchain_quorum_checks",
                "Quorum checks of single events",
                &self.quorum_checks,
            ),
            (
                "lockstep_offchain_quorum_disagreements",
                "Quorum checks with conflicting answers",
                &self.quorum_disagreements,
            ),
            (
                "lockstep_offchain_quorum_undecided",
                "Quorum checks that decided nothing",
                &self.quorum_undecided,
            ),
            (
                "lockstep_offchain_node_errors",
                "Node calls that failed or timed out",
                &self.node_errors,
            ),
            (
                "lockstep_offchain_node_calls",
                "JSON-RPC calls made to nodes, each call of a batch counted",
                &self.node_calls,
            ),
            (
                "lockstep_offchain_proof_failures",
                "Blocks whose proof no node could serve: justification, transaction or receipt roots did not verify",
                &self.proof_failures,
            ),
            (
                "lockstep_offchain_resends",
                "Payment instructions re-queued",
                &self.resends,
            ),
            (
                "lockstep_offchain_failure_receipts",
                "Failure receipts recorded (the bridge could not pay)",
                &self.failure_receipts,
            ),
            (
                "lockstep_offchain_watcher_failovers",
                "Switches to another node",
                &self.watcher_failovers,
            ),
            (
                "lockstep_offchain_not_committed",
                "Events cancelled because their finalized transfer does not commit to them",
                &self.not_committed,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, get(value))?;
        }
        out.gauge(
            "lockstep_offchain_bus_depth",
            "Bus messages not acknowledged",
            get(&self.bus_depth),
        )?;
        out.gauge(
            "lockstep_offchain_overdue_events",
            "PendingAccount events past the overdue threshold",
            get(&self.overdue),
        )?;
        out.gauge(
            "lockstep_offchain_watcher_height",
            "Last finalized height processed",
            get(&self.watcher_height),
        )?;
        out.gauge(
            "lockstep_offchain_finalized_head",
            "Last finalized height a node reported to the watcher",
            get(&self.finalized_head),
        )
    }
}

/// The registry the event system's endpoint serves.
pub fn registry(metrics: &Arc<Metrics>) -> Registry {
    let mut registry = Registry::default();
    lockstep_service::metrics::register_exposed(&mut registry, metrics.clone());
    registry.register(
        "lockstep_offchain_confirmation_seconds",
        "Time from the watcher seeing a finalized block to the quorum's decision on its events",
        metrics.confirmation_seconds.clone(),
    );
    metrics
        .rpc_times
        .register(&mut registry, "lockstep_offchain_rpc_seconds");
    registry
}
