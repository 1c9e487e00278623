//! A dev chain and the event system in this process (real services on
//! loopback ports), the bridge in-process or as its real binary, helpers
//! to get events into PendingAccount for real, and the ledger a test runs
//! on ([`TestLedger`]: a SQLite file, or a database on a PostgreSQL server
//! of the test's own).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::event::{settlement_commitment, Event, PaymentInstruction, RegisterRequest};
use lockstep_api::offchain::EventApiClient;
use lockstep_bridge::ledger::{Durability, LedgerLocation, PaymentLedger};
use lockstep_bridge::{Config, RunningBridge};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, Keypair, SignedTx};
use lockstep_service::keyfile;
use lockstep_service::test_utils::{TestPostgres, TestProcess};
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

/// The bridge in this process, on `ledger`.
pub async fn start_bridge(event_system: &str, ledger: &Arc<dyn PaymentLedger>) -> RunningBridge {
    lockstep_bridge::start(bridge_config(event_system), ledger.clone(), bridge_key())
        .await
        .unwrap()
}

/// The ledger engines a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file in the test's directory.
    Sqlite,
    /// A database on a PostgreSQL server of the test's own.
    Postgres,
}

/// The ledger a test runs on: `location` is what `--ledger` names it by
/// (a file, or a `postgres://` URL); the server, if any, stops with it.
pub struct TestLedger {
    pub engine: Engine,
    pub location: String,
    server: Option<TestPostgres>,
}

impl TestLedger {
    /// A new, empty ledger on `engine`, its files under `dir`.
    pub fn new(engine: Engine, dir: &Path) -> TestLedger {
        let (location, server) = match engine {
            Engine::Sqlite => (dir.join("ledger.db").display().to_string(), None),
            Engine::Postgres => {
                let server = TestPostgres::start(dir);
                (server.create_database("ledger"), Some(server))
            }
        };
        TestLedger {
            engine,
            location,
            server,
        }
    }

    fn parsed(&self) -> LedgerLocation {
        self.location.parse().unwrap()
    }

    /// A connection to it (the schema made if missing), as a bridge opens
    /// it. PostgreSQL's client blocks: call it off the async workers
    /// ([`blocking`]).
    pub fn open(&self) -> Arc<dyn PaymentLedger> {
        blocking(|| self.parsed().open(Durability::Full).unwrap())
    }

    /// Every row of every table, as a read-only connection sees them, to
    /// compare before and after: accounts, payments, deposits, postings,
    /// and the receipts not yet delivered.
    pub fn dump(&self) -> Vec<String> {
        blocking(|| {
            let ledger = self.parsed().open_read_only().unwrap();
            let contents = ledger.contents().unwrap();
            let mut out = Vec::new();
            out.extend(contents.accounts.iter().map(|r| format!("accounts: {r:?}")));
            out.extend(contents.payments.iter().map(|r| format!("payments: {r:?}")));
            out.extend(contents.deposits.iter().map(|r| format!("deposits: {r:?}")));
            out.extend(contents.postings.iter().map(|r| format!("postings: {r:?}")));
            let due = ledger
                .due_receipts(i64::MAX.unsigned_abs(), 10_000)
                .unwrap();
            out.extend(due.iter().map(|r| format!("receipt_outbox: {r:?}")));
            out
        })
    }
}

impl Drop for TestLedger {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }
}

/// Runs `f`, a blocking ledger call, where it may block: in place on a
/// multi-threaded runtime's worker (PostgreSQL's client must not run on
/// one as it is), or directly outside a runtime.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
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

/// Runs `lockstep-bridge ledger --ledger <ledger> <args>`.
pub fn ledger_cli(ledger: impl AsRef<OsStr>, args: &[&str]) -> Output {
    bridge_bin()
        .arg("ledger")
        .arg("--ledger")
        .arg(ledger)
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
        ledger: impl AsRef<OsStr>,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> BridgeProcess {
        let mut process = TestProcess::new("bridge", env!("CARGO_BIN_EXE_lockstep-bridge"), dir)
            .args(["run", "--event-system", event_system, "--ledger"])
            .arg(ledger.as_ref())
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

/// Asserts that every currency's balances sum to zero, and so do postings.
pub fn assert_conserved(ledger: &dyn PaymentLedger) {
    let (totals, posting_totals) =
        blocking(|| (ledger.totals().unwrap(), ledger.posting_totals().unwrap()));
    for (currency, total) in totals {
        assert_eq!(total, 0, "{currency}: balances do not sum to zero");
    }
    for (currency, total) in posting_totals {
        assert_eq!(total, 0, "{currency}: postings do not sum to zero");
    }
}
