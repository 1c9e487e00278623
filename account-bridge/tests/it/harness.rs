//! A dev chain and the event system in this process (real services on
//! loopback ports), the bridge in-process or as its real binary, and
//! helpers to get events into PendingAccount for real.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::event::{settlement_commitment, Event, PaymentInstruction, RegisterRequest};
use lockstep_api::offchain::EventApiClient;
use lockstep_bridge::ledger::{PaymentLedger, SqliteLedger};
use lockstep_bridge::{Config, RunningBridge};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, Keypair, SignedTx};
use lockstep_service::keyfile;
use lockstep_service::test_utils::TestProcess;
use parity_scale_codec::Encode;
use serde_json::Value;

/// Generous bound on any awaited condition, so a bug fails the test rather
/// than hanging it. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn bridge_key() -> Keypair {
    Keypair::dev("bridge")
}

/// The key the event systems of these tests sign instructions with (the
/// in-process one, and the stubs).
pub fn event_system_key() -> Keypair {
    Keypair::dev("event-system")
}

/// The dev bridge key written to `dir/bridge-key.json`.
pub fn bridge_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("bridge-key.json");
    if !path.exists() {
        keyfile::write(&path, &bridge_key()).unwrap();
    }
    path
}

/// Polls `check` until it returns `Some`, with a deadline. For conditions
/// nothing can be subscribed to (another process's files, its exit).
pub async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The shared dev node ([`lockstep_node::test_utils::DevNode`]): a
/// single-validator dev chain producing a block every 100 ms.
pub struct DevNode(lockstep_node::test_utils::DevNode);

impl DevNode {
    pub async fn start() -> DevNode {
        let spec = lockstep_node::test_utils::dev_spec("lockstep-bridge-test");
        DevNode(lockstep_node::test_utils::DevNode::start_with(spec, |_| {}).await)
    }

    /// A transfer of 1 unit of the dev asset from `from` to bob.
    pub async fn transfer(&self, from: &str, nonce: u64) -> SignedTx {
        let valid_until = self.head().await + 200;
        let bob = Keypair::dev("bob").public();
        self.0.transfer(from, nonce, valid_until, bob, 1)
    }

