//! Signed instructions: the bridge pays nothing the event system did not sign.
//!
//! The attacker runs an event system of their own (the same binary, with a
//! key of their own) that follows the real chain, so its instruction is
//! as well-formed as a real one: an event for a transfer that finalized,
//! in PendingAccount, on a bus that answers `bus_pull`. A bridge given the
//! real event system's key and pointed at the forger pays nothing, counts
//! every refusal on its metrics endpoint, names the event in its log, and
//! keeps running. The controls: the very same instruction is paid by a
//! bridge given the forger's key (so the key is all that kept it unpaid),
//! and the real system still settles its own events.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::EventApiClient;
use lockstep_service::test_utils::TestProcess;
use serde_json::Value;

use super::{metric, paid_events, scrape};
use crate::harness::{binary, exclusive, free_port, DEADLINE};
use crate::system::{
    bridge_run_args, generate_event_system_key, head, seed_ledger, Deal, Settlement, System,
};

/// A new bridge key file; its public key.
fn generate_bridge_key(file: &Path) -> String {
    let output = Command::new(binary("lockstep-bridge"))
        .args(["key", "generate", "--out"])
        .arg(file)
        .output()
        .expect("run lockstep-bridge key generate");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The secret seed in a key file, without its `0x`.
fn secret_seed(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read the key file");
    let key: Value = serde_json::from_str(&text).expect("key file JSON");
    key["secretSeed"].as_str().expect("a seed")[2..].to_owned()
}

/// `lockstep-bridge run` against `events_url`, paying what
/// `event_system_key` signed, with its metrics on `metrics_port`.
fn bridge(
    name: &str,
    dir: &Path,
    events_url: &str,
    ledger: &Path,
    key: &Path,
    event_system_key: &str,
    metrics_port: u16,
) -> TestProcess {
    let mut process = TestProcess::new(name, binary("lockstep-bridge"), dir)
        .args(bridge_run_args(events_url, ledger, key, event_system_key))
        .args(["--prometheus-port", &metrics_port.to_string()])
        .args(["--poll-interval", "100ms"])
        .env("RUST_LOG", "info")
        .timeout(DEADLINE);
    process.spawn();
    process.wait_for_stdout("lockstep-bridge running");
    process
}

/// Waits until `id` is in `state` on the event system `rpc`.
async fn await_state(system: &System, rpc: &HttpClient, id: &str, state: State) {
    let what = format!("{id} in {state}");
    system
        .await_condition(&what, || async {
            rpc.get(id.to_owned())
                .await
                .is_ok_and(|event| event.state == state)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instruction_not_signed_by_the_event_systems_key_is_not_paid() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(1).await;
    let dir = system.net.dir().to_path_buf();
    let valid_until = head(&system).await + 2_000;

    // The forger: the event system binary with a key of its own, on the
    // same chain, accepting receipts from a bridge key it also made.
    let forger_key = dir.join("forger-key.json");
    let forger_public = generate_event_system_key(&forger_key);
    assert_ne!(forger_public, system.event_system_key);
    let forger_bridge_key = dir.join("forger-bridge-key.json");
    let forger_bridge_public = generate_bridge_key(&forger_bridge_key);
    let forger_port = free_port();
    let forger_url = format!("http://127.0.0.1:{forger_port}");
    let mut forger = TestProcess::new("forger", binary("lockstep-offchain"), &dir)
        // The forger's own event system, open to its own bridges.
        .args(["run", "--insecure-no-auth", "--nodes"])
        .arg(system.node_urls())
        .arg("--base-path")
        .arg(dir.join("forger"))
        .args(["--rpc-port", &forger_port.to_string()])
        .args(["--bridge-key", &forger_bridge_public, "--key-file"])
        .arg(&forger_key)
        .arg("--chain-spec")
        .arg(system.net.spec_path())
        .args([
            "--scan-interval",
            "300ms",
            "--grace",
            "2s",
            "--recheck-cap",
            "2s",
        ])
        .args([
            "--resend-base",
            "500ms",
            "--resend-cap",
            "1s",
            "--call-timeout",
            "2s",
        ])
        .env("RUST_LOG", "info")
        .timeout(DEADLINE);
    forger.spawn();
    forger.wait_for_stdout("lockstep-offchain listening on ");
    let forger_rpc = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(10))
        .build(&forger_url)
        .expect("forger client");

    // A real transfer, registered with the forger only: its instruction
    // is signed by the forger's key.
    let forged = Settlement::new(
        &system.net,
        "forged-1".into(),
        Deal {
            from: "alice",
            nonce: 0,
            to: "bob",
            asset: 1,
            cents: 777,
            valid_until,
        },
    );
    let client = system.client();
    forged
        .register(&client.with_events(forger_rpc.clone()))
        .await;
    forged.submit(&client, 0).await;
    await_state(&system, &forger_rpc, &forged.id, State::PendingAccount).await;

    // A bridge that trusts the real event system's key, pointed at the
    // forger's bus.
    let ledger = dir.join("forger-ledger.sqlite");
    seed_ledger(&ledger);
    let refusing_port = free_port();
    let mut refusing = bridge(
        "refusing-bridge",
        &dir,
        &forger_url,
        &ledger,
        &forger_bridge_key,
        &system.event_system_key,
        refusing_port,
    );
    // Refused, acknowledged, re-sent by the forger's reconciler, refused
    // again: the bridge counts each refusal and keeps going.
    system
        .await_condition("the bridge to refuse the instruction twice", || async {
            scrape(refusing_port)
                .and_then(|text| metric(&text, "lockstep_bridge_unsigned_instructions_total"))
                .is_some_and(|refused| refused >= 2)
        })
        .await;
    let text = scrape(refusing_port).expect("the refusing bridge's metrics");
    assert_eq!(metric(&text, "lockstep_bridge_payments_total"), Some(0));
    assert!(refusing.is_running(), "the bridge stopped after a refusal");
    assert_eq!(paid_events(&ledger), Vec::<String>::new());
    let event = forger_rpc.get(forged.id.clone()).await.expect("event_get");
    assert_eq!(event.state, State::PendingAccount);
    assert_eq!(event.receipt, None);
    assert_eq!(event.payment_failure, None, "a receipt went out for it");
    let log = std::fs::read_to_string(refusing.log_path(0)).expect("the bridge's log");
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains(&forged.id)),
        "no warning names {}:\n{log}",
        forged.id
    );
    assert!(
        refusing.terminate().success(),
        "the bridge did not stop cleanly"
    );

    // Control: the same instruction, from the same bus, is paid by a
    // bridge that trusts the forger's key. The key was all that stopped it.
    let paying_port = free_port();
    let mut paying = bridge(
        "paying-bridge",
        &dir,
        &forger_url,
        &ledger,
        &forger_bridge_key,
        &forger_public,
        paying_port,
    );
    await_state(&system, &forger_rpc, &forged.id, State::Completed).await;
    assert_eq!(paid_events(&ledger), [forged.id.as_str()]);
    assert!(paying.terminate().success());

    // Control: the real event system's instructions are paid by the real
    // bridge; the forged one never reached its ledger.
    let real = Settlement::new(
        &system.net,
        "real-1".into(),
        Deal {
            from: "charlie",
            nonce: 0,
            to: "dave",
            asset: 1,
            cents: 555,
            valid_until,
        },
    );
    real.register(&client).await;
    real.submit(&client, 0).await;
    let settled = system.await_final(std::slice::from_ref(&real.id)).await;
    assert_eq!(settled[0].state, State::Completed);
    assert_eq!(paid_events(&system.ledger), [real.id.as_str()]);

    // No process logged a secret key.
    let seeds = [
        secret_seed(&forger_key),
        secret_seed(&forger_bridge_key),
        secret_seed(&dir.join("events-key.json")),
        secret_seed(&dir.join("bridge-key.json")),
    ];
    for process in [&forger, &refusing, &paying, &system.events, &system.bridge] {
        for run in 0..process.runs() {
            let log = std::fs::read_to_string(process.log_path(run)).unwrap_or_default();
            for seed in &seeds {
                assert!(
                    !log.contains(&seed[..16]),
                    "{}'s log holds a secret key",
                    process.name()
                );
            }
        }
    }
}
