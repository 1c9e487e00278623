//! The whole system in this process (a dev node, the event system, the
//! account bridge with a SQLite ledger), and `lockstep` as a child process
//! doing what a user and an operator would: settle transfers, inspect
//! events, load it with the bench, audit it clean, then audit doctored
//! ledgers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::RpcResult;
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::error::METHOD_NOT_FOUND_CODE;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_api::event::{Event, PaymentInstruction, RegisterRequest};
use lockstep_api::node::{TxApiServer, TxProof, TxState, TxStatusView};
use lockstep_api::offchain::EventApiClient;
use lockstep_api::proof::{ChainTrust, EventProof};
use lockstep_bridge::ledger::{Instruction, PaymentLedger, SqliteLedger};
use lockstep_bridge::RunningBridge;
use lockstep_node::test_utils::{dev_spec, DevNode};
use lockstep_offchain::test_utils::{DevCredential, EventSystem};
use lockstep_runtime::crypto::DEV_NAMES;
use lockstep_runtime::{Hash, Keypair, Outcome};
use serde_json::Value;

use crate::{lockstep, lockstep_with_token};

fn bridge_key() -> Keypair {
    Keypair::dev("cli-test-bridge")
}

/// Opens every dev name's USD account in a ledger, each with 1,000.00.
fn open_ledger(path: &Path) -> SqliteLedger {
    let ledger = SqliteLedger::open(path).unwrap();
    let ids: Vec<String> = DEV_NAMES.iter().map(|n| n.to_string()).collect();
    ledger
        .open_accounts(&ids, "USD", 0, 100_000, lockstep_bridge::now_ms())
        .unwrap();
    ledger
}

struct System {
    node: Option<DevNode>,
    events: Option<EventSystem>,
    bridge: Option<RunningBridge>,
    node_url: String,
    events_url: String,
    ledger: PathBuf,
    spec: PathBuf,
    dir: tempfile::TempDir,
}

impl System {
    async fn start() -> System {
        let dir = tempfile::tempdir().unwrap();
        let spec = dev_spec("lockstep-cli-system");
        let spec_path = dir.path().join("chain-spec.json");
        std::fs::write(&spec_path, spec.to_json()).unwrap();
        // The event system verifies every block against this chain's spec
        // (not the dev nodes' default one).
        let trust = ChainTrust::from_spec(&spec).unwrap();
        let node = DevNode::start_with(spec, |_| {}).await;
        let node_url = node.url();

        let events = EventSystem::start_with(vec![node_url.clone()], bridge_key().public(), |c| {
            c.resend_base = Duration::from_millis(300);
            c.chain = Some(trust);
        })
        .await;
        let events_url = events.url();

        let ledger_path = dir.path().join("ledger.sqlite");
        let ledger: Arc<dyn PaymentLedger> = Arc::new(open_ledger(&ledger_path));
        let mut config = lockstep_bridge::Config::new(events_url.clone(), events.instruction_key());
        config.token = Some(DevCredential::Bridge.token());
        config.poll_interval = Duration::from_millis(50);
        config.receipt_retry_base = Duration::from_millis(100);
        config.receipt_retry_cap = Duration::from_secs(1);
        let bridge = lockstep_bridge::start(config, ledger, bridge_key())
            .await
            .unwrap();
        System {
            node: Some(node),
            events: Some(events),
            bridge: Some(bridge),
            node_url,
            events_url,
            ledger: ledger_path,
            spec: spec_path,
            dir,
        }
    }

    /// `lockstep --rpc <node> --events <events> ...rest`.
    async fn run(&self, rest: &[&str]) -> Output {
        let mut all = vec![
            "--rpc".to_owned(),
            self.node_url.clone(),
            "--events".to_owned(),
            self.events_url.clone(),
        ];
        all.extend(rest.iter().map(|s| s.to_string()));
        // A transaction system's credential: registers and reads.
        let token = DevCredential::Submitter.token().expose_secret().to_owned();
        lockstep_with_token(all, Some(token)).await
    }

