//! The PostgreSQL ledger, [`PostgresLedger`]: the same tables, the same
//! double-entry rules and the same [`PaymentLedger`] contract as the SQLite
//! ledger, on a server that several bridges can share.
//!
//! ## Schema and migrations
//!
//! The tables are those of `sqlite.rs` (`accounts`, `payments`, `deposits`,
//! `postings`, `receipt_outbox`), with `BIGINT` money, identity keys, and
//! the references `pay-<seq>` / `dep-<seq>` as generated columns. Every
//! change of the schema is a numbered migration in [`MIGRATIONS`]; the
//! table `lockstep_schema` records those applied. Opening a ledger applies
//! the missing ones in one transaction under an advisory lock, so bridges
//! starting together migrate once; a database with a newer schema than this
//! build knows, or with tables of the same names but no `lockstep_schema`,
//! is refused.
//!
//! ## One batch, one transaction, no savepoints
//!
//! [`PaymentLedger::pay_batch`] is one READ COMMITTED transaction of a
//! fixed number of statements, whatever the batch's size:
//!
//! 1. lock the batch's accounts, `SELECT … FOR UPDATE` in one fixed order
//!    (by id, byte order), so two bridges never deadlock on them;
//! 2. read which currencies the ledger holds, and lock the payment rows
//!    the batch's event ids already have (same order);
//! 3. decide every instruction in memory ([`super::decide`], as SQLite
//!    does): an instruction that must write nothing is left out, so no
//!    savepoint is needed (more than 64 subtransactions in one transaction
//!    slow PostgreSQL down sharply);
//! 4. insert the new payment rows with `ON CONFLICT (event_id) DO NOTHING`:
//!    a conflict means another bridge inserted that event's row since step
//!    2 (only possible for a refusal, which locks no account), and the
//!    whole transaction is rolled back and run again, when it finds and
//!    locks that row;
//! 5. update the retried rows, the balances (a conditional update: each
//!    balance must still be what was locked, and a customer's stays within
//!    its overdraft, or nothing is written and the batch fails), the
//!    postings and the receipt outbox; commit.
//!
//! A serialization failure, a deadlock, a race of step 4 or a connection
//! lost mid-transaction runs the whole transaction again, up to
//! [`MAX_ATTEMPTS`] times. That is safe even when a commit's answer was
//! lost: the payment row keyed by event id is found the next time, and only
//! its receipt is queued again.
//!
//! ## Connections
//!
//! Each call takes a connection from a small idle pool (or opens one) and
//! gives it back unless it broke; a server restarted meanwhile costs one
//! failed call, after which new connections are made. Every session runs
//! with a statement timeout, a lock timeout and an idle-in-transaction
//! timeout, so a bridge stopped mid-transaction (SIGSTOP) holds its locks
//! for a bounded time. The ledger is called on blocking threads only (the
//! `postgres` crate's client blocks).
//!
//! ## Durability
//!
//! A commit is as durable as the server makes it: Lockstep needs
//! `synchronous_commit` on (the default) and `fsync` on, or a server crash
//! can lose payments whose receipts already left. Opening a ledger on a
//! server without them logs a warning.
//!
//! ## Cost flat in history
//!
//! Every statement of a payment, a deposit or a round of receipts finds
//! its rows through a primary key, a unique key or an index (a test holds
//! their plans to that); the receipt outbox keeps only undelivered
//! receipts. What reads the whole history (`payments`, `contents`, the
//! totals) is for operators and audits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};

use super::{
    check_deposit_terms, check_open_terms, db_amount, decide, external_account, to_i64, to_u64,
    Account, Decision, Deposit, Instruction, LedgerContents, LedgerError, LedgerResult,
    OutboxReceipt, PayOutcome, PaymentLedger, PaymentRecord, PaymentStatus, Posting,
};

/// How many times a transaction is run before its error is returned.
pub const MAX_ATTEMPTS: u32 = 8;
/// Connections kept open between calls.
const MAX_IDLE: usize = 16;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session settings: no statement, lock wait or idle transaction lasts
/// forever (milliseconds).
const SESSION_OPTIONS: &str = "-c statement_timeout=60000 -c lock_timeout=30000 \
     -c idle_in_transaction_session_timeout=60000";
/// The advisory lock migrations run under ("lockstep" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c6f_636b_7374_6570;

/// The schema, one migration per version, applied in order.
pub const MIGRATIONS: &[(i32, &str)] = &[(1, SCHEMA_V1)];

