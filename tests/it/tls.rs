//! TLS on every JSON-RPC endpoint (issue 13), on the whole system as real
//! processes over loopback ([`System::start_tls`]): the validators and the
//! event system serve `https://` and `wss://` with a certificate of a CA
//! the test makes; the event system asks the nodes, the bridge asks the
//! event system and the `lockstep` CLI asks both, each trusting that CA
//! alone (`--ca-file`).
//!
//! A paid transfer made with the CLI completes and is paid exactly once.
//! Before it, every client that cannot verify the servers is refused
//! before anything is registered, submitted or paid: one trusting only the
//! system's roots (no `--ca-file`), one trusting another CA, one speaking
//! plain `http://` to a TLS port; an unusable CA file is a usage error that
//! quotes nothing of the file.

use std::process::{Command, Output};

use jsonrpsee::core::client::Error as ClientError;
use lockstep_api::lifecycle::State;
use lockstep_api::node::StateApiClient;
use lockstep_api::offchain::{error as offchain_error, EventApiClient};
use lockstep_runtime::Keypair;
use lockstep_service::test_utils::TestCa;
use serde_json::Value;

use crate::harness::{binary, exclusive};
use crate::system::{ledger_json, System, CURRENCY, LEDGER_FUNDS};

/// What every paid transfer here settles with: bob pays alice 25.00.
const PAYMENT: &str = "bob:alice:2500:USD";
/// Its amount in cents.
const CENTS: i128 = 2500;
/// The usage exit code (a bad flag, token or CA file).
const EXIT_USAGE: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_paid_once_over_tls_and_clients_that_cannot_verify_are_refused() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_tls(4).await;
    let ca = system.net.tls.clone().expect("the system runs with TLS");
    assert!(
        system.events_url.starts_with("https://"),
        "{}",
        system.events_url
    );
    assert!(system.net.rpc_url(0).starts_with("https://"));
    let stranger = TestCa::new(&system.net.dir().join("stranger-ca"));
    let nodes = system.node_urls();
    let events = system.events_url.clone();

    // No --ca-file: the system's roots do not know the test CA, so the
    // first node refuses to be trusted and nothing is registered.
    let untrusted = lockstep(&system, &["--nodes", &nodes, "--events", &events])
        .args(paid_transfer("tls-untrusted"))
        .output()
        .expect("run lockstep");
    assert_refused(&untrusted, "certificate");
    // The event system alone, over HTTP and over a WebSocket.
    for command in [
        &["event", "stats"][..],
        &["event", "watch", "tls-untrusted"],
    ] {
        let output = lockstep(&system, &["--events", &events])
            .args(command)
            .output()
            .expect("run lockstep");
        assert_refused(&output, "certificate");
    }
    // Another CA's certificates: refused the same way.
    let wrong_ca = lockstep(&system, &["--nodes", &nodes, "--events", &events])
        .args(stranger.client_args())
        .args(paid_transfer("tls-stranger"))
        .output()
        .expect("run lockstep");
    assert_refused(&wrong_ca, "certificate");
    // Plain http:// to the event system's TLS port: the nodes answer (the
    // CA is trusted), registration fails, so the transfer is never
    // submitted.
    let plain_events = events.replacen("https://", "http://", 1);
    let plain = lockstep(&system, &["--nodes", &nodes, "--events", &plain_events])
        .args(ca.client_args())
        .args(paid_transfer("tls-plain"))
        .output()
        .expect("run lockstep");
    assert_refused(
        &plain,
        "the event was not registered, so the transfer was not submitted",
    );
    // Plain http:// to a node's TLS port.
    let plain_node = system.net.rpc_url(0).replacen("https://", "http://", 1);
    let head = lockstep(&system, &["--rpc", &plain_node])
        .args(ca.client_args())
        .args(["chain", "head"])
        .output()
        .expect("run lockstep");
    assert_refused(&head, "cannot reach it");
    // An unusable CA file is bad usage, and says why without quoting it.
    let key_text = std::fs::read_to_string(&ca.key_pem).expect("the test key");
    let key_line = key_text.lines().nth(1).expect("a line of the key");
    let missing = system.net.dir().join("no-such-ca.pem");
    for (file, reason) in [
        (
            ca.key_pem.as_path(),
            "no -----BEGIN CERTIFICATE----- section",
        ),
        (missing.as_path(), "no-such-ca.pem"),
    ] {
        let output = lockstep(&system, &["--events", &events, "event", "stats"])
            .arg("--ca-file")
            .arg(file)
            .output()
            .expect("run lockstep");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{stderr}");
        assert!(
            stderr.contains("--ca-file") && stderr.contains(reason),
            "{stderr}"
        );
        assert!(!stderr.contains(key_line), "the key was quoted: {stderr}");
    }

    // Nothing of the refused attempts reached the event system, the chain
    // or the ledger.
    for id in ["tls-untrusted", "tls-stranger", "tls-plain"] {
        match system.events_rpc().get(id.to_owned()).await {
            Err(ClientError::Call(e)) => assert_eq!(e.code(), offchain_error::NOT_FOUND, "{e}"),
            other => panic!("event {id} after a refused registration: {other:?}"),
        }
    }
    let stats = system.stats().await.expect("the event system answers");
    assert_eq!(
        stats.registered + stats.pending_account + stats.completed + stats.cancelled,
        0,
        "{stats:?}"
    );
    let alice = Keypair::dev("alice").public();
    let nonce = system.net.rpc(0).nonce(alice).await.expect("alice's nonce");
    assert_eq!(nonce, 0, "a refused transfer was submitted");
    assert!(payments(&system.ledger).is_empty(), "something was paid");

    // Trusting the CA: the transfer is registered, finalized on a quorum
    // (the event system's own TLS clients), paid by the bridge (its TLS
    // client) and followed by the CLI over wss:// to Completed.
    let paid = system
        .lockstep(&system.tokens.submitter)
        .arg("--json")
        .args(paid_transfer("tls-paid"))
        .output()
        .expect("run lockstep transfer");
    let stdout = String::from_utf8_lossy(&paid.stdout);
    assert!(
        paid.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&paid.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("lockstep printed JSON");
    assert_eq!(report["event"]["state"], "Completed", "{report:#}");

    let event = system
        .events_rpc()
        .get("tls-paid".into())
        .await
        .expect("the paid event");
    assert_eq!(event.state, State::Completed, "{event:?}");
    let receipt = event.receipt.as_ref().expect("a receipt");
    assert!(!receipt.is_failure(), "{receipt:?}");
    let history = system
        .events_rpc()
        .history("tls-paid".into())
        .await
        .expect("its history");
    let states: Vec<State> = history.iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [State::Registered, State::PendingAccount, State::Completed],
        "{history:?}"
    );
    let nonce = system.net.rpc(0).nonce(alice).await.expect("alice's nonce");
    assert_eq!(nonce, 1, "alice's one transfer");

    // Paid exactly once: one payment row, and the money moved once.
    let rows = payments(&system.ledger);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["eventId"], "tls-paid", "{row}");
    assert_eq!(row["status"], "Paid", "{row}");
    assert_eq!(row["amount"], CENTS.to_string(), "{row}");
    assert_eq!(row["currency"], CURRENCY, "{row}");
    assert_eq!(
        row["reference"].as_str(),
        Some(receipt.payment_reference.as_str())
    );
    let funds = i128::try_from(LEDGER_FUNDS).expect("funds fit");
    assert_eq!(balance(&system.ledger, "alice"), funds + CENTS);
    assert_eq!(balance(&system.ledger, "bob"), funds - CENTS);

    // The audit, trusting the CA, reads the chain, the events and the
    // ledger over TLS and finds nothing wrong.
    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
}

