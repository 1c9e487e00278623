//! Hostile and mistaken input: clear errors, and nothing written.

use jsonrpsee::rpc_params;
use lockstep_api::event::PaymentReceipt;
use lockstep_offchain::rpc::{
    BAD_CURSOR, BAD_RECEIPT_SIGNATURE, ID_CONFLICT, INVALID_FIELD, NOT_AWAITING_RECEIPT,
    NOT_COMMITTED, NOT_FOUND, RECEIPT_CONFLICT, TX_CONFLICT, UNKNOWN_LEASE, VALIDITY_TOO_LONG,
};
use lockstep_runtime::Keypair;
use serde_json::{json, Value};

use crate::harness::{bridge_key, hex, payment, DevNode, EventSystem, VALID_UNTIL};

/// Sends raw bytes as an HTTP POST body, with the operator's credential;
/// returns the whole response.
async fn raw_post(addr: std::net::SocketAddr, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let token = lockstep_offchain::test_utils::DevCredential::Operator.token();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.expose_secret(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may refuse and close before reading an oversized body.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_writes_nothing() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let bob = Keypair::dev("bob").public();

    // One event completed through the real flow, one left Registered.
    let paid = node.settling("alice", 0, VALID_UNTIL, bob, 5, ("paid", 1));
    events.register("paid", &paid, 1).await.unwrap();
    node.submit(&paid).await;
    events.await_state("paid", "PendingAccount").await;
    let receipt = PaymentReceipt::sign(&bridge_key(), "paid", "ledger-1");
    events
        .call("event_postReceipt", rpc_params![receipt.clone()])
        .await
        .unwrap();
    let waiting = node.settling("ferdie", 0, VALID_UNTIL, bob, 5, ("waiting", 2));
    events.register("waiting", &waiting, 2).await.unwrap();

    let before = events.stats().await;
    let expect = |result: Result<Value, jsonrpsee::types::ErrorObjectOwned>, code: i32| {
        let e = result.expect_err("must be refused");
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(!e.message().is_empty());
        e.message().to_owned()
    };
    let register = |body: Value| events.call("event_register", rpc_params![body]);

    // Malformed JSON, wrong shapes, oversized bodies.
    let response = raw_post(events.addr, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":").await;
    assert!(response.contains("-32700"), "{response}");
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"event_get","params":["{}"]}}"#,
        "x".repeat(lockstep_offchain::rpc::MAX_REQUEST_BYTES as usize + 1)
    );
    let response = raw_post(events.addr, huge.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    expect(
        register(json!({"id": "x", "payment": payment(1), "extra": 1})).await,
        -32602,
    );
    expect(register(json!("not an object")).await, -32602);

    // Field checks.
    let tx_hex = hex(&waiting);
    let ok = |id: &str| json!({"id": id, "tx": tx_hex.clone(), "payment": payment(2)});
    let mut body = ok("a b");
    let message = expect(register(body.clone()).await, INVALID_FIELD);
    assert!(message.starts_with("id:"), "{message}");
    body["id"] = json!("x".repeat(129));
    expect(register(body).await, INVALID_FIELD);
    for (field, value) in [
        ("amount", json!("-5")),
        ("amount", json!("1e3")),
        ("amount", json!("0")),
        // Beyond what a ledger can pay (a signed 64-bit column).
        ("amount", json!("9223372036854775808")),
        ("currency", json!("euro")),
        ("payer", json!("")),
        // '@' names a ledger's own system accounts.
        ("payer", json!("@external/USD")),
        ("payee", json!("@external/USD")),
    ] {
        let mut body = ok("fresh");
        body["payment"][field] = value;
        let message = expect(register(body).await, INVALID_FIELD);
        assert!(message.contains(field), "{message}");
    }
    expect(
        register(json!({"id": "fresh", "tx": "0x1234", "payment": payment(2)})).await,
        INVALID_FIELD,
    );
    let oversized = format!("0x{}", "00".repeat(4096));
    expect(
        register(json!({"id": "fresh", "tx": oversized, "payment": payment(2)})).await,
        INVALID_FIELD,
    );
    expect(
        register(json!({"id": "fresh", "payment": payment(2)})).await,
        INVALID_FIELD,
    );
    expect(
        register(
            json!({"id": "fresh", "tx": tx_hex.clone(), "validUntil": 5, "payment": payment(2)}),
        )
        .await,
        INVALID_FIELD,
    );

    // A signed transfer that commits to another event or payment: refused
    // before the store is asked.
    let mut changed = ok("waiting");
    changed["payment"]["amount"] = json!("999");
    let message = expect(register(changed.clone()).await, NOT_COMMITTED);
    assert!(message.contains("does not commit"), "{message}");
    expect(register(ok("same-tx-other-id")).await, NOT_COMMITTED);

    // A window of decades would keep its event Registered for as long:
    // refused, by hash as with `tx`.
    let decades = json!({
        "id": "decades", "txHash": waiting.hash(), "validUntil": 1_000_000_000u64,
        "payment": payment(2)
    });
    let message = expect(register(decades).await, VALIDITY_TOO_LONG);
    assert!(message.contains("past the chain's head"), "{message}");

    // Idempotency conflicts (by hash, which the store judges).
    let by_hash_of = |body: &Value| {
        json!({
            "id": body["id"], "txHash": waiting.hash(), "validUntil": VALID_UNTIL,
            "payment": body["payment"]
        })
    };
    expect(register(by_hash_of(&changed)).await, ID_CONFLICT);
    expect(
        register(by_hash_of(&ok("same-tx-other-id"))).await,
        TX_CONFLICT,
    );
    // By hash and expiry instead of the tx itself: the same registration.
    let by_hash = json!({
        "id": "waiting", "txHash": waiting.hash(), "validUntil": VALID_UNTIL, "payment": payment(2)
    });
    assert_eq!(register(by_hash).await.unwrap()["state"], "Registered");

    // Unknown ids.
    expect(
        events.call("event_get", rpc_params!["nope"]).await,
        NOT_FOUND,
    );
    expect(
        events.call("event_history", rpc_params!["nope"]).await,
        NOT_FOUND,
    );
    expect(
        events.call("event_get", rpc_params!["bad id!"]).await,
        INVALID_FIELD,
    );

    // Receipts: unknown event, wrong key, replayed onto another event, for
    // an event not awaiting one, conflicting with the recorded one.
    let for_nobody = PaymentReceipt::sign(&bridge_key(), "nope", "ledger-2");
    expect(
        events
            .call("event_postReceipt", rpc_params![for_nobody])
            .await,
        NOT_FOUND,
    );
    let forged = PaymentReceipt::sign(&Keypair::dev("mallory"), "waiting", "ledger-3");
    expect(
        events.call("event_postReceipt", rpc_params![forged]).await,
        BAD_RECEIPT_SIGNATURE,
    );
    let replayed = PaymentReceipt {
        event_id: "waiting".into(),
        ..receipt.clone()
    };
    expect(
        events
            .call("event_postReceipt", rpc_params![replayed])
            .await,
        BAD_RECEIPT_SIGNATURE,
    );
    let early = PaymentReceipt::sign(&bridge_key(), "waiting", "ledger-4");
    let message = expect(
        events.call("event_postReceipt", rpc_params![early]).await,
        NOT_AWAITING_RECEIPT,
    );
    assert!(message.contains("Registered"), "{message}");
    let second = PaymentReceipt::sign(&bridge_key(), "paid", "ledger-other");
    expect(
        events.call("event_postReceipt", rpc_params![second]).await,
        RECEIPT_CONFLICT,
    );
    let mut refused =
        serde_json::to_value(PaymentReceipt::sign(&bridge_key(), "paid", "ledger-1")).unwrap();
    refused["outcome"] = json!("refunded");
    expect(
        events.call("event_postReceipt", rpc_params![refused]).await,
        INVALID_FIELD,
    );
    // Failure reports: only for PendingAccount events, with a reason.
    for id in ["waiting", "paid"] {
        let failure = PaymentReceipt::sign_failure(&bridge_key(), id, "ledger-5", "no funds");
        expect(
            events.call("event_postReceipt", rpc_params![failure]).await,
            NOT_AWAITING_RECEIPT,
        );
    }
    let mut no_reason = serde_json::to_value(PaymentReceipt::sign_failure(
        &bridge_key(),
        "paid",
        "l",
        "x",
    ))
    .unwrap();
    no_reason.as_object_mut().unwrap().remove("reason");
    expect(
        events
            .call("event_postReceipt", rpc_params![no_reason])
            .await,
        INVALID_FIELD,
    );
    // The original receipt again: idempotent.
    let again = events
        .call("event_postReceipt", rpc_params![receipt])
        .await
        .unwrap();
    assert_eq!(again["state"], "Completed");

    // The bus.
    expect(
        events.call("bus_ack", rpc_params!["lease-12345"]).await,
        UNKNOWN_LEASE,
    );
    expect(events.call("bus_ack", rpc_params![""]).await, INVALID_FIELD);
    expect(events.call("bus_pull", rpc_params![0]).await, INVALID_FIELD);
    expect(
        events.call("bus_pull", rpc_params![5000]).await,
        INVALID_FIELD,
    );
    expect(
        events.call("bus_pull", rpc_params![10, 1]).await,
        INVALID_FIELD,
    );

    // Lists.
    expect(
        events
            .call("event_list", rpc_params![json!({"limit": 1000})])
            .await,
        INVALID_FIELD,
    );
    expect(
        events
            .call("event_list", rpc_params![json!({"cursor": "zz"})])
            .await,
        BAD_CURSOR,
    );
    expect(
        events
            .call(
                "event_list",
                rpc_params![json!({"state": "Registered", "cursor": "0200"})],
            )
            .await,
        BAD_CURSOR,
    );
    expect(
        events
            .call("event_list", rpc_params![json!({"state": "Done"})])
            .await,
        -32602,
    );
    let all = events.call("event_list", rpc_params![]).await.unwrap();
    assert_eq!(all["events"].as_array().unwrap().len(), 2);

    // Nothing of the above was written.
    let after = events.stats().await;
    assert_eq!(after["lastSeq"], before["lastSeq"]);
    assert_eq!(after["registered"], 1);
    assert_eq!(after["completed"], 1);
    assert_eq!(events.get("waiting").await["state"], "Registered");

    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specifications_examples_get_the_specifications_answers() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let addr = events.addr;
    // A reader may call `event_stats`; the envelopes are checked once the
    // caller is admitted.
    let token = lockstep_offchain::test_utils::DevCredential::Reader.token();
    let header = format!("Bearer {}", token.expose_secret());
    tokio::task::spawn_blocking(move || {
        lockstep_service::jsonrpc_spec::assert_server_follows_the_specification(
            addr,
            "event_stats",
            &[("Authorization", &header)],
        )
    })
    .await
    .unwrap();
}