const SCHEMA_V1: &str = r#"
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    currency   TEXT NOT NULL,
    balance    BIGINT NOT NULL DEFAULT 0,
    overdraft  BIGINT NOT NULL DEFAULT 0 CHECK (overdraft >= 0),
    system     BOOLEAN NOT NULL DEFAULT false,
    created_ms BIGINT NOT NULL,
    CHECK (system OR balance >= -overdraft)
);
CREATE INDEX accounts_by_currency ON accounts(currency, system);
CREATE TABLE payments (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    payer      TEXT NOT NULL,
    payee      TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    currency   TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('paid', 'failed')),
    reference  TEXT GENERATED ALWAYS AS ('pay-' || seq::text) STORED,
    failure    TEXT,
    attempts   INTEGER NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE deposits (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account    TEXT NOT NULL REFERENCES accounts(id),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    reference  TEXT GENERATED ALWAYS AS ('dep-' || seq::text) STORED,
    created_ms BIGINT NOT NULL
);
CREATE TABLE postings (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry      TEXT NOT NULL,
    account    TEXT NOT NULL REFERENCES accounts(id),
    amount     BIGINT NOT NULL CHECK (amount <> 0),
    currency   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX postings_by_account ON postings(account);
CREATE TABLE receipt_outbox (
    event_id   TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    failure    TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    BIGINT NOT NULL
);
CREATE INDEX receipt_outbox_by_due ON receipt_outbox(next_ms);
"#;

/// The tables a Lockstep ledger holds: a database with any of them but no
/// `lockstep_schema` is someone else's.
const TABLES: [&str; 5] = [
    "accounts",
    "payments",
    "deposits",
    "postings",
    "receipt_outbox",
];

const ACCOUNT_COLUMNS: &str = "id, currency, balance, overdraft, system";
const LOCK_ACCOUNTS: &str = "SELECT id, currency, balance, overdraft, system FROM accounts \
     WHERE id = ANY($1::text[]) ORDER BY id COLLATE \"C\" FOR UPDATE";
const SELECT_ACCOUNT: &str =
    "SELECT id, currency, balance, overdraft, system FROM accounts WHERE id = $1";
const CURRENCIES_HELD: &str = "SELECT c FROM unnest($1::text[]) AS c \
     WHERE EXISTS (SELECT 1 FROM accounts WHERE currency = c AND NOT system)";
/// The columns [`payment_row`] reads, in its order.
const PAYMENT_COLUMNS: &str = "event_id, payer, payee, amount, currency, status, reference, \
     created_ms, updated_ms, failure, attempts";
const LOCK_PAYMENTS: &str = "SELECT event_id, payer, payee, amount, currency, status, reference, \
     created_ms, updated_ms, failure, attempts FROM payments \
     WHERE event_id = ANY($1::text[]) ORDER BY event_id COLLATE \"C\" FOR UPDATE";
const SELECT_PAYMENT: &str = "SELECT event_id, payer, payee, amount, currency, status, reference, \
     created_ms, updated_ms, failure, attempts FROM payments WHERE event_id = $1";
const INSERT_PAYMENTS: &str = "INSERT INTO payments (event_id, payer, payee, amount, currency, \
     status, failure, attempts, created_ms, updated_ms) \
     SELECT e, pr, pe, a, c, s, f, 1, $8::bigint, $8::bigint \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
     $7::text[]) WITH ORDINALITY AS v(e, pr, pe, a, c, s, f, n) ORDER BY n \
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id, reference";
const UPDATE_PAYMENTS: &str = "UPDATE payments AS p SET status = v.s, failure = v.f, \
     attempts = v.n, updated_ms = $5::bigint \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS v(e, s, f, n) \
     WHERE p.event_id = v.e";
const UPDATE_BALANCES: &str = "UPDATE accounts AS a SET balance = v.new \
     FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, old, new) \
     WHERE a.id = v.id AND a.balance = v.old AND (a.system OR v.new >= -a.overdraft)";
const INSERT_POSTINGS: &str =
    "INSERT INTO postings (entry, account, amount, currency, created_ms) \
     SELECT e, a, x, c, $5::bigint \
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY \
     AS v(e, a, x, c, n) ORDER BY n";
const QUEUE_RECEIPTS: &str = "INSERT INTO receipt_outbox (event_id, reference, failure, attempts, \
     next_ms) SELECT e, r, f, 0, $4::bigint FROM unnest($1::text[], $2::text[], $3::text[]) \
     AS v(e, r, f) \
     ON CONFLICT (event_id) DO UPDATE SET reference = EXCLUDED.reference, \
     failure = EXCLUDED.failure, attempts = 0, next_ms = EXCLUDED.next_ms";
const ENSURE_EXTERNAL: &str = "INSERT INTO accounts (id, currency, balance, overdraft, system, \
     created_ms) VALUES ($1, $2, 0, 0, true, $3) ON CONFLICT (id) DO NOTHING";
const INSERT_ACCOUNT: &str = "INSERT INTO accounts (id, currency, balance, overdraft, system, \
     created_ms) VALUES ($1, $2, 0, $3, false, $4) ON CONFLICT (id) DO NOTHING RETURNING id";
const INSERT_DEPOSIT: &str = "INSERT INTO deposits (account, amount, created_ms) \
     VALUES ($1, $2, $3) RETURNING reference";
const DUE_RECEIPTS: &str = "SELECT event_id, reference, failure, attempts FROM receipt_outbox \
     WHERE next_ms <= $1 ORDER BY next_ms LIMIT $2";
const NEXT_DUE: &str = "SELECT min(next_ms) FROM receipt_outbox";
const DELETE_DELIVERED: &str = "DELETE FROM receipt_outbox AS o \
     USING unnest($1::text[], $2::text[], $3::text[]) AS v(e, r, f) \
     WHERE o.event_id = v.e AND o.reference = v.r AND o.failure IS NOT DISTINCT FROM v.f";
const RESCHEDULE: &str = "UPDATE receipt_outbox AS o SET attempts = o.attempts + 1, next_ms = v.t \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v(e, r, f, t) \
     WHERE o.event_id = v.e AND o.reference = v.r AND o.failure IS NOT DISTINCT FROM v.f";

/// Every statement a payment, a deposit or a round of receipt posts runs:
/// each must find its rows by key or index (a test checks their plans).
#[cfg(test)]
pub(crate) const HOT_STATEMENTS: [&str; 16] = [
    LOCK_ACCOUNTS,
    SELECT_ACCOUNT,
    CURRENCIES_HELD,
    LOCK_PAYMENTS,
    SELECT_PAYMENT,
    INSERT_PAYMENTS,
    UPDATE_PAYMENTS,
    UPDATE_BALANCES,
    INSERT_POSTINGS,
    QUEUE_RECEIPTS,
    ENSURE_EXTERNAL,
    INSERT_ACCOUNT,
    INSERT_DEPOSIT,
    DUE_RECEIPTS,
    DELETE_DELIVERED,
    RESCHEDULE,
];