/// `lockstep --json transfer` of 100 units from alice to bob with
/// [`PAYMENT`] under event `id`, waiting for a final state (bounded, so a
/// hang fails the test).
fn paid_transfer(id: &str) -> [&str; 14] {
    [
        "transfer",
        "--from",
        "alice",
        "--to",
        "bob",
        "--amount",
        "100",
        "--pay",
        PAYMENT,
        "--event-id",
        id,
        "--wait",
        "--timeout",
        "120",
    ]
}

/// A `lockstep` command with the submitter's token and `args` first, and
/// no `LOCKSTEP_*` endpoint or CA from the caller's environment: it trusts
/// exactly what the test gives it.
fn lockstep(system: &System, args: &[&str]) -> Command {
    let mut command = Command::new(binary("lockstep"));
    for variable in [
        "LOCKSTEP_RPC",
        "LOCKSTEP_NODES",
        "LOCKSTEP_EVENTS",
        "LOCKSTEP_CA_FILE",
    ] {
        command.env_remove(variable);
    }
    command
        .env("LOCKSTEP_TOKEN", system.tokens.submitter.expose_secret())
        .args(args);
    command
}

/// The command failed (exit 1) saying `expected`, and quoted no token.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a refusal; stdout: {} stderr: {stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(!stderr.contains("lst_"), "a token was quoted: {stderr}");
}

/// Every payment row of the ledger, paid or failed.
fn payments(ledger: &str) -> Vec<Value> {
    ledger_json(ledger, &["payments", "--json"])
        .as_array()
        .expect("payments")
        .clone()
}

/// An account's ledger balance in cents.
fn balance(ledger: &str, account: &str) -> i128 {
    let row = ledger_json(ledger, &["balance", account, "--json"]);
    row["balance"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no balance for {account}: {row}"))
}
