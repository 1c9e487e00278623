//! Outcomes against a real dev node, and the receipt flow through the bus.

use lockstep_api::event::{PaymentReceipt, RegisterRequest};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::node::TxState;
use lockstep_api::offchain::{BusApiClient, EventApiClient};
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::{DispatchError, Keypair, Outcome};

use std::sync::atomic::Ordering;

use crate::harness::{
    answer, bridge_key, evidence, hex, message, payment, proxy, register_request, scrape,
    Behaviour, DevNode, EventSystem, VALID_UNTIL,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_transfer_is_pending_then_completed_by_receipt() {
    let node = DevNode::start().await;
    let (_p1, proxy1) = proxy(node.addr, Behaviour::Honest).await;
    let (_p2, proxy2) = proxy(node.addr, Behaviour::Honest).await;
    let events = EventSystem::start(vec![node.url(), proxy1, proxy2], "2/3").await;

    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 500, ("pay-1", 1));
    let registered = events.register("pay-1", &tx, 1).await.unwrap();
    assert_eq!(registered.state, State::Registered);
    assert_eq!(registered.tx_hash, tx.hash());
    // The same request again returns the same event.
    assert_eq!(events.register("pay-1", &tx, 1).await.unwrap(), registered);

    node.submit(&tx).await;
    let pending = events.await_state("pay-1", State::PendingAccount).await;
    let status = node.status(&tx.hash()).await;
    let evidence = evidence(&pending);
    assert_eq!(evidence.block_hash, status.block_hash);
    assert_eq!(Some(evidence.block_number), status.block_number);
    assert_eq!(evidence.outcome, Some(Outcome::Success));
    assert_eq!(evidence.confirmed_by.len(), 3);
    assert_eq!(evidence.nodes_asked, 3);
    let history = events.history("pay-1").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].from, None);
    assert_eq!(history[1].from, Some(State::Registered));
    assert_eq!(history[1].reason, Some(Reason::Succeeded));
    assert_eq!(history[1].evidence.as_ref(), Some(evidence));

    // The instruction is on the bus. Lease it and let the lease lapse: it
    // comes back.
    let first = events.http.pull(Some(10), Some(200)).await.unwrap();
    assert_eq!(first.messages.len(), 1);
    let leased = message(&first.messages[0]);
    assert_eq!(leased.event_id, "pay-1");
    assert_eq!(leased.payment.amount, "101");
    assert_eq!(leased.attempt, 1);
    // Signed by this event system's key, and by no other.
    assert_eq!(leased.verify(&events.instruction_key()), Ok(()));
    assert!(leased.verify(&Keypair::dev("forger").public()).is_err());
    let mut again = None;
    let mut changed = events.service().metrics.changed();
    for _ in 0..1000 {
        let pulled = events.http.pull(Some(10), Some(10_000)).await.unwrap();
        let empty = pulled.messages.is_empty();
        again = Some(pulled);
        if !empty {
            break;
        }
        // Each reconciler pass (every 100 ms) is a chance for time to pass
        // the deadline.
        changed.changed().await.unwrap();
    }
    let again = again.unwrap();
    let redelivered = message(&again.messages[0]);
    assert_eq!(redelivered.event_id, "pay-1");
    assert_eq!(redelivered.attempt, 2);
    assert_eq!(redelivered.verify(&events.instruction_key()), Ok(()));
    let stale = answer(events.http.ack(first.lease_id.clone(), None).await).unwrap_err();
    assert_eq!(stale.code(), lockstep_offchain::rpc::LEASE_EXPIRED);
    let acked = events.http.ack(again.lease_id.clone(), None).await.unwrap();
    assert_eq!(acked.acked, 1);

    // The bridge pays and posts its signed receipt.
    let receipt = PaymentReceipt::sign(&bridge_key(), "pay-1", "ledger-77");
    let completed = events.http.post_receipt(receipt.clone()).await.unwrap();
    assert_eq!(completed.state, State::Completed);
    // A repeated receipt is idempotent.
    let repeated = events.http.post_receipt(receipt).await.unwrap();
    assert_eq!(repeated, completed);
    let stats = events.event_stats().await;
    assert_eq!(stats.completed, 1);
    assert_eq!(stats.registered, 0);
    assert_eq!(stats.pending_account, 0);
    assert_eq!(stats.bus_depth, 0);
    assert_eq!(stats.last_seq, 3);

    // A subscriber resuming from seq 2 gets exactly what it missed.
    let mut feed = events
        .ws
        .subscribe_transitions(Some(2), None)
        .await
        .unwrap();
    let second = feed.next().await.unwrap().unwrap();
    let third = feed.next().await.unwrap().unwrap();
    assert_eq!((second.seq, second.to), (2, State::PendingAccount));
    assert_eq!((third.seq, third.to), (3, State::Completed));
    assert_eq!(third.payment_reference.as_deref(), Some("ledger-77"));

    // The gauges follow at the next reconciler pass.
    events
        .await_metrics(|m| m.completed.load(Ordering::Relaxed) == 1)
        .await;
    let text = scrape(events.service().prometheus_addr.unwrap()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("lockstep_offchain_events{state=\"Completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lockstep_offchain_transitions_total 3"),
        "{text}"
    );
    assert!(text.contains("lockstep_offchain_bus_depth 0"), "{text}");

    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_expired_transfers_are_cancelled() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "2/3").await;

    // More than charlie holds: included, with a failed outcome.
    let bob = Keypair::dev("bob").public();
    let broke = node.settling(
        "charlie",
        0,
        VALID_UNTIL,
        bob,
        DEV_ENDOWMENT + 1,
        ("too-much", 1),
    );
    events.register("too-much", &broke, 1).await.unwrap();
    // Registered and never submitted: expires once the chain passes
    // valid_until.
    let valid_until = node.head().await + 3;
    let never = node.settling("dave", 0, valid_until, bob, 5, ("never-sent", 2));
    events.register("never-sent", &never, 2).await.unwrap();
    node.submit(&broke).await;

    let failed = events.await_state("too-much", State::Cancelled).await;
    assert_eq!(
        evidence(&failed).outcome,
        Some(Outcome::Failed(DispatchError::InsufficientBalance))
    );
    assert_eq!(
        evidence(&failed).block_hash,
        node.status(&broke.hash()).await.block_hash
    );
    let history = events.history("too-much").await;
    assert_eq!(history[1].reason, Some(Reason::Failed));

    let expired = events.await_state("never-sent", State::Cancelled).await;
    assert!(evidence(&expired).block_number > valid_until);
    assert_eq!(evidence(&expired).block_hash, None);
    let history = events.history("never-sent").await;
    assert_eq!(history[1].reason, Some(Reason::Expired));
    // The node agrees: the transfer is nowhere.
    assert_eq!(node.status(&never.hash()).await.status, TxState::Unknown);

    // Nothing reached the bus.
    let pulled = events.http.pull(Some(10), None).await.unwrap();
    assert!(pulled.messages.is_empty());
    let stats = events.event_stats().await;
    assert_eq!(stats.cancelled, 2);

    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_methods_register_and_receipt_many_answering_each_item() {
    use lockstep_offchain::rpc::{
        BAD_RECEIPT_SIGNATURE, ID_CONFLICT, INVALID_FIELD, NOT_FOUND, RECEIPT_CONFLICT,
    };

    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let bob = Keypair::dev("bob").public();
    let txs: Vec<_> = (0..4)
        .map(|i| {
            let id = format!("b-{i}");
            node.settling("alice", i, VALID_UNTIL, bob, 10, (&id, i as usize))
        })
        .collect();
    let mut requests: Vec<RegisterRequest> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| register_request(&format!("b-{i}"), tx, i))
        .collect();
    // A bad field, and a known id with another payload: refused alone.
    let mut bad_currency = payment(9);
    bad_currency.currency = "euro".into();
    let stray = node.settling("bob", 0, VALID_UNTIL, bob, 1, ("b-0", 0));
    requests.push(RegisterRequest {
        id: "b-bad".into(),
        tx: Some(hex(&stray)),
        tx_hash: None,
        valid_until: None,
        payment: bad_currency,
    });
    requests.push(register_request("b-0", &stray, 0));
    let answers = events.http.register_batch(requests).await.unwrap();
    assert_eq!(answers.len(), 6);
    for (i, item) in answers[..4].iter().enumerate() {
        let event = item.result.as_ref();
        assert_eq!(
            event.map(|e| e.id.clone()),
            Some(format!("b-{i}")),
            "{item:?}"
        );
        assert_eq!(event.map(|e| e.state), Some(State::Registered));
    }
    assert_eq!(
        answers[4].error.as_ref().map(|e| e.code),
        Some(INVALID_FIELD)
    );
    assert_eq!(answers[5].error.as_ref().map(|e| e.code), Some(ID_CONFLICT));
    assert_eq!(events.event_stats().await.registered, 4);

    for tx in &txs {
        node.submit(tx).await;
    }
    for i in 0..4 {
        events
            .await_state(&format!("b-{i}"), State::PendingAccount)
            .await;
    }

    let paid =
        |i: usize| PaymentReceipt::sign(&bridge_key(), &format!("b-{i}"), &format!("ref-{i}"));
    let forged = PaymentReceipt::sign(&Keypair::dev("mallory"), "b-2", "ref-2");
    let receipts = vec![
        paid(0),
        paid(1),
        paid(0), // twice in one call: the second is the idempotent repeat
        forged,
        PaymentReceipt::sign(&bridge_key(), "b-none", "ref-x"),
        paid(3),
    ];
    let answers = events.http.post_receipts(receipts).await.unwrap();
    assert_eq!(answers.len(), 6);
    for i in [0, 1, 2, 5] {
        assert_eq!(
            answers[i].result.as_ref().map(|e| e.state),
            Some(State::Completed),
            "{:?}",
            answers[i]
        );
    }
    assert_eq!(answers[0].result, answers[2].result);
    assert_eq!(
        answers[3].error.as_ref().map(|e| e.code),
        Some(BAD_RECEIPT_SIGNATURE)
    );
    assert_eq!(answers[4].error.as_ref().map(|e| e.code), Some(NOT_FOUND));
    assert_eq!(events.event("b-2").await.state, State::PendingAccount);
    let stats = events.event_stats().await;
    assert_eq!(stats.completed, 3);
    assert_eq!(stats.pending_account, 1);
    let history = events.history("b-0").await;
    assert_eq!(history.len(), 3, "one Completed move: {history:?}");

    // A receipt for a completed event with another reference, and a call
    // over the item bound.
    let again = events
        .http
        .post_receipts(vec![
            PaymentReceipt::sign(&bridge_key(), "b-2", "ref-2"),
            paid(2),
        ])
        .await
        .unwrap();
    assert_eq!(
        again[0].result.as_ref().map(|e| e.state),
        Some(State::Completed)
    );
    assert_eq!(
        again[1].result.as_ref().map(|e| e.state),
        Some(State::Completed)
    );
    let late = events
        .http
        .post_receipts(vec![PaymentReceipt::sign(&bridge_key(), "b-2", "other")])
        .await
        .unwrap();
    assert_eq!(
        late[0].error.as_ref().map(|e| e.code),
        Some(RECEIPT_CONFLICT)
    );
    let too_many: Vec<PaymentReceipt> = (0..1001).map(|_| paid(1)).collect();
    let refused = answer(events.http.post_receipts(too_many).await).unwrap_err();
    assert_eq!(refused.code(), INVALID_FIELD);

    events.stop().await;
    node.stop().await;
}
