//! The SQLite ledger, [`SqliteLedger`]: the schema, opening a file, paying
//! a batch, deposits and reads. The receipt outbox's rows and operations
//! are in `outbox.rs`; this file calls them inside its own transactions.
//!
//! ## Schema
//!
//! | table | key | holds |
//! |---|---|---|
//! | `accounts` | `id` | currency, balance, overdraft limit, `system` flag |
//! | `payments` | `seq`, `event_id` UNIQUE | payer, payee, amount, currency, status (`paid`/`failed`), reference `pay-<seq>`, last failure, attempts, timestamps |
//! | `deposits` | `seq` | account, amount (reference `dep-<seq>`) |
//! | `postings` | `id` | one leg of an entry: `entry` (a payment or deposit reference), account, signed amount (debit < 0 < credit), currency |
//! | `receipt_outbox` | `event_id` | the receipt still to deliver: outcome, reference, reason, attempts, next try |
//!
//! ## Invariants
//!
//! - **All or nothing**: every write is one `BEGIN IMMEDIATE` transaction.
//!   In [`PaymentLedger::pay_batch`] each payment runs under its own
//!   savepoint: an instruction that ends in an error (invalid, conflicting,
//!   overflowing) is rolled back to it and leaves no trace, while a refusal
//!   that may heal is an outcome and is recorded; a database error drops
//!   the whole transaction, and nothing of the batch is written.
//! - **The schema is checked before use**: `PRAGMA user_version` must be
//!   this build's version; an empty file gets the schema, a file with other
//!   tables is refused. The table `CHECK`s back the rules up (no customer
//!   balance past its overdraft, positive amounts, no zero posting, status
//!   `paid` or `failed`).
//! - **A payment's reference is `pay-<seq>`** of its own row, fixed when the
//!   row is first written and kept through every later attempt.
//! - A ledger opened read-only refuses every write before touching the
//!   file.
//!
//! ## Durability
//!
//! WAL journal with `synchronous = FULL` by default: a commit is fsynced
//! before it returns, so a payment is on disk before the bus message is
//! acknowledged and before its receipt can leave — even across power loss.
//! (`NORMAL` would survive `kill -9` too, since committed WAL frames are
//! in the OS's hands, but could lose the last commits on power loss, after
//! their receipts were sent: then a Completed event would have no payment.)
//! [`Durability::Normal`] is there for tests and benchmarks that want it.
//! Writers take the lock up front (`BEGIN IMMEDIATE`) and wait for each
//! other up to a busy timeout, so several processes (the bridge, operators'
//! `ledger deposit`) can share one file.
//!
//! ## Cost flat in history
//!
//! A payment, a re-delivery and a round of receipts cost what their own
//! rows cost, never a pass over the payments ever made: every statement
//! they run (`HOT_STATEMENTS`) finds its rows through a key or an index, a
//! B-tree search (a test holds each one's query plan to that: no table
//! scan, no sort), and the receipt outbox keeps only receipts not yet
//! delivered. The WAL is
//! checkpointed every `WAL_AUTOCHECKPOINT_PAGES` pages and truncated to
//! `JOURNAL_SIZE_LIMIT` after a checkpoint, so a WAL that grew while a
//! long reader (an audit) held it back does not keep its peak size. Deleted
//! outbox rows leave free pages that later inserts reuse, so no `VACUUM` is
//! needed. What reads the whole history is for operators and audits only:
//! `payments`, `contents`, `posting_totals`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::outbox::{self, queue_receipt};
use super::{
    check_deposit_terms, check_open_terms, db_amount, decide, external_account, to_i64, to_u64,
    Account, Decision, Deposit, Instruction, LedgerContents, LedgerError, LedgerResult,
    OutboxReceipt, PayOutcome, PaymentLedger, PaymentRecord, PaymentStatus, Posting,
};

