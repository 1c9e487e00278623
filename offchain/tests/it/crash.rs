//! kill -9 of the event system binary at random points during a run of
//! hundreds of events, then restart on the same data: no event lost, none
//! moved twice, all final, histories consistent, and the (simulated)
//! bridge paid exactly the completed events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::core::client::Error as ClientError;
use jsonrpsee::http_client::HttpClient;
use lockstep_api::client::{BearerToken, ClientOptions};
use lockstep_api::event::PaymentReceipt;
use lockstep_api::lifecycle::State;
use lockstep_api::node::{AuthorApiClient, TxState};
use lockstep_api::offchain::{BusApiClient, EventApiClient, ListParams};
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::{Keypair, Outcome, SignedTx};
use lockstep_service::test_utils::{free_port, TestProcess};

use crate::harness::{
    bridge_key, evidence, hex, message, register_request, DevNode, PATIENCE, VALID_UNTIL,
};

const SIGNERS: [&str; 6] = ["alice", "bob", "charlie", "dave", "eve", "ferdie"];
const PER_SIGNER: usize = 50;
/// Transfers registered but never submitted, signed by an account that
/// sends nothing else (so their nonces block no one).
const UNSUBMITTED: usize = 30;
const KILLS: usize = 6;

/// A small deterministic generator (xorshift64*): the seed is printed, so a
/// failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The key the event system binary signs instructions with.
fn event_system_key() -> Keypair {
    Keypair::dev("crash-event-system")
}

/// The test credential with every role.
fn operator_token() -> BearerToken {
    lockstep_offchain::test_utils::DevCredential::Operator.token()
}

/// The event system binary on `base`, logging each generation to
/// `base/run.log`, `base/run.1.log`, ….
fn event_process(base: &Path, node_url: &str, port: u16) -> TestProcess {
    let key_file = base.join("event-system-key.json");
    if !key_file.exists() {
        lockstep_service::keyfile::write(&key_file, &event_system_key()).expect("key file");
    }
    let credentials = base.join("credentials");
    lockstep_offchain::test_utils::write_dev_credentials(&credentials).expect("credentials");
    let spec = base.join("chain-spec.json");
    std::fs::write(
        &spec,
        lockstep_node::test_utils::dev_spec("lockstep-offchain-test").to_json(),
    )
    .expect("chain spec");
    TestProcess::new("run", env!("CARGO_BIN_EXE_lockstep-offchain"), base)
        .args(["run", "--nodes", node_url, "--quorum", "1/1", "--base-path"])
        .arg(base)
        .arg("--credentials")
        .arg(&credentials)
        .arg("--key-file")
        .arg(&key_file)
        .args(["--rpc-port", &port.to_string()])
        .args(["--bridge-key", &bridge_key().public().to_string()])
        .arg("--chain-spec")
        .arg(&spec)
        .args([
            "--scan-interval",
            "100ms",
            "--grace",
            "300ms",
            "--recheck-cap",
            "500ms",
        ])
        .args(["--resend-base", "300ms", "--resend-cap", "1s", "--no-fsync"])
        .env("RUST_LOG", "info")
        .timeout(PATIENCE)
}

/// Starts (or restarts) the binary and waits for its "listening" line.
fn start(process: &mut TestProcess) {
    process.spawn();
    process.wait_for_stdout("lockstep-offchain listening on ");
}

/// Makes `call` until the event system answers (it may be down or
/// restarting); returns its answer, error or not.
async fn call_through_crashes<T, F, Fut>(
    what: &str,
    mut call: F,
) -> Result<T, jsonrpsee::types::ErrorObjectOwned>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(ClientError::Call(e)) => return Err(e),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what}: the event system stayed unreachable: {e}"),
        }
    }
}

