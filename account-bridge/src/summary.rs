//! The log summary: what the bridge did, as one INFO line per interval,
//! and only for an interval in which something happened.
//!
//! A payment, a refusal by the ledger and a receipt to retry are logged
//! at DEBUG, one line each: at thousands of payments a second, a line per
//! payment at INFO would cost more than the payments. This task reads the
//! [`BridgeMetrics`] counters every [`SUMMARY_INTERVAL`] and logs what
//! changed. An idle bridge logs nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::BridgeMetrics;

/// How often the summary is considered.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What the summary compares from one interval to the next: the
/// [`BridgeMetrics`] counters, and the receipt backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Payments made.
    pub payments: u64,
    /// Batches committed.
    pub batches: u64,
    /// Deliveries of instructions already paid.
    pub duplicates: u64,
    /// Payments refused by the ledger (failure receipts).
    pub failures: u64,
    /// Instructions refused as invalid.
    pub invalid: u64,
    /// Instructions not signed by the event system's key.
    pub unsigned: u64,
    /// Receipts the event system acknowledged.
    pub receipts_posted: u64,
    /// Receipt posts rescheduled.
    pub receipt_retries: u64,
    /// Calls to the event system that failed.
    pub event_system_errors: u64,
    /// Receipts in the outbox, not yet acknowledged.
    pub backlog: u64,
}

impl Activity {
    /// The counters now.
    pub fn now(metrics: &BridgeMetrics) -> Activity {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed);
        Activity {
            payments: get(&metrics.payments),
            batches: get(&metrics.batches),
            duplicates: get(&metrics.duplicates),
            failures: get(&metrics.failures),
            invalid: get(&metrics.invalid),
            unsigned: get(&metrics.unsigned),
            receipts_posted: get(&metrics.receipts_posted),
            receipt_retries: get(&metrics.receipt_retries),
            event_system_errors: get(&metrics.event_system_errors),
            backlog: get(&metrics.receipt_backlog),
        }
    }

    /// The line for what happened since `before`; none when nothing did.
    pub fn summary_since(&self, before: &Activity, period: Duration) -> Option<String> {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let deltas = [
            d(self.payments, before.payments),
            d(self.batches, before.batches),
            d(self.duplicates, before.duplicates),
            d(self.failures, before.failures),
            d(self.invalid, before.invalid),
            d(self.unsigned, before.unsigned),
            d(self.receipts_posted, before.receipts_posted),
            d(self.receipt_retries, before.receipt_retries),
            d(self.event_system_errors, before.event_system_errors),
        ];
        if deltas.iter().all(|&n| n == 0) && self.backlog == before.backlog {
            return None;
        }
        let [payments, batches, duplicates, failures, invalid, unsigned, posted, retries, errors] =
            deltas;
        Some(format!(
            "last {period:?}: {payments} paid in {batches} batches, {duplicates} duplicates absorbed, \
             {failures} refused by the ledger, {invalid} invalid, {unsigned} unsigned set aside; \
             {posted} receipts posted, {retries} retried, {} in the backlog; \
             {errors} event system errors",
            self.backlog
        ))
    }
}

/// Logs a summary every `period` until `shutdown` turns true.
pub async fn run(metrics: Arc<BridgeMetrics>, period: Duration, shutdown: watch::Receiver<bool>) {
    lockstep_service::logging::summarise_every(
        period,
        shutdown,
        || Activity::now(&metrics),
        |now, last, period| now.summary_since(last, period),
        |line| tracing::info!(target: "lockstep::bridge", "{line}"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_interval_has_no_line_and_a_busy_one_counts() {
        let period = Duration::from_secs(10);
        let before = Activity {
            payments: 100,
            batches: 2,
            receipts_posted: 100,
            ..Activity::default()
        };
        assert_eq!(before.summary_since(&before, period), None);
        let busy = Activity {
            payments: 600,
            batches: 3,
            failures: 2,
            receipts_posted: 550,
            receipt_retries: 1,
            backlog: 52,
            ..before
        };
        let line = busy.summary_since(&before, period).expect("a line");
        for part in [
            "500 paid in 1 batches",
            "2 refused by the ledger",
            "450 receipts posted, 1 retried, 52 in the backlog",
        ] {
            assert!(line.contains(part), "{part:?} not in {line:?}");
        }
    }
}
