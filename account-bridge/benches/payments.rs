//! Payments per second through the account bridge.
//!
//! ```sh
//! cargo bench -p lockstep-bridge --bench payments                         # all three, fsync on
//! LOCKSTEP_BENCH_PAYMENTS=50000 LOCKSTEP_BENCH_FSYNC=0 cargo bench -p lockstep-bridge --bench payments
//! ```
//!
//! Three measures, each on a fresh SQLite ledger of 1,000 funded accounts
//! (random payer and payee per payment):
//!
//! 1. **ledger**: `pay_batch` called directly in batches of 500 (the SQL
//!    cost alone: payment row, two postings, two balances, the receipt's
//!    outbox row, one commit per batch).
//! 2. **bridge, stub event system**: the whole bridge (consumers pulling
//!    batches over JSON-RPC and checking the instructions' signatures, the
//!    ledger, acks, the receipt poster signing and posting batches of up
//!    to 500) against a minimal in-process bus that hands out distinct,
//!    signed instructions and accepts every receipt; the clock stops when
//!    the last receipt is acknowledged.
//! 3. **end to end**: the real event system (in process, its store filled
//!    with events already in PendingAccount, no chain needed) and the
//!    bridge; the clock stops when the last event is Completed. This
//!    includes the event system's own costs: signing each instruction it
//!    hands out, and per receipt a signature check and a store write,
//!    fsynced unless LOCKSTEP_BENCH_FSYNC=0.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::core::{async_trait, RpcResult, SubscriptionResult};
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig};
use jsonrpsee::types::error::METHOD_NOT_FOUND_CODE;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::PendingSubscriptionSink;
use lockstep_api::bus::{AckResult, BusMessage, Delivery, Pulled, DEFAULT_PULL};
use lockstep_api::event::{
    Event, Evidence, PaymentInstruction, PaymentReceipt, RegisterRequest, Registration, Transition,
};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::{
    BusApiServer, EventApiClient, EventApiServer, ItemResult, ListParams, Page, Stats,
};
use lockstep_bridge::ledger::{Durability, Instruction, PaymentLedger, SqliteLedger};
use lockstep_offchain::store::{EventStore, Move};
use lockstep_runtime::{Hash, Keypair, Outcome};

const ACCOUNTS: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

fn instructions(n: usize, prefix: &str) -> Vec<(String, PaymentInstruction)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let payer = rng.below(ACCOUNTS);
            let payee = (payer + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            (
                format!("{prefix}-{i}"),
                PaymentInstruction {
                    payer: format!("acct-{payer}"),
                    payee: format!("acct-{payee}"),
                    amount: format!("{}", 1 + rng.below(10_000)),
                    currency: "USD".into(),
                },
            )
        })
        .collect()
}

fn seeded_ledger(dir: &std::path::Path, durability: Durability) -> Arc<SqliteLedger> {
    let ledger = SqliteLedger::open_with(&dir.join("ledger.db"), durability).unwrap();
    let ids: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct-{i}")).collect();
    ledger
        .open_accounts(&ids, "USD", 0, 1_000_000_000_000, 1)
        .unwrap();
    Arc::new(ledger)
}

fn report(what: &str, n: usize, elapsed: Duration) {
    println!(
        "{what:<40} {n:>7} payments in {:>7.2} s: {:>8.0} payments/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn bench_ledger(n: usize, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = seeded_ledger(dir.path(), durability);
    let batch: Vec<Instruction> = instructions(n, "ledger")
        .iter()
        .map(|(id, p)| Instruction::parse(id, p).unwrap())
        .collect();
    let start = Instant::now();
    for chunk in batch.chunks(500) {
        for outcome in ledger.pay_batch(chunk, 1).unwrap() {
            outcome.unwrap();
        }
    }
    report("ledger (pay_batch of 500)", n, start.elapsed());
    assert_eq!(ledger.totals().unwrap(), [("USD".to_string(), 0)]);
}

/// A minimal event system for the bridge: its bus hands out distinct
/// instructions, and it accepts every receipt without checking it.
#[derive(Default)]
struct StubBus {
    next: AtomicUsize,
    receipts: AtomicUsize,
    messages: Mutex<Vec<BusMessage>>,
}

/// [`StubBus`] behind the event system's interface.
#[derive(Clone)]
struct MockEventSystem(Arc<StubBus>);

/// The answer to the methods the bench never calls.
fn not_in_mock() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        METHOD_NOT_FOUND_CODE,
        "not part of the mock event system",
        None::<()>,
    )
}

