//! The account bridge's ledger as the audit reads it: every payment and the
//! per-currency totals, through the bridge's own read-only API (never its
//! SQL), from a file opened read-only.

use std::path::Path;

use anyhow::Context;
use lockstep_bridge::ledger::{PaymentLedger, PaymentRecord, PaymentStatus, SqliteLedger};

/// What the audit needs from the ledger, read at one moment.
#[derive(Debug)]
pub struct LedgerSnapshot {
    /// Every payment row (paid or failed).
    pub payments: Vec<PaymentRecord>,
    /// Per currency, the sum of every balance, system accounts included.
    pub totals: Vec<(String, i128)>,
}

/// Whether a payment row moved money.
pub fn is_paid(record: &PaymentRecord) -> bool {
    record.status == PaymentStatus::Paid
}

/// Reads the ledger at `path` (read-only; the bridge may keep writing).
pub fn read(path: &Path) -> anyhow::Result<LedgerSnapshot> {
    let ledger = SqliteLedger::open_read_only(path)
        .with_context(|| format!("cannot open the ledger {}", path.display()))?;
    // Totals first: a payment made after this read shows up in `payments`
    // but moved money after `totals`; both sides balance anyway (double
    // entry), so the order only matters for the report.
    let totals = ledger.totals().context("ledger totals")?;
    let payments = ledger.payments().context("ledger payments")?;
    Ok(LedgerSnapshot { payments, totals })
}