/// Whether `spec` names a PostgreSQL ledger (a `postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// A connection string as it may be shown: user, hosts, ports and database,
/// never the password.
pub fn redacted(spec: &str) -> String {
    match Config::from_str(spec) {
        Ok(config) => shown_config(&config),
        Err(_) => "postgres://(unparsable URL)".into(),
    }
}

fn shown_config(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// Statements prepared on one connection, by their text.
type Cache = HashMap<&'static str, Statement>;

/// One open connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: Cache,
}

/// `sql` prepared on the connection `client` belongs to (once per
/// connection).
fn cached(
    cache: &mut Cache,
    client: &mut impl GenericClient,
    sql: &'static str,
) -> LedgerResult<Statement> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    cache.insert(sql, statement.clone());
    Ok(statement)
}

/// The PostgreSQL ledger; see the [module docs](self).
pub struct PostgresLedger {
    config: Config,
    shown: String,
    idle: Mutex<Vec<Conn>>,
    read_only: bool,
}

impl fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLedger")
            .field("server", &self.shown)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresLedger {
    fn drop(&mut self) {
        // A `postgres` client blocks when it closes, which panics on an
        // async worker: where the last handle of a ledger goes (a bridge
        // stopping) is not always a blocking thread, so the connections
        // are closed on a thread of their own.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            let closing = std::thread::Builder::new()
                .name("ledger-close".into())
                .spawn(move || drop(idle));
            if let Err(e) = closing {
                tracing::warn!(target: "lockstep::bridge", "cannot close the ledger's connections: {e}");
            }
        }
    }
}

fn is_retriable(error: &LedgerError) -> bool {
    match error {
        LedgerError::Postgres(e) => {
            e.is_closed()
                || matches!(
                    e.code(),
                    Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        | Some(&SqlState::T_R_DEADLOCK_DETECTED)
                        | Some(&SqlState::ADMIN_SHUTDOWN)
                )
        }
        _ => false,
    }
}

impl PostgresLedger {
    /// Connects to the server at `url`, applies the missing migrations and
    /// returns a writable ledger.
    pub fn open(url: &str) -> LedgerResult<PostgresLedger> {
        let ledger = Self::configure(url, false)?;
        ledger.with_conn(|conn| ledger.migrate(conn))?;
        Ok(ledger)
    }

    /// Connects for reading only (audits): every session is read-only, and
    /// the schema must be this build's.
    pub fn open_read_only(url: &str) -> LedgerResult<PostgresLedger> {
        let ledger = Self::configure(url, true)?;
        ledger.with_conn(|conn| {
            let version = schema_version(&mut conn.client)?;
            let latest = latest_version();
            if version != Some(latest) {
                let found = version.map_or("none".to_string(), |v| v.to_string());
                return Err(ledger.open_error(format!(
                    "not a Lockstep ledger of schema version {latest} (found {found})"
                )));
            }
            Ok(())
        })?;
        Ok(ledger)
    }

