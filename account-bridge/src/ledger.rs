//! The fiat ledger: accounts, payments keyed by event id, double-entry
//! postings, and the bridge's receipt outbox, behind [`PaymentLedger`].
//! [`SqliteLedger`] is the embedded default; PostgreSQL can implement the
//! same trait.
//!
//! ## Schema (SQLite)
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
//! - **Money is integer minor units** (`i64` in the database, `i128` in the
//!   API so sums cannot overflow); every addition is checked.
//! - **Double entry**: every change of a balance is one of two postings of
//!   one entry that sum to zero. Deposits come from a per-currency system
//!   account (`@external/<CUR>`, unlimited overdraft, never a payment
//!   party), so the sum of all balances of a currency is zero after any
//!   sequence of operations: that is what [`PaymentLedger::totals`] lets an
//!   audit check ("money is conserved").
//! - **Exactly once**: a payment row is keyed by its event id. The payment
//!   row, both postings, both balances and the receipt's outbox row are
//!   written in one SQL transaction, so a crash leaves all or none of them;
//!   a re-delivered instruction finds the row and only re-queues its
//!   receipt.
//! - **Refusals that may heal** (insufficient funds, an account not opened
//!   yet) record the payment as [`PaymentStatus::Failed`], move no money,
//!   and queue a failure receipt; the next delivery of the same instruction
//!   tries again and, once it succeeds, turns the row `Paid`. **Invalid
//!   instructions** (malformed, zero/negative/out-of-range amounts, a
//!   currency the ledger does not hold or that differs from the accounts')
//!   are refused with [`LedgerError::Invalid`] and write nothing at all.
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

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use lockstep_api::event::{check_event_id, PaymentInstruction, MAX_PARTY};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// Prefix of system account ids; refused for customer accounts.
pub const SYSTEM_PREFIX: char = '@';
/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The schema this code reads and writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file cannot be used as a ledger.
    #[error("{path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An input is malformed or out of range; nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The input.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such account (operator commands; a payment records a refusal).
    #[error("no account {0:?}")]
    UnknownAccount(String),
    /// `open` of an account that exists with other terms.
    #[error("account {id:?} already exists with currency {currency} and overdraft {overdraft}")]
    AccountExists {
        /// The account.
        id: String,
        /// Its currency.
        currency: String,
        /// Its overdraft limit.
        overdraft: i128,
    },
    /// A balance would leave the 64-bit range.
    #[error("balance of {0:?} would overflow")]
    Overflow(String),
    /// The same event id arrived with another instruction; nothing written.
    #[error("event {0:?} was already handled with a different instruction")]
    Conflict(String),
    /// Stored data breaks the schema's rules.
    #[error("corrupt ledger: {0}")]
    Corrupt(String),
}

/// The ledger's `Result`.
pub type LedgerResult<T> = Result<T, LedgerError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> LedgerError {
    LedgerError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Whether a payment was made or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PaymentStatus {
    /// The money moved.
    Paid,
    /// Attempted and refused (funds or account); a later retry may turn it
    /// `Paid`.
    Failed,
}

impl PaymentStatus {
    fn column(self) -> &'static str {
        match self {
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
        }
    }

    fn from_column(text: &str) -> LedgerResult<PaymentStatus> {
        match text {
            "paid" => Ok(PaymentStatus::Paid),
            "failed" => Ok(PaymentStatus::Failed),
            other => Err(LedgerError::Corrupt(format!("payment status {other:?}"))),
        }
    }
}

/// One row of `payments`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    /// The event paid (unique).
    pub event_id: String,
    /// The account that pays.
    pub payer: String,
    /// The account that is paid.
    pub payee: String,
    /// Minor units, positive.
    pub amount: i128,
    /// The currency.
    pub currency: String,
    /// Paid or failed.
    pub status: PaymentStatus,
    /// The ledger's reference (`pay-<n>`), sent in the receipt.
    pub reference: String,
    /// When the row was first written (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
    /// The last refusal, while `Failed` (kept after a later payment).
    pub failure: Option<String>,
    /// Attempts made (deliveries that reached the ledger, duplicates of a
    /// paid row not counted).
    pub attempts: u32,
}

/// One row of `accounts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account id.
    pub id: String,
    /// Its currency.
    pub currency: String,
    /// Minor units; negative only within the overdraft.
    pub balance: i128,
    /// How far below zero it may go.
    pub overdraft: i128,
    /// A system account (the source of deposits).
    pub system: bool,
}