/// The event as the mock reports it once its receipt is taken: Completed
/// (the mock keeps no events; the other fields are placeholders).
fn completed(receipt: PaymentReceipt) -> Event {
    Event {
        id: receipt.event_id.clone(),
        tx_hash: Hash::digest(b"tx"),
        valid_until: 1_000_000,
        payment: PaymentInstruction {
            payer: "acct-0".into(),
            payee: "acct-1".into(),
            amount: "1".into(),
            currency: "USD".into(),
        },
        state: State::Completed,
        created_at_ms: 0,
        state_since_ms: 0,
        due_at_ms: None,
        checks: 0,
        resends: 0,
        evidence: None,
        receipt: Some(receipt),
        payment_failure: None,
    }
}

#[async_trait]
impl BusApiServer for MockEventSystem {
    async fn pull(&self, max: Option<usize>, _lease_ms: Option<u64>) -> RpcResult<Pulled> {
        let bus = &self.0;
        let max = max.unwrap_or(DEFAULT_PULL);
        let all = bus.messages.lock().unwrap();
        let from = bus.next.fetch_add(max, Ordering::SeqCst).min(all.len());
        let to = (from + max).min(all.len());
        Ok(Pulled {
            lease_id: format!("lease-{from}"),
            deadline_ms: u64::MAX / 2,
            messages: all[from..to]
                .iter()
                .cloned()
                .map(Delivery::Message)
                .collect(),
        })
    }

    async fn ack(
        &self,
        _lease_id: String,
        _message_ids: Option<Vec<String>>,
    ) -> RpcResult<AckResult> {
        Ok(AckResult { acked: 1 })
    }
}

#[async_trait]
impl EventApiServer for MockEventSystem {
    async fn post_receipts(
        &self,
        receipts: Vec<PaymentReceipt>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        self.0.receipts.fetch_add(receipts.len(), Ordering::SeqCst);
        Ok(receipts
            .into_iter()
            .map(|receipt| ItemResult {
                result: Some(completed(receipt)),
                error: None,
            })
            .collect())
    }

    async fn register(
        &self,
        _ext: &jsonrpsee::Extensions,
        _request: RegisterRequest,
    ) -> RpcResult<Event> {
        Err(not_in_mock())
    }

    fn get(&self, _id: String) -> RpcResult<Event> {
        Err(not_in_mock())
    }

    fn history(&self, _id: String) -> RpcResult<Vec<Transition>> {
        Err(not_in_mock())
    }

    fn proof(&self, _id: String) -> RpcResult<Option<lockstep_api::proof::EventProof>> {
        Err(not_in_mock())
    }

    fn list(&self, _params: Option<ListParams>) -> RpcResult<Page> {
        Err(not_in_mock())
    }

    fn stats(&self) -> RpcResult<Stats> {
        Err(not_in_mock())
    }

    async fn subscribe_transitions(
        &self,
        pending: PendingSubscriptionSink,
        _from_seq: Option<u64>,
        _filter: Option<lockstep_api::offchain::TransitionFilter>,
    ) -> SubscriptionResult {
        pending.reject(not_in_mock()).await;
        Ok(())
    }

    fn post_receipt(&self, _receipt: PaymentReceipt) -> RpcResult<Event> {
        Err(not_in_mock())
    }

    async fn register_batch(
        &self,
        _ext: &jsonrpsee::Extensions,
        _requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        Err(not_in_mock())
    }
}