/// The bridge's side: pays each event once (dedup on the event id), posts
/// signed receipts, acks. It misbehaves on purpose sometimes: drops a
/// lease without acking, or acks without posting the receipt, so that
/// lease expiry and the reconciler's resends are exercised too.
async fn bridge(
    client: HttpClient,
    ledger: Arc<Mutex<HashMap<String, u32>>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let key = bridge_key();
    while !stop.load(Ordering::Relaxed) {
        let Ok(pulled) = client.pull(Some(50), Some(500)).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let messages = &pulled.messages;
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let misbehave = rng.below(10);
        if misbehave == 0 {
            continue; // crashed consumer: the lease lapses
        }
        for delivery in messages {
            // Signed with the key file it was started with, every time.
            let signed = message(delivery).verify(&event_system_key().public());
            assert_eq!(signed, Ok(()), "{delivery:?}");
            let id = message(delivery).event_id.clone();
            // Exactly once in effect: a re-delivered instruction finds the
            // payment made and only re-sends the receipt.
            ledger.lock().unwrap().entry(id.clone()).or_insert(0);
            if misbehave == 1 {
                continue; // receipt lost
            }
            let receipt = PaymentReceipt::sign(&key, &id, &format!("ledger-{id}"));
            let _ = client.post_receipt(receipt).await;
        }
        let _ = client.ack(pulled.lease_id.clone(), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_points_loses_nothing() {
    let seed = std::env::var("LOCKSTEP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(lockstep_offchain::now_ms);
    println!("crash test seed: {seed} (LOCKSTEP_CRASH_SEED to replay)");
    let mut rng = Rng(seed | 1);

    let node = DevNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base: PathBuf = dir.path().to_path_buf();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let options = ClientOptions::new(Duration::from_secs(5)).with_token(Some(operator_token()));
    let client = lockstep_api::client::http_with(&url, &options).unwrap();
    let mut process = event_process(&base, &node.url(), port);
    start(&mut process);

    // The transfers: per signer, every tenth one fails on chain (more than
    // the balance); plus some registered and never submitted.
    let bob = Keypair::dev("bob").public();
    let valid_until_unsubmitted = node.head().await + 20;
    let mut plans: Vec<Vec<(String, SignedTx, bool)>> = Vec::new();
    for (s, signer) in SIGNERS.iter().enumerate() {
        let to = if *signer == "bob" {
            Keypair::dev("alice").public()
        } else {
            bob
        };
        plans.push(
            (0..PER_SIGNER)
                .map(|k| {
                    let amount = if k % 10 == 9 { DEV_ENDOWMENT * 2 } else { 1 };
                    let id = format!("crash-{s}-{k}");
                    let tx = node.settling(signer, k as u64, VALID_UNTIL, to, amount, (&id, k));
                    (id, tx, true)
                })
                .collect(),
        );
    }
    plans.push(
        (0..UNSUBMITTED)
            .map(|k| {
                let id = format!("crash-unsent-{k}");
                let tx =
                    node.settling("heidi", k as u64, valid_until_unsubmitted, bob, 1, (&id, k));
                (id, tx, false)
            })
            .collect(),
    );
    let all: Vec<(String, SignedTx, bool)> = plans.iter().flatten().cloned().collect();

    let ledger = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let bridge_task = tokio::spawn(bridge(
        client.clone(),
        ledger.clone(),
        stop.clone(),
        seed ^ 0x5555,
    ));

    // Register before submit, one signer per task so nonces stay in order.
    let registered = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for plan in plans {
        let client = client.clone();
        let node_http = node.http.clone();
        let registered = registered.clone();
        workers.push(tokio::spawn(async move {
            for (i, (id, tx, submit)) in plan.into_iter().enumerate() {
                let request = register_request(&id, &tx, i);
                let event =
                    call_through_crashes("registering", || client.register(request.clone()))
                        .await
                        .unwrap();
                assert_eq!(event.id, id);
                registered.fetch_add(1, Ordering::Relaxed);
                if submit {
                    node_http.submit_extrinsic(hex(&tx)).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Kill -9 at random moments, restarting on the same data each time.
    for generation in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        // SIGKILL: no shutdown code runs.
        process.kill();
        println!(
            "kill -9 #{generation} after {} registrations",
            registered.load(Ordering::Relaxed)
        );
        start(&mut process);
    }
    for worker in workers {
        worker.await.unwrap();
    }

    // Let it finish: every event final.
    let ids: HashSet<String> = all.iter().map(|(id, _, _)| id.clone()).collect();
    let total = ids.len() as u64;
    let settle = async {
        loop {
            let stats = call_through_crashes("reading the stats", || client.stats())
                .await
                .unwrap();
            let done = stats.completed + stats.cancelled;
            if done == total && stats.registered == 0 && stats.pending_account == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stats = tokio::time::timeout(Duration::from_secs(120), settle)
        .await
        .expect("not every event became final");
    stop.store(true, Ordering::Relaxed);
    bridge_task.await.unwrap();

    // Every event is there, in the state the chain dictates, with a
    // history of legal, single moves.
    let mut completed = HashSet::new();
    let mut history_len = 0;
    for (id, tx, submitted) in &all {
        let event = client.get(id.clone()).await.unwrap();
        let status = node.status(&tx.hash()).await;
        let expected = match (status.status, status.outcome) {
            (TxState::Finalized, Some(Outcome::Success)) => State::Completed,
            (TxState::Finalized, Some(Outcome::Failed(_))) => State::Cancelled,
            (TxState::Unknown, None) if !submitted => State::Cancelled,
            other => panic!("{id}: unexpected chain status {other:?}"),
        };
        assert_eq!(event.state, expected, "{id}");
        let history = client.history(id.clone()).await.unwrap();
        let moves: Vec<(Option<State>, State)> = history.iter().map(|t| (t.from, t.to)).collect();
        let want: Vec<(Option<State>, State)> = match expected {
            State::Completed => vec![
                (None, State::Registered),
                (Some(State::Registered), State::PendingAccount),
                (Some(State::PendingAccount), State::Completed),
            ],
            _ => vec![
                (None, State::Registered),
                (Some(State::Registered), State::Cancelled),
            ],
        };
        assert_eq!(moves, want, "{id}");
        let seqs: Vec<u64> = history.iter().map(|t| t.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{id}: {seqs:?}");
        if expected == State::Completed {
            assert_eq!(evidence(&event).block_hash, status.block_hash, "{id}");
            completed.insert(id.clone());
        }
        history_len += history.len() as u64;
    }
    // The global feed is gap-free and holds exactly the histories.
    assert_eq!(stats.last_seq, history_len);
    let ws = lockstep_api::client::ws_with(
        &format!("ws://127.0.0.1:{port}"),
        &ClientOptions::new(Duration::from_secs(60)).with_token(Some(operator_token())),
    )
    .await
    .unwrap();
    let mut feed = ws.subscribe_transitions(Some(1), None).await.unwrap();
    let mut per_event: BTreeMap<String, u64> = BTreeMap::new();
    for expected_seq in 1..=history_len {
        let transition = feed.next().await.unwrap().unwrap();
        assert_eq!(transition.seq, expected_seq);
        *per_event.entry(transition.event_id).or_default() += 1;
    }
    assert_eq!(per_event.len(), ids.len());
    // The bridge paid every completed event and nothing else.
    let paid: HashSet<String> = ledger.lock().unwrap().keys().cloned().collect();
    assert_eq!(paid, completed);
    let list = client
        .list(Some(ListParams {
            limit: Some(500),
            ..ListParams::default()
        }))
        .await
        .unwrap();
    assert_eq!(list.events.len(), ids.len());
    println!(
        "{} events, {} completed, {KILLS} kills",
        ids.len(),
        completed.len()
    );

    process.kill();
    node.stop().await;
}
