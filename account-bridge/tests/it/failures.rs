//! Payments the ledger refuses: a failure receipt, the event flagged and
//! still PendingAccount, then paid once the funds arrive; instructions the
//! ledger can never pay write nothing and are reported. On either ledger
//! engine.

use lockstep_bridge::ledger::PaymentStatus;
use std::sync::atomic::Ordering;

use crate::harness::{
    assert_conserved, await_metrics, blocking, ledger_cli, payment, start_bridge, DevNode, Engine,
    EventSystem, TestLedger,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insufficient_funds_reports_failure_then_pays_after_deposit() {
    insufficient_funds_then_deposit(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insufficient_funds_reports_failure_then_pays_after_deposit_on_postgres() {
    insufficient_funds_then_deposit(Engine::Postgres).await;
}

async fn insufficient_funds_then_deposit(engine: Engine) {
    let node = DevNode::start().await;
    let events = EventSystem::start(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let test_ledger = TestLedger::new(engine, dir.path());
    let ledger = test_ledger.open();
    let bridge = start_bridge(&events.url(), &ledger).await;
    blocking(|| ledger.open_accounts(&["poor".into(), "shop".into()], "EUR", 0, 100, 1)).unwrap();
    let balance = |id: &str| blocking(|| ledger.account(id)).unwrap().unwrap().balance;

    events
        .pending_event(
            &node,
            "short-1",
            "dave",
            0,
            payment("poor", "shop", "500", "EUR"),
        )
        .await;
    let flagged = events.await_failure("short-1").await;
    assert_eq!(flagged["state"], "PendingAccount");
    let reason = flagged["paymentFailure"]["reason"].as_str().unwrap();
    assert!(reason.contains("insufficient funds"), "{reason}");
    let record = blocking(|| ledger.payment("short-1")).unwrap().unwrap();
    assert_eq!(record.status, PaymentStatus::Failed);
    assert_eq!(
        flagged["paymentFailure"]["paymentReference"],
        record.reference.as_str()
    );
    assert_eq!(balance("poor"), 100);
    assert_conserved(ledger.as_ref());

    // Funds arrive through the operator CLI (another process, same ledger,
    // while the bridge runs); the reconciler's next re-send pays it.
    let out = ledger_cli(&test_ledger.location, &["deposit", "poor", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = events.await_state("short-1", "Completed").await;
    assert!(done["paymentFailure"].is_null(), "{done}");
    assert_eq!(
        done["receipt"]["paymentReference"],
        record.reference.as_str()
    );
    let record = blocking(|| ledger.payment("short-1")).unwrap().unwrap();
    assert_eq!(record.status, PaymentStatus::Paid);
    assert!(record.attempts >= 2, "{record:?}");
    assert_eq!(balance("poor"), 600);
    assert_eq!(balance("shop"), 600);
    assert_conserved(ledger.as_ref());
    assert!(bridge.metrics.failures.load(Ordering::SeqCst) >= 1);
    assert_eq!(bridge.metrics.payments.load(Ordering::SeqCst), 1);
    bridge.stop().await;
    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpayable_instructions_are_reported_and_write_nothing_or_a_refusal() {
    unpayable_instructions(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpayable_instructions_are_reported_and_write_nothing_or_a_refusal_on_postgres() {
    unpayable_instructions(Engine::Postgres).await;
}

async fn unpayable_instructions(engine: Engine) {
    let node = DevNode::start().await;
    let events = EventSystem::start(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let test_ledger = TestLedger::new(engine, dir.path());
    let ledger = test_ledger.open();
    blocking(|| ledger.open_accounts(&["payer".into(), "payee".into()], "USD", 0, 1_000, 1))
        .unwrap();
    drop(ledger);
    let before = test_ledger.dump();

    // Valid for the event system (it takes any currency code), but not
    // payable by this ledger. (Amounts beyond 63 bits are refused already
    // at registration, before the transfer is submitted; the ledger's own
    // refusal of them is in bad_input.)
    events
        .pending_event(
            &node,
            "pounds",
            "eve",
            0,
            payment("payer", "payee", "10", "GBP"),
        )
        .await;
    let ledger = test_ledger.open();
    let bridge = start_bridge(&events.url(), &ledger).await;
    {
        let (id, expected) = ("pounds", "GBP");
        let event = events.await_failure(id).await;
        assert_eq!(event["state"], "PendingAccount");
        let failure = &event["paymentFailure"];
        assert_eq!(failure["paymentReference"], "rejected");
        let reason = failure["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{id}: {reason}");
    }
    await_metrics(&bridge, |m| m.invalid.load(Ordering::SeqCst) >= 1).await;
    bridge.stop().await;
    assert_eq!(
        test_ledger.dump(),
        before,
        "an invalid instruction wrote to the ledger"
    );

    // An account that does not exist (yet) is a refusal that may heal: a
    // failed payment row, no money moved.
    let ledger2 = test_ledger.open();
    let bridge = start_bridge(&events.url(), &ledger2).await;
    events
        .pending_event(
            &node,
            "nobody",
            "eve",
            1,
            payment("payer", "ghost", "10", "USD"),
        )
        .await;
    let event = events.await_failure("nobody").await;
    assert!(event["paymentFailure"]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown account ghost"));
    let record = blocking(|| ledger2.payment("nobody")).unwrap().unwrap();
    assert_eq!(record.status, PaymentStatus::Failed);
    let payer = blocking(|| ledger2.account("payer")).unwrap().unwrap();
    assert_eq!(payer.balance, 1_000);
    assert_conserved(ledger2.as_ref());
    bridge.stop().await;
    drop(ledger);
    events.stop().await;
    node.stop().await;
}