    fn configure(url: &str, read_only: bool) -> LedgerResult<PostgresLedger> {
        let shown = redacted(url);
        let mut config = Config::from_str(url).map_err(|e| LedgerError::Open {
            path: shown.clone(),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut options = config.get_options().unwrap_or("").to_string();
        options.push(' ');
        options.push_str(SESSION_OPTIONS);
        if read_only {
            options.push_str(" -c default_transaction_read_only=on");
        }
        config.options(options.trim());
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("lockstep-bridge");
        }
        Ok(PostgresLedger {
            config,
            shown,
            idle: Mutex::new(Vec::new()),
            read_only,
        })
    }

    /// The server, as it may be shown (no password).
    pub fn server(&self) -> &str {
        &self.shown
    }

    fn open_error(&self, reason: String) -> LedgerError {
        LedgerError::Open {
            path: self.shown.clone(),
            reason,
        }
    }

    fn connect(&self) -> LedgerResult<Conn> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| self.open_error(format!("cannot connect: {e}")))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `f` on a pooled connection; a connection that broke is not
    /// given back.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> LedgerResult<T>) -> LedgerResult<T> {
        self.on_conn(f).0
    }

    /// [`Self::with_conn`], also saying whether the connection broke (then
    /// the call may be tried again on a new one).
    fn on_conn<T>(&self, f: impl FnOnce(&mut Conn) -> LedgerResult<T>) -> (LedgerResult<T>, bool) {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => match self.connect() {
                Ok(conn) => conn,
                Err(e) => return (Err(e), false),
            },
        };
        let result = f(&mut conn);
        let broke = conn.client.is_closed();
        if !broke {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        (result, broke)
    }

    /// Runs a transaction until it commits, fails for good, or has been
    /// tried [`MAX_ATTEMPTS`] times (see the module docs for what is
    /// retried). `f` returns `None` when it lost a race and must run again.
    fn retrying<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> LedgerResult<Option<T>>,
    ) -> LedgerResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, broke) = self.on_conn(&mut f);
            match result {
                Ok(Some(value)) => return Ok(value),
                Ok(None) if attempt < MAX_ATTEMPTS => {}
                Ok(None) => {
                    return Err(LedgerError::Corrupt(format!(
                        "a batch lost {MAX_ATTEMPTS} races in a row"
                    )))
                }
                Err(e) if attempt < MAX_ATTEMPTS && (broke || is_retriable(&e)) => {
                    tracing::debug!(target: "lockstep::bridge", attempt, "ledger transaction retried: {e}");
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_millis(5 << attempt.min(6)));
        }
    }

    fn writable(&self) -> LedgerResult<()> {
        if self.read_only {
            return Err(self.open_error("opened read-only".into()));
        }
        Ok(())
    }

    fn migrate(&self, conn: &mut Conn) -> LedgerResult<()> {
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let version = schema_version_in(&mut tx)?;
        let current = match version {
            Some(version) => version,
            None => {
                for table in TABLES {
                    let exists: bool = tx
                        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
                        .get(0);
                    if exists {
                        return Err(self.open_error(format!(
                            "holds a table {table:?} but is not a Lockstep ledger"
                        )));
                    }
                }
                tx.batch_execute(
                    "CREATE TABLE lockstep_schema (version INTEGER PRIMARY KEY, \
                     applied_ms BIGINT NOT NULL)",
                )?;
                0
            }
        };
        let latest = latest_version();
        if current > latest {
            return Err(self.open_error(format!(
                "ledger schema version {current}, this build reads up to {latest}"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO lockstep_schema (version, applied_ms) VALUES ($1, $2)",
                &[version, &to_i64(crate::now_ms())],
            )?;
            tracing::info!(target: "lockstep::bridge", server = %self.shown, version, "ledger schema migrated");
        }
        tx.commit()?;
        for setting in ["synchronous_commit", "fsync"] {
            let value: String = conn
                .client
                .query_one(&format!("SHOW {setting}"), &[])?
                .get(0);
            if value != "on" {
                tracing::warn!(
                    target: "lockstep::bridge",
                    server = %self.shown,
                    "{setting} is {value}: a server crash can lose payments whose receipts were already sent; set it to on"
                );
            }
        }
        Ok(())
    }

    fn pay_once(
        conn: &mut Conn,
        batch: &[Instruction],
        now_ms: u64,
    ) -> LedgerResult<Option<Vec<LedgerResult<PayOutcome>>>> {
        let Conn { client, statements } = conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()?;
        let sorted = |ids: Vec<&str>| -> Vec<String> {
            let set: BTreeSet<&str> = ids.into_iter().collect();
            set.into_iter().map(str::to_owned).collect()
        };
        let account_ids = sorted(
            batch
                .iter()
                .flat_map(|i| [i.payer.as_str(), i.payee.as_str()])
                .collect(),
        );
        let currencies = sorted(batch.iter().map(|i| i.currency.as_str()).collect());
        let event_ids = sorted(batch.iter().map(|i| i.event_id.as_str()).collect());

        // 1-2: lock and read.
        let st = cached(statements, &mut tx, LOCK_ACCOUNTS)?;
        let mut accounts: HashMap<String, Account> = tx
            .query(&st, &[&account_ids])?
            .iter()
            .map(|row| account_row(row).map(|a| (a.id.clone(), a)))
            .collect::<LedgerResult<_>>()?;
        let locked: HashMap<String, i128> = accounts
            .iter()
            .map(|(id, a)| (id.clone(), a.balance))
            .collect();
        let st = cached(statements, &mut tx, CURRENCIES_HELD)?;
        let held: HashSet<String> = tx
            .query(&st, &[&currencies])?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let st = cached(statements, &mut tx, LOCK_PAYMENTS)?;
        let mut rows: HashMap<String, (PaymentRecord, bool)> = tx
            .query(&st, &[&event_ids])?
            .iter()
            .map(|row| payment_row(row).map(|p| (p.event_id.clone(), (p, false))))
            .collect::<LedgerResult<_>>()?;
        let existed: HashSet<String> = rows.keys().cloned().collect();

        // 3: decide in memory, in the batch's order.
        enum Slot {
            Paid(String),
            AlreadyPaid(String),
            Refused(String, super::Refusal),
            Error(LedgerError),
        }
        let mut slots = Vec::with_capacity(batch.len());
        let mut paid: Vec<usize> = Vec::new();
        let mut receipts: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (index, ins) in batch.iter().enumerate() {
            let decision = decide(
                ins,
                rows.get(&ins.event_id).map(|(record, _)| record),
                held.contains(&ins.currency),
                accounts.get(&ins.payer),
                accounts.get(&ins.payee),
            );
            let refusal = match decision {
                Err(e) => {
                    slots.push(Slot::Error(e));
                    continue;
                }
                Ok(Decision::AlreadyPaid) => {
                    receipts.insert(ins.event_id.clone(), None);
                    slots.push(Slot::AlreadyPaid(ins.event_id.clone()));
                    continue;
                }
                Ok(Decision::Pay) => None,
                Ok(Decision::Refuse(refusal)) => Some(refusal),
            };
            let status = if refusal.is_some() {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Paid
            };
            let failure = refusal.as_ref().map(ToString::to_string);
            match rows.get_mut(&ins.event_id) {
                Some((record, changed)) => {
                    record.status = status;
                    record.failure = failure.clone().or(record.failure.take());
                    record.attempts = record.attempts.saturating_add(1);
                    record.updated_ms = now_ms;
                    *changed = true;
                }
                None => {
                    let record = PaymentRecord {
                        event_id: ins.event_id.clone(),
                        payer: ins.payer.clone(),
                        payee: ins.payee.clone(),
                        amount: ins.amount,
                        currency: ins.currency.clone(),
                        status,
                        reference: String::new(),
                        created_ms: now_ms,
                        updated_ms: now_ms,
                        failure: failure.clone(),
                        attempts: 1,
                    };
                    rows.insert(ins.event_id.clone(), (record, true));
                }
            }
            receipts.insert(ins.event_id.clone(), failure);
            match refusal {
                None => {
                    for (id, delta) in [(&ins.payer, -ins.amount), (&ins.payee, ins.amount)] {
                        if let Some(account) = accounts.get_mut(id) {
                            account.balance += delta;
                        }
                    }
                    paid.push(index);
                    slots.push(Slot::Paid(ins.event_id.clone()));
                }
                Some(refusal) => slots.push(Slot::Refused(ins.event_id.clone(), refusal)),
            }
        }

        // 4: the new payment rows, named by the database.
        let mut references: HashMap<String, String> = rows
            .iter()
            .filter(|(id, _)| existed.contains(*id))
            .map(|(id, (record, _))| (id.clone(), record.reference.clone()))
            .collect();
        let mut new_rows: Vec<&PaymentRecord> = rows
            .iter()
            .filter(|(id, _)| !existed.contains(*id))
            .map(|(_, (record, _))| record)
            .collect();
        // In the order of their first instruction, so `seq` follows the batch.
        let order: HashMap<&str, usize> = batch
            .iter()
            .enumerate()
            .rev()
            .map(|(i, ins)| (ins.event_id.as_str(), i))
            .collect();
        new_rows.sort_by_key(|record| order.get(record.event_id.as_str()).copied());
        if !new_rows.is_empty() {
            let column = |f: &dyn Fn(&PaymentRecord) -> String| -> Vec<String> {
                new_rows.iter().map(|r| f(r)).collect()
            };
            let amounts: Vec<i64> = new_rows
                .iter()
                .map(|r| db_amount(r.amount))
                .collect::<LedgerResult<_>>()?;
            let failures: Vec<Option<String>> =
                new_rows.iter().map(|r| r.failure.clone()).collect();
            let st = cached(statements, &mut tx, INSERT_PAYMENTS)?;
            let inserted = tx.query(
                &st,
                &[
                    &column(&|r| r.event_id.clone()),
                    &column(&|r| r.payer.clone()),
                    &column(&|r| r.payee.clone()),
                    &amounts,
                    &column(&|r| r.currency.clone()),
                    &column(&|r| r.status.column().to_owned()),
                    &failures,
                    &to_i64(now_ms),
                ],
            )?;
            if inserted.len() != new_rows.len() {
                // Another bridge wrote one of these events meanwhile.
                return Ok(None);
            }
            for row in &inserted {
                references.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        // 5: retried rows, balances, postings, receipts.
        let retried: Vec<&PaymentRecord> = rows
            .iter()
            .filter(|(id, (_, changed))| *changed && existed.contains(*id))
            .map(|(_, (record, _))| record)
            .collect();
        if !retried.is_empty() {
            let ids: Vec<&str> = retried.iter().map(|r| r.event_id.as_str()).collect();
            let statuses: Vec<&str> = retried.iter().map(|r| r.status.column()).collect();
            let failures: Vec<Option<&str>> =
                retried.iter().map(|r| r.failure.as_deref()).collect();
            let attempts: Vec<i32> = retried
                .iter()
                .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
                .collect();
            let st = cached(statements, &mut tx, UPDATE_PAYMENTS)?;
            tx.execute(
                &st,
                &[&ids, &statuses, &failures, &attempts, &to_i64(now_ms)],
            )?;
        }
        let changed: Vec<(&String, i128, i128)> = accounts
            .iter()
            .filter_map(|(id, a)| {
                let old = *locked.get(id)?;
                (old != a.balance).then_some((id, old, a.balance))
            })
            .collect();
        if !changed.is_empty() {
            let ids: Vec<&str> = changed.iter().map(|(id, _, _)| id.as_str()).collect();
            let old: Vec<i64> = changed
                .iter()
                .map(|(_, old, _)| db_amount(*old))
                .collect::<LedgerResult<_>>()?;
            let new: Vec<i64> = changed
                .iter()
                .map(|(_, _, new)| db_amount(*new))
                .collect::<LedgerResult<_>>()?;
            let st = cached(statements, &mut tx, UPDATE_BALANCES)?;
            let updated = tx.execute(&st, &[&ids, &old, &new])?;
            if updated != changed.len() as u64 {
                return Err(LedgerError::Corrupt(format!(
                    "{} of {} locked balances could not be updated",
                    changed.len() as u64 - updated,
                    changed.len()
                )));
            }
        }
        if !paid.is_empty() {
            let mut entries = Vec::with_capacity(paid.len() * 2);
            let mut legs = Vec::with_capacity(paid.len() * 2);
            let mut amounts = Vec::with_capacity(paid.len() * 2);
            let mut currencies = Vec::with_capacity(paid.len() * 2);
            for ins in paid.iter().map(|&i| &batch[i]) {
                let reference = references
                    .get(&ins.event_id)
                    .ok_or_else(|| LedgerError::Corrupt("a payment without its row".into()))?;
                for (account, amount) in [(&ins.payer, -ins.amount), (&ins.payee, ins.amount)] {
                    entries.push(reference.as_str());
                    legs.push(account.as_str());
                    amounts.push(db_amount(amount)?);
                    currencies.push(ins.currency.as_str());
                }
            }
            let st = cached(statements, &mut tx, INSERT_POSTINGS)?;
            tx.execute(
                &st,
                &[&entries, &legs, &amounts, &currencies, &to_i64(now_ms)],
            )?;
        }
        if !receipts.is_empty() {
            let mut ids = Vec::with_capacity(receipts.len());
            let mut refs = Vec::with_capacity(receipts.len());
            let mut failures = Vec::with_capacity(receipts.len());
            for (id, failure) in &receipts {
                let reference = references
                    .get(id)
                    .ok_or_else(|| LedgerError::Corrupt("a receipt without its row".into()))?;
                ids.push(id.as_str());
                refs.push(reference.as_str());
                failures.push(failure.as_deref());
            }
            let st = cached(statements, &mut tx, QUEUE_RECEIPTS)?;
            tx.execute(&st, &[&ids, &refs, &failures, &to_i64(now_ms)])?;
        }
        tx.commit()?;
        let reference = |id: &str| references.get(id).cloned().unwrap_or_default();
        Ok(Some(
            slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Paid(id) => Ok(PayOutcome::Paid {
                        reference: reference(&id),
                    }),
                    Slot::AlreadyPaid(id) => Ok(PayOutcome::AlreadyPaid {
                        reference: reference(&id),
                    }),
                    Slot::Refused(id, refusal) => Ok(PayOutcome::Refused {
                        reference: reference(&id),
                        refusal,
                    }),
                    Slot::Error(e) => Err(e),
                })
                .collect(),
        ))
    }

    /// Locks accounts (sorted by id) and returns them by id.
    fn lock_accounts(
        cache: &mut Cache,
        tx: &mut Transaction<'_>,
        ids: &[&str],
    ) -> LedgerResult<HashMap<String, Account>> {
        let ids: BTreeSet<&str> = ids.iter().copied().collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let st = cached(cache, tx, LOCK_ACCOUNTS)?;
        tx.query(&st, &[&ids])?
            .iter()
            .map(|row| account_row(row).map(|a| (a.id.clone(), a)))
            .collect()
    }

    /// Moves `amount` from the currency's external account to `account`,
    /// as one entry, inside `tx`.
    fn deposit_in(
        cache: &mut Cache,
        tx: &mut Transaction<'_>,
        account: &str,
        currency: &str,
        amount: i128,
        now_ms: u64,
    ) -> LedgerResult<String> {
        let external = external_account(currency);
        let st = cached(cache, tx, ENSURE_EXTERNAL)?;
        tx.execute(&st, &[&external, &currency, &to_i64(now_ms)])?;
        let mut locked = Self::lock_accounts(cache, tx, &[account, &external])?;
        let to = locked
            .remove(account)
            .filter(|a| !a.system)
            .ok_or_else(|| LedgerError::UnknownAccount(account.to_owned()))?;
        let from = locked
            .remove(&external)
            .ok_or_else(|| LedgerError::Corrupt(format!("{external} vanished")))?;
        let to_new = to
            .balance
            .checked_add(amount)
            .filter(|b| i64::try_from(*b).is_ok())
            .ok_or_else(|| LedgerError::Overflow(to.id.clone()))?;
        let from_new = from
            .balance
            .checked_sub(amount)
            .filter(|b| i64::try_from(*b).is_ok())
            .ok_or_else(|| LedgerError::Overflow(from.id.clone()))?;
        let st = cached(cache, tx, INSERT_DEPOSIT)?;
        let reference: String = tx
            .query_one(&st, &[&account, &db_amount(amount)?, &to_i64(now_ms)])?
            .try_get(0)?;
        let st = cached(cache, tx, UPDATE_BALANCES)?;
        let ids = [from.id.as_str(), to.id.as_str()];
        let old = [db_amount(from.balance)?, db_amount(to.balance)?];
        let new = [db_amount(from_new)?, db_amount(to_new)?];
        let updated = tx.execute(&st, &[&&ids[..], &&old[..], &&new[..]])?;
        if updated != 2 {
            return Err(LedgerError::Corrupt("a locked balance changed".into()));
        }
        let st = cached(cache, tx, INSERT_POSTINGS)?;
        let entries = [reference.as_str(), reference.as_str()];
        let amounts = [-db_amount(amount)?, db_amount(amount)?];
        let currencies = [currency, currency];
        tx.execute(
            &st,
            &[
                &&entries[..],
                &&ids[..],
                &&amounts[..],
                &&currencies[..],
                &to_i64(now_ms),
            ],
        )?;
        Ok(reference)
    }

    /// Runs a read on a pooled connection (again on a new one if the
    /// connection broke: a read can always be repeated).
    fn read<T>(&self, mut f: impl FnMut(&mut Conn) -> LedgerResult<T>) -> LedgerResult<T> {
        self.retrying(|conn| f(conn).map(Some))
    }

    fn sums(&self, sql: &'static str) -> LedgerResult<Vec<(String, i128)>> {
        self.read(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, sql)?;
            conn.client
                .query(&st, &[])?
                .iter()
                .map(|row| {
                    let currency: String = row.try_get(0)?;
                    let sum: String = row.try_get(1)?;
                    let sum = sum
                        .parse::<i128>()
                        .map_err(|_| LedgerError::Corrupt(format!("sum of {currency} is {sum}")))?;
                    Ok((currency, sum))
                })
                .collect()
        })
    }
}

fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

fn schema_version(client: &mut Client) -> LedgerResult<Option<i32>> {
    let mut tx = client.transaction()?;
    let version = schema_version_in(&mut tx)?;
    tx.commit()?;
    Ok(version)
}

fn schema_version_in(tx: &mut Transaction<'_>) -> LedgerResult<Option<i32>> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('lockstep_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM lockstep_schema", &[])?
        .get(0);
    Ok(Some(version.unwrap_or(0)))
}

fn account_row(row: &Row) -> LedgerResult<Account> {
    Ok(Account {
        id: row.try_get(0)?,
        currency: row.try_get(1)?,
        balance: i128::from(row.try_get::<_, i64>(2)?),
        overdraft: i128::from(row.try_get::<_, i64>(3)?),
        system: row.try_get(4)?,
    })
}

fn payment_row(row: &Row) -> LedgerResult<PaymentRecord> {
    let status: String = row.try_get(5)?;
    Ok(PaymentRecord {
        event_id: row.try_get(0)?,
        payer: row.try_get(1)?,
        payee: row.try_get(2)?,
        amount: i128::from(row.try_get::<_, i64>(3)?),
        currency: row.try_get(4)?,
        status: PaymentStatus::from_column(&status)?,
        reference: row.try_get(6)?,
        created_ms: to_u64(row.try_get(7)?),
        updated_ms: to_u64(row.try_get(8)?),
        failure: row.try_get(9)?,
        attempts: u32::try_from(row.try_get::<_, i32>(10)?).unwrap_or(0),
    })
}

