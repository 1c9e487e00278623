//! The PostgreSQL ledger against a real server of the test's own
//! ([`TestPostgres`]): it keeps the contract exactly as the SQLite ledger
//! does (the same calls give the same answers and leave the same rows),
//! its schema is versioned and guarded, a password never shows, and it
//! outlives its server's faults.

use lockstep_api::event::PaymentInstruction;
use lockstep_bridge::ledger::{
    Durability, Instruction, LedgerLocation, LedgerResult, OutboxReceipt, PayOutcome,
    PaymentLedger, PostgresLedger,
};
use lockstep_service::test_utils::TestPostgres;

use crate::harness::assert_conserved;

fn ins(id: &str, payer: &str, payee: &str, amount: &str, currency: &str) -> Instruction {
    Instruction::parse(
        id,
        &PaymentInstruction {
            payer: payer.into(),
            payee: payee.into(),
            amount: amount.into(),
            currency: currency.into(),
        },
    )
    .unwrap()
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// What a call answered, comparable across ledgers (errors by message).
fn shown<T: std::fmt::Debug>(result: &LedgerResult<T>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => format!("error {e}"),
    }
}

/// One scenario touching every rule of the contract; returns every answer
/// in order.
fn scenario(ledger: &dyn PaymentLedger) -> Vec<String> {
    let max = i64::MAX.to_string();
    let mut log = Vec::new();
    let mut note = |what: &str, answer: String| log.push(format!("{what}: {answer}"));
    note(
        "open",
        shown(&ledger.open_accounts(&ids(&["alice", "bob"]), "USD", 0, 1000, 1)),
    );
    note(
        "open eur",
        shown(&ledger.open_accounts(&ids(&["carol"]), "EUR", 0, 500, 1)),
    );
    note(
        "reopen",
        shown(&ledger.open_accounts(&ids(&["alice", "alice"]), "USD", 0, 1000, 2)),
    );
    note(
        "other terms",
        shown(&ledger.open_accounts(&ids(&["bob"]), "USD", 5, 0, 2)),
    );
    note("deposit", shown(&ledger.deposit("bob", 20, 2)));
    note("deposit unknown", shown(&ledger.deposit("nobody", 20, 2)));
    let batch = [
        ins("e1", "alice", "bob", "300", "USD"),
        ins("e1", "alice", "bob", "300", "USD"),
        ins("e2", "bob", "alice", "5000", "USD"),
        ins("e3", "alice", "dave", "10", "USD"),
        ins("e4", "alice", "bob", "10", "GBP"),
        ins("e5", "alice", "carol", "10", "USD"),
        ins("e1", "alice", "bob", "301", "USD"),
        ins("e7", "bob", "alice", "1", "USD"),
    ];
    for (i, outcome) in ledger.pay_batch(&batch, 3).unwrap().iter().enumerate() {
        note(&format!("batch 1 #{i}"), shown(outcome));
    }
    note(
        "open dave",
        shown(&ledger.open_accounts(&ids(&["dave"]), "USD", 0, 0, 4)),
    );
    note("deposit bob", shown(&ledger.deposit("bob", 5000, 4)));
    // JPY: accounts at the edges of the 64-bit range.
    note(
        "open x1",
        shown(&ledger.open_accounts(&ids(&["x1"]), "JPY", 0, i128::from(i64::MAX), 4)),
    );
    note(
        "open x2",
        shown(&ledger.open_accounts(&ids(&["x2"]), "JPY", 0, 0, 4)),
    );
    note(
        "open x3",
        shown(&ledger.open_accounts(&ids(&["x3"]), "JPY", i128::from(i64::MAX), 0, 4)),
    );
    note("deposit past the range", shown(&ledger.deposit("x2", 2, 4)));
    let batch = [
        ins("e2", "bob", "alice", "5000", "USD"),
        ins("e3", "alice", "dave", "10", "USD"),
        ins("e1", "alice", "bob", "300", "USD"),
        ins("e8", "x1", "x2", &max, "JPY"),
        ins("e9", "x3", "x2", "1", "JPY"),
        ins("e10", "dave", "alice", "10", "USD"),
        ins("e10", "dave", "alice", "10", "USD"),
    ];
    for (i, outcome) in ledger.pay_batch(&batch, 5).unwrap().iter().enumerate() {
        note(&format!("batch 2 #{i}"), shown(outcome));
    }
    note(
        "one",
        shown(&ledger.pay(&ins("e11", "bob", "alice", "1", "USD"), 6)),
    );
    note("empty batch", shown(&ledger.pay_batch(&[], 6)));
    // The receipt outbox.
    // Receipts due at the same time come in no set order: sorted here.
    let mut due = ledger.due_receipts(6, 100).unwrap();
    due.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    note("due", format!("{due:?}"));
    note("next due", shown(&ledger.next_receipt_due()));
    let (first, rest) = due.split_at(2);
    ledger
        .receipts_retry(&first.iter().map(|r| (r.clone(), 50)).collect::<Vec<_>>())
        .unwrap();
    let stale = OutboxReceipt {
        failure: Some("stale".into()),
        ..rest[0].clone()
    };
    ledger.receipts_delivered(&[stale]).unwrap();
    ledger.receipts_delivered(&rest[1..]).unwrap();
    note("backlog", shown(&ledger.receipt_backlog()));
    note("due later", format!("{:?}", ledger.due_receipts(100, 100)));
    note("next due later", shown(&ledger.next_receipt_due()));
    note("account", shown(&ledger.account("alice")));
    note("no account", shown(&ledger.account("nobody")));
    note("payment", shown(&ledger.payment("e2")));
    note("no payment", shown(&ledger.payment("e99")));
    note("accounts", shown(&ledger.accounts()));
    note("payments", shown(&ledger.payments()));
    note("totals", shown(&ledger.totals()));
    note("posting totals", shown(&ledger.posting_totals()));
    note("contents", shown(&ledger.contents()));
    log
}