    async fn audit(&self, ledger: &Path, json: bool) -> Output {
        self.audit_with(ledger, json, true).await
    }

    /// `audit` of `ledger` with the chain spec, `--require-final` or not.
    async fn audit_with(&self, ledger: &Path, json: bool, require_final: bool) -> Output {
        let ledger = ledger.display().to_string();
        let spec = self.spec.display().to_string();
        let mut args = vec!["audit", "--ledger", &ledger, "--chain-spec", &spec];
        if require_final {
            args.push("--require-final");
        }
        if json {
            args.insert(0, "--json");
        }
        self.run(&args).await
    }

    async fn stop(mut self) {
        if let Some(bridge) = self.bridge.take() {
            bridge.stop().await;
        }
        if let Some(events) = self.events.take() {
            events.stop().await;
        }
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(output)))
}

/// A node that claims every transfer finalized and successful, in a block
/// that does not exist (`tx_getStatus` only, single and batched).
struct LyingNode;

impl TxApiServer for LyingNode {
    fn status(&self, _hash: Hash) -> RpcResult<TxStatusView> {
        Ok(TxStatusView {
            status: TxState::Finalized,
            block_hash: Some(Hash::digest(b"a block that does not exist")),
            block_number: Some(1),
            index: Some(0),
            outcome: Some(Outcome::Success),
            finalized_number: 1_000_000,
        })
    }

    fn proof(&self, _hash: Hash) -> RpcResult<Option<TxProof>> {
        Err(ErrorObjectOwned::owned(
            METHOD_NOT_FOUND_CODE,
            "not part of the lying node",
            None::<()>,
        ))
    }
}

async fn lying_node() -> (ServerHandle, String) {
    let server = Server::builder()
        .build(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server.start(LyingNode.into_rpc()), format!("http://{addr}"))
}

/// An address where nothing listens.
async fn down_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A consistent copy of a live ledger (its WAL included), to doctor.
fn copy_ledger(from: &Path, to: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.execute("VACUUM INTO ?1", [to.display().to_string()])
        .unwrap();
}

