//! The account bridge's ledger as the audit reads it: every account,
//! payment, deposit and posting, through the bridge's own read-only API
//! (never its SQL), from a SQLite file or a PostgreSQL database opened
//! read-only, in one read transaction.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context};
use lockstep_bridge::ledger::{
    Account, Deposit, LedgerLocation, PaymentRecord, PaymentStatus, Posting,
};

/// What the audit needs from the ledger, read at one moment (one SQLite
/// read transaction: the parts are consistent with each other even while
/// the bridge writes).
#[derive(Debug)]
pub struct LedgerSnapshot {
    /// Every account, system accounts included.
    pub accounts: Vec<Account>,
    /// Every payment row (paid or failed).
    pub payments: Vec<PaymentRecord>,
    /// Every deposit.
    pub deposits: Vec<Deposit>,
    /// Every posting (one leg of a payment's or a deposit's entry).
    pub postings: Vec<Posting>,
    /// Per currency, the sum of every balance, system accounts included.
    pub totals: Vec<(String, i128)>,
}

/// Whether a payment row moved money.
pub fn is_paid(record: &PaymentRecord) -> bool {
    record.status == PaymentStatus::Paid
}

/// Reads the ledger at `location` (read-only; the bridge may keep
/// writing), on a blocking thread: the ledgers' clients block.
pub async fn read(location: &LedgerLocation) -> anyhow::Result<LedgerSnapshot> {
    let location = location.clone();
    tokio::task::spawn_blocking(move || read_blocking(&location))
        .await
        .context("the ledger reader failed")?
}

fn read_blocking(location: &LedgerLocation) -> anyhow::Result<LedgerSnapshot> {
    let ledger = location
        .open_read_only()
        .with_context(|| format!("cannot open the ledger {location}"))?;
    let contents = ledger.contents().context("reading the ledger")?;
    let mut totals = BTreeMap::<String, i128>::new();
    for account in &contents.accounts {
        let total = totals.entry(account.currency.clone()).or_insert(0);
        *total = total
            .checked_add(account.balance)
            .ok_or_else(|| anyhow!("the ledger's {} balances overflow", account.currency))?;
    }
    Ok(LedgerSnapshot {
        accounts: contents.accounts,
        payments: contents.payments,
        deposits: contents.deposits,
        postings: contents.postings,
        totals: totals.into_iter().collect(),
    })
}
