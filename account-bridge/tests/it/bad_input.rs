//! Bad input, through the library and the command line: clear errors, and
//! nothing written, on either ledger engine. Also the CLI's normal paths
//! (seeding, listing, keys).

use std::sync::Arc;

use lockstep_api::event::PaymentInstruction;
use lockstep_bridge::ledger::{
    Instruction, LedgerError, LedgerLocation, PayOutcome, PaymentLedger, SqliteLedger,
};
use serde_json::Value;

use crate::harness::{assert_conserved, bridge_bin, ledger_cli, Engine, TestLedger};

fn instruction(payer: &str, payee: &str, amount: &str, currency: &str) -> PaymentInstruction {
    PaymentInstruction {
        payer: payer.into(),
        payee: payee.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

fn seeded(engine: Engine, dir: &std::path::Path) -> (TestLedger, Arc<dyn PaymentLedger>) {
    let test_ledger = TestLedger::new(engine, dir);
    let ledger = test_ledger.open();
    ledger
        .open_accounts(&["alice".into(), "bob".into()], "USD", 0, 1_000, 1)
        .unwrap();
    ledger
        .open_accounts(&["erika".into()], "EUR", 0, 1_000, 1)
        .unwrap();
    (test_ledger, ledger)
}

#[test]
fn bad_instructions_get_clear_errors_and_write_nothing() {
    // Refused while parsing: the ledger is never asked.
    for (id, payment, expected) in [
        (
            "e1",
            instruction("alice", "bob", "0", "USD"),
            "must be positive",
        ),
        ("e1", instruction("alice", "bob", "-5", "USD"), "negative"),
        (
            "e1",
            instruction("alice", "bob", "12.50", "USD"),
            "not an integer",
        ),
        (
            "e1",
            instruction("alice", "bob", "", "USD"),
            "not an integer",
        ),
        (
            "e1",
            instruction("alice", "bob", "007", "USD"),
            "leading zeros",
        ),
        (
            "e1",
            instruction("alice", "bob", "9223372036854775808", "USD"),
            "exceeds",
        ),
        (
            "e1",
            instruction("alice", "bob", &"9".repeat(39), "USD"),
            "exceeds",
        ),
        (
            "e1",
            instruction("alice", "bob", &"9".repeat(60), "USD"),
            "exceeds",
        ),
        (
            "e1",
            instruction("alice", "bob", "12abc", "USD"),
            "not an integer",
        ),
        (
            "e1",
            instruction("alice", "bob", "5", "usd"),
            "three upper-case",
        ),
        (
            "e1",
            instruction("alice", "bob", "5", "DOLLAR"),
            "three upper-case",
        ),
        (
            "e1",
            instruction("alice", "alice", "5", "USD"),
            "the same account",
        ),
        (
            "e1",
            instruction("@external/USD", "bob", "5", "USD"),
            "system accounts",
        ),
        ("e1", instruction("al ice", "bob", "5", "USD"), "printable"),
        ("e1", instruction("", "bob", "5", "USD"), "1 to 128"),
        (
            "bad id!",
            instruction("alice", "bob", "5", "USD"),
            "event id",
        ),
        ("", instruction("alice", "bob", "5", "USD"), "event id"),
    ] {
        let error = Instruction::parse(id, &payment).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, LedgerError::Invalid { .. }) && message.contains(expected),
            "{payment:?}: {message}"
        );
    }
    ledger_refusals(Engine::Sqlite);

    // A file that is not a ledger is refused; so is a missing one, read-only.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    assert!(SqliteLedger::open(&junk).is_err());
    assert!(SqliteLedger::open_read_only(&dir.path().join("missing.db")).is_err());
}

#[test]
fn bad_instructions_get_clear_errors_and_write_nothing_on_postgres() {
    ledger_refusals(Engine::Postgres);
}

