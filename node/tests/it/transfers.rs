//! Transfers through the RPC API, to finality and proof.

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use lockstep_consensus::Vote;
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{
    merkle, Hash, Header, Justification, Keypair, Receipt, SignedTx, ValidatorSet,
};
use serde_json::Value;

use crate::harness::{hex, spec, DevNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_over_http_is_finalized_with_a_verifiable_proof() {
    let node = DevNode::start().await;
    let bob = Keypair::dev("bob").public();
    let tx = node.transfer("alice", 0, bob, 1234);
    let hash: Hash = node
        .http
        .request("author_submitExtrinsic", rpc_params![hex(&tx)])
        .await
        .unwrap();
    assert_eq!(hash, tx.hash());

    let status = node.await_finalized(&hash).await;
    assert_eq!(status["outcome"]["status"], "success");
    assert!(status["finalizedNumber"].as_u64().unwrap() >= status["blockNumber"].as_u64().unwrap());
    assert_eq!(node.balance("alice").await, DEV_ENDOWMENT - 1234);
    assert_eq!(node.balance("bob").await, DEV_ENDOWMENT + 1234);
    assert_eq!(node.nonce("alice").await, 1);

    // The proof checks out against the header with the runtime's functions,
    // and the header is justified by the validator set.
    let proof: Value = node
        .http
        .request("tx_getProof", rpc_params![hash])
        .await
        .unwrap();
    let header: Header = serde_json::from_value(proof["header"].clone()).unwrap();
    let inclusion: merkle::MerkleProof =
        serde_json::from_value(proof["inclusionProof"].clone()).unwrap();
    let receipt: Receipt = serde_json::from_value(proof["receipt"].clone()).unwrap();
    let receipt_proof: merkle::MerkleProof =
        serde_json::from_value(proof["receiptProof"].clone()).unwrap();
    let extrinsic =
        SignedTx::decode_bounded(&from_hex(proof["extrinsic"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(extrinsic.hash(), hash);
    assert!(merkle::verify(&header.extrinsics_root, &hash, &inclusion));
    assert_eq!(receipt.tx_hash, hash);
    assert!(receipt.outcome.is_success());
    assert!(merkle::verify(
        &header.receipts_root,
        &receipt.hash(),
        &receipt_proof
    ));
    let justification: Justification =
        serde_json::from_value(proof["justification"].clone()).unwrap();
    let validators = ValidatorSet::new(spec().validators).unwrap();
    let message = Vote::precommit_signing_bytes(
        &spec().chain_id,
        header.number,
        justification.round,
        &header.hash().0,
    );
    justification
        .verify(&header.hash(), &validators, &message)
        .unwrap();
    // The block the proof names is the one the chain has at that height.
    let at_height: Hash = node
        .http
        .request("chain_getBlockHash", rpc_params![header.number])
        .await
        .unwrap();
    assert_eq!(at_height, header.hash());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_over_websocket_is_watched_to_finality() {
    let node = DevNode::start().await;
    let tx = node.transfer("charlie", 0, Keypair::dev("dave").public(), 7);
    let mut events: Subscription<Value> = node
        .ws
        .subscribe(
            "author_submitAndWatchExtrinsic",
            rpc_params![hex(&tx)],
            "author_unwatchExtrinsic",
        )
        .await
        .unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first, Value::from("ready"));
    let in_block = events.next().await.unwrap().unwrap();
    let finalized = events.next().await.unwrap().unwrap();
    let block: Hash = serde_json::from_value(in_block["inBlock"].clone()).unwrap();
    assert_eq!(finalized["finalized"], in_block["inBlock"]);
    let status: Value = node
        .http
        .request("tx_getStatus", rpc_params![tx.hash()])
        .await
        .unwrap();
    assert_eq!(status["blockHash"], serde_json::to_value(block).unwrap());
    assert_eq!(node.balance("dave").await, DEV_ENDOWMENT + 7);

    // Over WebSocket without watching, too.
    let second = node.transfer("charlie", 1, Keypair::dev("dave").public(), 3);
    let hash: Hash = node
        .ws
        .request("author_submitExtrinsic", rpc_params![hex(&second)])
        .await
        .unwrap();
    node.await_finalized(&hash).await;
    assert_eq!(node.balance("dave").await, DEV_ENDOWMENT + 10);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_chain_and_system_methods_answer() {
    let node = DevNode::start().await;
    // A future-nonce tx waits in the pool and is listed there.
    let future = node.transfer("eve", 1, Keypair::dev("bob").public(), 1);
    node.http
        .request::<Hash, _>("author_submitExtrinsic", rpc_params![hex(&future)])
        .await
        .unwrap();
    let pending: Vec<String> = node
        .http
        .request("author_pendingExtrinsics", rpc_params![])
        .await
        .unwrap();
    assert_eq!(pending, vec![hex(&future)]);
    let status: Value = node
        .http
        .request("tx_getStatus", rpc_params![future.hash()])
        .await
        .unwrap();
    assert_eq!(status["status"], "pool");
    // Filling the gap finalizes both.
    let first = node.transfer("eve", 0, Keypair::dev("bob").public(), 1);
    node.http
        .request::<Hash, _>("author_submitExtrinsic", rpc_params![hex(&first)])
        .await
        .unwrap();
    node.await_finalized(&future.hash()).await;
    assert_eq!(node.nonce("eve").await, 2);

    let unknown: Value = node
        .http
        .request("tx_getStatus", rpc_params![Hash::digest(b"nothing")])
        .await
        .unwrap();
    assert_eq!(unknown["status"], "unknown");
    let no_proof: Value = node
        .http
        .request("tx_getProof", rpc_params![Hash::digest(b"nothing")])
        .await
        .unwrap();
    assert!(no_proof.is_null());

    let heads = node.await_heads(2).await;
    assert_eq!(heads[1].parent_hash, heads[0].hash());
    let genesis: Hash = node
        .http
        .request("chain_getBlockHash", rpc_params![0])
        .await
        .unwrap();
    assert_eq!(genesis, spec().genesis().unwrap().hash());
    let block: Value = node
        .http
        .request("chain_getBlock", rpc_params![genesis])
        .await
        .unwrap();
    assert_eq!(block["block"]["header"]["number"], 0);
    let finalized: Hash = node
        .http
        .request("chain_getFinalizedHead", rpc_params![])
        .await
        .unwrap();
    let header: Header = node
        .http
        .request("chain_getHeader", rpc_params![finalized])
        .await
        .unwrap();
    assert_eq!(header.hash(), finalized);

    let health: Value = node
        .http
        .request("system_health", rpc_params![])
        .await
        .unwrap();
    assert_eq!(health["isSyncing"], false);
    let chain: String = node
        .http
        .request("system_chain", rpc_params![])
        .await
        .unwrap();
    assert_eq!(chain, spec().name);
    let name: String = node
        .http
        .request("system_name", rpc_params![])
        .await
        .unwrap();
    assert_eq!(name, "lockstep-node");
    let methods: Value = node
        .http
        .request("rpc_methods", rpc_params![])
        .await
        .unwrap();
    let methods: Vec<String> = serde_json::from_value(methods["methods"].clone()).unwrap();
    for expected in [
        "author_submitExtrinsic",
        "author_submitAndWatchExtrinsic",
        "author_pendingExtrinsics",
        "chain_getHeader",
        "chain_getBlock",
        "chain_getBlockHash",
        "chain_getFinalizedHead",
        "chain_subscribeNewHeads",
        "chain_subscribeFinalizedHeads",
        "state_getBalance",
        "state_getNonce",
        "tx_getStatus",
        "tx_getProof",
        "system_health",
        "system_name",
        "system_version",
        "system_chain",
        "rpc_methods",
    ] {
        assert!(
            methods.iter().any(|m| m == expected),
            "{expected} missing from {methods:?}"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_follow_the_chain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut config = lockstep_node::service::NodeConfig::new(spec(), dir.path().to_path_buf());
    config.rpc_addr = ([127, 0, 0, 1], 0).into();
    config.prometheus_addr = Some(([127, 0, 0, 1], 0).into());
    config.validator_key = Some(Keypair::dev("alice"));
    config.block_time = std::time::Duration::from_millis(50);
    let node = lockstep_node::service::start_single(config).await.unwrap();
    let mut heads = node.chain.subscribe_heads();
    let head = heads.recv().await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(node.prometheus_addr.unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let finalized: u64 = response
        .lines()
        .find_map(|l| l.strip_prefix("lockstep_block_height_finalized "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(finalized >= head.number);
    for name in [
        "lockstep_pool_transactions",
        "lockstep_block_transactions",
        "lockstep_block_import_microseconds",
    ] {
        assert!(response.contains(name), "{name} missing");
    }
    node.stop().await.unwrap();
}