#[test]
fn the_postgres_ledger_answers_and_writes_exactly_as_the_sqlite_ledger_does() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = LedgerLocation::Sqlite(dir.path().join("ledger.db"))
        .open(Durability::Full)
        .unwrap();
    let server = TestPostgres::start(dir.path());
    let postgres = PostgresLedger::open(&server.create_database("ledger")).unwrap();
    let expected = scenario(sqlite.as_ref());
    let got = scenario(&postgres);
    assert_eq!(expected.len(), got.len());
    for (expected, got) in expected.iter().zip(&got) {
        assert_eq!(expected, got);
    }
    // The scenario covers what it claims to.
    let all = expected.join("\n");
    for answer in [
        "Paid",
        "AlreadyPaid",
        "InsufficientFunds",
        "UnknownAccount",
        "already handled with a different instruction",
        "the ledger holds no GBP accounts",
        "holds EUR, the payment is in USD",
        "would overflow",
        "already exists with currency USD",
    ] {
        assert!(all.contains(answer), "{answer} not in\n{all}");
    }
    assert_conserved(&postgres);
}

#[test]
fn the_schema_is_versioned_and_a_foreign_or_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPostgres::start(dir.path());
    let url = server.create_database("ledger");
    // Opened twice (a restart, a second bridge): migrated once.
    drop(PostgresLedger::open(&url).unwrap());
    let ledger = PostgresLedger::open(&url).unwrap();
    ledger
        .open_accounts(&ids(&["alice"]), "USD", 0, 10, 1)
        .unwrap();
    assert_eq!(
        server
            .psql("ledger", "SELECT version FROM lockstep_schema")
            .trim(),
        "1"
    );
    // Read-only: reads work, writes are refused before the server is asked.
    let reader = PostgresLedger::open_read_only(&url).unwrap();
    assert_eq!(reader.account("alice").unwrap().unwrap().balance, 10);
    let refused = reader.deposit("alice", 1, 2).unwrap_err().to_string();
    assert!(refused.contains("read-only"), "{refused}");
    // A newer schema than this build knows.
    server.psql(
        "ledger",
        "INSERT INTO lockstep_schema (version, applied_ms) VALUES (99, 0)",
    );
    let newer = PostgresLedger::open(&url).unwrap_err().to_string();
    assert!(newer.contains("schema version 99"), "{newer}");
    assert!(PostgresLedger::open_read_only(&url).is_err());
    // Somebody else's tables of the same names.
    let foreign = server.create_database("foreign");
    server.psql("foreign", "CREATE TABLE accounts (id TEXT)");
    let refused = PostgresLedger::open(&foreign).unwrap_err().to_string();
    assert!(refused.contains("not a Lockstep ledger"), "{refused}");
    // Reading an empty database is refused too (nothing to audit).
    let empty = server.create_database("empty");
    assert!(PostgresLedger::open_read_only(&empty).is_err());
}

#[test]
fn a_password_never_shows_in_errors_or_debug_output() {
    let url = "postgres://bridge:s3cret-pw@127.0.0.1:1/ledger";
    let location: LedgerLocation = url.parse().unwrap();
    for text in [
        format!("{location}"),
        format!("{location:?}"),
        PostgresLedger::open(url).unwrap_err().to_string(),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
    assert!("mysql://x@y/z".parse::<LedgerLocation>().is_err());
    assert!("postgres://x@y:notaport/z"
        .parse::<LedgerLocation>()
        .is_err());
}

#[test]
fn the_ledger_outlives_killed_sessions_and_an_immediate_server_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestPostgres::start(dir.path());
    let url = server.create_database("ledger");
    let ledger = PostgresLedger::open(&url).unwrap();
    ledger
        .open_accounts(&ids(&["alice", "bob"]), "USD", 0, 1000, 1)
        .unwrap();
    let pay = |id: &str| ledger.pay(&ins(id, "alice", "bob", "1", "USD"), 2);
    assert!(matches!(pay("e1"), Ok(PayOutcome::Paid { .. })));
    // Its pooled sessions are ended under it: the next call reconnects.
    assert!(server.terminate_backends("ledger") >= 1);
    let after = pay("e2");
    assert!(matches!(after, Ok(PayOutcome::Paid { .. })), "{after:?}");
    // The server stops without a checkpoint: calls fail and write nothing…
    server.stop_immediate();
    assert!(pay("e3").is_err());
    // …and after recovery everything committed is there, once.
    server.restart();
    assert!(matches!(pay("e1"), Ok(PayOutcome::AlreadyPaid { .. })));
    assert!(matches!(pay("e3"), Ok(PayOutcome::Paid { .. })));
    assert_eq!(ledger.payments().unwrap().len(), 3);
    assert_eq!(ledger.account("bob").unwrap().unwrap().balance, 1003);
    assert_conserved(&ledger);
}
