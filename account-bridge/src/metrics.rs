//! The bridge's Prometheus metrics, served by the event system's endpoint
//! (`lockstep_offchain::metrics::serve`).
//!
//! [`BridgeMetrics::changed`] is bumped after every committed batch and
//! every round of receipt posts, so tests can await progress instead of
//! sleeping.

use std::sync::atomic::{AtomicU64, Ordering};

use lockstep_offchain::metrics::{write_metric, Render};
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
    /// Receipts the event system acknowledged.
    pub receipts_posted: AtomicU64,
    /// Receipt posts that failed and were rescheduled.
    pub receipt_retries: AtomicU64,
    /// Receipts in the outbox, not yet acknowledged.
    pub receipt_backlog: AtomicU64,
    /// Calls to the event system that failed (transport or refusal).
    pub event_system_errors: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    changed: watch::Sender<u64>,
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        BridgeMetrics {
            payments: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            receipts_posted: AtomicU64::new(0),
            receipt_retries: AtomicU64::new(0),
            receipt_backlog: AtomicU64::new(0),
            event_system_errors: AtomicU64::new(0),
            batches: AtomicU64::new(0),
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

impl Render for BridgeMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        let all: [(&str, &str, &str, &AtomicU64); 9] = [
            (
                "lockstep_bridge_payments_total",
                "counter",
                "Payments made",
                &self.payments,
            ),
            (
                "lockstep_bridge_duplicates_total",
                "counter",
                "Deliveries of an already paid instruction, absorbed",
                &self.duplicates,
            ),
            (
                "lockstep_bridge_failures_total",
                "counter",
                "Payments refused by the ledger (funds, account)",
                &self.failures,
            ),
            (
                "lockstep_bridge_invalid_total",
                "counter",
                "Instructions refused as invalid, nothing written",
                &self.invalid,
            ),
            (
                "lockstep_bridge_receipts_posted_total",
                "counter",
                "Receipts acknowledged by the event system",
                &self.receipts_posted,
            ),
            (
                "lockstep_bridge_receipt_retries_total",
                "counter",
                "Receipt posts rescheduled after a failure",
                &self.receipt_retries,
            ),
            (
                "lockstep_bridge_receipt_backlog",
                "gauge",
                "Receipts in the outbox not yet acknowledged",
                &self.receipt_backlog,
            ),
            (
                "lockstep_bridge_event_system_errors_total",
                "counter",
                "Calls to the event system that failed",
                &self.event_system_errors,
            ),
            (
                "lockstep_bridge_batches_total",
                "counter",
                "Instruction batches committed",
                &self.batches,
            ),
        ];
        for (name, kind, help, value) in all {
            write_metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        out
    }
}
