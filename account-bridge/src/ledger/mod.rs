//! The fiat ledger's interface: checked payment instructions, accounts,
//! payments, postings, deposits, the errors, and the [`PaymentLedger`]
//! trait whose contract every ledger keeps. [`SqliteLedger`] is the
//! embedded default; [`PostgresLedger`] keeps the same tables and rules on
//! a PostgreSQL server that several bridges can share. A
//! [`LedgerLocation`] (a file or a `postgres://` URL, as `--ledger` takes
//! it) opens either.
//!
//! ## Layout
//!
//! - this file: the types, the input checks, the decision every payment
//!   goes through ([`decide`]) and the trait; nothing here touches a
//!   database;
//! - `sqlite.rs`: [`SqliteLedger`] — the schema, opening a file (and how
//!   durable its commits are, [`Durability`]), paying a batch, deposits and
//!   reads;
//! - `postgresql.rs`: [`PostgresLedger`] — versioned migrations, a batch
//!   as one transaction of a fixed number of statements, connections;
//! - `outbox.rs`: the receipt outbox ([`OutboxReceipt`]) — a receipt queued
//!   in its payment's own transaction, and the due / delivered / retry /
//!   backlog operations the receipt poster uses.
//!
//! ## Invariants (the contract of every [`PaymentLedger`])
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
//! The checks in this file ([`Instruction::parse`], [`parse_amount`],
//! [`check_currency`], [`check_account_id`]) are pure and run before any
//! ledger is asked: what they accept fits the ledger's range (amounts
//! 1 ..= `i64::MAX`) and never names a system account (ids starting with
//! [`SYSTEM_PREFIX`]).

mod outbox;
mod postgresql;
mod sqlite;

pub use outbox::OutboxReceipt;
pub use postgresql::{is_postgres_url, redacted, PostgresLedger};
pub use sqlite::{Durability, SqliteLedger};

use lockstep_api::event::{check_event_id, PaymentInstruction, MAX_PARTY};

/// Where a ledger is: a SQLite file (the embedded default) or a PostgreSQL
/// server (`postgres://user@host:port/db`, see [`PostgresLedger`]). Shown
/// (and debug-printed) without a password.
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// A SQLite file, created if missing.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl std::str::FromStr for LedgerLocation {
    type Err = String;

    fn from_str(spec: &str) -> Result<LedgerLocation, String> {
        if spec.is_empty() {
            return Err("name a SQLite file or a postgres:// URL".into());
        }
        if is_postgres_url(spec) {
            ::postgres::Config::from_str(spec)
                .map_err(|e| format!("{}: not a PostgreSQL URL: {e}", redacted(spec)))?;
            return Ok(LedgerLocation::Postgres(spec.to_owned()));
        }
        if spec.contains("://") {
            return Err(format!(
                "{:?}: a ledger is a SQLite file or a postgres:// URL",
                spec.split("://").next().unwrap_or("")
            ));
        }
        Ok(LedgerLocation::Sqlite(spec.into()))
    }
}

impl std::fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => write!(f, "{}", path.display()),
            LedgerLocation::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl std::fmt::Debug for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            LedgerLocation::Postgres(url) => {
                f.debug_tuple("Postgres").field(&redacted(url)).finish()
            }
        }
    }
}

impl LedgerLocation {
    /// Opens the ledger for writing (a SQLite file is created if missing,
    /// a PostgreSQL database gets the missing migrations). `durability`
    /// applies to SQLite only: PostgreSQL's is the server's
    /// `synchronous_commit`.
    pub fn open(&self, durability: Durability) -> LedgerResult<std::sync::Arc<dyn PaymentLedger>> {
        Ok(match self {
            LedgerLocation::Sqlite(path) => {
                std::sync::Arc::new(SqliteLedger::open_with(path, durability)?)
            }
            LedgerLocation::Postgres(url) => std::sync::Arc::new(PostgresLedger::open(url)?),
        })
    }

    /// Opens an existing ledger for reading only (audits).
    pub fn open_read_only(&self) -> LedgerResult<std::sync::Arc<dyn PaymentLedger>> {
        Ok(match self {
            LedgerLocation::Sqlite(path) => {
                std::sync::Arc::new(SqliteLedger::open_read_only(path)?)
            }
            LedgerLocation::Postgres(url) => {
                std::sync::Arc::new(PostgresLedger::open_read_only(url)?)
            }
        })
    }
}

/// How `--ledger` is parsed on a command line (the bridge's, the CLI's):
/// as [`LedgerLocation::from_str`](std::str::FromStr), but a refusal never
/// repeats the value given, which may hold a password (clap's own message
/// for an invalid value quotes it whole).
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerLocationParser;

impl clap::builder::TypedValueParser for LedgerLocationParser {
    type Value = LedgerLocation;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<LedgerLocation, clap::Error> {
        let flag = arg.map_or_else(|| "--ledger".to_owned(), |a| a.to_string());
        let refused = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{flag}': {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refused("not UTF-8".into()))?;
        text.parse().map_err(refused)
    }
}

