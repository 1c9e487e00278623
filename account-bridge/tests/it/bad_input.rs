//! Bad input, through the library and the command line: clear errors, and
//! nothing written. Also the CLI's normal paths (seeding, listing, keys).

use lockstep_api::event::PaymentInstruction;
use lockstep_bridge::ledger::{Instruction, LedgerError, PayOutcome, PaymentLedger, SqliteLedger};
use serde_json::Value;

use crate::harness::{assert_conserved, bridge_bin, dump, ledger_cli};

fn instruction(payer: &str, payee: &str, amount: &str, currency: &str) -> PaymentInstruction {
    PaymentInstruction {
        payer: payer.into(),
        payee: payee.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

fn seeded(dir: &std::path::Path) -> (std::path::PathBuf, SqliteLedger) {
    let path = dir.join("ledger.db");
    let ledger = SqliteLedger::open(&path).unwrap();
    ledger
        .open_accounts(&["alice".into(), "bob".into()], "USD", 0, 1_000, 1)
        .unwrap();
    ledger
        .open_accounts(&["erika".into()], "EUR", 0, 1_000, 1)
        .unwrap();
    (path, ledger)
}

#[test]
fn bad_instructions_get_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ledger) = seeded(dir.path());
    let before = dump(&path);

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
    assert_eq!(dump(&path), before);

    // A valid payment, then the same event id with another instruction.
    assert!(matches!(
        pay("alice", "bob", "5", "USD").unwrap(),
        PayOutcome::Paid { .. }
    ));
    let after_payment = dump(&path);
    let conflict = pay("alice", "bob", "6", "USD").unwrap_err();
    assert!(matches!(conflict, LedgerError::Conflict(_)), "{conflict}");
    assert_eq!(dump(&path), after_payment);

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
    assert_eq!(dump(&path), after_payment);
    assert_conserved(&ledger);

    // A read-only ledger refuses writes; a file that is not a ledger is refused.
    let read_only = SqliteLedger::open_read_only(&path).unwrap();
    assert!(read_only.deposit("alice", 5, 7).is_err());
    assert_eq!(read_only.payments().unwrap().len(), 1);
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    assert!(SqliteLedger::open(&junk).is_err());
    assert!(SqliteLedger::open_read_only(&dir.path().join("missing.db")).is_err());
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
    let (path, ledger) = seeded(dir.path());
    drop(ledger);
    let before = dump(&path);
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
        let out = ledger_cli(&path, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(dump(&path), before, "{args:?} wrote to the ledger");
    }
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
    assert_eq!(dump(&path), before);
}

#[test]
fn cli_seeds_lists_and_makes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
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
    let seeded = dump(&path);
    let out = ledger_cli(&path, &seed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("left unchanged"));
    assert_eq!(dump(&path), seeded);

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

    // Keys: generate (0600, never overwritten), inspect.
    let key = dir.path().join("bridge.json");
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
