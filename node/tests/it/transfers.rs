//! Transfers through the RPC API, to finality and proof.

use lockstep_api::node::{
    AuthorApiClient, ChainApiClient, SystemApiClient, TxApiClient, TxEvent, TxState,
};
use lockstep_api::RpcApiClient;
use lockstep_consensus::Vote;
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{merkle, Hash, Keypair, Outcome, SignedTx, ValidatorSet};

use crate::harness::{hex, spec, DevNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_over_http_is_finalized_with_a_verifiable_proof() {
    let node = DevNode::start().await;
    let bob = Keypair::dev("bob").public();
    let tx = node.transfer("alice", 0, bob, 1234);
    let hash = node.http.submit_extrinsic(hex(&tx)).await.unwrap();
    assert_eq!(hash, tx.hash());

    let status = node.await_finalized(&hash).await;
    assert_eq!(status.outcome, Some(Outcome::Success));
    assert!(status.finalized_number >= status.block_number.unwrap());
    assert_eq!(node.balance("alice").await, DEV_ENDOWMENT - 1234);
    assert_eq!(node.balance("bob").await, DEV_ENDOWMENT + 1234);
    assert_eq!(node.nonce("alice").await, 1);

    // The proof checks out against the header with the runtime's functions,
    // and the header is justified by the validator set.
    let proof = node.http.proof(hash).await.unwrap().unwrap();
    let header = proof.header;
    let extrinsic = SignedTx::decode_bounded(&from_hex(&proof.extrinsic).unwrap()).unwrap();
    assert_eq!(extrinsic.hash(), hash);
    assert!(merkle::verify(
        &header.extrinsics_root,
        &hash,
        &proof.inclusion_proof
    ));
    assert_eq!(proof.receipt.tx_hash, hash);
    assert!(proof.receipt.outcome.is_success());
    assert!(merkle::verify(
        &header.receipts_root,
        &proof.receipt.hash(),
        &proof.receipt_proof
    ));
    let justification = proof.justification.unwrap();
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
    let at_height = node.http.block_hash(Some(header.number)).await.unwrap();
    assert_eq!(at_height, Some(header.hash()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_over_websocket_is_watched_to_finality() {
    let node = DevNode::start().await;
    let tx = node.transfer("charlie", 0, Keypair::dev("dave").public(), 7);
    let mut events = node.ws.submit_and_watch_extrinsic(hex(&tx)).await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first, TxEvent::Ready);
    let in_block = events.next().await.unwrap().unwrap();
    let finalized = events.next().await.unwrap().unwrap();
    let TxEvent::InBlock(block) = in_block else {
        panic!("expected inBlock, got {in_block:?}");
    };
    assert_eq!(finalized, TxEvent::Finalized(block));
    let status = node.http.status(tx.hash()).await.unwrap();
    assert_eq!(status.block_hash, Some(block));
    assert_eq!(node.balance("dave").await, DEV_ENDOWMENT + 7);

    // Over WebSocket without watching, too.
    let second = node.transfer("charlie", 1, Keypair::dev("dave").public(), 3);
    let hash = node.ws.submit_extrinsic(hex(&second)).await.unwrap();
    node.await_finalized(&hash).await;
    assert_eq!(node.balance("dave").await, DEV_ENDOWMENT + 10);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_chain_and_system_methods_answer() {
    let node = DevNode::start().await;
    // A future-nonce tx waits in the pool and is listed there.
    let future = node.transfer("eve", 1, Keypair::dev("bob").public(), 1);
    node.http.submit_extrinsic(hex(&future)).await.unwrap();
    let pending = node.http.pending_extrinsics().await.unwrap();
    assert_eq!(pending, vec![hex(&future)]);
    let status = node.http.status(future.hash()).await.unwrap();
    assert_eq!(status.status, TxState::Pool);
    // Filling the gap finalizes both.
    let first = node.transfer("eve", 0, Keypair::dev("bob").public(), 1);
    node.http.submit_extrinsic(hex(&first)).await.unwrap();
    node.await_finalized(&future.hash()).await;
    assert_eq!(node.nonce("eve").await, 2);

    let unknown = node.http.status(Hash::digest(b"nothing")).await.unwrap();
    assert_eq!(unknown.status, TxState::Unknown);
    let no_proof = node.http.proof(Hash::digest(b"nothing")).await.unwrap();
    assert!(no_proof.is_none());

    let heads = node.await_heads(2).await;
    assert_eq!(heads[1].parent_hash, heads[0].hash());
    let genesis = node.http.block_hash(Some(0)).await.unwrap().unwrap();
    assert_eq!(genesis, spec().genesis().unwrap().hash());
    let block = node.http.block(Some(genesis)).await.unwrap().unwrap();
    assert_eq!(block.block.header.number, 0);
    let finalized = node.http.finalized_head().await.unwrap();
    let header = node.http.header(Some(finalized)).await.unwrap().unwrap();
    assert_eq!(header.hash(), finalized);

    let health = node.http.health().await.unwrap();
    assert!(!health.is_syncing);
    let chain = node.http.chain().await.unwrap();
    assert_eq!(chain, spec().name);
    let name = node.http.name().await.unwrap();
    assert_eq!(name, "lockstep-node");
    let properties = node.http.properties().await.unwrap();
    assert_eq!(properties.chain_id, spec().chain_id);
    assert_eq!(properties.max_validity_blocks, spec().max_validity_blocks);
    let methods = node.http.methods().await.unwrap().methods;
    // These are the method names as served on the wire, not calls: they stay strings.
    for expected in [
        "author_submitExtrinsic",
        "author_submitAndWatchExtrinsic",
        "author_pendingExtrinsics",
        "chain_getHeader",
        "chain_getBlock",
        "chain_getReceipts",
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
        "system_properties",
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
    let node = lockstep_node::test_utils::DevNode::start_with(spec(), |config| {
        config.prometheus_addr = Some(([127, 0, 0, 1], 0).into());
        config.block_time = std::time::Duration::from_millis(50);
    })
    .await;
    let mut heads = node.running().chain.subscribe_heads();
    let head = heads.recv().await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(node.running().prometheus_addr.unwrap())
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
    node.stop().await;
}
