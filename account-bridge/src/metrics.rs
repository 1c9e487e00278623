//! The bridge's Prometheus metrics, served by `lockstep_service::metrics`:
//! counters and gauges in atomics, and the payment latency (pull to
//! commit) as a histogram.
//!
//! [`BridgeMetrics::changed`] is bumped after every committed batch and
//! every round of receipt posts, so tests can await progress instead of
//! sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lockstep_service::metrics::{Exposed, Exposition, Histogram, Registry};
use tokio::sync::watch;

/// Counters and gauges.
#[derive(Debug)]
pub struct BridgeMetrics {
    /// Payments made.
    pub payments: AtomicU64,
    /// Deliveries of an instruction already paid (nothing moved).
    pub duplicates: AtomicU64,
    /// Payments refused by the ledger (funds, account), recorded as failed.
    pub failures: AtomicU64,
    /// Instructions refused as invalid (nothing written).
    pub invalid: AtomicU64,
    /// Instructions without a valid signature of the event system's key:
    /// set aside, never paid.
    pub unsigned: AtomicU64,
    /// Receipts the event system acknowledged.
    pub receipts_posted: AtomicU64,
    /// Receipt posts that failed and were rescheduled.
    pub receipt_retries: AtomicU64,
    /// Receipts in the outbox, not yet acknowledged.
    pub receipt_backlog: AtomicU64,
    /// Calls to the event system that failed (transport or refusal).
    pub event_system_errors: AtomicU64,
    /// Calls to a broker bus (NATS JetStream: consumer set-up, fetches,
    /// acks) that failed.
    pub bus_errors: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// From pulling a batch to committing its payments, in seconds.
    pub payment_seconds: Histogram,
    changed: watch::Sender<u64>,
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        BridgeMetrics {
            payments: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            unsigned: AtomicU64::new(0),
            receipts_posted: AtomicU64::new(0),
            receipt_retries: AtomicU64::new(0),
            receipt_backlog: AtomicU64::new(0),
            event_system_errors: AtomicU64::new(0),
            bus_errors: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            payment_seconds: lockstep_service::metrics::seconds_histogram(),
            changed: watch::channel(0).0,
        }
    }
}

impl BridgeMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the receipt backlog gauge.
    pub fn set_backlog(&self, backlog: u64) {
        self.receipt_backlog.store(backlog, Ordering::Relaxed);
    }

    /// Signals progress (a batch committed, a round of posts done).
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Changes each time [`BridgeMetrics::bump`] is called.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl Exposed for BridgeMetrics {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let counters: [(&str, &str, &AtomicU64); 10] = [
            ("lockstep_bridge_payments", "Payments made", &self.payments),
            (
                "lockstep_bridge_duplicates",
                "Deliveries of an already paid instruction, absorbed",
                &self.duplicates,
            ),
            (
                "lockstep_bridge_failures",
                "Payments refused by the ledger (funds, account)",
                &self.failures,
            ),
            (
                "lockstep_bridge_invalid",
                "Instructions refused as invalid, nothing written",
                &self.invalid,
            ),
            (
                "lockstep_bridge_unsigned_instructions",
                "Instructions not signed by the event system's key, set aside unpaid",
                &self.unsigned,
            ),
            (
                "lockstep_bridge_receipts_posted",
                "Receipts acknowledged by the event system",
                &self.receipts_posted,
            ),
            (
                "lockstep_bridge_receipt_retries",
                "Receipt posts rescheduled after a failure",
                &self.receipt_retries,
            ),
            (
                "lockstep_bridge_event_system_errors",
                "Calls to the event system that failed",
                &self.event_system_errors,
            ),
            (
                "lockstep_bridge_bus_errors",
                "Calls to the NATS JetStream bus that failed",
                &self.bus_errors,
            ),
            (
                "lockstep_bridge_batches",
                "Instruction batches committed",
                &self.batches,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, value.load(Ordering::Relaxed))?;
        }
        out.gauge(
            "lockstep_bridge_receipt_backlog",
            "Receipts in the outbox not yet acknowledged",
            self.receipt_backlog.load(Ordering::Relaxed),
        )
    }
}

/// The registry the bridge's endpoint serves.
pub fn registry(metrics: &Arc<BridgeMetrics>) -> Registry {
    let mut registry = Registry::default();
    lockstep_service::metrics::register_exposed(&mut registry, metrics.clone());
    registry.register(
        "lockstep_bridge_payment_seconds",
        "Time from pulling a batch to committing its payments",
        metrics.payment_seconds.clone(),
    );
    registry
}