fn receipt_row(row: &Row) -> LedgerResult<OutboxReceipt> {
    Ok(OutboxReceipt {
        event_id: row.try_get(0)?,
        reference: row.try_get(1)?,
        failure: row.try_get(2)?,
        attempts: u32::try_from(row.try_get::<_, i32>(3)?).unwrap_or(0),
    })
}

impl PaymentLedger for PostgresLedger {
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
        let overdraft_db = db_amount(overdraft)?;
        self.retrying(|conn| {
            let Conn { client, statements } = conn;
            let mut tx = client.transaction()?;
            let mut created = Vec::with_capacity(ids.len());
            for id in ids {
                let st = cached(statements, &mut tx, INSERT_ACCOUNT)?;
                let inserted = !tx
                    .query(&st, &[id, &currency, &overdraft_db, &to_i64(now_ms)])?
                    .is_empty();
                if inserted {
                    if deposit > 0 {
                        Self::deposit_in(statements, &mut tx, id, currency, deposit, now_ms)?;
                    }
                    created.push(true);
                    continue;
                }
                let st = cached(statements, &mut tx, SELECT_ACCOUNT)?;
                let existing = account_row(&tx.query_one(&st, &[id])?)?;
                if existing.currency != currency || existing.overdraft != overdraft {
                    return Err(LedgerError::AccountExists {
                        id: id.clone(),
                        currency: existing.currency,
                        overdraft: existing.overdraft,
                    });
                }
                created.push(false);
            }
            tx.commit()?;
            Ok(Some(created))
        })
    }

    fn deposit(&self, account: &str, amount: i128, now_ms: u64) -> LedgerResult<String> {
        self.writable()?;
        check_deposit_terms(account, amount)?;
        self.retrying(|conn| {
            let Conn { client, statements } = conn;
            let mut tx = client.transaction()?;
            // The currency never changes: read it unlocked, then lock both
            // accounts in the one order every writer uses.
            let st = cached(statements, &mut tx, SELECT_ACCOUNT)?;
            let to = tx
                .query_opt(&st, &[&account])?
                .map(|row| account_row(&row))
                .transpose()?
                .filter(|a| !a.system)
                .ok_or_else(|| LedgerError::UnknownAccount(account.to_owned()))?;
            let reference =
                Self::deposit_in(statements, &mut tx, account, &to.currency, amount, now_ms)?;
            tx.commit()?;
            Ok(Some(reference))
        })
    }

    fn pay_batch(
        &self,
        batch: &[Instruction],
        now_ms: u64,
    ) -> LedgerResult<Vec<LedgerResult<PayOutcome>>> {
        self.writable()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying(|conn| Self::pay_once(conn, batch, now_ms))
    }

    fn account(&self, id: &str) -> LedgerResult<Option<Account>> {
        self.read(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, SELECT_ACCOUNT)?;
            conn.client
                .query_opt(&st, &[&id])?
                .map(|row| account_row(&row))
                .transpose()
        })
    }

    fn accounts(&self) -> LedgerResult<Vec<Account>> {
        self.read(|conn| all_accounts(&mut conn.client))
    }

    fn payments(&self) -> LedgerResult<Vec<PaymentRecord>> {
        self.read(|conn| all_payments(&mut conn.client))
    }

    fn payment(&self, event_id: &str) -> LedgerResult<Option<PaymentRecord>> {
        self.read(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, SELECT_PAYMENT)?;
            conn.client
                .query_opt(&st, &[&event_id])?
                .map(|row| payment_row(&row))
                .transpose()
        })
    }

    fn totals(&self) -> LedgerResult<Vec<(String, i128)>> {
        self.sums(
            "SELECT currency, sum(balance)::text FROM accounts \
             GROUP BY currency ORDER BY currency COLLATE \"C\"",
        )
    }

    fn posting_totals(&self) -> LedgerResult<Vec<(String, i128)>> {
        self.sums(
            "SELECT currency, sum(amount)::text FROM postings \
             GROUP BY currency ORDER BY currency COLLATE \"C\"",
        )
    }

    fn due_receipts(&self, now_ms: u64, limit: usize) -> LedgerResult<Vec<OutboxReceipt>> {
        self.read(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, DUE_RECEIPTS)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            conn.client
                .query(&st, &[&to_i64(now_ms), &limit])?
                .iter()
                .map(receipt_row)
                .collect()
        })
    }

    fn next_receipt_due(&self) -> LedgerResult<Option<u64>> {
        self.read(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, NEXT_DUE)?;
            let next: Option<i64> = conn.client.query_one(&st, &[])?.try_get(0)?;
            Ok(next.map(to_u64))
        })
    }

    fn receipts_delivered(&self, delivered: &[OutboxReceipt]) -> LedgerResult<()> {
        self.writable()?;
        if delivered.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = delivered.iter().map(|r| r.event_id.as_str()).collect();
        let refs: Vec<&str> = delivered.iter().map(|r| r.reference.as_str()).collect();
        let failures: Vec<Option<&str>> = delivered.iter().map(|r| r.failure.as_deref()).collect();
        self.retrying(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, DELETE_DELIVERED)?;
            conn.client.execute(&st, &[&ids, &refs, &failures])?;
            Ok(Some(()))
        })
    }

    fn receipts_retry(&self, retries: &[(OutboxReceipt, u64)]) -> LedgerResult<()> {
        self.writable()?;
        if retries.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = retries.iter().map(|(r, _)| r.event_id.as_str()).collect();
        let refs: Vec<&str> = retries.iter().map(|(r, _)| r.reference.as_str()).collect();
        let failures: Vec<Option<&str>> =
            retries.iter().map(|(r, _)| r.failure.as_deref()).collect();
        let times: Vec<i64> = retries.iter().map(|(_, t)| to_i64(*t)).collect();
        self.retrying(|conn| {
            let st = cached(&mut conn.statements, &mut conn.client, RESCHEDULE)?;
            conn.client
                .execute(&st, &[&ids, &refs, &failures, &times])?;
            Ok(Some(()))
        })
    }

    fn receipt_backlog(&self) -> LedgerResult<u64> {
        self.read(|conn| {
            let count: i64 = conn
                .client
                .query_one("SELECT count(*) FROM receipt_outbox", &[])?
                .try_get(0)?;
            Ok(to_u64(count))
        })
    }

    fn contents(&self) -> LedgerResult<LedgerContents> {
        self.read(|conn| {
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let accounts = all_accounts(&mut tx)?;
            let payments = all_payments(&mut tx)?;
            let deposits = tx
                .query(
                    "SELECT reference, account, amount FROM deposits ORDER BY seq",
                    &[],
                )?
                .iter()
                .map(|row| {
                    Ok(Deposit {
                        reference: row.try_get(0)?,
                        account: row.try_get(1)?,
                        amount: i128::from(row.try_get::<_, i64>(2)?),
                    })
                })
                .collect::<LedgerResult<Vec<_>>>()?;
            let postings = tx
                .query(
                    "SELECT id, entry, account, amount, currency FROM postings ORDER BY id",
                    &[],
                )?
                .iter()
                .map(|row| {
                    Ok(Posting {
                        id: to_u64(row.try_get(0)?),
                        entry: row.try_get(1)?,
                        account: row.try_get(2)?,
                        amount: i128::from(row.try_get::<_, i64>(3)?),
                        currency: row.try_get(4)?,
                    })
                })
                .collect::<LedgerResult<Vec<_>>>()?;
            tx.commit()?;
            Ok(LedgerContents {
                accounts,
                payments,
                deposits,
                postings,
            })
        })
    }
}