/// What the ledger itself refuses, with nothing written.
fn ledger_refusals(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (test_ledger, ledger) = seeded(engine, dir.path());
    let before = test_ledger.dump();

    // Refused by the ledger, nothing written: a currency it does not hold,
    // a currency other than the accounts', a balance that would overflow.
    let pay = |payer: &str, payee: &str, amount: &str, currency: &str| {
        let parsed =
            Instruction::parse("e1", &instruction(payer, payee, amount, currency)).unwrap();
        ledger.pay(&parsed, 5)
    };
    let unknown_currency = pay("alice", "bob", "5", "GBP").unwrap_err();
    assert!(
        unknown_currency.to_string().contains("no GBP accounts"),
        "{unknown_currency}"
    );
    let mixed = pay("alice", "erika", "5", "USD").unwrap_err();
    assert!(mixed.to_string().contains("erika holds EUR"), "{mixed}");
    assert_eq!(test_ledger.dump(), before);

    // A valid payment, then the same event id with another instruction.
    assert!(matches!(
        pay("alice", "bob", "5", "USD").unwrap(),
        PayOutcome::Paid { .. }
    ));
    let after_payment = test_ledger.dump();
    let conflict = pay("alice", "bob", "6", "USD").unwrap_err();
    assert!(matches!(conflict, LedgerError::Conflict(_)), "{conflict}");
    assert_eq!(test_ledger.dump(), after_payment);

    // Operator calls.
    for result in [
        ledger.deposit("nobody", 5, 6).map(|_| ()),
        ledger.deposit("alice", 0, 6).map(|_| ()),
        ledger.deposit("alice", -5, 6).map(|_| ()),
        ledger
            .deposit("alice", i128::from(i64::MAX) + 1, 6)
            .map(|_| ()),
        ledger
            .open_accounts(&["alice".into()], "EUR", 0, 0, 6)
            .map(|_| ()),
        ledger
            .open_accounts(&["new".into()], "Euro", 0, 0, 6)
            .map(|_| ()),
        ledger
            .open_accounts(&["new".into()], "USD", -1, 0, 6)
            .map(|_| ()),
        ledger
            .open_accounts(&["@system".into()], "USD", 0, 0, 6)
            .map(|_| ()),
    ] {
        assert!(result.is_err());
    }
    assert_eq!(test_ledger.dump(), after_payment);
    assert_conserved(ledger.as_ref());

    // A read-only ledger refuses writes.
    let location: LedgerLocation = test_ledger.location.parse().unwrap();
    let read_only = location.open_read_only().unwrap();
    assert!(read_only.deposit("alice", 5, 7).is_err());
    assert!(read_only
        .open_accounts(&["new".into()], "USD", 0, 0, 7)
        .is_err());
    assert_eq!(read_only.payments().unwrap().len(), 1);
    assert_eq!(test_ledger.dump(), after_payment);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn set_mode(path: &std::path::Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[test]
fn bad_cli_input_gets_clear_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (test_ledger, ledger) = cli_refusals(Engine::Sqlite, dir.path());
    drop(ledger);
    let path = test_ledger.location.clone();
    let before = test_ledger.dump();
    // No --ledger at all.
    let out = bridge_bin()
        .args(["ledger", "balance"])
        .env_remove("LOCKSTEP_BRIDGE_LEDGER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--ledger"), "{}", stderr(&out));
    // A bad key file, a bad event system URL.
    let events_key = crate::harness::event_system_key().public().to_string();
    let run = |key: &std::path::Path, extra: &[&str]| {
        bridge_bin()
            .args(["run", "--event-system", "http://127.0.0.1:1", "--ledger"])
            .arg(&path)
            .arg("--key")
            .arg(key)
            .args(extra)
            .output()
            .unwrap()
    };
    let key = dir.path().join("key.json");
    std::fs::write(&key, "{}").unwrap();
    set_mode(&key, 0o600);
    let out = run(&key, &["--event-system-key", &events_key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a valid key file"),
        "{}",
        stderr(&out)
    );
    let good_key = crate::harness::bridge_key_file(dir.path());
    // The event system's key: required, and a public key.
    let out = run(&good_key, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--event-system-key"),
        "{}",
        stderr(&out)
    );
    for bad in ["0x1234", "nothex", &events_key[2..]] {
        let out = run(&good_key, &["--event-system-key", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let message = stderr(&out);
        assert!(message.contains("--event-system-key"), "{bad}: {message}");
        assert!(
            message.contains("32 bytes") || message.contains("0x") || message.contains("hex"),
            "{bad}: {message}"
        );
    }
    // A key file others may read is refused, with the fix, and without
    // its secret.
    let open_key = dir.path().join("open-key.json");
    std::fs::copy(&good_key, &open_key).unwrap();
    set_mode(&open_key, 0o644);
    let out = run(&open_key, &["--event-system-key", &events_key]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains("chmod 600"), "{message}");
    let seed = lockstep_runtime::primitives::to_hex(&crate::harness::bridge_key().seed());
    assert!(!message.contains(&seed[2..18]), "{message}");
    let out = bridge_bin()
        .args(["run", "--event-system", "localhost:1", "--ledger"])
        .arg(&path)
        .arg("--key")
        .arg(&good_key)
        .args(["--event-system-key", &events_key])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("http://"), "{}", stderr(&out));
    assert_eq!(test_ledger.dump(), before);
}

#[test]
fn bad_cli_input_gets_clear_errors_and_writes_nothing_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (test_ledger, ledger) = cli_refusals(Engine::Postgres, dir.path());
    drop(ledger);
    // A URL that is not PostgreSQL's, and a server that is not there: clear
    // errors, with no password shown.
    for (ledger, code, expected) in [
        (
            "mysql://root:hunter2@127.0.0.1/x",
            2,
            "a SQLite file or a postgres:// URL",
        ),
        (
            "postgres://lockstep:hunter2@127.0.0.1:port/ledger",
            2,
            "not a PostgreSQL URL",
        ),
        (
            "postgres://lockstep:hunter2@127.0.0.1:1/ledger",
            1,
            "opening the ledger postgres://",
        ),
    ] {
        let out = ledger_cli(ledger, &["balance"]);
        assert_eq!(out.status.code(), Some(code), "{ledger}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{ledger}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
    drop(test_ledger);
}

/// The ledger commands' refusals on a seeded ledger on `engine`: each
/// exits with its code and message and writes nothing.
fn cli_refusals(engine: Engine, dir: &std::path::Path) -> (TestLedger, Arc<dyn PaymentLedger>) {
    let (test_ledger, ledger) = seeded(engine, dir);
    let before = test_ledger.dump();
    for (args, code, expected) in [
        (&["deposit", "alice", "0"][..], 1, "must be positive"),
        (&["deposit", "alice", "-5"], 1, "negative"),
        (&["deposit", "alice", "12.50"], 1, "not an integer"),
        (&["deposit", "alice", "99999999999999999999"], 1, "exceeds"),
        (&["deposit", "nobody", "5"], 1, "no account \"nobody\""),
        (&["deposit", "alice"], 2, "AMOUNT"),
        (
            &["open", "carol", "--currency", "usd"],
            1,
            "three upper-case",
        ),
        (&["open", "carol"], 2, "--currency"),
        (
            &["open", "@carol", "--currency", "USD"],
            1,
            "system accounts",
        ),
        (&["open", "alice", "--currency", "EUR"], 1, "already exists"),
        (
            &["open", "carol", "--currency", "USD", "--deposit", "0"],
            1,
            "must be positive",
        ),
        (
            &["open", "carol", "--currency", "USD", "--overdraft", "-1"],
            1,
            "negative",
        ),
        (&["balance", "nobody"], 1, "no account"),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ] {
        let out = ledger_cli(&test_ledger.location, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(test_ledger.dump(), before, "{args:?} wrote to the ledger");
    }
    (test_ledger, ledger)
}

#[test]
fn cli_seeds_lists_and_makes_keys() {
    let dir = tempfile::tempdir().unwrap();
    cli_seeds_and_lists(Engine::Sqlite, dir.path());
    keys_and_help(dir.path());
}

#[test]
fn cli_seeds_and_lists_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    cli_seeds_and_lists(Engine::Postgres, dir.path());
}

/// Seeding (twice: the second changes nothing), a deposit, the listings.
fn cli_seeds_and_lists(engine: Engine, dir: &std::path::Path) {
    let test_ledger = TestLedger::new(engine, dir);
    let path = test_ledger.location.clone();
    let seed = [
        "open",
        "alice",
        "bob",
        "charlie",
        "--currency",
        "USD",
        "--deposit",
        "100000000",
    ];
    let out = ledger_cli(&path, &seed);
    assert!(out.status.success(), "{}", stderr(&out));
    // Seeding again changes nothing (safe to re-run in scripts).
    let seeded = test_ledger.dump();
    let out = ledger_cli(&path, &seed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("left unchanged"));
    assert_eq!(test_ledger.dump(), seeded);

    let out = ledger_cli(&path, &["deposit", "alice", "250"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ledger_cli(&path, &["balance", "--json"]);
    assert!(out.status.success());
    let balances: Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts = balances["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 4, "{balances}"); // three and the external account
    let alice = accounts.iter().find(|a| a["id"] == "alice").unwrap();
    assert_eq!(alice["balance"], "100000250");
    assert_eq!(balances["totals"][0]["sum"], "0");
    let out = ledger_cli(&path, &["balance", "bob", "--json"]);
    let bob: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bob["balance"], "100000000");
    let out = ledger_cli(&path, &["payments", "--json"]);
    assert!(out.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = ledger_cli(&path, &["balance"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total USD: 0"));
}

/// Keys (generate: 0600, never overwritten; inspect) and help.
fn keys_and_help(dir: &std::path::Path) {
    let key = dir.join("bridge.json");
    let out = bridge_bin()
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(public.starts_with("0x") && public.len() == 66, "{public}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = bridge_bin()
        .args(["key", "inspect"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);
    let out = bridge_bin()
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Help for every command; every flag of `run` is described.
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["ledger", "--help"],
        &["ledger", "open", "--help"],
        &["ledger", "deposit", "--help"],
        &["ledger", "balance", "--help"],
        &["ledger", "payments", "--help"],
        &["key", "generate", "--help"],
    ] {
        let out = bridge_bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
    }
    let out = bridge_bin().args(["run", "-h"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--event-system",
        "--event-system-key",
        "--ledger",
        "--key",
        "--concurrency",
        "--prometheus-port",
        "--no-fsync",
    ] {
        // The description follows the flag on its line, or on the next.
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap();
        let described = lines[at].trim().split("  ").count() > 1
            || lines
                .get(at + 1)
                .is_some_and(|l| !l.trim().is_empty() && !l.trim().starts_with('-'));
        assert!(described, "{flag} has no description: {help}");
    }
}