impl clap::builder::ValueParserFactory for LedgerLocation {
    type Parser = LedgerLocationParser;

    fn value_parser() -> LedgerLocationParser {
        LedgerLocationParser
    }
}

/// Prefix of system account ids; refused for customer accounts.
pub const SYSTEM_PREFIX: char = '@';

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL failed, or the connection to it (nothing of the
    /// transaction was written).
    #[error("ledger database: {0}")]
    Postgres(#[from] ::postgres::Error),
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

/// A stored count or time (never negative) as unsigned.
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A count or time as both engines store it (saturating).
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An amount already checked to fit in i64 (every stored amount is), as
/// both engines store it.
fn db_amount(value: i128) -> LedgerResult<i64> {
    i64::try_from(value).map_err(|_| invalid("amount", format!("{value} is out of range")))
}

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

// The `status` column's spelling (the schema's `CHECK`).
impl PaymentStatus {
    pub(crate) fn column(self) -> &'static str {
        match self {
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
        }
    }

    pub(crate) fn from_column(text: &str) -> LedgerResult<PaymentStatus> {
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

/// What one delivery of an instruction is to do, decided from the rows it
/// found: the payment row of its event (if any), whether the ledger holds
/// the currency, and the two accounts. Both ledgers decide through
/// [`decide`], so they pay and refuse alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Paid by an earlier delivery: nothing moves, its receipt is queued
    /// again.
    AlreadyPaid,
    /// Move the money (both balances stay in range: checked).
    Pay,
    /// Record the refusal (it may heal) and queue a failure receipt.
    Refuse(Refusal),
}

/// Decides one delivery (see [`Decision`]). An error is an instruction
/// that must write nothing: another instruction under the same event id
/// ([`LedgerError::Conflict`]), a currency the ledger does not hold or
/// that differs from an account's ([`LedgerError::Invalid`]), a payee
/// balance that would leave the 64-bit range ([`LedgerError::Overflow`]).
/// System accounts are never payment parties: given one, it counts as
/// missing.
pub(crate) fn decide(
    ins: &Instruction,
    existing: Option<&PaymentRecord>,
    currency_held: bool,
    payer: Option<&Account>,
    payee: Option<&Account>,
) -> LedgerResult<Decision> {
    if let Some(record) = existing {
        if record.payer != ins.payer
            || record.payee != ins.payee
            || record.amount != ins.amount
            || record.currency != ins.currency
        {
            return Err(LedgerError::Conflict(ins.event_id.clone()));
        }
        if record.status == PaymentStatus::Paid {
            return Ok(Decision::AlreadyPaid);
        }
    }
    if !currency_held {
        return Err(invalid(
            "currency",
            format!("the ledger holds no {} accounts", ins.currency),
        ));
    }
    let payer = payer.filter(|a| !a.system);
    let payee = payee.filter(|a| !a.system);
    for account in [payer, payee].into_iter().flatten() {
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
    let (payer, payee) = match (payer, payee) {
        (None, _) => return Ok(Decision::Refuse(Refusal::UnknownAccount(ins.payer.clone()))),
        (_, None) => return Ok(Decision::Refuse(Refusal::UnknownAccount(ins.payee.clone()))),
        (Some(payer), Some(payee)) => (payer, payee),
    };
    let after = payer.balance.checked_sub(ins.amount);
    if after.is_none_or(|b| b < -payer.overdraft) {
        return Ok(Decision::Refuse(Refusal::InsufficientFunds {
            account: payer.id.clone(),
            balance: payer.balance,
            amount: ins.amount,
        }));
    }
    let credited = payee.balance.checked_add(ins.amount);
    if credited.is_none_or(|b| i64::try_from(b).is_err()) {
        return Err(LedgerError::Overflow(payee.id.clone()));
    }
    Ok(Decision::Pay)
}

/// Checks the terms of [`PaymentLedger::open_accounts`] before any ledger
/// is asked.
pub(crate) fn check_open_terms(
    ids: &[String],
    currency: &str,
    overdraft: i128,
    deposit: i128,
) -> LedgerResult<()> {
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
    Ok(())
}

/// Checks the terms of [`PaymentLedger::deposit`] before any ledger is
/// asked.
pub(crate) fn check_deposit_terms(account: &str, amount: i128) -> LedgerResult<()> {
    check_account_id("account", account)?;
    if !(1..=i128::from(i64::MAX)).contains(&amount) {
        return Err(invalid(
            "amount",
            format!("{amount} is not 1 to {}", i64::MAX),
        ));
    }
    Ok(())
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

    /// The whole ledger as one read transaction saw it (for audits; see
    /// [`LedgerContents`]). Writers are not blocked, and what they commit
    /// meanwhile is not seen.
    fn contents(&self) -> LedgerResult<LedgerContents>;
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