/// One row of `postings`: one leg of an entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Posting {
    /// The row id (in the order the legs were written).
    pub id: u64,
    /// The entry: a payment's reference (`pay-<n>`) or a deposit's
    /// (`dep-<n>`).
    pub entry: String,
    /// The account whose balance the leg changed.
    pub account: String,
    /// Signed minor units: debit < 0 < credit.
    pub amount: i128,
    /// The currency.
    pub currency: String,
}

/// One row of `deposits`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    /// Its reference, `dep-<seq>` (the entry of its postings).
    pub reference: String,
    /// The account credited (from its currency's external account).
    pub account: String,
    /// Minor units, positive.
    pub amount: i128,
}

/// Every account, payment, deposit and posting, as one read transaction
/// saw them: consistent with each other even while a writer goes on
/// (see [`SqliteLedger::contents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerContents {
    /// Every account, system accounts included, by id.
    pub accounts: Vec<Account>,
    /// Every payment row, oldest first.
    pub payments: Vec<PaymentRecord>,
    /// Every deposit, oldest first.
    pub deposits: Vec<Deposit>,
    /// Every posting, oldest first.
    pub postings: Vec<Posting>,
}

/// A checked payment instruction, ready for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The event (the idempotency key).
    pub event_id: String,
    /// Who pays.
    pub payer: String,
    /// Who is paid.
    pub payee: String,
    /// Minor units, 1 ..= i64::MAX.
    pub amount: i128,
    /// Three upper-case letters.
    pub currency: String,
}

impl Instruction {
    /// Checks an instruction from the bus: the event id, both parties (as
    /// the event system checks them, and not system accounts), the amount
    /// (see [`parse_amount`]) and the currency code.
    pub fn parse(event_id: &str, payment: &PaymentInstruction) -> LedgerResult<Instruction> {
        check_event_id(event_id).map_err(|e| invalid("event id", e.reason))?;
        check_account_id("payer", &payment.payer)?;
        check_account_id("payee", &payment.payee)?;
        if payment.payer == payment.payee {
            return Err(invalid("payee", "payer and payee are the same account"));
        }
        let amount = parse_amount(&payment.amount)?;
        check_currency(&payment.currency)?;
        Ok(Instruction {
            event_id: event_id.to_owned(),
            payer: payment.payer.clone(),
            payee: payment.payee.clone(),
            amount,
            currency: payment.currency.clone(),
        })
    }
}

/// Parses an amount of minor units: a decimal integer without sign, point
/// or leading zeros, from 1 to `i64::MAX` (the ledger's range).
pub fn parse_amount(text: &str) -> LedgerResult<i128> {
    let field = "amount";
    if text.starts_with('-') {
        return Err(invalid(field, format!("{text:?} is negative")));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = text.chars().take(64).collect();
        return Err(invalid(
            field,
            format!("{shown:?} is not an integer number of minor units (e.g. 1250 for 12.50)"),
        ));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(invalid(field, format!("{text:?} has leading zeros")));
    }
    // More than 19 digits cannot fit; say so without echoing a huge input.
    let value: u128 = if text.len() > 20 {
        u128::MAX
    } else {
        text.parse().unwrap_or(u128::MAX)
    };
    if value == 0 {
        return Err(invalid(field, "must be positive, not zero"));
    }
    if value > i64::MAX as u128 {
        let text = if text.len() > 40 {
            format!("{}...", &text[..40])
        } else {
            text.to_owned()
        };
        return Err(invalid(
            field,
            format!("{text} exceeds the ledger's largest amount {}", i64::MAX),
        ));
    }
    Ok(value as i128)
}

/// Checks a currency code: three upper-case ASCII letters.
pub fn check_currency(code: &str) -> LedgerResult<()> {
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            "currency",
            format!("{code:?} is not three upper-case letters (e.g. USD)"),
        ));
    }
    Ok(())
}

/// Checks a customer account id: 1 to 128 printable ASCII bytes without
/// spaces, not starting with `@` (system accounts).
pub fn check_account_id(field: &'static str, id: &str) -> LedgerResult<()> {
    if id.is_empty() || id.len() > MAX_PARTY {
        return Err(invalid(field, format!("must be 1 to {MAX_PARTY} bytes")));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(field, "must be printable ASCII without spaces"));
    }
    if id.starts_with(SYSTEM_PREFIX) {
        return Err(invalid(
            field,
            format!("{id:?}: ids starting with {SYSTEM_PREFIX} are system accounts"),
        ));
    }
    Ok(())
}

