//! kill -9 of the bridge between the ledger commit and the receipt, then a
//! restart: no second payment, the receipt is delivered, the events become
//! Completed, money is conserved. On either ledger engine.

use lockstep_bridge::ledger::PaymentStatus;
use lockstep_bridge::CRASH_AFTER_COMMIT_ENV;

use crate::harness::{
    assert_conserved, blocking, payment, poll, BridgeProcess, DevNode, Engine, EventSystem,
    TestLedger,
};

const EVENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_commit_then_restart_pays_once_and_completes() {
    kill_9_after_commit_then_restart(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_commit_then_restart_pays_once_and_completes_on_postgres() {
    kill_9_after_commit_then_restart(Engine::Postgres).await;
}

async fn kill_9_after_commit_then_restart(engine: Engine) {
    let node = DevNode::start().await;
    let events = EventSystem::start(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let test_ledger = TestLedger::new(engine, dir.path());
    let path = test_ledger.location.clone();
    let ledger = test_ledger.open();
    blocking(|| ledger.open_accounts(&["payer".into(), "payee".into()], "USD", 0, 1_000_000, 1))
        .unwrap();
    for i in 0..EVENTS {
        let id = format!("crash-{i}");
        events
            .pending_event(
                &node,
                &id,
                "charlie",
                i as u64,
                payment("payer", "payee", "1000", "USD"),
            )
            .await;
    }

    // First run: the bridge commits the batch and aborts before acking the
    // bus or posting any receipt (SIGABRT: no shutdown code runs).
    let mut first = BridgeProcess::start(
        &events.url(),
        &path,
        dir.path(),
        &[(CRASH_AFTER_COMMIT_ENV, "1")],
    );
    let status = poll("the bridge to abort", || first.try_wait()).await;
    assert!(!status.success(), "the crash hook did not fire: {status:?}");
    drop(first);
    let paid_first = blocking(|| ledger.payments()).unwrap();
    assert!(!paid_first.is_empty(), "the aborted run committed nothing");
    assert!(paid_first.iter().all(|p| p.status == PaymentStatus::Paid));
    assert_eq!(
        blocking(|| ledger.receipt_backlog()).unwrap(),
        paid_first.len() as u64
    );
    for p in &paid_first {
        assert_eq!(events.get(&p.event_id).await["state"], "PendingAccount");
    }

    // Restart without the hook: the outbox delivers the receipts, the bus
    // re-delivers the unacked batch, the ledger absorbs it.
    let second = BridgeProcess::start(&events.url(), &path, dir.path(), &[]);
    for i in 0..EVENTS {
        let event = events.await_state(&format!("crash-{i}"), "Completed").await;
        let reference = event["receipt"]["paymentReference"]
            .as_str()
            .unwrap()
            .to_owned();
        let record = blocking(|| ledger.payment(&format!("crash-{i}")))
            .unwrap()
            .unwrap();
        assert_eq!(record.reference, reference);
    }
    poll("the receipt outbox to drain", || {
        (blocking(|| ledger.receipt_backlog()).unwrap() == 0).then_some(())
    })
    .await;
    assert!(
        second.terminate(),
        "the bridge did not stop cleanly on SIGTERM"
    );

    let payments = blocking(|| ledger.payments()).unwrap();
    assert_eq!(payments.len(), EVENTS);
    for p in &payments {
        assert_eq!(p.status, PaymentStatus::Paid);
        // Paid on the first attempt; the re-delivery only re-sent the receipt.
        assert_eq!(p.attempts, 1, "{p:?}");
    }
    for p in &paid_first {
        let now = blocking(|| ledger.payment(&p.event_id)).unwrap().unwrap();
        assert_eq!(
            (now.reference.as_str(), now.created_ms),
            (p.reference.as_str(), p.created_ms)
        );
    }
    let balance = |id: &str| blocking(|| ledger.account(id)).unwrap().unwrap().balance;
    assert_eq!(balance("payer"), 1_000_000 - 1000 * EVENTS as i128);
    assert_eq!(balance("payee"), 1_000_000 + 1000 * EVENTS as i128);
    assert_conserved(ledger.as_ref());
    drop(ledger);
    events.stop().await;
    node.stop().await;
}