fn all_accounts(client: &mut impl GenericClient) -> LedgerResult<Vec<Account>> {
    client
        .query(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id COLLATE \"C\""),
            &[],
        )?
        .iter()
        .map(account_row)
        .collect()
}

fn all_payments(client: &mut impl GenericClient) -> LedgerResult<Vec<PaymentRecord>> {
    client
        .query(
            &format!("SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY seq"),
            &[],
        )?
        .iter()
        .map(payment_row)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_service::test_utils::TestPostgres;

    /// The EXPLAIN lines of `sql`'s generic plan (as any parameters would
    /// get it), with sequential scans priced out: a scan that still shows
    /// is one no index can replace.
    fn plan(client: &mut Client, name: &str, sql: &str) -> Vec<String> {
        let params = (1..=9).filter(|n| sql.contains(&format!("${n}"))).count();
        client
            .batch_execute(&format!("PREPARE {name} AS {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let nulls = vec!["NULL"; params].join(", ");
        let explain = if params == 0 {
            format!("EXPLAIN EXECUTE {name}")
        } else {
            format!("EXPLAIN EXECUTE {name}({nulls})")
        };
        client
            .query(&explain, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    #[test]
    fn hot_statements_find_their_rows_by_key_or_index_and_never_scan_a_table() {
        let dir = tempfile::tempdir().expect("dir");
        let server = TestPostgres::start(dir.path());
        let url = server.create_database("ledger");
        drop(PostgresLedger::open(&url).expect("open"));
        let mut client = Client::connect(&url, NoTls).expect("connect");
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
            .expect("settings");
        for (i, sql) in HOT_STATEMENTS.iter().enumerate() {
            let plan = plan(&mut client, &format!("hot{i}"), sql);
            assert!(
                !plan.iter().any(|line| line.contains("Seq Scan")),
                "{sql}\n{}",
                plan.join("\n")
            );
        }
        // The check bites: a lookup by an unindexed column is a scan.
        let plan = plan(
            &mut client,
            "bite",
            "SELECT seq FROM payments WHERE payer = $1",
        );
        assert!(
            plan.iter()
                .any(|line| line.contains("Seq Scan on payments")),
            "{}",
            plan.join("\n")
        );
    }
}