/// The system account deposits of `currency` come from.
pub fn external_account(currency: &str) -> String {
    format!("{SYSTEM_PREFIX}external/{currency}")
}

/// Why a payment was refused (and recorded as failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The payer's balance minus the amount would pass its overdraft.
    InsufficientFunds {
        /// The payer.
        account: String,
        /// Its balance.
        balance: i128,
        /// The amount asked.
        amount: i128,
    },
    /// The account does not exist (yet).
    UnknownAccount(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::InsufficientFunds {
                account,
                balance,
                amount,
            } => write!(
                f,
                "insufficient funds: {account} has {balance}, the payment needs {amount}"
            ),
            Refusal::UnknownAccount(id) => write!(f, "unknown account {id}"),
        }
    }
}

/// What a delivery of an instruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// Paid now.
    Paid {
        /// The payment reference.
        reference: String,
    },
    /// Paid by an earlier delivery: nothing moved, the receipt re-queued.
    AlreadyPaid {
        /// The payment reference.
        reference: String,
    },
    /// Refused and recorded as failed; a failure receipt is queued.
    Refused {
        /// The payment reference.
        reference: String,
        /// Why.
        refusal: Refusal,
    },
}

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

/// How hard commits hold on to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: every commit fsynced (the default).
    Full,
    /// `synchronous = NORMAL`: survives a process crash, not power loss.
    Normal,
}

/// The ledger's operations. Every method is one SQL transaction (or a read);
/// an error means nothing was written.
pub trait PaymentLedger: Send + Sync + std::fmt::Debug {
    /// Opens customer accounts of `currency` with an overdraft limit, each
    /// funded with `deposit` from the system account (0: none). An account
    /// that already exists on the same terms is left alone (no deposit) and
    /// reported `false`; on other terms, the whole call fails.
    fn open_accounts(
        &self,
        ids: &[String],
        currency: &str,
        overdraft: i128,
        deposit: i128,
        now_ms: u64,
    ) -> LedgerResult<Vec<bool>>;

    /// Moves `amount` from the currency's system account to `account`;
    /// returns the deposit's reference.
    fn deposit(&self, account: &str, amount: i128, now_ms: u64) -> LedgerResult<String>;

    /// Pays a batch of instructions in **one** SQL transaction. Each payment
    /// is atomic on its own (a savepoint): its slot holds its outcome or why
    /// it was refused without writing anything. The outer error is a
    /// database failure, after which nothing of the batch was written.
    fn pay_batch(
        &self,
        batch: &[Instruction],
        now_ms: u64,
    ) -> LedgerResult<Vec<LedgerResult<PayOutcome>>>;

    /// Pays one instruction.
    fn pay(&self, instruction: &Instruction, now_ms: u64) -> LedgerResult<PayOutcome> {
        self.pay_batch(std::slice::from_ref(instruction), now_ms)?
            .pop()
            .unwrap_or_else(|| Err(LedgerError::Corrupt("empty batch result".into())))
    }

    /// One account.
    fn account(&self, id: &str) -> LedgerResult<Option<Account>>;

    /// Every account, system accounts included, by id.
    fn accounts(&self) -> LedgerResult<Vec<Account>>;

    /// Every payment row, oldest first.
    fn payments(&self) -> LedgerResult<Vec<PaymentRecord>>;

    /// The payment for an event, if any.
    fn payment(&self, event_id: &str) -> LedgerResult<Option<PaymentRecord>>;

    /// Per currency, the sum of all balances (system accounts included):
    /// zero as long as money is conserved.
    fn totals(&self) -> LedgerResult<Vec<(String, i128)>>;

    /// Per currency, the sum of all postings (zero: every entry balances).
    fn posting_totals(&self) -> LedgerResult<Vec<(String, i128)>>;

    /// Receipts due at `now_ms`, earliest first, at most `limit`.
    fn due_receipts(&self, now_ms: u64, limit: usize) -> LedgerResult<Vec<OutboxReceipt>>;

    /// When the next receipt is due, if any.
    fn next_receipt_due(&self) -> LedgerResult<Option<u64>>;

    /// Removes delivered receipts; a receipt replaced meanwhile (a failure
    /// superseded by the payment) stays.
    fn receipts_delivered(&self, delivered: &[OutboxReceipt]) -> LedgerResult<()>;

