//! The receipt poster: delivers the ledger's receipt outbox to
//! `event_postReceipts` until each receipt is acknowledged.
//!
//! Receipts are signed when sent (ed25519 signatures are deterministic, so
//! a re-sent receipt is byte-identical and the event system treats it as
//! the same one). They go out in `event_postReceipts` calls of up to 500, several
//! batches in flight. A receipt counts as acknowledged when the event
//! system accepts it, or refuses it because the event is already Completed
//! (an earlier copy got there first). A call refused as a whole is tried
//! again receipt by receipt, so one receipt the event system cannot take
//! does not hold back the others; anything else is retried with capped
//! exponential backoff, for as long as it takes. Receipts that are due are
//! found in the outbox by time, so a restart resumes where the last run
//! stopped.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lockstep_api::event::PaymentReceipt;
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::error::NOT_AWAITING_RECEIPT;
use lockstep_runtime::Keypair;
use lockstep_service::backoff;
use tokio::sync::{watch, Notify};

use crate::client::{ClientError, EventSystemClient, MAX_BATCH_CALLS};
use crate::ledger::{LedgerResult, OutboxReceipt, PaymentLedger};
use crate::metrics::BridgeMetrics;
use crate::now_ms;

/// See the module docs.
#[derive(Debug)]
pub struct ReceiptPoster {
    /// The event system.
    pub client: EventSystemClient,
    /// The ledger (its outbox).
    pub ledger: Arc<dyn PaymentLedger>,
    /// The bridge key.
    pub key: Arc<Keypair>,
    /// The metrics.
    pub metrics: Arc<BridgeMetrics>,
    /// Woken by consumers after a commit.
    pub wake: Arc<Notify>,
    /// First retry delay.
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_cap: Duration,
    /// Batches in flight.
    pub concurrency: usize,
    /// Longest sleep without looking at the outbox (another process, e.g.
    /// a second bridge on the same file, may have written to it).
    pub idle_check: Duration,
}

/// Signs an outbox entry.
pub fn sign(key: &Keypair, receipt: &OutboxReceipt) -> PaymentReceipt {
    match &receipt.failure {
        None => PaymentReceipt::sign(key, &receipt.event_id, &receipt.reference),
        Some(reason) => PaymentReceipt::sign_failure(
            key,
            &receipt.event_id,
            &receipt.reference,
            &crate::consumer::receipt_reason(reason),
        ),
    }
}

async fn blocking<T: Send + 'static>(
    ledger: &Arc<dyn PaymentLedger>,
    f: impl FnOnce(&dyn PaymentLedger) -> LedgerResult<T> + Send + 'static,
) -> LedgerResult<T> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || f(ledger.as_ref()))
        .await
        .map_err(|e| crate::ledger::LedgerError::Corrupt(format!("ledger task failed: {e}")))?
}

impl ReceiptPoster {
    /// Delivers receipts until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut errors = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = match self.round().await {
                Ok(true) => {
                    errors = 0;
                    continue;
                }
                Ok(false) => {
                    errors = 0;
                    match blocking(&self.ledger, |l| l.next_receipt_due()).await {
                        Ok(Some(due)) => {
                            Duration::from_millis(due.saturating_sub(now_ms())).min(self.idle_check)
                        }
                        _ => self.idle_check,
                    }
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    tracing::error!(target: "lockstep::bridge", "receipt outbox: {e}");
                    backoff(self.retry_base, self.retry_cap, errors)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Posts every receipt due now; whether there were any.
    async fn round(&self) -> LedgerResult<bool> {
        let limit = MAX_BATCH_CALLS * self.concurrency;
        let due = blocking(&self.ledger, move |l| l.due_receipts(now_ms(), limit)).await?;
        if due.is_empty() {
            let backlog = blocking(&self.ledger, |l| l.receipt_backlog()).await?;
            self.metrics.set_backlog(backlog);
            return Ok(false);
        }
        let chunks: Vec<Vec<OutboxReceipt>> =
            due.chunks(MAX_BATCH_CALLS).map(<[_]>::to_vec).collect();
        let results: Vec<(Vec<OutboxReceipt>, Vec<OutboxReceipt>)> =
            futures::stream::iter(chunks.into_iter().map(|chunk| self.post_chunk(chunk)))
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut delivered = Vec::new();
        let mut retries = Vec::new();
        let now = now_ms();
        for (ok, failed) in results {
            delivered.extend(ok);
            for receipt in failed {
                let delay = backoff(self.retry_base, self.retry_cap, receipt.attempts);
                let next = now.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                retries.push((receipt, next));
            }
        }
        BridgeMetrics::add(&self.metrics.receipts_posted, delivered.len() as u64);
        BridgeMetrics::add(&self.metrics.receipt_retries, retries.len() as u64);
        let any_delivered = !delivered.is_empty();
        blocking(&self.ledger, move |l| {
            l.receipts_delivered(&delivered)?;
            l.receipts_retry(&retries)?;
            l.receipt_backlog()
        })
        .await
        .map(|backlog| self.metrics.set_backlog(backlog))?;
        self.metrics.bump();
        // Nothing delivered: everything due was rescheduled; wait for it.
        Ok(any_delivered)
    }

    /// Posts one batch; returns (acknowledged, to retry).
    async fn post_chunk(
        &self,
        chunk: Vec<OutboxReceipt>,
    ) -> (Vec<OutboxReceipt>, Vec<OutboxReceipt>) {
        let receipts: Vec<PaymentReceipt> = chunk.iter().map(|r| sign(&self.key, r)).collect();
        let answers = match self.client.post_receipts(&receipts).await {
            Ok(answers) => answers,
            // The event system refused the whole call (a store error on one
            // event fails the batch): post these one by one, so that one
            // receipt it cannot take does not hold back the others.
            Err(e @ ClientError::Call { .. }) if receipts.len() > 1 => {
                tracing::warn!(target: "lockstep::bridge", "posting {} receipts: {e}; posting them one by one", chunk.len());
                let mut answers = Vec::with_capacity(receipts.len());
                for receipt in &receipts {
                    answers.push(self.client.post_receipt(receipt).await);
                }
                answers
            }
            Err(e) => {
                BridgeMetrics::add(&self.metrics.event_system_errors, 1);
                tracing::warn!(target: "lockstep::bridge", "posting {} receipts: {e}", chunk.len());
                return (Vec::new(), chunk);
            }
        };
        let mut delivered = Vec::new();
        let mut retry = Vec::new();
        for (receipt, answer) in chunk.into_iter().zip(answers) {
            match answer {
                Ok(_) => delivered.push(receipt),
                // The event is past PendingAccount: an earlier copy of this
                // receipt completed it (the refusal says so in its data;
                // an event system that does not say is asked).
                Err(ClientError::Call {
                    code: NOT_AWAITING_RECEIPT,
                    state,
                    ..
                }) if match state {
                    Some(state) => state == State::Completed,
                    None => self.completed(&receipt.event_id).await,
                } =>
                {
                    delivered.push(receipt)
                }
                Err(e) => {
                    BridgeMetrics::add(&self.metrics.event_system_errors, 1);
                    // Counted as a retry; the log summary reports them.
                    tracing::debug!(target: "lockstep::bridge", "receipt for {:?} (attempt {}): {e}", receipt.event_id, receipt.attempts + 1);
                    retry.push(receipt);
                }
            }
        }
        (delivered, retry)
    }

    async fn completed(&self, event_id: &str) -> bool {
        matches!(
            self.client.event_state(event_id).await,
            Ok(State::Completed)
        )
    }
}
