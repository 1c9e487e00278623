//! A bus consumer: pull a batch of instructions, pay it in one SQL
//! transaction, and acknowledge it only after the commit. The batch comes
//! from a [`MessageSource`]: the event system's embedded bus (`bus_pull`,
//! `bus_ack`) or NATS JetStream (a durable pull consumer, double acks);
//! the loop is the same for both.
//!
//! The order is what makes delivery exactly-once in effect:
//!
//! 1. the source leases a batch (`bus_pull`, or a JetStream fetch: the bus
//!    re-delivers it if we vanish);
//! 2. each message's signature is checked against the event system's key
//!    (one batch check, [`BusMessage::verify_all`]); a message that key did
//!    not sign, or that does not decode, is counted, logged and set aside
//!    (acknowledged with the batch, never paid, no receipt: see the crate
//!    docs for why); the rest are checked ([`Instruction::parse`]);
//! 3. the ledger pays the valid ones in one transaction; each payment also
//!    writes its receipt to the outbox, so once the commit returns, the
//!    payment and the obligation to report it are durable together;
//! 4. the poster is woken (receipts leave from the outbox, never from
//!    memory);
//! 5. the ack (`bus_ack`, or a JetStream double ack of each message). A
//!    crash anywhere before this means re-delivery, which the ledger
//!    absorbs: the payment row keyed by event id is found and only its
//!    receipt is queued again. Nothing relies on the ack having worked: a
//!    late one may be confirmed although the message went to another
//!    bridge meanwhile (nats-server#5113), and the ledger pays once all
//!    the same.
//!
//! A batch that fails to commit (a database error) is not acknowledged: its
//! lease runs out and the bus hands it out again.
//!
//! ## An empty bus
//!
//! A consumer that finds the bus empty waits before pulling again: the
//! poll interval after the first empty pull, twice that after the second,
//! and so on up to [`IDLE_POLL_CAP`] ([`idle_pause`]), so an idle bridge
//! asks about once a second per consumer instead of spinning. The first
//! consumer to pull something wakes the others ([`Consumer::work`]), which
//! pull at once: a burst after a quiet night is not held back by their
//! backoff. The ledger is only ever called on a blocking thread
//! (`spawn_blocking`), never on the async workers that carry the calls.

use std::sync::Arc;
use std::time::Duration;

use lockstep_api::bus::{BusMessage, Delivery};
use lockstep_api::event::{check_event_id, PaymentReceipt, MAX_EVENT_ID, MAX_FAILURE_REASON};
use lockstep_runtime::{AccountId, Keypair};
use lockstep_service::backoff;
use tokio::sync::{watch, Notify};

use crate::client::{EventSystemClient, MAX_BATCH_CALLS};
use crate::ledger::{Instruction, LedgerError, PayOutcome, PaymentLedger};
use crate::metrics::BridgeMetrics;
use crate::now_ms;
use crate::source::{Batch, MessageSource};

/// The payment reference of a failure receipt for an instruction that
/// wrote nothing (there is no ledger entry to name).
pub const REJECTED_REFERENCE: &str = "rejected";

/// Longest pause between two pulls of an empty bus (or the poll interval,
/// if that is longer).
pub const IDLE_POLL_CAP: Duration = Duration::from_secs(1);

/// The pause after the `empty_pulls`th empty pull in a row (counting from
/// 1): `poll_interval`, doubling with each further one, capped at
/// [`IDLE_POLL_CAP`] (or `poll_interval` when that is longer).
pub fn idle_pause(poll_interval: Duration, empty_pulls: u32) -> Duration {
    backoff(
        poll_interval,
        IDLE_POLL_CAP.max(poll_interval),
        empty_pulls.saturating_sub(1),
    )
}

/// One consumer task.
#[derive(Debug)]
pub struct Consumer {
    /// Its number, for logs.
    pub id: usize,
    /// Where batches come from.
    pub source: MessageSource,
    /// The event system (failure receipts are posted to it).
    pub client: EventSystemClient,
    /// The ledger.
    pub ledger: Arc<dyn PaymentLedger>,
    /// Signs failure receipts of rejected instructions.
    pub key: Arc<Keypair>,
    /// The event system's public key: only what it signed is paid.
    pub event_system_key: AccountId,
    /// The metrics.
    pub metrics: Arc<BridgeMetrics>,
    /// Wakes the receipt poster after a commit.
    pub wake_poster: Arc<Notify>,
    /// Shared by the consumers: notified by one that pulled something, so
    /// that those waiting out an empty bus pull again at once.
    pub work: Arc<Notify>,
    /// Most instructions per pull.
    pub batch: usize,
    /// Lease of a pulled batch.
    pub lease: Duration,
    /// Pause after an empty pull (the base of [`idle_pause`]); base of the
    /// backoff after errors.
    pub poll_interval: Duration,
    /// Test-only: abort right after a commit that paid.
    #[cfg(feature = "test-hooks")]
    pub crash_after_commit: bool,
}

