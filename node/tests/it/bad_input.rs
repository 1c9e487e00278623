//! Hostile and mistaken input: each gets a clear JSON-RPC error with its
//! stable code, nothing changes, and the node keeps serving.

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::rpc_params;
use lockstep_node::rpc::error as codes;
use lockstep_runtime::genesis::{DEV_ASSET, DEV_ENDOWMENT};
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, Hash, Keypair, SignedTx, SigningContext, MAX_TX_SIZE};
use serde_json::Value;

use crate::harness::{hex, raw_post, DevNode};

async fn submit_error(node: &DevNode, extrinsic: String) -> (i32, String) {
    match node
        .http
        .request::<Hash, _>("author_submitExtrinsic", rpc_params![extrinsic])
        .await
    {
        Err(ClientError::Call(error)) => (error.code(), error.message().to_owned()),
        other => panic!("expected a call error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_extrinsics_are_refused_with_stable_codes_and_change_nothing() {
    let node = DevNode::start().await;
    let bob = Keypair::dev("bob").public();
    let good = node.transfer("alice", 0, bob, 5);
    let good_hex = hex(&good);

    let mut cases: Vec<(&str, String, i32)> = vec![
        ("non-hex", "0xnothex".into(), codes::BAD_EXTRINSIC),
        (
            "no 0x prefix",
            good_hex.trim_start_matches("0x").into(),
            codes::BAD_EXTRINSIC,
        ),
        (
            "truncated",
            good_hex[..good_hex.len() - 10].into(),
            codes::BAD_EXTRINSIC,
        ),
        (
            "trailing bytes",
            format!("{good_hex}00"),
            codes::BAD_EXTRINSIC,
        ),
        (
            "oversized",
            to_hex(&vec![0u8; MAX_TX_SIZE + 1]),
            codes::BAD_EXTRINSIC,
        ),
        ("empty", "0x".into(), codes::BAD_EXTRINSIC),
    ];
    let mut forged = good.clone();
    forged.signature.0[10] ^= 1;
    cases.push(("bad signature", hex(&forged), codes::BAD_SIGNATURE));
    let other_chain = SigningContext::new(Hash::digest(b"another genesis"));
    let call = Call::Transfer {
        asset: DEV_ASSET,
        to: bob,
        amount: 5,
        reference: None,
    };
    let foreign = SignedTx::sign(&Keypair::dev("alice"), &other_chain, 0, 1000, call.clone());
    cases.push((
        "another chain's genesis",
        hex(&foreign),
        codes::BAD_SIGNATURE,
    ));
    let expired = SignedTx::sign(&Keypair::dev("alice"), &node.context, 0, 0, call.clone());
    cases.push(("expired", hex(&expired), codes::EXPIRED));
    // A window of decades would keep a future-nonce transfer (and its
    // event) pending for as long.
    let decades = SignedTx::sign(
        &Keypair::dev("alice"),
        &node.context,
        3,
        1_000_000_000,
        call,
    );
    cases.push(("valid for decades", hex(&decades), codes::VALIDITY_TOO_LONG));

    for (what, extrinsic, code) in cases {
        let (got, message) = submit_error(&node, extrinsic).await;
        assert_eq!(got, code, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: empty message");
    }

    // A stale nonce and a duplicate, after one good transfer.
    let hash: Hash = node
        .http
        .request("author_submitExtrinsic", rpc_params![good_hex.clone()])
        .await
        .unwrap();
    let (code, message) = submit_error(&node, good_hex.clone()).await;
    assert!(
        code == codes::ALREADY_KNOWN,
        "duplicate in pool: {code} {message}"
    );
    node.await_finalized(&hash).await;
    let (code, message) = submit_error(&node, good_hex).await;
    assert_eq!(
        code,
        codes::ALREADY_KNOWN,
        "duplicate after finality: {message}"
    );
    let stale = node.transfer("alice", 0, bob, 6);
    let (code, message) = submit_error(&node, hex(&stale)).await;
    assert_eq!(code, codes::STALE_NONCE, "{message}");

    // Nothing but the one good transfer happened.
    assert_eq!(node.nonce("alice").await, 1);
    assert_eq!(node.balance("bob").await, DEV_ENDOWMENT + 5);
    let pending: Vec<String> = node
        .http
        .request("author_pendingExtrinsics", rpc_params![])
        .await
        .unwrap();
    assert!(pending.is_empty());

    // Wrong parameter types are invalid params.
    let wrong: Result<Value, _> = node
        .http
        .request("state_getBalance", rpc_params!["0x1234", DEV_ASSET])
        .await;
    assert!(matches!(wrong, Err(ClientError::Call(e)) if e.code() == -32602));
    let historical: Result<Value, _> = node
        .http
        .request(
            "state_getBalance",
            rpc_params![bob, DEV_ASSET, Hash::digest(b"old")],
        )
        .await;
    assert!(matches!(historical, Err(ClientError::Call(e)) if e.code() == codes::HISTORICAL_STATE));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_rpc_errors() {
    let node = DevNode::start().await;
    let unknown: Result<Value, _> = node
        .http
        .request("author_doSomethingElse", rpc_params![])
        .await;
    assert!(matches!(unknown, Err(ClientError::Call(e)) if e.code() == -32601));

    let not_json = raw_post(node.addr, b"this is not json").await;
    assert!(not_json.contains("-32700"), "{not_json}");
    let malformed = raw_post(node.addr, br#"{"jsonrpc":"2.0","id":1,"method":"#).await;
    assert!(malformed.contains("-32700"), "{malformed}");
    let not_a_request = raw_post(node.addr, br#"{"jsonrpc":"2.0","id":1}"#).await;
    assert!(
        not_a_request.contains("-32600") || not_a_request.contains("-32700"),
        "{not_a_request}"
    );

    // The harness allows batches of 10.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"system_name","params":[]}"#;
    let batch = |n: usize| format!("[{}]", vec![call; n].join(","));
    let within = raw_post(node.addr, batch(10).as_bytes()).await;
    assert_eq!(within.matches("lockstep-node").count(), 10, "{within}");
    let over = raw_post(node.addr, batch(11).as_bytes()).await;
    assert!(over.contains("error"), "{over}");
    assert!(!over.contains("lockstep-node"), "{over}");

    // A body over the request limit (1 MiB) is refused whole.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"author_submitExtrinsic","params":["0x{}"]}}"#,
        "00".repeat(600 * 1024)
    );
    let refused = raw_post(node.addr, huge.as_bytes()).await;
    assert!(
        refused.contains("413") || refused.contains("-32007") || refused.contains("too big"),
        "{refused}"
    );

    // Still serving.
    let name: String = node
        .http
        .request("system_name", rpc_params![])
        .await
        .unwrap();
    assert_eq!(name, "lockstep-node");
    node.await_heads(1).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specifications_examples_get_the_specifications_answers() {
    let node = DevNode::start().await;
    let addr = node.addr;
    tokio::task::spawn_blocking(move || {
        lockstep_service::jsonrpc_spec::assert_server_follows_the_specification(
            addr,
            "system_name",
            &[],
        )
    })
    .await
    .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_rate_limit_is_refused_and_others_are_not() {
    use lockstep_service::jsonrpc_spec::http_post;
    use lockstep_service::rpc_rate_limit::RateLimit;
    let node = lockstep_node::test_utils::DevNode::start_with(crate::harness::spec(), |config| {
        config.rpc.rate_limit = Some(RateLimit {
            calls_per_minute: std::num::NonZeroU32::new(5).unwrap(),
            code: codes::RATE_LIMITED,
        });
    })
    .await;
    let addr = node.addr;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"system_name","params":[]}"#;
    let batch = format!("[{}]", [call; 7].join(","));
    let (first, second) = tokio::task::spawn_blocking(move || {
        (
            http_post(addr, batch.as_bytes(), &[]),
            http_post(addr, call.as_bytes(), &[]),
        )
    })
    .await
    .unwrap();
    // One connection: five calls served, the two over the rate refused.
    let answers: Vec<Value> = serde_json::from_str(&first.body).unwrap();
    let served = answers
        .iter()
        .filter(|a| a["result"] == "lockstep-node")
        .count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a["error"]["code"] == codes::RATE_LIMITED)
        .collect();
    assert_eq!((served, refused.len()), (5, 2), "{}", first.body);
    assert!(
        refused[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("5 calls a minute")),
        "{}",
        first.body
    );
    // Another connection has a bucket of its own.
    let other: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(other["result"], "lockstep-node", "{}", second.body);
    node.stop().await;
}