    /// Schedules receipts again at the given times.
    fn receipts_retry(&self, retries: &[(OutboxReceipt, u64)]) -> LedgerResult<()>;

    /// Receipts not yet delivered.
    fn receipt_backlog(&self) -> LedgerResult<u64>;
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

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An amount already checked to fit in i64 (every stored amount is).
fn db_amount(value: i128) -> LedgerResult<i64> {
    i64::try_from(value).map_err(|_| invalid("amount", format!("{value} is out of range")))
}

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
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY seq"
    ))?;
    let rows = statement.query_map([], payment_row)?;
    rows.map(|row| finish_payment(row?)).collect()
}

fn read_account(tx: &Connection, id: &str) -> LedgerResult<Option<Account>> {
    Ok(tx
        .prepare_cached(
            "SELECT id, currency, balance, overdraft, system FROM accounts WHERE id = ?1",
        )?
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

const PAYMENT_COLUMNS: &str = "event_id, payer, payee, amount, currency, status, reference, \
     created_ms, updated_ms, failure, attempts";

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
    tx.prepare_cached("UPDATE accounts SET balance = ?2 WHERE id = ?1")?
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
    tx.prepare_cached(
        "INSERT INTO postings (entry, account, amount, currency, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        entry,
        account,
        db_amount(amount)?,
        currency,
        to_i64(now_ms)
    ])?;
    Ok(())
}

fn queue_receipt(
    tx: &Connection,
    event_id: &str,
    reference: &str,
    failure: Option<&str>,
    now_ms: u64,
) -> LedgerResult<()> {
    tx.prepare_cached(
        "INSERT INTO receipt_outbox (event_id, reference, failure, attempts, next_ms) \
         VALUES (?1, ?2, ?3, 0, ?4) \
         ON CONFLICT(event_id) DO UPDATE SET reference = ?2, failure = ?3, attempts = 0, next_ms = ?4",
    )?
    .execute(params![event_id, reference, failure, to_i64(now_ms)])?;
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
    tx.prepare_cached(
        "INSERT OR IGNORE INTO accounts (id, currency, balance, overdraft, system, created_ms) \
         VALUES (?1, ?2, 0, 0, 1, ?3)",
    )?
    .execute(params![id, currency, to_i64(now_ms)])?;
    read_account(tx, &id)?.ok_or_else(|| LedgerError::Corrupt(format!("{id} vanished")))
}