async fn bench_stub(n: usize, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = seeded_ledger(dir.path(), durability);
    // Signed as the event system signs them, so the bridge's signature
    // check is part of what is measured.
    let event_system = Keypair::dev("event-system");
    let messages: Vec<BusMessage> = instructions(n, "stub")
        .into_iter()
        .map(|(id, payment)| {
            BusMessage {
                message_id: id.clone(),
                event_id: id,
                tx_hash: Hash::digest(b"tx"),
                block_hash: None,
                block_number: 1,
                payment,
                attempt: 1,
                signature: None,
            }
            .signed(&event_system)
        })
        .collect();
    let bus = Arc::new(StubBus {
        messages: Mutex::new(messages),
        ..StubBus::default()
    });
    let mock = MockEventSystem(bus.clone());
    let mut module = BusApiServer::into_rpc(mock.clone());
    module.merge(EventApiServer::into_rpc(mock)).unwrap();
    let server = Server::builder()
        .set_config(
            ServerConfig::builder()
                .set_batch_request_config(BatchRequestConfig::Limit(100))
                .max_response_body_size(64 * 1024 * 1024)
                .build(),
        )
        .build("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let handle = server.start(module);

    let start = Instant::now();
    let bridge = lockstep_bridge::start(
        lockstep_bridge::Config::new(url, event_system.public()),
        ledger.clone(),
        Keypair::dev("bridge"),
    )
    .await
    .unwrap();
    let mut changed = bridge.metrics.changed();
    while bus.receipts.load(Ordering::SeqCst) < n {
        changed.changed().await.unwrap();
    }
    report("bridge, stub event system", n, start.elapsed());
    bridge.stop().await;
    handle.stop().unwrap();
    assert_eq!(ledger.payments().unwrap().len(), n);
    assert_eq!(ledger.totals().unwrap(), [("USD".to_string(), 0)]);
}

async fn bench_end_to_end(n: usize, durability: Durability, fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = seeded_ledger(dir.path(), durability);
    // The event store, filled with events already in PendingAccount.
    let events_dir = dir.path().join("offchain");
    std::fs::create_dir_all(events_dir.join("events")).unwrap();
    {
        let store = EventStore::open(&events_dir.join("events"), false).unwrap();
        let now = lockstep_offchain::now_ms();
        let later = now + 3_600_000;
        let all = instructions(n, "e2e");
        for (chunk_no, chunk) in all.chunks(1000).enumerate() {
            let registrations: Vec<Registration> = chunk
                .iter()
                .enumerate()
                .map(|(i, (id, payment))| Registration {
                    id: id.clone(),
                    tx_hash: Hash::digest(format!("tx-{chunk_no}-{i}").as_bytes()),
                    valid_until: 1_000_000,
                    payment: payment.clone(),
                })
                .collect();
            store.register_many(&registrations, now, later).unwrap();
            let moves: Vec<Move> = chunk
                .iter()
                .map(|(id, _)| Move {
                    id: id.clone(),
                    reason: Reason::Succeeded,
                    evidence: Some(Evidence {
                        block_hash: Some(Hash::digest(b"block")),
                        block_number: 1,
                        outcome: Some(Outcome::Success),
                        confirmed_by: vec!["bench".into()],
                        nodes_asked: 1,
                    }),
                    proof: None,
                })
                .collect();
            for result in store.transition_many(&moves, now, later).unwrap() {
                result.unwrap();
            }
        }
    }
    // No chain: the watcher's node is down, which changes nothing here.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut config = lockstep_offchain::Config::new(
        vec![unreachable],
        events_dir,
        Keypair::dev("bridge").public(),
    );
    config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.sync_writes = fsync;
    config.resend_base = Duration::from_secs(3600);
    config.watcher_retry = Duration::from_secs(5);
    let service = lockstep_offchain::start(config).await.unwrap();
    let event_system = service.instruction_key;
    let url = format!("http://{}", service.rpc_addr);
    let client = HttpClientBuilder::default().build(&url).unwrap();

    let start = Instant::now();
    let bridge = lockstep_bridge::start(
        lockstep_bridge::Config::new(url, event_system),
        ledger.clone(),
        Keypair::dev("bridge"),
    )
    .await
    .unwrap();
    let mut changed = bridge.metrics.changed();
    loop {
        changed.changed().await.unwrap();
        if bridge.metrics.receipts_posted.load(Ordering::SeqCst) as usize >= n {
            break;
        }
    }
    let elapsed = start.elapsed();
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.completed, n as u64, "{stats:?}");
    report(
        &format!(
            "end to end, event system fsync {}",
            if fsync { "on" } else { "off" }
        ),
        n,
        elapsed,
    );
    bridge.stop().await;
    service.stop().await;
    assert_eq!(ledger.totals().unwrap(), [("USD".to_string(), 0)]);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env("LOCKSTEP_BENCH_PAYMENTS", 20_000);
    let fsync = std::env::var("LOCKSTEP_BENCH_FSYNC")
        .map(|v| v != "0")
        .unwrap_or(true);
    let durability = if fsync {
        Durability::Full
    } else {
        Durability::Normal
    };
    println!(
        "{n} payments, {ACCOUNTS} accounts, ledger synchronous={}",
        if fsync { "FULL" } else { "NORMAL" }
    );
    tokio::task::spawn_blocking(move || bench_ledger(n, durability))
        .await
        .unwrap();
    bench_stub(n, durability).await;
    bench_end_to_end(n, durability, fsync).await;
}
