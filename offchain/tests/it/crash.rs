//! kill -9 of the event system binary at random points during a run of
//! hundreds of events, then restart on the same data: no event lost, none
//! moved twice, all final, histories consistent, and the (simulated)
//! bridge paid exactly the completed events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use lockstep_api::event::PaymentReceipt;
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::{Keypair, SignedTx};
use serde_json::{json, Value};

use crate::harness::{bridge_key, hex, payment, DevNode, PATIENCE};

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

struct EventProcess {
    child: Child,
}

impl EventProcess {
    /// Starts the binary and waits for its "listening" line.
    fn start(base: &Path, node_url: &str, port: u16, generation: usize) -> EventProcess {
        let log = std::fs::File::create(base.join(format!("run-{generation}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-offchain"))
            .args(["run", "--nodes", node_url, "--quorum", "1/1", "--base-path"])
            .arg(base)
            .args(["--rpc-port", &port.to_string()])
            .args(["--bridge-key", &bridge_key().public().to_string()])
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
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(
            line.contains("listening on"),
            "generation {generation} did not start: {line:?}"
        );
        EventProcess { child }
    }

    fn kill9(mut self) {
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for EventProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Calls until the event system answers (it may be down or restarting);
/// returns its answer, error or not.
async fn call_through_crashes(
    client: &HttpClient,
    method: &str,
    params: Value,
) -> Result<Value, jsonrpsee::types::ErrorObjectOwned> {
    let params = match params {
        Value::Array(items) => {
            let mut built = jsonrpsee::core::params::ArrayParams::new();
            for item in items {
                built.insert(item).unwrap();
            }
            built
        }
        _ => unreachable!(),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match client.request::<Value, _>(method, params.clone()).await {
            Ok(value) => return Ok(value),
            Err(jsonrpsee::core::client::Error::Call(e)) => return Err(e),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{method}: the event system stayed unreachable: {e}"),
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
        let Ok(pulled) = client
            .request::<Value, _>("bus_pull", rpc_params![50, 500])
            .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let messages = pulled["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let misbehave = rng.below(10);
        if misbehave == 0 {
            continue; // crashed consumer: the lease lapses
        }
        for message in &messages {
            let id = message["eventId"].as_str().unwrap().to_owned();
            // Exactly once in effect: a re-delivered instruction finds the
            // payment made and only re-sends the receipt.
            ledger.lock().unwrap().entry(id.clone()).or_insert(0);
            if misbehave == 1 {
                continue; // receipt lost
            }
            let receipt = PaymentReceipt::sign(&key, &id, &format!("ledger-{id}"));
            let _ = client
                .request::<Value, _>("event_postReceipt", rpc_params![receipt])
                .await;
        }
        let _ = client
            .request::<Value, _>("bus_ack", rpc_params![pulled["leaseId"].clone()])
            .await;
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
    let client = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(5))
        .build(&url)
        .unwrap();
    let mut process = EventProcess::start(&base, &node.url(), port, 0);

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
                    let tx = node.transfer(signer, k as u64, 1_000_000, to, amount);
                    (format!("crash-{s}-{k}"), tx, true)
                })
                .collect(),
        );
    }
    plans.push(
        (0..UNSUBMITTED)
            .map(|k| {
                let tx = node.transfer("heidi", k as u64, valid_until_unsubmitted, bob, 1);
                (format!("crash-unsent-{k}"), tx, false)
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
                let body = json!({"id": id, "tx": hex(&tx), "payment": payment(i)});
                let event = call_through_crashes(&client, "event_register", json!([body]))
                    .await
                    .unwrap();
                assert_eq!(event["id"], id);
                registered.fetch_add(1, Ordering::Relaxed);
                if submit {
                    let _: Value = node_http
                        .request("author_submitExtrinsic", rpc_params![hex(&tx)])
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Kill -9 at random moments, restarting on the same data each time.
    for generation in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        process.kill9();
        println!(
            "kill -9 #{generation} after {} registrations",
            registered.load(Ordering::Relaxed)
        );
        process = EventProcess::start(&base, &node.url(), port, generation);
    }
    for worker in workers {
        worker.await.unwrap();
    }

    // Let it finish: every event final.
    let ids: HashSet<String> = all.iter().map(|(id, _, _)| id.clone()).collect();
    let total = ids.len() as u64;
    let settle = async {
        loop {
            let stats = call_through_crashes(&client, "event_stats", json!([]))
                .await
                .unwrap();
            let done = stats["completed"].as_u64().unwrap() + stats["cancelled"].as_u64().unwrap();
            if done == total && stats["registered"] == 0 && stats["pendingAccount"] == 0 {
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
        let event: Value = client.request("event_get", rpc_params![id]).await.unwrap();
        let status = node.status(&tx.hash()).await;
        let expected = match (
            status["status"].as_str().unwrap(),
            status["outcome"]["status"].as_str(),
        ) {
            ("finalized", Some("success")) => "Completed",
            ("finalized", Some("failed")) => "Cancelled",
            ("unknown", None) if !submitted => "Cancelled",
            other => panic!("{id}: unexpected chain status {other:?}"),
        };
        assert_eq!(event["state"], expected, "{id}");
        let history: Vec<Value> = client
            .request("event_history", rpc_params![id])
            .await
            .unwrap();
        let moves: Vec<(Value, Value)> = history
            .iter()
            .map(|t| (t["from"].clone(), t["to"].clone()))
            .collect();
        let want: Vec<(Value, Value)> = match expected {
            "Completed" => vec![
                (Value::Null, json!("Registered")),
                (json!("Registered"), json!("PendingAccount")),
                (json!("PendingAccount"), json!("Completed")),
            ],
            _ => vec![
                (Value::Null, json!("Registered")),
                (json!("Registered"), json!("Cancelled")),
            ],
        };
        assert_eq!(moves, want, "{id}");
        let seqs: Vec<u64> = history.iter().map(|t| t["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{id}: {seqs:?}");
        if expected == "Completed" {
            assert_eq!(event["evidence"]["blockHash"], status["blockHash"], "{id}");
            completed.insert(id.clone());
        }
        history_len += history.len() as u64;
    }
    // The global feed is gap-free and holds exactly the histories.
    assert_eq!(stats["lastSeq"].as_u64().unwrap(), history_len);
    let ws = WsClientBuilder::default()
        .build(format!("ws://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut feed: Subscription<Value> = ws
        .subscribe("event_subscribe", rpc_params![1], "event_unsubscribe")
        .await
        .unwrap();
    let mut per_event: BTreeMap<String, u64> = BTreeMap::new();
    for expected_seq in 1..=history_len {
        let transition = feed.next().await.unwrap().unwrap();
        assert_eq!(transition["seq"], expected_seq);
        *per_event
            .entry(transition["eventId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), ids.len());
    // The bridge paid every completed event and nothing else.
    let paid: HashSet<String> = ledger.lock().unwrap().keys().cloned().collect();
    assert_eq!(paid, completed);
    let list: Value = client
        .request("event_list", rpc_params![json!({"limit": 500})])
        .await
        .unwrap();
    assert_eq!(list["events"].as_array().unwrap().len(), ids.len());
    println!(
        "{} events, {} completed, {KILLS} kills",
        ids.len(),
        completed.len()
    );

    process.kill9();
    node.stop().await;
}
