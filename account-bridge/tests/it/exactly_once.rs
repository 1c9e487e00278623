//! The same instruction delivered 100 times, concurrently, makes one
//! payment: on the ledger directly (100 threads, 100 connections to one
//! file or one PostgreSQL database), and through two bridges on one ledger
//! (SQLite file or PostgreSQL database) consuming one bus that hands the
//! same message out 100 times. And an instruction the event system did not
//! sign makes none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use jsonrpsee::core::{async_trait, RpcResult, SubscriptionResult};
use jsonrpsee::server::Server;
use jsonrpsee::types::error::{INTERNAL_ERROR_CODE, METHOD_NOT_FOUND_CODE};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::PendingSubscriptionSink;
use lockstep_api::bus::{AckResult, BusMessage, Delivery, Pulled};
use lockstep_api::event::{Event, PaymentInstruction, PaymentReceipt, RegisterRequest, Transition};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{
    error, BusApiServer, EventApiServer, ItemResult, ListParams, Page, Stats,
};
use lockstep_bridge::ledger::{
    Durability, Instruction, LedgerLocation, PayOutcome, PaymentLedger, PaymentStatus, SqliteLedger,
};
use lockstep_runtime::{Hash, Keypair};
use lockstep_service::test_utils::TestPostgres;

use crate::harness::{assert_conserved, await_metrics, bridge_key, event_system_key, poll};

const DELIVERIES: usize = 100;

fn instruction() -> PaymentInstruction {
    PaymentInstruction {
        payer: "alice".into(),
        payee: "bob".into(),
        amount: "2500".into(),
        currency: "USD".into(),
    }
}

fn seeded(path: &std::path::Path) -> SqliteLedger {
    let ledger = SqliteLedger::open(path).unwrap();
    ledger
        .open_accounts(&["alice".into(), "bob".into()], "USD", 0, 10_000, 1)
        .unwrap();
    ledger
}

/// Opens and seeds the ledger at `location`, as [`seeded`] does.
fn seeded_at(location: &LedgerLocation) {
    location
        .open(Durability::Full)
        .unwrap()
        .open_accounts(&["alice".into(), "bob".into()], "USD", 0, 10_000, 1)
        .unwrap();
}

fn assert_paid_once(ledger: &dyn PaymentLedger) {
    let payments = ledger.payments().unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].status, PaymentStatus::Paid);
    assert_eq!(payments[0].amount, 2500);
    assert_eq!(ledger.account("alice").unwrap().unwrap().balance, 7_500);
    assert_eq!(ledger.account("bob").unwrap().unwrap().balance, 12_500);
    assert_conserved(ledger);
}