/// Makes text fit a failure receipt's `reason`: printable ASCII, bounded.
pub fn receipt_reason(text: &str) -> String {
    let mut reason: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_FAILURE_REASON)
        .collect();
    if reason.is_empty() {
        reason.push_str("refused");
    }
    reason
}

/// An event id from a message that may be forged, fit for a log line:
/// quoted with its control characters escaped, and bounded.
fn shown_id(id: &str) -> String {
    let mut shown: String = id.chars().take(MAX_EVENT_ID).collect();
    if shown.len() < id.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

impl Consumer {
    /// Pulls and pays until `shutdown` turns true; a batch in hand is
    /// always finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut errors = 0u32;
        let mut empty_pulls = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pulled = tokio::select! {
                _ = shutdown.changed() => return,
                pulled = self.source.pull(self.batch, self.lease) => pulled,
            };
            let pause = match pulled {
                Ok(pulled) if !pulled.deliveries.is_empty() => {
                    errors = 0;
                    // There may be more: the others stop waiting.
                    self.work.notify_waiters();
                    match self.handle(pulled).await {
                        Ok(taken) if taken > 0 => {
                            empty_pulls = 0;
                            continue;
                        }
                        // Only messages set aside: a bus full of forgeries
                        // is polled like an empty one, not in a tight loop.
                        Ok(_) => {
                            empty_pulls = empty_pulls.saturating_add(1);
                            idle_pause(self.poll_interval, empty_pulls)
                        }
                        Err(e) => {
                            errors = errors.saturating_add(1);
                            tracing::error!(target: "lockstep::bridge", "consumer {}: {e}; the batch is left to its lease", self.id);
                            backoff(self.poll_interval, Duration::from_secs(5), errors)
                        }
                    }
                }
                Ok(_) => {
                    errors = 0;
                    empty_pulls = empty_pulls.saturating_add(1);
                    idle_pause(self.poll_interval, empty_pulls)
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    self.count_bus_error();
                    if errors == 1 || errors.is_power_of_two() {
                        tracing::warn!(target: "lockstep::bridge", "consumer {}: pull: {e}", self.id);
                    }
                    backoff(self.poll_interval, Duration::from_secs(5), errors)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(pause) => {}
                // Another consumer found work: pull now, from the start of
                // the backoff.
                _ = self.work.notified(), if errors == 0 => empty_pulls = 0,
            }
        }
    }

    /// Pays one pulled batch and acknowledges it; returns how many of its
    /// instructions were taken (paid, absorbed or refused with a receipt),
    /// as opposed to set aside. An error means the batch was not committed
    /// and is not acknowledged.
    async fn handle(&self, pulled: Batch) -> Result<usize, LedgerError> {
        let started = std::time::Instant::now();
        let mut messages = Vec::with_capacity(pulled.deliveries.len());
        for delivery in pulled.deliveries {
            match delivery {
                Delivery::Message(message) => messages.push(message),
                Delivery::Undecodable(raw) => {
                    // Without its fields, its signature cannot be checked:
                    // it is not the event system's word, so no receipt.
                    BridgeMetrics::add(&self.metrics.invalid, 1);
                    let id = raw["eventId"].as_str().map(shown_id);
                    let why = serde_json::from_value::<BusMessage>(raw)
                        .err()
                        .map(|e| receipt_reason(&e.to_string()))
                        .unwrap_or_default();
                    tracing::warn!(target: "lockstep::bridge", "undecodable bus message (event {}) set aside, not paid: {why}", id.as_deref().unwrap_or("unknown"));
                }
            }
        }
        let signatures = BusMessage::verify_all(&messages, &self.event_system_key);
        let mut valid = Vec::with_capacity(messages.len());
        let mut rejected: Vec<(String, String)> = Vec::new();
        let mut unsigned = 0;
        for (message, signed) in messages.into_iter().zip(signatures) {
            if let Err(why) = signed {
                unsigned += 1;
                tracing::warn!(target: "lockstep::bridge", "event {}: instruction set aside, not paid: {why}", shown_id(&message.event_id));
                continue;
            }
            match Instruction::parse(&message.event_id, &message.payment) {
                Ok(instruction) => valid.push(instruction),
                Err(e) => rejected.push((message.event_id, e.to_string())),
            }
        }
        BridgeMetrics::add(&self.metrics.unsigned, unsigned);
        let taken = valid.len() + rejected.len();
        let mut paid = 0;
        if !valid.is_empty() {
            let ledger = self.ledger.clone();
            let now = now_ms();
            let instructions = valid.clone();
            let outcomes =
                tokio::task::spawn_blocking(move || ledger.pay_batch(&instructions, now))
                    .await
                    .map_err(|e| LedgerError::Corrupt(format!("ledger task failed: {e}")))??;
            lockstep_service::metrics::observe_since(&self.metrics.payment_seconds, started);
            let (mut duplicates, mut failures) = (0, 0);
            for (instruction, outcome) in valid.iter().zip(outcomes) {
                match outcome {
                    Ok(PayOutcome::Paid { .. }) => paid += 1,
                    Ok(PayOutcome::AlreadyPaid { .. }) => duplicates += 1,
                    Ok(PayOutcome::Refused { refusal, .. }) => {
                        failures += 1;
                        // Counted; the log summary reports them.
                        tracing::debug!(target: "lockstep::bridge", "event {:?} not paid: {refusal}", instruction.event_id);
                    }
                    Err(e) => rejected.push((instruction.event_id.clone(), e.to_string())),
                }
            }
            #[cfg(feature = "test-hooks")]
            if self.crash_after_commit && paid > 0 {
                eprintln!(
                    "{}: aborting after the commit (test hook)",
                    crate::CRASH_AFTER_COMMIT_ENV
                );
                std::process::abort();
            }
            BridgeMetrics::add(&self.metrics.payments, paid);
            BridgeMetrics::add(&self.metrics.duplicates, duplicates);
            BridgeMetrics::add(&self.metrics.failures, failures);
            BridgeMetrics::add(&self.metrics.batches, 1);
            self.wake_poster.notify_one();
        }
        if !rejected.is_empty() {
            self.report_rejected(rejected).await;
        }
        if let Err(e) = self.source.ack(&pulled.ack).await {
            // The payments are committed: a re-delivery is absorbed.
            self.count_bus_error();
            tracing::warn!(target: "lockstep::bridge", "ack of {:?}: {e}; the batch will be re-delivered and absorbed", pulled.ack);
        }
        self.metrics.bump();
        Ok(taken)
    }

    /// Counts a failed pull or ack: the broker's, or the event system's.
    fn count_bus_error(&self) {
        let counter = if self.source.is_broker() {
            &self.metrics.bus_errors
        } else {
            &self.metrics.event_system_errors
        };
        BridgeMetrics::add(counter, 1);
    }

    /// Instructions that wrote nothing: logged, counted, and reported with
    /// a failure receipt posted directly (best effort: every re-delivery
    /// reports again).
    async fn report_rejected(&self, rejected: Vec<(String, String)>) {
        BridgeMetrics::add(&self.metrics.invalid, rejected.len() as u64);
        let mut receipts = Vec::with_capacity(rejected.len());
        for (id, why) in rejected {
            tracing::error!(target: "lockstep::bridge", "event {id:?}: instruction refused, nothing written: {why}");
            if check_event_id(&id).is_ok() {
                receipts.push(PaymentReceipt::sign_failure(
                    &self.key,
                    &id,
                    REJECTED_REFERENCE,
                    &receipt_reason(&why),
                ));
            }
        }
        for chunk in receipts.chunks(MAX_BATCH_CALLS) {
            if let Err(e) = self.client.post_receipts(chunk).await {
                BridgeMetrics::add(&self.metrics.event_system_errors, 1);
                tracing::warn!(target: "lockstep::bridge", "failure receipts not posted: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bus_is_polled_less_and_less_down_to_once_a_second() {
        let poll = Duration::from_millis(200);
        let pauses: Vec<u128> = (1..=6).map(|n| idle_pause(poll, n).as_millis()).collect();
        assert_eq!(pauses, [200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(idle_pause(poll, u32::MAX), IDLE_POLL_CAP);
        // Never shorter than the poll interval, even past the cap.
        let slow = Duration::from_secs(3);
        assert_eq!(idle_pause(slow, 1), slow);
        assert_eq!(idle_pause(slow, 9), slow);
        // So an idle consumer pulls at most this often after its first
        // few empty pulls, whatever the poll interval is set to.
        let quick = Duration::from_millis(1);
        let total: Duration = (1..=60).map(|n| idle_pause(quick, n)).sum();
        assert!(total >= Duration::from_secs(50), "{total:?}");
    }

    #[test]
    fn receipt_reasons_are_printable_and_bounded() {
        assert_eq!(receipt_reason("no\nfunds"), "no?funds");
        assert_eq!(receipt_reason(""), "refused");
        let long = "x".repeat(MAX_FAILURE_REASON * 2);
        assert_eq!(receipt_reason(&long).len(), MAX_FAILURE_REASON);
    }
}