    /// [`DevNode::transfer`] for event `id` paying `payment`: its reference
    /// commits to both, as a settling transfer's must.
    pub async fn settling(
        &self,
        from: &str,
        nonce: u64,
        id: &str,
        payment: &PaymentInstruction,
    ) -> SignedTx {
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to: Keypair::dev("bob").public(),
            amount: 1,
            reference: Some(settlement_commitment(id, payment)),
        };
        let valid_until = self.head().await + 200;
        SignedTx::sign(&Keypair::dev(from), &self.context, nonce, valid_until, call)
    }

    pub async fn submit(&self, tx: &SignedTx) {
        self.0.submit(tx).await;
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl std::ops::Deref for DevNode {
    type Target = lockstep_node::test_utils::DevNode;

    fn deref(&self) -> &lockstep_node::test_utils::DevNode {
        &self.0
    }
}

pub fn payment(payer: &str, payee: &str, amount: &str, currency: &str) -> PaymentInstruction {
    PaymentInstruction {
        payer: payer.into(),
        payee: payee.into(),
        amount: amount.into(),
        currency: currency.into(),
    }
}

/// The shared event system ([`lockstep_offchain::test_utils::EventSystem`])
/// with these tests' settings, answering as JSON where the scenarios
/// index fields by name.
pub struct EventSystem(lockstep_offchain::test_utils::EventSystem);

impl EventSystem {
    /// Watching `node` alone (quorum 1/1), 2 s node calls, re-sends
    /// capped at 500 ms.
    pub async fn start(node: &DevNode) -> EventSystem {
        let events = lockstep_offchain::test_utils::EventSystem::start_with(
            vec![node.url()],
            bridge_key().public(),
            |config| {
                config.instruction_key = event_system_key();
                config.quorum = "1/1".parse().unwrap();
                config.call_timeout = Duration::from_secs(2);
                config.resend_cap = Duration::from_millis(500);
            },
        )
        .await;
        EventSystem(events)
    }

    /// `event_get`, as the JSON the event system serves (the scenarios
    /// index it by field name).
    pub async fn get(&self, id: &str) -> Value {
        json_of(&self.event(id).await)
    }

    /// Registers an event for a fresh transfer by `signer` (its `nonce`th),
    /// submits the transfer, and waits until the event is PendingAccount.
    pub async fn pending_event(
        &self,
        node: &DevNode,
        id: &str,
        signer: &str,
        nonce: u64,
        payment: PaymentInstruction,
    ) -> Event {
        let tx = node.settling(signer, nonce, id, &payment).await;
        self.http
            .register(RegisterRequest {
                id: id.to_owned(),
                tx: Some(to_hex(&tx.encode())),
                tx_hash: None,
                valid_until: None,
                payment,
            })
            .await
            .unwrap();
        node.submit(&tx).await;
        self.await_transition(id, "PendingAccount").await;
        self.event(id).await
    }

    /// Waits for `id` to reach `state` by following `event_subscribe` from
    /// the start; panics if it reaches another final state.
    pub async fn await_state(&self, id: &str, state: &str) -> Value {
        self.await_transition(id, state).await;
        self.get(id).await
    }

    /// Waits until the event carries a payment failure (there is no
    /// transition to follow: a failure report moves nothing).
    pub async fn await_failure(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = self.event(id).await;
            if event.payment_failure.is_some() {
                return json_of(&event);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: no payment failure recorded: {}",
                json_of(&event)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl std::ops::Deref for EventSystem {
    type Target = lockstep_offchain::test_utils::EventSystem;

    fn deref(&self) -> &lockstep_offchain::test_utils::EventSystem {
        &self.0
    }
}

/// A typed answer as the JSON it travels as.
fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

/// Quick settings for a bridge under test, paying what
/// [`event_system_key`] signed.
pub fn bridge_config(event_system: &str) -> Config {
    let mut config = Config::new(event_system, event_system_key().public());
    // The test event system's bridge credential (stubs ignore it).
    config.token = Some(lockstep_offchain::test_utils::DevCredential::Bridge.token());
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_secs(2);
    config.receipt_retry_base = Duration::from_millis(100);
    config.receipt_retry_cap = Duration::from_millis(500);
    config
}

/// The bridge in this process, on the ledger at `path`.
pub async fn start_bridge(event_system: &str, path: &Path) -> (RunningBridge, Arc<SqliteLedger>) {
    let ledger = Arc::new(SqliteLedger::open(path).unwrap());
    let bridge = lockstep_bridge::start(bridge_config(event_system), ledger.clone(), bridge_key())
        .await
        .unwrap();
    (bridge, ledger)
}

/// Waits until `check` holds on the bridge's metrics, re-testing after
/// every committed batch or round of receipt posts.
pub async fn await_metrics(
    bridge: &RunningBridge,
    check: impl Fn(&lockstep_bridge::metrics::BridgeMetrics) -> bool,
) {
    let metrics = bridge.metrics.clone();
    let mut changed = metrics.changed();
    let wait = async {
        while !check(&metrics) {
            changed.changed().await.unwrap();
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("bridge metrics condition not reached");
}

/// The bridge binary.
pub fn bridge_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lockstep-bridge"))
}

/// Runs `lockstep-bridge ledger --ledger <path> <args>`.
pub fn ledger_cli(path: &Path, args: &[&str]) -> Output {
    bridge_bin()
        .arg("ledger")
        .arg("--ledger")
        .arg(path)
        .args(args)
        .output()
        .unwrap()
}

/// The bridge binary running `run`.
pub struct BridgeProcess {
    pub process: TestProcess,
}

impl BridgeProcess {
    /// Starts `lockstep-bridge run` (logging to `dir/bridge.log`, appended
    /// to) and waits for its "running" line.
    pub fn start(
        event_system: &str,
        ledger: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> BridgeProcess {
        let mut process = TestProcess::new("bridge", env!("CARGO_BIN_EXE_lockstep-bridge"), dir)
            .args(["run", "--event-system", event_system, "--ledger"])
            .arg(ledger)
            .arg("--key")
            .arg(bridge_key_file(dir))
            .args([
                "--event-system-key",
                &event_system_key().public().to_string(),
            ])
            .args(["--poll-interval", "50ms", "--lease", "1s"])
            .args([
                "--receipt-retry-base",
                "100ms",
                "--receipt-retry-cap",
                "500ms",
            ])
            .envs(env.iter().copied())
            .env(
                "LOCKSTEP_BRIDGE_TOKEN",
                lockstep_offchain::test_utils::DevCredential::Bridge
                    .token()
                    .expose_secret(),
            )
            .timeout(PATIENCE);
        process.spawn();
        // With the crash hook, the process may abort before it prints.
        if env.is_empty() {
            process.wait_for_stdout("lockstep-bridge running");
        }
        BridgeProcess { process }
    }

    /// Its exit status, once it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    /// SIGTERM, then waits; returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        self.process.terminate().success()
    }
}

/// Every row of every ledger table, to compare before and after.
pub fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for table in [
        "accounts",
        "payments",
        "deposits",
        "postings",
        "receipt_outbox",
    ] {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            out.push(format!("{table}: {}", values.join(", ")));
        }
    }
    out
}

/// Asserts that every currency's balances sum to zero, and so do postings.
pub fn assert_conserved(ledger: &dyn PaymentLedger) {
    for (currency, total) in ledger.totals().unwrap() {
        assert_eq!(total, 0, "{currency}: balances do not sum to zero");
    }
    for (currency, total) in ledger.posting_totals().unwrap() {
        assert_eq!(total, 0, "{currency}: postings do not sum to zero");
    }
}