/// 100 threads deliver one instruction at once, each on a ledger of its
/// own (its own connections, as separate processes would have).
fn deliver_100_times_at_once(location: &LedgerLocation) {
    seeded_at(location);
    let instruction = Instruction::parse("event-1", &instruction()).unwrap();
    let start = Arc::new(Barrier::new(DELIVERIES));
    let threads: Vec<_> = (0..DELIVERIES)
        .map(|_| {
            let (location, instruction, start) =
                (location.clone(), instruction.clone(), start.clone());
            std::thread::spawn(move || {
                let ledger = location.open(Durability::Full).unwrap();
                start.wait();
                ledger.pay(&instruction, 2).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<PayOutcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let paid: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            PayOutcome::Paid { reference } => Some(reference.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(paid.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            PayOutcome::Paid { reference } | PayOutcome::AlreadyPaid { reference } => {
                assert_eq!(reference, &paid[0])
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ledger = location.open_read_only().unwrap();
    assert_paid_once(ledger.as_ref());
    assert_eq!(ledger.receipt_backlog().unwrap(), 1);
}

#[test]
fn same_instruction_100_times_concurrently_on_the_ledger_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    deliver_100_times_at_once(&LedgerLocation::Sqlite(dir.path().join("ledger.db")));
}

#[test]
fn same_instruction_100_times_concurrently_on_a_postgres_ledger_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPostgres::start(dir.path());
    let url = server.create_database("ledger");
    deliver_100_times_at_once(&LedgerLocation::Postgres(url));
}

/// A bus that hands the same message out `DELIVERIES` times, one per pull,
/// and records acks and receipts.
#[derive(Default)]
struct StubBus {
    handed_out: AtomicUsize,
    acked: AtomicUsize,
    receipts: Mutex<Vec<PaymentReceipt>>,
}

/// How a stub event system behaves.
#[derive(Clone)]
enum Behaviour {
    /// Hands `message` out `DELIVERIES` times, one per pull, and takes
    /// every well-signed receipt of an `event_postReceipts` call.
    Repeat(Box<BusMessage>),
    /// Hands `messages` out once, refuses every `event_postReceipts` call
    /// as a whole and takes single receipts, except the one for
    /// `event-bad`.
    Picky(Vec<BusMessage>),
    /// Hands `deliveries` out once (in one batch) and takes every
    /// well-signed receipt of an `event_postReceipts` call.
    Once(Vec<Delivery>),
}

/// A stub event system: the bus and the receipt methods of the event
/// system's interface, over a [`StubBus`].
#[derive(Clone)]
struct StubEventSystem {
    bus: Arc<StubBus>,
    behaviour: Behaviour,
}

impl StubEventSystem {
    /// Serves it on a loopback port; returns the handle and the URL.
    async fn serve(self) -> (jsonrpsee::server::ServerHandle, String) {
        let mut module = BusApiServer::into_rpc(self.clone());
        module.merge(EventApiServer::into_rpc(self)).unwrap();
        let server = Server::builder().build("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        (server.start(module), format!("http://{addr}"))
    }
}

/// The answer to the methods a stub does not serve.
fn not_in_stub() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        METHOD_NOT_FOUND_CODE,
        "not part of the stub event system",
        None::<()>,
    )
}

/// The event a stub reports once it took `receipt`: Completed.
fn completed(receipt: PaymentReceipt) -> Event {
    Event {
        id: receipt.event_id.clone(),
        tx_hash: Hash::digest(receipt.event_id.as_bytes()),
        valid_until: 1_000,
        payment: instruction(),
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
impl BusApiServer for StubEventSystem {
    async fn pull(&self, _max: Option<usize>, _lease_ms: Option<u64>) -> RpcResult<Pulled> {
        let bus = &self.bus;
        let (lease_id, messages) = match &self.behaviour {
            Behaviour::Repeat(message) => {
                let n = bus.handed_out.fetch_add(1, Ordering::SeqCst);
                let messages = if n < DELIVERIES {
                    vec![Delivery::Message((**message).clone())]
                } else {
                    bus.handed_out.fetch_sub(1, Ordering::SeqCst);
                    vec![]
                };
                (format!("lease-{n}"), messages)
            }
            Behaviour::Picky(messages) => {
                let first = bus.handed_out.fetch_add(1, Ordering::SeqCst) == 0;
                let batch = if first {
                    messages.iter().cloned().map(Delivery::Message).collect()
                } else {
                    Vec::new()
                };
                ("lease".to_owned(), batch)
            }
            Behaviour::Once(deliveries) => {
                let first = bus.handed_out.fetch_add(1, Ordering::SeqCst) == 0;
                let batch = if first {
                    deliveries.clone()
                } else {
                    Vec::new()
                };
                ("lease".to_owned(), batch)
            }
        };
        Ok(Pulled {
            lease_id,
            deadline_ms: u64::MAX / 2,
            messages,
        })
    }

    async fn ack(
        &self,
        _lease_id: String,
        _message_ids: Option<Vec<String>>,
    ) -> RpcResult<AckResult> {
        self.bus.acked.fetch_add(1, Ordering::SeqCst);
        let acked = match &self.behaviour {
            Behaviour::Repeat(_) => 1,
            Behaviour::Picky(_) => 3,
            Behaviour::Once(deliveries) => deliveries.len(),
        };
        Ok(AckResult { acked })
    }
}

#[async_trait]
impl EventApiServer for StubEventSystem {
    async fn post_receipts(
        &self,
        receipts: Vec<PaymentReceipt>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        match self.behaviour {
            Behaviour::Repeat(_) | Behaviour::Once(_) => Ok(receipts
                .into_iter()
                .map(|receipt| -> ItemResult<Event> {
                    if receipt.verify(&bridge_key().public()).is_err() {
                        let refused = error::error(error::BAD_RECEIPT_SIGNATURE, "bad signature");
                        return Err::<Event, _>(refused).into();
                    }
                    self.bus.receipts.lock().unwrap().push(receipt.clone());
                    Ok::<_, ErrorObjectOwned>(completed(receipt)).into()
                })
                .collect()),
            Behaviour::Picky(_) => Err(ErrorObjectOwned::owned(
                INTERNAL_ERROR_CODE,
                "internal error: corrupt store",
                None::<()>,
            )),
        }
    }

    fn post_receipt(&self, receipt: PaymentReceipt) -> RpcResult<Event> {
        let Behaviour::Picky(_) = self.behaviour else {
            return Err(not_in_stub());
        };
        if receipt.event_id == "event-bad" {
            return Err(ErrorObjectOwned::owned(
                INTERNAL_ERROR_CODE,
                "internal error: corrupt event",
                None::<()>,
            ));
        }
        self.bus.receipts.lock().unwrap().push(receipt.clone());
        Ok(completed(receipt))
    }

    async fn register(
        &self,
        _ext: &jsonrpsee::Extensions,
        _request: RegisterRequest,
    ) -> RpcResult<Event> {
        Err(not_in_stub())
    }

    fn get(&self, _id: String) -> RpcResult<Event> {
        Err(not_in_stub())
    }

    fn history(&self, _id: String) -> RpcResult<Vec<Transition>> {
        Err(not_in_stub())
    }

    fn proof(&self, _id: String) -> RpcResult<Option<lockstep_api::proof::EventProof>> {
        Err(not_in_stub())
    }

    fn list(&self, _params: Option<ListParams>) -> RpcResult<Page> {
        Err(not_in_stub())
    }

    fn stats(&self) -> RpcResult<Stats> {
        Err(not_in_stub())
    }

    async fn subscribe_transitions(
        &self,
        pending: PendingSubscriptionSink,
        _from_seq: Option<u64>,
        _filter: Option<lockstep_api::offchain::TransitionFilter>,
    ) -> SubscriptionResult {
        pending.reject(not_in_stub()).await;
        Ok(())
    }

    async fn register_batch(
        &self,
        _ext: &jsonrpsee::Extensions,
        _requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        Err(not_in_stub())
    }
}

/// The event system of the 100-deliveries test: one message, handed out
/// `DELIVERIES` times.
async fn stub_event_system(bus: Arc<StubBus>) -> (jsonrpsee::server::ServerHandle, String) {
    let message = BusMessage {
        message_id: "event-1".into(),
        event_id: "event-1".into(),
        tx_hash: Hash::digest(b"transfer"),
        block_hash: Some(Hash::digest(b"block")),
        block_number: 7,
        payment: instruction(),
        attempt: 1,
        signature: None,
    }
    .signed(&event_system_key());
    StubEventSystem {
        bus,
        behaviour: Behaviour::Repeat(Box::new(message)),
    }
    .serve()
    .await
}

/// `GET /metrics`.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Two bridges on the ledger at `location` take the same message 100
/// times from one bus. Runs on a multi-threaded runtime: the ledger is
/// read here on blocking sections (a PostgreSQL client blocks).
async fn two_bridges_take_100_deliveries(location: LedgerLocation) {
    tokio::task::block_in_place(|| seeded_at(&location));
    let bus = Arc::new(StubBus::default());
    let (server, url) = stub_event_system(bus.clone()).await;
    // Two bridges (own connections) on one ledger file, 16 consumers each
    // pulling one message at a time: up to 32 deliveries at once.
    let mut bridges = Vec::new();
    for _ in 0..2 {
        let mut config = crate::harness::bridge_config(&url);
        config.concurrency = 16;
        config.batch = 1;
        config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let ledger = tokio::task::block_in_place(|| location.open(Durability::Full).unwrap());
        bridges.push(
            lockstep_bridge::start(config, ledger, bridge_key())
                .await
                .unwrap(),
        );
    }
    poll("every delivery acknowledged", || {
        (bus.acked.load(Ordering::SeqCst) == DELIVERIES).then_some(())
    })
    .await;
    let ledger = tokio::task::block_in_place(|| location.open(Durability::Full).unwrap());
    poll("every receipt delivered", || {
        (tokio::task::block_in_place(|| ledger.receipt_backlog().unwrap()) == 0
            && !bus.receipts.lock().unwrap().is_empty())
        .then_some(())
    })
    .await;
    // Counted by the Prometheus endpoints.
    let (mut paid, mut duplicates) = (0, 0);
    for bridge in bridges {
        // The gauge is refreshed by each bridge's own poster; the other
        // bridge may have delivered the receipt.
        let deadline = tokio::time::Instant::now() + crate::harness::PATIENCE;
        let text = loop {
            let text = scrape(bridge.metrics_addr.unwrap()).await;
            if metric(&text, "lockstep_bridge_receipt_backlog") == 0 {
                break text;
            }
            assert!(tokio::time::Instant::now() < deadline, "{text}");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        };
        paid += metric(&text, "lockstep_bridge_payments_total");
        duplicates += metric(&text, "lockstep_bridge_duplicates_total");
        assert_eq!(metric(&text, "lockstep_bridge_failures_total"), 0);
        assert_eq!(
            metric(&text, "lockstep_bridge_receipt_backlog"),
            0,
            "{text}"
        );
        bridge.stop().await;
    }
    assert_eq!((paid, duplicates), (1, DELIVERIES as u64 - 1));
    tokio::task::block_in_place(|| assert_paid_once(ledger.as_ref()));
    // Every receipt sent is the same receipt (re-sends are identical).
    let receipts = bus.receipts.lock().unwrap();
    assert!(receipts.iter().all(|r| r == &receipts[0]));
    assert_eq!(
        receipts[0].payment_reference,
        tokio::task::block_in_place(|| ledger.payments().unwrap())[0].reference
    );
    server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_instruction_100_times_concurrently_through_two_bridges_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    two_bridges_take_100_deliveries(LedgerLocation::Sqlite(dir.path().join("ledger.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_instruction_100_times_through_two_bridges_on_one_postgres_ledger_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPostgres::start(dir.path());
    let url = server.create_database("ledger");
    two_bridges_take_100_deliveries(LedgerLocation::Postgres(url)).await;
}

/// An event system that refuses every `event_postReceipts` call as a whole
/// (as when one event in it cannot be read) and takes single receipts,
/// except the one for `event-bad`.
async fn picky_event_system(bus: Arc<StubBus>) -> (jsonrpsee::server::ServerHandle, String) {
    let messages: Vec<BusMessage> = ["event-a", "event-bad", "event-b"]
        .iter()
        .map(|id| {
            BusMessage {
                message_id: (*id).into(),
                event_id: (*id).into(),
                tx_hash: Hash::digest(id.as_bytes()),
                block_hash: Some(Hash::digest(b"block")),
                block_number: 7,
                payment: PaymentInstruction {
                    amount: "10".into(),
                    ..instruction()
                },
                attempt: 1,
                signature: None,
            }
            .signed(&event_system_key())
        })
        .collect();
    StubEventSystem {
        bus,
        behaviour: Behaviour::Picky(messages),
    }
    .serve()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_the_event_system_cannot_take_does_not_hold_back_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(seeded(&path));
    let bus = Arc::new(StubBus::default());
    let (server, url) = picky_event_system(bus.clone()).await;
    let ledger = Arc::new(SqliteLedger::open(&path).unwrap());
    let bridge = lockstep_bridge::start(crate::harness::bridge_config(&url), ledger, bridge_key())
        .await
        .unwrap();
    poll("the two good receipts delivered one by one", || {
        (bus.receipts.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    let mut delivered: Vec<String> = bus
        .receipts
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.event_id.clone())
        .collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered, ["event-a", "event-b"]);
    let ledger = SqliteLedger::open(&path).unwrap();
    poll("only the refused receipt left in the outbox", || {
        (ledger.receipt_backlog().unwrap() == 1).then_some(())
    })
    .await;
    assert_eq!(ledger.payments().unwrap().len(), 3);
    assert_conserved(&ledger);
    bridge.stop().await;
    server.stop().unwrap();
}

/// An unsigned instruction for `id`: 100 from alice to bob.
fn unsigned(id: &str) -> BusMessage {
    BusMessage {
        message_id: id.into(),
        event_id: id.into(),
        tx_hash: Hash::digest(id.as_bytes()),
        block_hash: Some(Hash::digest(b"block")),
        block_number: 7,
        payment: PaymentInstruction {
            amount: "100".into(),
            ..instruction()
        },
        attempt: 1,
        signature: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructions_the_event_system_did_not_sign_are_set_aside_unpaid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(seeded(&path));
    let key = event_system_key();
    let forged = unsigned("event-forged").signed(&Keypair::dev("forger"));
    let mut tampered = unsigned("event-tampered").signed(&key);
    tampered.payment.amount = "9000".into();
    let mut renamed = unsigned("event-renamed").signed(&key);
    renamed.message_id = "event-other".into();
    let deliveries = vec![
        Delivery::Message(forged),
        Delivery::Message(unsigned("event-unsigned")),
        Delivery::Message(unsigned("event-good").signed(&key)),
        Delivery::Message(tampered),
        Delivery::Message(renamed),
        Delivery::Undecodable(serde_json::json!({
            "eventId": "event-undecodable", "payment": "nonsense",
        })),
    ];
    let bus = Arc::new(StubBus::default());
    let (server, url) = StubEventSystem {
        bus: bus.clone(),
        behaviour: Behaviour::Once(deliveries),
    }
    .serve()
    .await;
    let mut config = crate::harness::bridge_config(&url);
    config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let ledger = Arc::new(SqliteLedger::open(&path).unwrap());
    let bridge = lockstep_bridge::start(config, ledger.clone(), bridge_key())
        .await
        .unwrap();
    await_metrics(&bridge, |m| {
        m.receipts_posted.load(Ordering::SeqCst) >= 1 && m.unsigned.load(Ordering::SeqCst) == 4
    })
    .await;

    // Only the signed instruction was paid; the batch was acknowledged
    // (the rest set aside), and no receipt went out for the others.
    let payments = ledger.payments().unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].event_id, "event-good");
    assert_eq!(ledger.account("alice").unwrap().unwrap().balance, 9_900);
    assert_conserved(&*ledger);
    poll("the batch acknowledged", || {
        (bus.acked.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let receipted: Vec<String> = bus
        .receipts
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.event_id.clone())
        .collect();
    assert!(
        receipted.iter().all(|id| id == "event-good"),
        "{receipted:?}"
    );
    // Counted where an operator looks.
    let text = scrape(bridge.metrics_addr.unwrap()).await;
    assert_eq!(
        metric(&text, "lockstep_bridge_unsigned_instructions_total"),
        4
    );
    assert_eq!(metric(&text, "lockstep_bridge_invalid_total"), 1);
    assert_eq!(metric(&text, "lockstep_bridge_payments_total"), 1);
    bridge.stop().await;
    server.stop().unwrap();
}