/// One payment inside the batch transaction (under its own savepoint).
fn pay_one(tx: &Connection, ins: &Instruction, now_ms: u64) -> LedgerResult<PayOutcome> {
    let existing = tx
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE event_id = ?1"
        ))?
        .query_row([&ins.event_id], payment_row)
        .optional()?
        .map(finish_payment)
        .transpose()?;
    if let Some(record) = &existing {
        if record.payer != ins.payer
            || record.payee != ins.payee
            || record.amount != ins.amount
            || record.currency != ins.currency
        {
            return Err(LedgerError::Conflict(ins.event_id.clone()));
        }
        if record.status == PaymentStatus::Paid {
            queue_receipt(tx, &ins.event_id, &record.reference, None, now_ms)?;
            return Ok(PayOutcome::AlreadyPaid {
                reference: record.reference.clone(),
            });
        }
    }
    let known_currency: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE currency = ?1 AND system = 0)",
        )?
        .query_row([&ins.currency], |row| row.get(0))?;
    if !known_currency {
        return Err(invalid(
            "currency",
            format!("the ledger holds no {} accounts", ins.currency),
        ));
    }
    let payer = read_account(tx, &ins.payer)?.filter(|a| !a.system);
    let payee = read_account(tx, &ins.payee)?.filter(|a| !a.system);
    for account in [&payer, &payee].into_iter().flatten() {
        if account.currency != ins.currency {
            return Err(invalid(
                "currency",
                format!(
                    "account {} holds {}, the payment is in {}",
                    account.id, account.currency, ins.currency
                ),
            ));
        }
    }
    let refusal = match (&payer, &payee) {
        (None, _) => Some(Refusal::UnknownAccount(ins.payer.clone())),
        (_, None) => Some(Refusal::UnknownAccount(ins.payee.clone())),
        (Some(payer), Some(_)) => {
            let after = payer.balance.checked_sub(ins.amount);
            if after.is_none_or(|b| b < -payer.overdraft) {
                Some(Refusal::InsufficientFunds {
                    account: payer.id.clone(),
                    balance: payer.balance,
                    amount: ins.amount,
                })
            } else {
                None
            }
        }
    };
    let status = if refusal.is_some() {
        PaymentStatus::Failed
    } else {
        PaymentStatus::Paid
    };
    let failure = refusal.as_ref().map(ToString::to_string);
    let reference = match &existing {
        Some(record) => {
            tx.prepare_cached(
                "UPDATE payments SET status = ?2, failure = coalesce(?3, failure), \
                 attempts = attempts + 1, updated_ms = ?4 WHERE event_id = ?1",
            )?
            .execute(params![
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
            tx.prepare_cached(
                "INSERT INTO payments (event_id, payer, payee, amount, currency, status, \
                 reference, failure, attempts, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '?' || ?1, ?7, 1, ?8, ?8)",
            )?
            .execute(params![
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
            tx.prepare_cached("UPDATE payments SET reference = ?2 WHERE event_id = ?1")?
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
        if ids.is_empty() {
            return Err(invalid("account", "name at least one account"));
        }
        for id in ids {
            check_account_id("account", id)?;
        }
        check_currency(currency)?;
        if !(0..=i128::from(i64::MAX)).contains(&overdraft) {
            return Err(invalid(
                "overdraft",
                format!("{overdraft} is not 0 to {}", i64::MAX),
            ));
        }
        if !(0..=i128::from(i64::MAX)).contains(&deposit) {
            return Err(invalid(
                "deposit",
                format!("{deposit} is not 0 to {}", i64::MAX),
            ));
        }
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
        check_account_id("account", account)?;
        if !(1..=i128::from(i64::MAX)).contains(&amount) {
            return Err(invalid(
                "amount",
                format!("{amount} is not 1 to {}", i64::MAX),
            ));
        }
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
            .prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE event_id = ?1"
            ))?
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
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT event_id, reference, failure, attempts FROM receipt_outbox \
             WHERE next_ms <= ?1 ORDER BY next_ms LIMIT ?2",
        )?;
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

    fn next_receipt_due(&self) -> LedgerResult<Option<u64>> {
        let next: Option<i64> =
            self.conn()
                .query_row("SELECT min(next_ms) FROM receipt_outbox", [], |row| {
                    row.get(0)
                })?;
        Ok(next.map(to_u64))
    }

    fn receipts_delivered(&self, delivered: &[OutboxReceipt]) -> LedgerResult<()> {
        self.writable()?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for receipt in delivered {
            tx.prepare_cached(
                "DELETE FROM receipt_outbox WHERE event_id = ?1 AND reference = ?2 \
                 AND failure IS ?3",
            )?
            .execute(params![
                receipt.event_id,
                receipt.reference,
                receipt.failure
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn receipts_retry(&self, retries: &[(OutboxReceipt, u64)]) -> LedgerResult<()> {
        self.writable()?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (receipt, next_ms) in retries {
            tx.prepare_cached(
                "UPDATE receipt_outbox SET attempts = attempts + 1, next_ms = ?4 \
                 WHERE event_id = ?1 AND reference = ?2 AND failure IS ?3",
            )?
            .execute(params![
                receipt.event_id,
                receipt.reference,
                receipt.failure,
                to_i64(*next_ms)
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn receipt_backlog(&self) -> LedgerResult<u64> {
        let count: i64 =
            self.conn()
                .query_row("SELECT count(*) FROM receipt_outbox", [], |row| row.get(0))?;
        Ok(to_u64(count))
    }
}

fn deposit_in(tx: &Connection, account: &str, amount: i128, now_ms: u64) -> LedgerResult<String> {
    let to = read_account(tx, account)?
        .filter(|a| !a.system)
        .ok_or_else(|| LedgerError::UnknownAccount(account.to_owned()))?;
    let from = ensure_external(tx, &to.currency, now_ms)?;
    tx.prepare_cached("INSERT INTO deposits (account, amount, created_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![account, db_amount(amount)?, to_i64(now_ms)])?;
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
    fn amounts_parse_strictly() {
        assert_eq!(parse_amount("1").expect("1"), 1);
        assert_eq!(
            parse_amount("9223372036854775807").expect("max"),
            i128::from(i64::MAX)
        );
        for bad in [
            "",
            "0",
            "-1",
            "01",
            "1.5",
            "1e3",
            " 1",
            "9223372036854775808",
            "340282366920938463463374607431768211456",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?}");
        }
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
