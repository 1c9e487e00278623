//! Outcomes against a real dev node, and the receipt flow through the bus.

use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use lockstep_api::event::PaymentReceipt;
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::Keypair;
use serde_json::{json, Value};

use std::sync::atomic::Ordering;

use crate::harness::{bridge_key, hex, payment, proxy, scrape, Behaviour, DevNode, EventSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_transfer_is_pending_then_completed_by_receipt() {
    let node = DevNode::start().await;
    let (_p1, proxy1) = proxy(node.addr, Behaviour::Honest).await;
    let (_p2, proxy2) = proxy(node.addr, Behaviour::Honest).await;
    let events = EventSystem::start(vec![node.url(), proxy1, proxy2], "2/3").await;

    let tx = node.transfer("alice", 0, 1_000_000, Keypair::dev("bob").public(), 500);
    let registered = events.register("pay-1", &tx, 1).await.unwrap();
    assert_eq!(registered["state"], "Registered");
    assert_eq!(registered["txHash"], json!(tx.hash()));
    // The same request again returns the same event.
    assert_eq!(events.register("pay-1", &tx, 1).await.unwrap(), registered);

    node.submit(&tx).await;
    let pending = events.await_state("pay-1", "PendingAccount").await;
    let status = node.status(&tx.hash()).await;
    let evidence = &pending["evidence"];
    assert_eq!(evidence["blockHash"], status["blockHash"]);
    assert_eq!(evidence["blockNumber"], status["blockNumber"]);
    assert_eq!(evidence["outcome"], json!({"status": "success"}));
    assert_eq!(evidence["confirmedBy"].as_array().unwrap().len(), 3);
    assert_eq!(evidence["nodesAsked"], 3);
    let history = events
        .call("event_history", rpc_params!["pay-1"])
        .await
        .unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["from"], Value::Null);
    assert_eq!(history[1]["from"], "Registered");
    assert_eq!(history[1]["reason"], "succeeded");
    assert_eq!(history[1]["evidence"], *evidence);

    // The instruction is on the bus. Lease it and let the lease lapse: it
    // comes back.
    let first = events.call("bus_pull", rpc_params![10, 200]).await.unwrap();
    let messages = first["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["eventId"], "pay-1");
    assert_eq!(messages[0]["payment"]["amount"], "101");
    assert_eq!(messages[0]["attempt"], 1);
    let mut again = Value::Null;
    let mut changed = events.service().metrics.changed();
    for _ in 0..1000 {
        again = events
            .call("bus_pull", rpc_params![10, 10_000])
            .await
            .unwrap();
        if !again["messages"].as_array().unwrap().is_empty() {
            break;
        }
        // Each reconciler pass (every 100 ms) is a chance for time to pass
        // the deadline.
        changed.changed().await.unwrap();
    }
    assert_eq!(again["messages"][0]["eventId"], "pay-1");
    assert_eq!(again["messages"][0]["attempt"], 2);
    let stale = events
        .call("bus_ack", rpc_params![first["leaseId"].clone()])
        .await
        .unwrap_err();
    assert_eq!(stale.code(), lockstep_offchain::rpc::LEASE_EXPIRED);
    let acked = events
        .call("bus_ack", rpc_params![again["leaseId"].clone()])
        .await
        .unwrap();
    assert_eq!(acked["acked"], 1);

    // The bridge pays and posts its signed receipt.
    let receipt = PaymentReceipt::sign(&bridge_key(), "pay-1", "ledger-77");
    let completed = events
        .call("event_postReceipt", rpc_params![receipt.clone()])
        .await
        .unwrap();
    assert_eq!(completed["state"], "Completed");
    // A repeated receipt is idempotent.
    let repeated = events
        .call("event_postReceipt", rpc_params![receipt])
        .await
        .unwrap();
    assert_eq!(repeated, completed);
    let stats = events.stats().await;
    assert_eq!(stats["completed"], 1);
    assert_eq!(stats["registered"], 0);
    assert_eq!(stats["pendingAccount"], 0);
    assert_eq!(stats["busDepth"], 0);
    assert_eq!(stats["lastSeq"], 3);

    // A subscriber resuming from seq 2 gets exactly what it missed.
    let mut feed: Subscription<Value> = events
        .ws
        .subscribe("event_subscribe", rpc_params![2], "event_unsubscribe")
        .await
        .unwrap();
    let second = feed.next().await.unwrap().unwrap();
    let third = feed.next().await.unwrap().unwrap();
    assert_eq!(
        (second["seq"].clone(), second["to"].clone()),
        (json!(2), json!("PendingAccount"))
    );
    assert_eq!(
        (third["seq"].clone(), third["to"].clone()),
        (json!(3), json!("Completed"))
    );
    assert_eq!(third["paymentReference"], "ledger-77");

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
    let broke = node.transfer(
        "charlie",
        0,
        1_000_000,
        Keypair::dev("bob").public(),
        DEV_ENDOWMENT + 1,
    );
    events.register("too-much", &broke, 1).await.unwrap();
    // Registered and never submitted: expires once the chain passes
    // valid_until.
    let valid_until = node.head().await + 3;
    let never = node.transfer("dave", 0, valid_until, Keypair::dev("bob").public(), 5);
    events.register("never-sent", &never, 2).await.unwrap();
    node.submit(&broke).await;

    let failed = events.await_state("too-much", "Cancelled").await;
    assert_eq!(
        failed["evidence"]["outcome"],
        json!({"status": "failed", "error": "insufficientBalance"})
    );
    assert_eq!(
        failed["evidence"]["blockHash"],
        node.status(&broke.hash()).await["blockHash"]
    );
    let history = events
        .call("event_history", rpc_params!["too-much"])
        .await
        .unwrap();
    assert_eq!(history[1]["reason"], "failed");

    let expired = events.await_state("never-sent", "Cancelled").await;
    assert!(expired["evidence"]["blockNumber"].as_u64().unwrap() > valid_until);
    assert_eq!(expired["evidence"]["blockHash"], Value::Null);
    let history = events
        .call("event_history", rpc_params!["never-sent"])
        .await
        .unwrap();
    assert_eq!(history[1]["reason"], "expired");
    // The node agrees: the transfer is nowhere.
    assert_eq!(node.status(&never.hash()).await["status"], "unknown");

    // Nothing reached the bus.
    let pulled = events.call("bus_pull", rpc_params![10]).await.unwrap();
    assert!(pulled["messages"].as_array().unwrap().is_empty());
    let stats = events.stats().await;
    assert_eq!(stats["cancelled"], 2);

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
        .map(|nonce| node.transfer("alice", nonce, 1_000_000, bob, 10))
        .collect();
    let mut requests: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| json!({"id": format!("b-{i}"), "tx": hex(tx), "payment": payment(i)}))
        .collect();
    // A bad field, and a known id with another payload: refused alone.
    let mut bad_currency = payment(9);
    bad_currency["currency"] = json!("euro");
    let stray = node.transfer("bob", 0, 1_000_000, bob, 1);
    requests.push(json!({"id": "b-bad", "tx": hex(&stray), "payment": bad_currency}));
    requests.push(json!({"id": "b-0", "tx": hex(&stray), "payment": payment(0)}));
    let answers = events
        .call("event_registerBatch", rpc_params![requests])
        .await
        .unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 6);
    for (i, answer) in answers[..4].iter().enumerate() {
        assert_eq!(answer["result"]["id"], format!("b-{i}"), "{answer}");
        assert_eq!(answer["result"]["state"], "Registered");
    }
    assert_eq!(answers[4]["error"]["code"], INVALID_FIELD);
    assert_eq!(answers[5]["error"]["code"], ID_CONFLICT);
    assert_eq!(events.stats().await["registered"], 4);

    for tx in &txs {
        node.submit(tx).await;
    }
    for i in 0..4 {
        events
            .await_state(&format!("b-{i}"), "PendingAccount")
            .await;
    }

    let paid =
        |i: usize| PaymentReceipt::sign(&bridge_key(), &format!("b-{i}"), &format!("ref-{i}"));
    let forged = PaymentReceipt::sign(&Keypair::dev("mallory"), "b-2", "ref-2");
    let receipts = json!([
        paid(0),
        paid(1),
        paid(0), // twice in one call: the second is the idempotent repeat
        forged,
        PaymentReceipt::sign(&bridge_key(), "b-none", "ref-x"),
        paid(3),
    ]);
    let answers = events
        .call("event_postReceipts", rpc_params![receipts])
        .await
        .unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 6);
    for i in [0, 1, 2, 5] {
        assert_eq!(answers[i]["result"]["state"], "Completed", "{}", answers[i]);
    }
    assert_eq!(answers[0]["result"], answers[2]["result"]);
    assert_eq!(answers[3]["error"]["code"], BAD_RECEIPT_SIGNATURE);
    assert_eq!(answers[4]["error"]["code"], NOT_FOUND);
    assert_eq!(events.get("b-2").await["state"], "PendingAccount");
    let stats = events.stats().await;
    assert_eq!(stats["completed"], 3);
    assert_eq!(stats["pendingAccount"], 1);
    let history = events
        .call("event_history", rpc_params!["b-0"])
        .await
        .unwrap();
    assert_eq!(
        history.as_array().unwrap().len(),
        3,
        "one Completed move: {history}"
    );

    // A receipt for a completed event with another reference, and a call
    // over the item bound.
    let again = events
        .call(
            "event_postReceipts",
            rpc_params![json!([
                PaymentReceipt::sign(&bridge_key(), "b-2", "ref-2"),
                paid(2)
            ])],
        )
        .await
        .unwrap();
    assert_eq!(again[0]["result"]["state"], "Completed");
    assert_eq!(again[1]["result"]["state"], "Completed");
    let late = events
        .call(
            "event_postReceipts",
            rpc_params![json!([PaymentReceipt::sign(&bridge_key(), "b-2", "other")])],
        )
        .await
        .unwrap();
    assert_eq!(late[0]["error"]["code"], RECEIPT_CONFLICT);
    let too_many: Vec<Value> = (0..1001).map(|_| json!(paid(1))).collect();
    let refused = events
        .call("event_postReceipts", rpc_params![too_many])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), INVALID_FIELD);

    events.stop().await;
    node.stop().await;
}