/// Runs raw SQL on a ledger file, bypassing the bridge's rules.
fn doctor(path: &Path, sql: &str, params: &[&dyn rusqlite::ToSql]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
        conn.execute(statement, params).unwrap();
    }
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["eventId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_inspect_bench_and_audit() {
    let system = System::start().await;
    let down = down_url().await;

    // A settled transfer: registered, submitted past a node that is down,
    // followed to Completed.
    let nodes = format!("{down},{}", system.node_url);
    let settled = system
        .run(&[
            "--nodes",
            &nodes,
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "5",
            "--pay",
            "bob:alice:250:USD",
            "--event-id",
            "order-1",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert!(settled.status.success(), "{}", show(&settled));
    assert!(
        text(&settled.stdout).contains("Completed"),
        "{}",
        show(&settled)
    );

    let got = system.run(&["--json", "event", "get", "order-1"]).await;
    assert!(got.status.success(), "{}", show(&got));
    let event = json(&got);
    assert_eq!(event["state"], "Completed");
    assert_eq!(event["payment"]["amount"], "250");
    assert!(event["receipt"]["paymentReference"].is_string(), "{event}");

    let history = system.run(&["event", "history", "order-1"]).await;
    let lines = text(&history.stdout);
    assert_eq!(lines.lines().count(), 3, "{}", show(&history));
    for state in ["Registered", "PendingAccount", "Completed"] {
        assert!(lines.contains(state), "{lines}");
    }

    let listed = system
        .run(&["--json", "event", "list", "--state", "completed"])
        .await;
    let page = json(&listed);
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "order-1"),
        "{page}"
    );

    // An id the event system does not know: its message, exit 1.
    let unknown = system.run(&["event", "get", "no-such-event"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", show(&unknown));
    assert!(
        text(&unknown.stderr).contains("no event with id")
            && text(&unknown.stderr).contains("2001"),
        "{}",
        show(&unknown)
    );

    // Included but failed on chain: the event is Cancelled, exit 3.
    let cancelled = system
        .run(&[
            "transfer",
            "--from",
            "carol-empty",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:100:USD",
            "--event-id",
            "order-2",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert_eq!(cancelled.status.code(), Some(3), "{}", show(&cancelled));
    assert!(
        text(&cancelled.stdout).contains("Cancelled"),
        "{}",
        show(&cancelled)
    );

    // Watching a final event: its state, and the exit code that goes with it.
    let watched = system.run(&["event", "watch", "order-1"]).await;
    assert_eq!(watched.status.code(), Some(0), "{}", show(&watched));
    assert!(
        text(&watched.stdout).contains("Completed"),
        "{}",
        show(&watched)
    );
    let watched = system.run(&["event", "watch", "order-2"]).await;
    assert_eq!(watched.status.code(), Some(3), "{}", show(&watched));
    let stats = json(&system.run(&["--json", "event", "stats"]).await);
    assert_eq!(
        (stats["completed"].as_u64(), stats["cancelled"].as_u64()),
        (Some(1), Some(1))
    );

    // The event system is down: nothing is submitted.
    let nonce_before = system.run(&["chain", "nonce", "alice"]).await;
    let unregistered = lockstep(vec![
        "--rpc".into(),
        system.node_url.clone(),
        "--events".into(),
        down.clone(),
        "transfer".into(),
        "--from".into(),
        "alice".into(),
        "--to".into(),
        "bob".into(),
        "--amount".into(),
        "1".into(),
        "--pay".into(),
        "bob:alice:1:USD".into(),
    ])
    .await;
    assert_eq!(
        unregistered.status.code(),
        Some(1),
        "{}",
        show(&unregistered)
    );
    assert!(
        text(&unregistered.stderr).contains("not registered"),
        "{}",
        show(&unregistered)
    );
    let nonce_after = system.run(&["chain", "nonce", "alice"]).await;
    assert_eq!(text(&nonce_before.stdout), text(&nonce_after.stdout));

    // Bad usage: exit 2, before anything runs.
    for bad in [
        &[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:1",
        ][..],
        &[
            "transfer", "--from", "alice", "--to", "bob", "--amount", "0",
        ],
        &[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1",
            "--event-id",
            "x",
        ],
        &[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:0:USD",
        ],
        &["event", "list", "--state", "Done"],
        &["--events", "localhost:9955", "event", "stats"],
        &["audit"],
    ] {
        let out = system.run(bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", show(&out));
    }

    // Load: every event settles.
    let bench = system
        .run(&[
            "--json",
            "bench",
            "--count",
            "60",
            "--accounts",
            "6",
            "--clients",
            "2",
            "--batch",
            "20",
            "--drain-timeout",
            "120",
        ])
        .await;
    assert!(bench.status.success(), "{}", show(&bench));
    let report = json(&bench);
    assert_eq!(report["registered"], 60, "{report}");
    assert_eq!(report["chain"]["finalized"], 60, "{report}");
    assert_eq!(report["settlement"]["completed"], 60, "{report}");

    // Everything final and consistent: a clean audit.
    let clean = system.audit(&system.ledger, true).await;
    let report = json(&clean);
    assert_eq!(clean.status.code(), Some(0), "{}", show(&clean));
    assert_eq!(report["ok"], true);
    assert_eq!(report["summary"]["perState"]["Completed"], 61, "{report}");
    assert_eq!(report["summary"]["perState"]["Cancelled"], 1, "{report}");
    assert_eq!(report["summary"]["ledger"]["paid"], 61, "{report}");
    assert!(
        report["summary"]["supply"]["assets"]["1"].is_object(),
        "{report}"
    );
    // Every decided event (61 Completed, order-2 Cancelled as failed) has
    // its proof, verified against the chain spec.
    assert_eq!(report["summary"]["proofs"]["verified"], 62, "{report}");

    // Money moved twice under one payment row: a second posting pair under
    // order-1's reference, with the balances moved to match (raw SQL on a
    // copy). Every currency still sums to 0 and every balance to its
    // postings; only the entry's postings give it away.
    let twice = system.dir.path().join("paid-twice.sqlite");
    copy_ledger(&system.ledger, &twice);
    doctor(
        &twice,
        "INSERT INTO postings (entry, account, amount, currency, created_ms) \
           SELECT reference, payer, -amount, currency, 0 FROM payments WHERE event_id = ?1;
         INSERT INTO postings (entry, account, amount, currency, created_ms) \
           SELECT reference, payee, amount, currency, 0 FROM payments WHERE event_id = ?1;
         UPDATE accounts SET balance = balance - \
           (SELECT amount FROM payments WHERE event_id = ?1) \
           WHERE id = (SELECT payer FROM payments WHERE event_id = ?1);
         UPDATE accounts SET balance = balance + \
           (SELECT amount FROM payments WHERE event_id = ?1) \
           WHERE id = (SELECT payee FROM payments WHERE event_id = ?1)",
        &[&"order-1"],
    );
    let paid_twice = system.audit(&twice, true).await;
    assert_eq!(paid_twice.status.code(), Some(1), "{}", show(&paid_twice));
    let report = json(&paid_twice);
    assert_eq!(
        kinds(&report),
        [(
            "ledger-postings-mismatch".to_string(),
            "order-1".to_string()
        )],
        "{report}"
    );
    assert_eq!(
        report["summary"]["ledger"]["totals"]["USD"], "0",
        "{report}"
    );

    // Balances moved without postings: both accounts are found.
    let moved = system.dir.path().join("moved.sqlite");
    copy_ledger(&system.ledger, &moved);
    doctor(
        &moved,
        "UPDATE accounts SET balance = balance + CASE id WHEN ?1 THEN -5 ELSE 5 END \
         WHERE id IN (?1, ?2)",
        &[&"alice", &"bob"],
    );
    let unposted = system.audit(&moved, true).await;
    assert_eq!(unposted.status.code(), Some(1), "{}", show(&unposted));
    let report = json(&unposted);
    assert_eq!(
        kinds(&report),
        [
            ("balance-not-postings".to_string(), String::new()),
            ("balance-not-postings".to_string(), String::new())
        ],
        "{report}"
    );

    // A payment without an event, written through the bridge's own API.
    let doctored = SqliteLedger::open(&system.ledger).unwrap();
    let ghost = Instruction::parse(
        "ghost-1",
        &PaymentInstruction {
            payer: "alice".into(),
            payee: "bob".into(),
            amount: "7".into(),
            currency: "USD".into(),
        },
    )
    .unwrap();
    doctored.pay(&ghost, lockstep_bridge::now_ms()).unwrap();
    drop(doctored);
    let orphan = system.audit(&system.ledger, false).await;
    assert_eq!(orphan.status.code(), Some(1), "{}", show(&orphan));
    assert!(
        text(&orphan.stdout).contains("VIOLATION orphan-payment: event ghost-1"),
        "{}",
        show(&orphan)
    );

    // A node that lies: the quorum (2 of these 2) cannot agree, and a
    // cancelled transfer is claimed successful.
    let (liar, liar_url) = lying_node().await;
    let nodes = format!("{},{liar_url}", system.node_url);
    let ledger = system.ledger.display().to_string();
    let lied = system
        .run(&[
            "--json",
            "--nodes",
            &nodes,
            "audit",
            "--ledger",
            &ledger,
            "--skip-supply",
        ])
        .await;
    assert_eq!(lied.status.code(), Some(1), "{}", show(&lied));
    let found = kinds(&json(&lied));
    for expected in [
        ("nodes-disagree", "order-1"),
        ("transfer-missing", "order-1"),
        ("cancelled-transfer-succeeded", "order-2"),
    ] {
        assert!(
            found.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {found:?}"
        );
    }
    liar.stop().unwrap();

    // A ledger that never paid: every Completed event lacks its payment.
    let empty_path = system.dir.path().join("empty-ledger.sqlite");
    drop(open_ledger(&empty_path));
    let missing = system.audit(&empty_path, true).await;
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    let report = json(&missing);
    let found = kinds(&report);
    assert!(
        found.contains(&("payment-missing".into(), "order-1".into())),
        "{report}"
    );
    assert_eq!(found.len(), 61, "{report}");

    system.stop().await;
}

/// The audit on a running system: while the bench settles 200 transfers,
/// audits (without --require-final) run back to back, each reading the
/// ledger, the events, their histories, the ledger again and the chain
/// while events move, payments are made and receipts land. None may report
/// a violation; once the load is over, a --require-final audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_is_clean_while_settlements_are_in_flight() {
    let system = Arc::new(System::start().await);
    let bench = {
        let system = Arc::clone(&system);
        tokio::spawn(async move {
            system
                .run(&[
                    "--json",
                    "bench",
                    "--count",
                    "200",
                    "--rate",
                    "40",
                    "--accounts",
                    "10",
                    "--clients",
                    "2",
                    "--batch",
                    "10",
                    "--drain-timeout",
                    "120",
                ])
                .await
        })
    };
    let (mut audits, mut in_flight) = (0, 0);
    loop {
        let audit = system.audit_with(&system.ledger, true, false).await;
        let report = json(&audit);
        assert_eq!(audit.status.code(), Some(0), "{}", show(&audit));
        assert_eq!(report["ok"], true, "{report}");
        audits += 1;
        let states = &report["summary"]["perState"];
        if states["Registered"].as_u64() > Some(0) || states["PendingAccount"].as_u64() > Some(0) {
            in_flight += 1;
        }
        if bench.is_finished() {
            break;
        }
    }
    let bench = bench.await.unwrap();
    assert!(bench.status.success(), "{}", show(&bench));
    let report = json(&bench);
    assert_eq!(report["settlement"]["completed"], 200, "{report}");
    eprintln!("{audits} audits during the load, {in_flight} of them saw events in flight");

    let last = system.audit_with(&system.ledger, true, true).await;
    assert_eq!(last.status.code(), Some(0), "{}", show(&last));
    let report = json(&last);
    assert_eq!(report["summary"]["perState"]["Completed"], 200, "{report}");
    assert_eq!(report["summary"]["ledger"]["paid"], 200, "{report}");

    let Ok(system) = Arc::try_unwrap(system) else {
        panic!("the bench task still holds the system")
    };
    system.stop().await;
}

/// A doctored event store: a Completed event whose transfer does not
/// commit to it (a chain-only transfer, and a stranger's payment bob → eve
/// attached to it), written with the store's own API past the event
/// system's checks, then paid by the bridge as any instruction would be.
/// The ledger and the chain agree with the event; the transfer's bytes
/// give it away, and so does the absence of the proof every move made by
/// the confirmer carries: the audit names the event for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_a_completed_event_whose_transfer_does_not_commit() {
    use lockstep_api::event::{Evidence, Registration};
    use lockstep_api::lifecycle::Reason;

    let system = System::start().await;
    let events = system.events.as_ref().unwrap();

    // A chain-only transfer, finalized, and seen by the event system's
    // watcher (so that nothing confirms the forged event but the forger).
    let sent = system
        .run(&[
            "--json",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "3",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert!(sent.status.success(), "{}", show(&sent));
    let sent = json(&sent);
    let tx_hash: Hash = serde_json::from_value(sent["txHash"].clone()).unwrap();
    let status: TxStatusView = serde_json::from_value(sent["status"].clone()).unwrap();
    let block_number = status.block_number.unwrap();
    events
        .await_metrics(|m| {
            m.watcher_height.load(std::sync::atomic::Ordering::Relaxed) >= block_number
        })
        .await;

    let store = &events.service().store;
    let now = lockstep_offchain::now_ms();
    let later = now + 3_600_000;
    let forged = Registration {
        id: "forged-1".into(),
        tx_hash,
        valid_until: block_number,
        payment: PaymentInstruction {
            payer: "bob".into(),
            payee: "eve".into(),
            amount: "777".into(),
            currency: "USD".into(),
        },
    };
    store.register(&forged, now, later).unwrap();
    let evidence = Evidence {
        block_hash: status.block_hash,
        block_number,
        outcome: status.outcome,
        confirmed_by: vec![system.node_url.clone()],
        nodes_asked: 1,
    };
    store
        .transition("forged-1", Reason::Succeeded, Some(evidence), now, later)
        .unwrap();
    let completed = events.await_state("forged-1", "Completed").await;
    assert!(completed.receipt.is_some(), "{completed:?}");

    let audit = system.audit(&system.ledger, true).await;
    assert_eq!(audit.status.code(), Some(1), "{}", show(&audit));
    let report = json(&audit);
    assert_eq!(
        kinds(&report),
        [
            ("not-committed".to_string(), "forged-1".to_string()),
            ("proof-missing".to_string(), "forged-1".to_string())
        ],
        "{report}"
    );
    assert_eq!(
        report["summary"]["commitments"]["notCommitted"], 1,
        "{report}"
    );
    let plain = system.audit(&system.ledger, false).await;
    assert!(
        text(&plain.stdout).contains("VIOLATION not-committed: event forged-1"),
        "{}",
        show(&plain)
    );

    system.stop().await;
}

/// `lockstep event verify ID --json`'s event and proof, doctored by
/// `doctor` and saved to `name` (as a user would save and then edit the
/// output); returns the path.
fn doctored_proof(
    system: &System,
    saved: &Value,
    name: &str,
    doctor: impl FnOnce(&mut Event, &mut EventProof),
) -> String {
    let mut event: Event = serde_json::from_value(saved["event"].clone()).unwrap();
    let mut proof: EventProof = serde_json::from_value(saved["proof"].clone()).unwrap();
    doctor(&mut event, &mut proof);
    let path = system.dir.path().join(name);
    std::fs::write(
        &path,
        serde_json::json!({ "event": event, "proof": proof }).to_string(),
    )
    .unwrap();
    path.display().to_string()
}

/// `lockstep event verify --from-file FILE --chain-spec SPEC` with no
/// token and the event system's URL pointing nowhere: offline.
async fn verify_offline(file: &str, spec: &Path, down: &str) -> Output {
    lockstep(vec![
        "--events".into(),
        down.to_owned(),
        "event".into(),
        "verify".into(),
        "--from-file".into(),
        file.to_owned(),
        "--chain-spec".into(),
        spec.display().to_string(),
    ])
    .await
}

/// `lockstep event verify` on real events of every kind: a Completed one,
/// one Cancelled as failed and one as not committed (each proven, exit
/// 0), a Registered and an expired one (nothing to prove, exit 5). Saved
/// with --json, a Completed event's proof verifies again offline, and
/// doctored copies (the receipt's outcome flipped, the payment's amount
/// changed, the validator's signature removed or replaced) are refused
/// with exit 4 and the proof's own error, as is the genuine proof against
/// a chain spec of other validators or another chain id. The audit of it
/// all is clean, every decided event's proof verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_verify_proves_outcomes_and_refuses_doctored_proofs() {
    use lockstep_runtime::{ChainSpec, DispatchError};

    let system = System::start().await;
    let events = system.events.as_ref().unwrap();
    let down = down_url().await;
    let spec = system.spec.display().to_string();

    let settled = system
        .run(&[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "5",
            "--pay",
            "bob:alice:250:USD",
            "--event-id",
            "order-1",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert!(settled.status.success(), "{}", show(&settled));
    let event = events.event("order-1").await;
    let block = event.evidence.as_ref().unwrap().block_number;
    let block_hash = event.evidence.as_ref().unwrap().block_hash.unwrap();

    // Proven online: the block, the validators, the payment.
    let proven = system
        .run(&["event", "verify", "order-1", "--chain-spec", &spec])
        .await;
    assert_eq!(proven.status.code(), Some(0), "{}", show(&proven));
    let out = text(&proven.stdout);
    for expected in [
        format!("proven by block #{block} {block_hash}"),
        "signed by 1 of 1 validators of chain lockstep-cli-system".to_owned(),
        "the transfer commits to this payment: bob → alice 250 USD".to_owned(),
        "the event is Completed".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} in {}", show(&proven));
    }

    // Saved, and proven again with no network and no token.
    let saved = system
        .run(&[
            "--json",
            "event",
            "verify",
            "order-1",
            "--chain-spec",
            &spec,
        ])
        .await;
    assert_eq!(saved.status.code(), Some(0), "{}", show(&saved));
    let saved_json = json(&saved);
    assert_eq!(saved_json["verdict"], "proven", "{saved_json}");
    assert_eq!(saved_json["proven"]["blockNumber"], block, "{saved_json}");
    let saved_path = system.dir.path().join("order-1.proof.json");
    std::fs::write(&saved_path, &saved.stdout).unwrap();
    let saved_path = saved_path.display().to_string();
    let offline = verify_offline(&saved_path, &system.spec, &down).await;
    assert_eq!(offline.status.code(), Some(0), "{}", show(&offline));
    assert!(
        text(&offline.stdout).contains(&format!("proven by block #{block}")),
        "{}",
        show(&offline)
    );

    // Doctored copies: each refused, exit 4, with what failed.
    let flipped = doctored_proof(&system, &saved_json, "flipped.json", |_, proof| {
        proof.receipt.outcome = Outcome::Failed(DispatchError::InsufficientBalance);
    });
    let more = doctored_proof(&system, &saved_json, "more.json", |event, _| {
        event.payment.amount = "25000".into();
    });
    let unsigned = doctored_proof(&system, &saved_json, "unsigned.json", |_, proof| {
        proof.justification.signatures.clear();
    });
    let forged = doctored_proof(&system, &saved_json, "forged.json", |_, proof| {
        let alice = Keypair::dev("alice");
        proof.justification.signatures = vec![(alice.public(), alice.sign(b"something else"))];
    });
    for (file, error) in [
        (
            &flipped,
            format!(
                "the receipt's Merkle path does not lead to the receipts root of block #{block}"
            ),
        ),
        (
            &more,
            "the event is Completed, but the proof shows Cancelled (NotCommitted)".to_owned(),
        ),
        (&unsigned, format!("block #{block}: 0 signatures, 1 needed")),
        (
            &forged,
            format!(
                "block #{block}: bad signature from {}",
                Keypair::dev("alice").public()
            ),
        ),
    ] {
        let refused = verify_offline(file, &system.spec, &down).await;
        assert_eq!(refused.status.code(), Some(4), "{file}: {}", show(&refused));
        let out = text(&refused.stdout);
        assert!(
            out.contains("the proof does not verify") && out.contains(&error),
            "{file}: {error:?} in {}",
            show(&refused)
        );
    }

    // The genuine proof against other validators, or another chain id.
    let strangers = system.dir.path().join("strangers.json");
    std::fs::write(
        &strangers,
        ChainSpec::dev("lockstep-cli-system", &[Keypair::dev("bob").public()]).to_json(),
    )
    .unwrap();
    let other_chain = system.dir.path().join("other-chain.json");
    std::fs::write(
        &other_chain,
        ChainSpec::dev("another-chain", &[Keypair::dev("alice").public()]).to_json(),
    )
    .unwrap();
    let refused = system
        .run(&[
            "event",
            "verify",
            "order-1",
            "--chain-spec",
            &strangers.display().to_string(),
        ])
        .await;
    assert_eq!(refused.status.code(), Some(4), "{}", show(&refused));
    assert!(
        text(&refused.stdout).contains(&format!(
            "signer {} is not a validator",
            Keypair::dev("alice").public()
        )),
        "{}",
        show(&refused)
    );
    let refused = verify_offline(&saved_path, &other_chain, &down).await;
    assert_eq!(refused.status.code(), Some(4), "{}", show(&refused));
    assert!(
        text(&refused.stdout).contains("bad signature from"),
        "{}",
        show(&refused)
    );

    // Included but failed: proven Cancelled, nothing owed.
    let failed = system
        .run(&[
            "transfer",
            "--from",
            "carol-empty",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:100:USD",
            "--event-id",
            "order-2",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert_eq!(failed.status.code(), Some(3), "{}", show(&failed));
    let proven = system
        .run(&["event", "verify", "order-2", "--chain-spec", &spec])
        .await;
    assert_eq!(proven.status.code(), Some(0), "{}", show(&proven));
    let out = text(&proven.stdout);
    assert!(
        out.contains("outcome: failed (insufficient balance)")
            && out.contains("the event is Cancelled (Failed)"),
        "{}",
        show(&proven)
    );

    // A chain-only transfer (no commitment), registered by its hash with a
    // payment: proven Cancelled as not committed.
    let sent = system
        .run(&[
            "--json", "transfer", "--from", "alice", "--to", "bob", "--amount", "2",
        ])
        .await;
    assert!(sent.status.success(), "{}", show(&sent));
    let sent = json(&sent);
    events
        .http
        .register(RegisterRequest {
            id: "order-3".into(),
            tx: None,
            tx_hash: Some(serde_json::from_value(sent["txHash"].clone()).unwrap()),
            valid_until: sent["validUntil"].as_u64(),
            payment: PaymentInstruction {
                payer: "bob".into(),
                payee: "alice".into(),
                amount: "300".into(),
                currency: "USD".into(),
            },
        })
        .await
        .unwrap();
    events.await_state("order-3", "Cancelled").await;
    let proven = system
        .run(&["event", "verify", "order-3", "--chain-spec", &spec])
        .await;
    assert_eq!(proven.status.code(), Some(0), "{}", show(&proven));
    let out = text(&proven.stdout);
    assert!(
        out.contains("the transfer does not commit to this payment: bob → alice 300 USD")
            && out.contains("the event is Cancelled (NotCommitted)"),
        "{}",
        show(&proven)
    );

    // Nothing to prove: Registered (never submitted, valid for long), and
    // expired (never submitted, valid for 2 blocks).
    let registered = system
        .run(&[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:1:USD",
            "--event-id",
            "order-4",
            "--register-only",
        ])
        .await;
    assert!(registered.status.success(), "{}", show(&registered));
    let undecided = system
        .run(&["event", "verify", "order-4", "--chain-spec", &spec])
        .await;
    assert_eq!(undecided.status.code(), Some(5), "{}", show(&undecided));
    assert!(
        text(&undecided.stdout).contains("not decided yet"),
        "{}",
        show(&undecided)
    );
    let expired = system
        .run(&[
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1",
            "--pay",
            "bob:alice:1:USD",
            "--event-id",
            "order-5",
            "--register-only",
            "--valid-for",
            "2",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    assert_eq!(expired.status.code(), Some(3), "{}", show(&expired));
    let nothing = system
        .run(&[
            "--json",
            "event",
            "verify",
            "order-5",
            "--chain-spec",
            &spec,
        ])
        .await;
    assert_eq!(nothing.status.code(), Some(5), "{}", show(&nothing));
    let nothing = json(&nothing);
    assert_eq!(nothing["verdict"], "expired", "{nothing}");
    assert!(
        nothing["error"]
            .as_str()
            .unwrap()
            .contains("expired: nothing was included, nothing to prove"),
        "{nothing}"
    );

    // The audit: every decided event's proof verifies (order-1, 2 and 3).
    let audit = system.audit_with(&system.ledger, true, false).await;
    assert_eq!(audit.status.code(), Some(0), "{}", show(&audit));
    let report = json(&audit);
    assert_eq!(report["summary"]["proofs"]["checked"], 3, "{report}");
    assert_eq!(report["summary"]["proofs"]["verified"], 3, "{report}");

    system.stop().await;
}
