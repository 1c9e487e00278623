//! The receipt outbox: the `receipt_outbox` table (created with the rest of
//! the schema in `sqlite.rs`) is the queue of receipts the bridge still has
//! to deliver to the event system, one row per event. The payment code
//! queues a receipt with [`queue_receipt`]; the receipt poster reads the due
//! ones, removes those delivered and schedules the rest again, through the
//! [`PaymentLedger`](super::PaymentLedger) methods that call the functions
//! here.
//!
//! ## Invariants
//!
//! - **Written with its payment**: a receipt is queued only inside the
//!   transaction that wrote the payment's outcome (or found it paid), so no
//!   receipt can leave for an outcome that was not committed, and every
//!   committed outcome has its receipt queued until it is delivered.
//! - **One row per event, the latest outcome**: queueing again replaces the
//!   row (reference, outcome, no attempts, due now), so a failure receipt
//!   still waiting is superseded by the payment's once it is made.
//! - **Only the receipt that was read is touched**: delivered and retried
//!   receipts are matched on event id, reference *and* outcome
//!   (`failure IS ?3`), so a poster holding a receipt that was replaced
//!   meanwhile can neither remove nor postpone its replacement.
//! - Due receipts are read by time, earliest first, through the
//!   `receipt_outbox_by_due` index.

use rusqlite::{params, Connection, TransactionBehavior};

pub(super) const QUEUE_RECEIPT: &str =
    "INSERT INTO receipt_outbox (event_id, reference, failure, attempts, next_ms) \
     VALUES (?1, ?2, ?3, 0, ?4) \
     ON CONFLICT(event_id) DO UPDATE SET reference = ?2, failure = ?3, attempts = 0, next_ms = ?4";
pub(super) const DUE_RECEIPTS: &str =
    "SELECT event_id, reference, failure, attempts FROM receipt_outbox \
     WHERE next_ms <= ?1 ORDER BY next_ms LIMIT ?2";
pub(super) const NEXT_DUE: &str = "SELECT min(next_ms) FROM receipt_outbox";
pub(super) const DELETE_DELIVERED: &str =
    "DELETE FROM receipt_outbox WHERE event_id = ?1 AND reference = ?2 AND failure IS ?3";
pub(super) const RESCHEDULE: &str =
    "UPDATE receipt_outbox SET attempts = attempts + 1, next_ms = ?4 \
     WHERE event_id = ?1 AND reference = ?2 AND failure IS ?3";

use super::{to_i64, to_u64, LedgerResult};

/// A receipt waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxReceipt {
    /// The event.
    pub event_id: String,
    /// The payment reference.
    pub reference: String,
    /// None: paid; some: the failure reason.
    pub failure: Option<String>,
    /// Delivery attempts so far.
    pub attempts: u32,
}

/// Queues (or replaces) the receipt for an event, due at once; called
/// inside the transaction that wrote its payment's outcome.
pub(super) fn queue_receipt(
    tx: &Connection,
    event_id: &str,
    reference: &str,
    failure: Option<&str>,
    now_ms: u64,
) -> LedgerResult<()> {
    tx.prepare_cached(QUEUE_RECEIPT)?.execute(params![
        event_id,
        reference,
        failure,
        to_i64(now_ms)
    ])?;
    Ok(())
}

/// See [`PaymentLedger::due_receipts`](super::PaymentLedger::due_receipts).
pub(super) fn due_receipts(
    conn: &Connection,
    now_ms: u64,
    limit: usize,
) -> LedgerResult<Vec<OutboxReceipt>> {
    let mut statement = conn.prepare_cached(DUE_RECEIPTS)?;
    let rows = statement.query_map(
        params![to_i64(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok(OutboxReceipt {
                event_id: row.get(0)?,
                reference: row.get(1)?,
                failure: row.get(2)?,
                attempts: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// See [`PaymentLedger::next_receipt_due`](super::PaymentLedger::next_receipt_due).
pub(super) fn next_receipt_due(conn: &Connection) -> LedgerResult<Option<u64>> {
    let next: Option<i64> = conn
        .prepare_cached(NEXT_DUE)?
        .query_row([], |row| row.get(0))?;
    Ok(next.map(to_u64))
}

/// See [`PaymentLedger::receipts_delivered`](super::PaymentLedger::receipts_delivered):
/// one transaction.
pub(super) fn receipts_delivered(
    conn: &mut Connection,
    delivered: &[OutboxReceipt],
) -> LedgerResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for receipt in delivered {
        tx.prepare_cached(DELETE_DELIVERED)?.execute(params![
            receipt.event_id,
            receipt.reference,
            receipt.failure
        ])?;
    }
    tx.commit()?;
    Ok(())
}

/// See [`PaymentLedger::receipts_retry`](super::PaymentLedger::receipts_retry):
/// one transaction.
pub(super) fn receipts_retry(
    conn: &mut Connection,
    retries: &[(OutboxReceipt, u64)],
) -> LedgerResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (receipt, next_ms) in retries {
        tx.prepare_cached(RESCHEDULE)?.execute(params![
            receipt.event_id,
            receipt.reference,
            receipt.failure,
            to_i64(*next_ms)
        ])?;
    }
    tx.commit()?;
    Ok(())
}

/// See [`PaymentLedger::receipt_backlog`](super::PaymentLedger::receipt_backlog):
/// counts the outbox's rows, which are only the receipts not yet
/// delivered (a backlog, not the history).
pub(super) fn receipt_backlog(conn: &Connection) -> LedgerResult<u64> {
    let count: i64 = conn.query_row("SELECT count(*) FROM receipt_outbox", [], |row| row.get(0))?;
    Ok(to_u64(count))
}
