//! The same instruction delivered 100 times, concurrently, makes one
//! payment: on the ledger directly (100 threads, 100 connections to one
//! file), and through two bridges consuming one bus that hands the same
//! message out 100 times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use jsonrpsee::server::Server;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use lockstep_api::bus::BusMessage;
use lockstep_api::event::{PaymentInstruction, PaymentReceipt};
use lockstep_bridge::ledger::{
    Instruction, PayOutcome, PaymentLedger, PaymentStatus, SqliteLedger,
};
use lockstep_runtime::Hash;
use serde_json::{json, Value};

use crate::harness::{assert_conserved, bridge_key, poll};

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

fn assert_paid_once(ledger: &SqliteLedger) {
    let payments = ledger.payments().unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].status, PaymentStatus::Paid);
    assert_eq!(payments[0].amount, 2500);
    assert_eq!(ledger.account("alice").unwrap().unwrap().balance, 7_500);
    assert_eq!(ledger.account("bob").unwrap().unwrap().balance, 12_500);
    assert_conserved(ledger);
}

#[test]
fn same_instruction_100_times_concurrently_on_the_ledger_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(seeded(&path));
    let instruction = Instruction::parse("event-1", &instruction()).unwrap();
    let start = Arc::new(Barrier::new(DELIVERIES));
    let threads: Vec<_> = (0..DELIVERIES)
        .map(|_| {
            let (path, instruction, start) = (path.clone(), instruction.clone(), start.clone());
            std::thread::spawn(move || {
                // Each delivery on its own connection, as separate
                // processes would be.
                let ledger = SqliteLedger::open(&path).unwrap();
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
    let ledger = SqliteLedger::open_read_only(&path).unwrap();
    assert_paid_once(&ledger);
    assert_eq!(ledger.receipt_backlog().unwrap(), 1);
}

/// A bus that hands the same message out `DELIVERIES` times, one per pull,
/// and records acks and receipts.
#[derive(Default)]
struct StubBus {
    handed_out: AtomicUsize,
    acked: AtomicUsize,
    receipts: Mutex<Vec<PaymentReceipt>>,
}

async fn stub_event_system(bus: Arc<StubBus>) -> (jsonrpsee::server::ServerHandle, String) {
    let message = serde_json::to_value(BusMessage {
        message_id: "event-1".into(),
        event_id: "event-1".into(),
        tx_hash: Hash::digest(b"transfer"),
        block_hash: Some(Hash::digest(b"block")),
        block_number: 7,
        payment: instruction(),
        attempt: 1,
    })
    .unwrap();
    let mut module = RpcModule::new(bus);
    module
        .register_method("bus_pull", move |_, bus, _| {
            let n = bus.handed_out.fetch_add(1, Ordering::SeqCst);
            let messages = if n < DELIVERIES {
                vec![message.clone()]
            } else {
                bus.handed_out.fetch_sub(1, Ordering::SeqCst);
                vec![]
            };
            json!({"leaseId": format!("lease-{n}"), "deadlineMs": u64::MAX / 2, "messages": messages})
        })
        .unwrap();
    module
        .register_method("bus_ack", |_, bus, _| {
            bus.acked.fetch_add(1, Ordering::SeqCst);
            json!({"acked": 1})
        })
        .unwrap();
    module
        .register_method("event_postReceipts", |params, bus, _| {
            let receipts: Vec<PaymentReceipt> = params.one()?;
            let answers: Vec<Value> = receipts
                .into_iter()
                .map(|receipt| {
                    if receipt.verify(&bridge_key().public()).is_err() {
                        return json!({"error": {"code": 2010, "message": "bad signature"}});
                    }
                    bus.receipts.lock().unwrap().push(receipt);
                    json!({"result": {"state": "Completed"}})
                })
                .collect();
            Ok::<Value, ErrorObjectOwned>(json!(answers))
        })
        .unwrap();
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    (server.start(module), format!("http://{addr}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_instruction_100_times_concurrently_through_two_bridges_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(seeded(&path));
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
        let ledger = Arc::new(SqliteLedger::open(&path).unwrap());
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
    let ledger = SqliteLedger::open(&path).unwrap();
    poll("every receipt delivered", || {
        (ledger.receipt_backlog().unwrap() == 0 && !bus.receipts.lock().unwrap().is_empty())
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
    assert_paid_once(&ledger);
    // Every receipt sent is the same receipt (re-sends are identical).
    let receipts = bus.receipts.lock().unwrap();
    assert!(receipts.iter().all(|r| r == &receipts[0]));
    assert_eq!(
        receipts[0].payment_reference,
        ledger.payments().unwrap()[0].reference
    );
    server.stop().unwrap();
}

/// An event system that refuses every `event_postReceipts` call as a whole
/// (as when one event in it cannot be read) and takes single receipts,
/// except the one for `event-bad`.
async fn picky_event_system(bus: Arc<StubBus>) -> (jsonrpsee::server::ServerHandle, String) {
    let messages: Vec<Value> = ["event-a", "event-bad", "event-b"]
        .iter()
        .map(|id| {
            serde_json::to_value(BusMessage {
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
            })
            .unwrap()
        })
        .collect();
    let mut module = RpcModule::new(bus);
    module
        .register_method("bus_pull", move |_, bus, _| {
            let first = bus.handed_out.fetch_add(1, Ordering::SeqCst) == 0;
            let batch = if first { messages.clone() } else { Vec::new() };
            json!({"leaseId": "lease", "deadlineMs": u64::MAX / 2, "messages": batch})
        })
        .unwrap();
    module
        .register_method("bus_ack", |_, bus, _| {
            bus.acked.fetch_add(1, Ordering::SeqCst);
            json!({"acked": 3})
        })
        .unwrap();
    module
        .register_method("event_postReceipts", |_, _, _| {
            Err::<Value, _>(ErrorObjectOwned::owned(
                -32603,
                "internal error: corrupt store",
                None::<()>,
            ))
        })
        .unwrap();
    module
        .register_method("event_postReceipt", |params, bus, _| {
            let receipt: PaymentReceipt = params.one()?;
            if receipt.event_id == "event-bad" {
                return Err(ErrorObjectOwned::owned(
                    -32603,
                    "internal error: corrupt event",
                    None::<()>,
                ));
            }
            bus.receipts.lock().unwrap().push(receipt);
            Ok::<Value, ErrorObjectOwned>(json!({"state": "Completed"}))
        })
        .unwrap();
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    (server.start(module), format!("http://{addr}"))
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