/// The columns [`payment_row`] reads, in its order.
macro_rules! payment_columns {
    () => {
        "event_id, payer, payee, amount, currency, status, reference, \
         created_ms, updated_ms, failure, attempts"
    };
}

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The schema this code reads and writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// WAL pages that start an automatic checkpoint (`PRAGMA
/// wal_autocheckpoint`, SQLite's default made explicit): the WAL, and what
/// a read must look through in it, stays bounded however many commits
/// there were.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;
/// Bytes the WAL file is truncated to after a checkpoint (`PRAGMA
/// journal_size_limit`; SQLite's default keeps the file at its largest
/// size ever).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How hard commits hold on to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: every commit fsynced (the default).
    Full,
    /// `synchronous = NORMAL`: survives a process crash, not power loss.
    Normal,
}

/// The SQLite ledger: one connection, used by one thread at a time.
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Mutex<Connection>,
    read_only: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id         TEXT PRIMARY KEY,
    currency   TEXT NOT NULL,
    balance    INTEGER NOT NULL DEFAULT 0,
    overdraft  INTEGER NOT NULL DEFAULT 0 CHECK (overdraft >= 0),
    system     INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    CHECK (system = 1 OR balance >= -overdraft)
);
CREATE INDEX IF NOT EXISTS accounts_by_currency ON accounts(currency, system);
CREATE TABLE IF NOT EXISTS payments (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    payer      TEXT NOT NULL,
    payee      TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('paid', 'failed')),
    reference  TEXT NOT NULL UNIQUE,
    failure    TEXT,
    attempts   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT NOT NULL REFERENCES accounts(id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    entry      TEXT NOT NULL,
    account    TEXT NOT NULL REFERENCES accounts(id),
    amount     INTEGER NOT NULL CHECK (amount <> 0),
    currency   TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_by_account ON postings(account);
CREATE TABLE IF NOT EXISTS receipt_outbox (
    event_id   TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    failure    TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipt_outbox_by_due ON receipt_outbox(next_ms);
";

impl SqliteLedger {
    /// Opens (creating if missing) a ledger with full durability.
    pub fn open(path: &Path) -> LedgerResult<SqliteLedger> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if missing) a ledger.
    pub fn open_with(path: &Path, durability: Durability) -> LedgerResult<SqliteLedger> {
        let open_error = |reason: String| LedgerError::Open {
            path: path.display().to_string(),
            reason,
        };
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| open_error(format!("not a usable SQLite database: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!("cannot use WAL (journal mode {mode})")));
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        match version {
            0 => {
                let has_tables: i64 = conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                    [],
                    |row| row.get(0),
                )?;
                if has_tables > 0 {
                    return Err(open_error(
                        "holds tables but is not a Lockstep ledger".into(),
                    ));
                }
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(open_error(format!(
                    "ledger schema version {other}, this build reads {SCHEMA_VERSION}"
                )))
            }
        }
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
            read_only: false,
        })
    }

    /// Opens an existing ledger for reading only (audits). Writes fail.
    pub fn open_read_only(path: &Path) -> LedgerResult<SqliteLedger> {
        let open_error = |reason: String| LedgerError::Open {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(open_error("no ledger here".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| open_error(format!("not a usable SQLite database: {e}")))?;
        if version != SCHEMA_VERSION {
            return Err(open_error(format!(
                "not a Lockstep ledger (schema version {version})"
            )));
        }
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
            read_only: true,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Transactions roll back when dropped, so a panic while holding the
        // lock leaves nothing half-written: a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writable(&self) -> LedgerResult<()> {
        if self.read_only {
            return Err(LedgerError::Open {
                path: "ledger".into(),
                reason: "opened read-only".into(),
            });
        }
        Ok(())
    }

    /// The whole ledger in one read transaction (for audits: the postings
    /// of every payment and deposit against the balances). Works on a
    /// read-only ledger; writers are not blocked (WAL), and what they
    /// commit meanwhile is not seen.
    pub fn contents(&self) -> LedgerResult<LedgerContents> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let accounts = all_accounts(&tx)?;
        let payments = all_payments(&tx)?;
        let deposits = tx
            .prepare("SELECT seq, account, amount FROM deposits ORDER BY seq")?
            .query_map([], |row| {
                Ok(Deposit {
                    reference: format!("dep-{}", row.get::<_, i64>(0)?),
                    account: row.get(1)?,
                    amount: i128::from(row.get::<_, i64>(2)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let postings = tx
            .prepare("SELECT id, entry, account, amount, currency FROM postings ORDER BY id")?
            .query_map([], |row| {
                Ok(Posting {
                    id: to_u64(row.get(0)?),
                    entry: row.get(1)?,
                    account: row.get(2)?,
                    amount: i128::from(row.get::<_, i64>(3)?),
                    currency: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(LedgerContents {
            accounts,
            payments,
            deposits,
            postings,
        })
    }
}

fn all_accounts(conn: &Connection) -> LedgerResult<Vec<Account>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, currency, balance, overdraft, system FROM accounts ORDER BY id",
    )?;
    let rows = statement.query_map([], account_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn all_payments(conn: &Connection) -> LedgerResult<Vec<PaymentRecord>> {
    let mut statement = conn.prepare_cached(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments ORDER BY seq"
    ))?;
    let rows = statement.query_map([], payment_row)?;
    rows.map(|row| finish_payment(row?)).collect()
}

fn read_account(tx: &Connection, id: &str) -> LedgerResult<Option<Account>> {
    Ok(tx
        .prepare_cached(SELECT_ACCOUNT)?
        .query_row([id], account_row)
        .optional()?)
}

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        currency: row.get(1)?,
        balance: i128::from(row.get::<_, i64>(2)?),
        overdraft: i128::from(row.get::<_, i64>(3)?),
        system: row.get::<_, i64>(4)? != 0,
    })
}

const SELECT_PAYMENT: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE event_id = ?1"
);
const SELECT_ACCOUNT: &str =
    "SELECT id, currency, balance, overdraft, system FROM accounts WHERE id = ?1";
const UPDATE_BALANCE: &str = "UPDATE accounts SET balance = ?2 WHERE id = ?1";
const INSERT_POSTING: &str = "INSERT INTO postings (entry, account, amount, currency, created_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
const ENSURE_EXTERNAL: &str =
    "INSERT OR IGNORE INTO accounts (id, currency, balance, overdraft, system, created_ms) \
     VALUES (?1, ?2, 0, 0, 1, ?3)";
const CURRENCY_HELD: &str =
    "SELECT EXISTS (SELECT 1 FROM accounts WHERE currency = ?1 AND system = 0)";
const RETRY_PAYMENT: &str = "UPDATE payments SET status = ?2, failure = coalesce(?3, failure), \
     attempts = attempts + 1, updated_ms = ?4 WHERE event_id = ?1";
const INSERT_PAYMENT: &str =
    "INSERT INTO payments (event_id, payer, payee, amount, currency, status, \
     reference, failure, attempts, created_ms, updated_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, '?' || ?1, ?7, 1, ?8, ?8)";
const NAME_PAYMENT: &str = "UPDATE payments SET reference = ?2 WHERE event_id = ?1";
const INSERT_DEPOSIT: &str =
    "INSERT INTO deposits (account, amount, created_ms) VALUES (?1, ?2, ?3)";

/// Every statement a payment, a deposit or a round of receipt posts runs:
/// each must find its rows by key or index, never by scanning a table that
/// grows with the payments ever made (a test checks their query plans).
#[cfg(test)]
const HOT_STATEMENTS: [&str; 15] = [
    SELECT_PAYMENT,
    SELECT_ACCOUNT,
    UPDATE_BALANCE,
    INSERT_POSTING,
    ENSURE_EXTERNAL,
    CURRENCY_HELD,
    RETRY_PAYMENT,
    INSERT_PAYMENT,
    NAME_PAYMENT,
    INSERT_DEPOSIT,
    outbox::QUEUE_RECEIPT,
    outbox::DUE_RECEIPTS,
    outbox::NEXT_DUE,
    outbox::DELETE_DELIVERED,
    outbox::RESCHEDULE,
];

fn payment_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(PaymentRecord, String)> {
    let status: String = row.get(5)?;
    Ok((
        PaymentRecord {
            event_id: row.get(0)?,
            payer: row.get(1)?,
            payee: row.get(2)?,
            amount: i128::from(row.get::<_, i64>(3)?),
            currency: row.get(4)?,
            status: PaymentStatus::Paid,
            reference: row.get(6)?,
            created_ms: to_u64(row.get(7)?),
            updated_ms: to_u64(row.get(8)?),
            failure: row.get(9)?,
            attempts: u32::try_from(row.get::<_, i64>(10)?).unwrap_or(u32::MAX),
        },
        status,
    ))
}

fn finish_payment((mut record, status): (PaymentRecord, String)) -> LedgerResult<PaymentRecord> {
    record.status = PaymentStatus::from_column(&status)?;
    Ok(record)
}

/// Adds `delta` to an account's balance, checked.
fn add_balance(tx: &Connection, account: &Account, delta: i128) -> LedgerResult<i128> {
    let new = account
        .balance
        .checked_add(delta)
        .filter(|b| i64::try_from(*b).is_ok())
        .ok_or_else(|| LedgerError::Overflow(account.id.clone()))?;
    tx.prepare_cached(UPDATE_BALANCE)?
        .execute(params![account.id, db_amount(new)?])?;
    Ok(new)
}

fn post(
    tx: &Connection,
    entry: &str,
    account: &str,
    amount: i128,
    currency: &str,
    now_ms: u64,
) -> LedgerResult<()> {
    tx.prepare_cached(INSERT_POSTING)?.execute(params![
        entry,
        account,
        db_amount(amount)?,
        currency,
        to_i64(now_ms)
    ])?;
    Ok(())
}

/// Moves `amount` between two accounts of one currency as one entry.
fn transfer(
    tx: &Connection,
    entry: &str,
    from: &Account,
    to: &Account,
    amount: i128,
    now_ms: u64,
) -> LedgerResult<()> {
    add_balance(tx, from, -amount)?;
    add_balance(tx, to, amount)?;
    post(tx, entry, &from.id, -amount, &from.currency, now_ms)?;
    post(tx, entry, &to.id, amount, &to.currency, now_ms)
}

fn ensure_external(tx: &Connection, currency: &str, now_ms: u64) -> LedgerResult<Account> {
    let id = external_account(currency);
    tx.prepare_cached(ENSURE_EXTERNAL)?
        .execute(params![id, currency, to_i64(now_ms)])?;
    read_account(tx, &id)?.ok_or_else(|| LedgerError::Corrupt(format!("{id} vanished")))
}

/// One payment inside the batch transaction (under its own savepoint).
fn pay_one(tx: &Connection, ins: &Instruction, now_ms: u64) -> LedgerResult<PayOutcome> {
    let existing = tx
        .prepare_cached(SELECT_PAYMENT)?
        .query_row([&ins.event_id], payment_row)
        .optional()?
        .map(finish_payment)
        .transpose()?;
    let known_currency: bool = match &existing {
        Some(record) if record.status == PaymentStatus::Paid => true,
        _ => tx
            .prepare_cached(CURRENCY_HELD)?
            .query_row([&ins.currency], |row| row.get(0))?,
    };
    let payer = read_account(tx, &ins.payer)?.filter(|a| !a.system);
    let payee = read_account(tx, &ins.payee)?.filter(|a| !a.system);
    let refusal = match decide(
        ins,
        existing.as_ref(),
        known_currency,
        payer.as_ref(),
        payee.as_ref(),
    )? {
        Decision::AlreadyPaid => {
            let reference = existing
                .map(|record| record.reference)
                .ok_or_else(|| LedgerError::Corrupt("paid without a row".into()))?;
            queue_receipt(tx, &ins.event_id, &reference, None, now_ms)?;
            return Ok(PayOutcome::AlreadyPaid { reference });
        }
        Decision::Pay => None,
        Decision::Refuse(refusal) => Some(refusal),
    };
    let status = if refusal.is_some() {
        PaymentStatus::Failed
    } else {
        PaymentStatus::Paid
    };
    let failure = refusal.as_ref().map(ToString::to_string);
    let reference = match &existing {
        Some(record) => {
            tx.prepare_cached(RETRY_PAYMENT)?.execute(params![
                ins.event_id,
                status.column(),
                failure,
                to_i64(now_ms)
            ])?;
            record.reference.clone()
        }
        None => {
            // The reference is `pay-<seq>`; the row is inserted first with a
            // placeholder unique to this event, then named after its seq.
            tx.prepare_cached(INSERT_PAYMENT)?.execute(params![
                ins.event_id,
                ins.payer,
                ins.payee,
                db_amount(ins.amount)?,
                ins.currency,
                status.column(),
                failure,
                to_i64(now_ms)
            ])?;
            let reference = format!("pay-{}", tx.last_insert_rowid());
            tx.prepare_cached(NAME_PAYMENT)?
                .execute(params![ins.event_id, reference])?;
            reference
        }
    };
    match (refusal, payer, payee) {
        (None, Some(payer), Some(payee)) => {
            transfer(tx, &reference, &payer, &payee, ins.amount, now_ms)?;
            queue_receipt(tx, &ins.event_id, &reference, None, now_ms)?;
            Ok(PayOutcome::Paid { reference })
        }
        (Some(refusal), _, _) => {
            queue_receipt(tx, &ins.event_id, &reference, failure.as_deref(), now_ms)?;
            Ok(PayOutcome::Refused { reference, refusal })
        }
        _ => Err(LedgerError::Corrupt("payment without accounts".into())),
    }
}

impl PaymentLedger for SqliteLedger {
    fn open_accounts(
        &self,
        ids: &[String],
        currency: &str,
        overdraft: i128,
        deposit: i128,
        now_ms: u64,
    ) -> LedgerResult<Vec<bool>> {
        self.writable()?;
        check_open_terms(ids, currency, overdraft, deposit)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut created = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(existing) = read_account(&tx, id)? {
                if existing.currency != currency || existing.overdraft != overdraft {
                    return Err(LedgerError::AccountExists {
                        id: id.clone(),
                        currency: existing.currency,
                        overdraft: existing.overdraft,
                    });
                }
                created.push(false);
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO accounts (id, currency, balance, overdraft, system, created_ms) \
                 VALUES (?1, ?2, 0, ?3, 0, ?4)",
            )?
            .execute(params![id, currency, db_amount(overdraft)?, to_i64(now_ms)])?;
            if deposit > 0 {
                deposit_in(&tx, id, deposit, now_ms)?;
            }
            created.push(true);
        }
        tx.commit()?;
        Ok(created)
    }

    fn deposit(&self, account: &str, amount: i128, now_ms: u64) -> LedgerResult<String> {
        self.writable()?;
        check_deposit_terms(account, amount)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let reference = deposit_in(&tx, account, amount, now_ms)?;
        tx.commit()?;
        Ok(reference)
    }

    fn pay_batch(
        &self,
        batch: &[Instruction],
        now_ms: u64,
    ) -> LedgerResult<Vec<LedgerResult<PayOutcome>>> {
        self.writable()?;
        let mut conn = self.conn();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for instruction in batch {
            let savepoint = tx.savepoint()?;
            match pay_one(&savepoint, instruction, now_ms) {
                Ok(outcome) => {
                    savepoint.commit()?;
                    results.push(Ok(outcome));
                }
                // A database failure fails the whole batch (dropping `tx`
                // rolls it back); a refusal only this payment.
                Err(LedgerError::Db(e)) => return Err(LedgerError::Db(e)),
                Err(e) => {
                    drop(savepoint);
                    results.push(Err(e));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    }

    fn account(&self, id: &str) -> LedgerResult<Option<Account>> {
        read_account(&self.conn(), id)
    }

    fn accounts(&self) -> LedgerResult<Vec<Account>> {
        all_accounts(&self.conn())
    }

    fn payments(&self) -> LedgerResult<Vec<PaymentRecord>> {
        all_payments(&self.conn())
    }

    fn payment(&self, event_id: &str) -> LedgerResult<Option<PaymentRecord>> {
        self.conn()
            .prepare_cached(SELECT_PAYMENT)?
            .query_row([event_id], payment_row)
            .optional()?
            .map(finish_payment)
            .transpose()
    }

    fn totals(&self) -> LedgerResult<Vec<(String, i128)>> {
        sums(&self.conn(), "SELECT currency, balance FROM accounts")
    }

    fn posting_totals(&self) -> LedgerResult<Vec<(String, i128)>> {
        sums(&self.conn(), "SELECT currency, amount FROM postings")
    }

    fn due_receipts(&self, now_ms: u64, limit: usize) -> LedgerResult<Vec<OutboxReceipt>> {
        outbox::due_receipts(&self.conn(), now_ms, limit)
    }

    fn next_receipt_due(&self) -> LedgerResult<Option<u64>> {
        outbox::next_receipt_due(&self.conn())
    }

    fn receipts_delivered(&self, delivered: &[OutboxReceipt]) -> LedgerResult<()> {
        self.writable()?;
        outbox::receipts_delivered(&mut self.conn(), delivered)
    }

    fn receipts_retry(&self, retries: &[(OutboxReceipt, u64)]) -> LedgerResult<()> {
        self.writable()?;
        outbox::receipts_retry(&mut self.conn(), retries)
    }

    fn receipt_backlog(&self) -> LedgerResult<u64> {
        outbox::receipt_backlog(&self.conn())
    }

    fn contents(&self) -> LedgerResult<LedgerContents> {
        SqliteLedger::contents(self)
    }
}

fn deposit_in(tx: &Connection, account: &str, amount: i128, now_ms: u64) -> LedgerResult<String> {
    let to = read_account(tx, account)?
        .filter(|a| !a.system)
        .ok_or_else(|| LedgerError::UnknownAccount(account.to_owned()))?;
    let from = ensure_external(tx, &to.currency, now_ms)?;
    tx.prepare_cached(INSERT_DEPOSIT)?.execute(params![
        account,
        db_amount(amount)?,
        to_i64(now_ms)
    ])?;
    let reference = format!("dep-{}", tx.last_insert_rowid());
    transfer(tx, &reference, &from, &to, amount, now_ms)?;
    Ok(reference)
}

/// Sums `(currency, amount)` rows per currency in i128 (SQLite's own SUM
/// would fail past i64).
fn sums(conn: &Connection, query: &str) -> LedgerResult<Vec<(String, i128)>> {
    let mut totals = std::collections::BTreeMap::<String, i128>::new();
    let mut statement = conn.prepare_cached(query)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let currency: String = row.get(0)?;
        let amount: i64 = row.get(1)?;
        let total = totals.entry(currency).or_insert(0);
        *total = total
            .checked_add(i128::from(amount))
            .ok_or_else(|| LedgerError::Corrupt("sum of balances overflows i128".into()))?;
    }
    Ok(totals.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Refusal;
    use lockstep_api::event::PaymentInstruction;

    fn ledger() -> (tempfile::TempDir, SqliteLedger) {
        let dir = tempfile::tempdir().expect("dir");
        let ledger = SqliteLedger::open(&dir.path().join("ledger.db")).expect("open");
        (dir, ledger)
    }

    fn ins(id: &str, payer: &str, payee: &str, amount: i128) -> Instruction {
        Instruction {
            event_id: id.into(),
            payer: payer.into(),
            payee: payee.into(),
            amount,
            currency: "USD".into(),
        }
    }

    fn open(ledger: &SqliteLedger, ids: &[&str], deposit: i128) {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        ledger
            .open_accounts(&ids, "USD", 0, deposit, 1)
            .expect("open accounts");
    }

    #[test]
    fn hot_statements_search_by_key_or_index_and_never_scan_or_sort() {
        let (_dir, ledger) = ledger();
        let conn = ledger.conn();
        for sql in HOT_STATEMENTS {
            let mut statement = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect(sql);
            let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
            let plan: Vec<String> = statement
                .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
                .expect(sql)
                .collect::<Result<_, _>>()
                .expect(sql);
            // `SCAN CONSTANT ROW` is a SELECT without a table (around an
            // EXISTS): one row, nothing read.
            for step in plan.iter().filter(|step| *step != "SCAN CONSTANT ROW") {
                assert!(
                    !step.starts_with("SCAN") && !step.contains("TEMP B-TREE"),
                    "{sql}\n{plan:?}"
                );
            }
        }
        // The check bites: a lookup by an unindexed column is a scan.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT seq FROM payments WHERE payer = 'x'",
                [],
                |row| row.get(3),
            )
            .expect("plan");
        assert!(plan.starts_with("SCAN"), "{plan}");
    }

    #[test]
    fn the_wal_is_checkpointed_and_truncated_after_a_checkpoint() {
        let (_dir, ledger) = ledger();
        let conn = ledger.conn();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let pages: i64 = conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .expect("wal_autocheckpoint");
        assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
        let limit: i64 = conn
            .pragma_query_value(None, "journal_size_limit", |row| row.get(0))
            .expect("journal_size_limit");
        assert_eq!(limit, JOURNAL_SIZE_LIMIT);
    }

    #[test]
    fn pays_once_and_conserves_money() {
        let (_dir, ledger) = ledger();
        open(&ledger, &["alice", "bob"], 1000);
        let first = ledger.pay(&ins("e1", "alice", "bob", 300), 2).expect("pay");
        let PayOutcome::Paid { reference } = first else {
            panic!("{first:?}")
        };
        let again = ledger
            .pay(&ins("e1", "alice", "bob", 300), 3)
            .expect("again");
        assert_eq!(again, PayOutcome::AlreadyPaid { reference });
        assert_eq!(ledger.account("alice").expect("a").expect("a").balance, 700);
        assert_eq!(ledger.account("bob").expect("b").expect("b").balance, 1300);
        assert_eq!(ledger.totals().expect("totals"), [("USD".to_string(), 0)]);
        assert_eq!(
            ledger.posting_totals().expect("p"),
            [("USD".to_string(), 0)]
        );
        assert_eq!(ledger.payments().expect("payments").len(), 1);
        assert!(matches!(
            ledger.pay(&ins("e1", "alice", "bob", 301), 4),
            Err(LedgerError::Conflict(_))
        ));
    }

    #[test]
    fn refusal_is_recorded_and_heals() {
        let (_dir, ledger) = ledger();
        open(&ledger, &["alice", "bob"], 100);
        let outcome = ledger.pay(&ins("e1", "alice", "bob", 150), 2).expect("pay");
        assert!(matches!(
            outcome,
            PayOutcome::Refused {
                refusal: Refusal::InsufficientFunds { .. },
                ..
            }
        ));
        let record = ledger.payment("e1").expect("get").expect("row");
        assert_eq!(record.status, PaymentStatus::Failed);
        assert_eq!(ledger.account("alice").expect("a").expect("a").balance, 100);
        let due = ledger.due_receipts(10, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert!(due[0].failure.is_some());
        ledger.deposit("alice", 50, 3).expect("deposit");
        let outcome = ledger.pay(&ins("e1", "alice", "bob", 150), 4).expect("pay");
        assert!(matches!(outcome, PayOutcome::Paid { .. }), "{outcome:?}");
        let record = ledger.payment("e1").expect("get").expect("row");
        assert_eq!((record.status, record.attempts), (PaymentStatus::Paid, 2));
        // The failure receipt was replaced by the payment's.
        let due = ledger.due_receipts(10, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].failure, None);
        // Delivering the stale failure does not remove the payment's receipt.
        let stale = OutboxReceipt {
            failure: Some("x".into()),
            ..due[0].clone()
        };
        ledger.receipts_delivered(&[stale]).expect("delivered");
        assert_eq!(ledger.receipt_backlog().expect("backlog"), 1);
        ledger.receipts_delivered(&due).expect("delivered");
        assert_eq!(ledger.receipt_backlog().expect("backlog"), 0);
        assert_eq!(ledger.totals().expect("totals"), [("USD".to_string(), 0)]);
    }

    #[test]
    fn contents_pair_every_entry_with_its_postings() {
        let (dir, ledger) = ledger();
        open(&ledger, &["alice", "bob"], 100);
        ledger.deposit("bob", 20, 2).expect("deposit");
        let paid = ledger.pay(&ins("e1", "alice", "bob", 30), 3).expect("pay");
        let refused = ledger.pay(&ins("e2", "bob", "alice", 500), 4).expect("pay");
        assert!(matches!(paid, PayOutcome::Paid { .. }), "{paid:?}");
        assert!(matches!(refused, PayOutcome::Refused { .. }), "{refused:?}");
        drop(ledger);
        // Read-only, as an audit reads it.
        let read = SqliteLedger::open_read_only(&dir.path().join("ledger.db")).expect("ro");
        let contents = read.contents().expect("contents");
        assert_eq!(contents.accounts, read.accounts().expect("accounts"));
        assert_eq!(contents.payments, read.payments().expect("payments"));
        let deposits: Vec<(&str, &str, i128)> = contents
            .deposits
            .iter()
            .map(|d| (d.reference.as_str(), d.account.as_str(), d.amount))
            .collect();
        assert_eq!(
            deposits,
            [
                ("dep-1", "alice", 100),
                ("dep-2", "bob", 100),
                ("dep-3", "bob", 20)
            ]
        );
        let legs = |entry: &str| -> Vec<(String, i128, String)> {
            contents
                .postings
                .iter()
                .filter(|p| p.entry == entry)
                .map(|p| (p.account.clone(), p.amount, p.currency.clone()))
                .collect()
        };
        let usd = || "USD".to_string();
        assert_eq!(
            legs("dep-3"),
            [
                ("@external/USD".into(), -20, usd()),
                ("bob".into(), 20, usd())
            ]
        );
        let e1 = &contents.payments[0].reference;
        assert_eq!(
            legs(e1),
            [("alice".into(), -30, usd()), ("bob".into(), 30, usd())]
        );
        // The refused payment moved nothing.
        assert_eq!(legs(&contents.payments[1].reference), []);
        assert_eq!(contents.postings.len(), 8);
        assert!(contents.postings.windows(2).all(|w| w[0].id < w[1].id));
        for account in &contents.accounts {
            let sum: i128 = contents
                .postings
                .iter()
                .filter(|p| p.account == account.id)
                .map(|p| p.amount)
                .sum();
            assert_eq!(sum, account.balance, "{}", account.id);
        }
    }

    #[test]
    fn system_accounts_cannot_be_named() {
        let (_dir, ledger) = ledger();
        open(&ledger, &["alice"], 100);
        assert!(matches!(
            ledger.open_accounts(&["@external/USD".into()], "USD", 0, 0, 1),
            Err(LedgerError::Invalid { .. })
        ));
        let payment = PaymentInstruction {
            payer: "@external/USD".into(),
            payee: "alice".into(),
            amount: "5".into(),
            currency: "USD".into(),
        };
        assert!(Instruction::parse("e1", &payment).is_err());
        assert!(matches!(
            ledger.deposit("@external/USD", 5, 1),
            Err(LedgerError::Invalid { .. })
        ));
    }

    #[test]
    fn overflow_is_refused_and_writes_nothing() {
        let (_dir, ledger) = ledger();
        let max = i128::from(i64::MAX);
        open(&ledger, &["alice"], max);
        // The system account is at -max: another max would pass i64::MIN.
        assert!(matches!(
            ledger.open_accounts(&["bob".into()], "USD", 0, max, 2),
            Err(LedgerError::Overflow(_))
        ));
        assert_eq!(ledger.account("bob").expect("bob"), None);
        open(&ledger, &["bob"], 1);
        // bob at 1 cannot receive max.
        assert!(matches!(
            ledger.pay(&ins("e1", "alice", "bob", max), 3),
            Err(LedgerError::Overflow(_))
        ));
        assert_eq!(ledger.payment("e1").expect("get"), None);
        assert_eq!(ledger.receipt_backlog().expect("backlog"), 0);
        assert_eq!(ledger.totals().expect("totals"), [("USD".to_string(), 0)]);
    }
}
