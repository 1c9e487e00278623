//! The node serves its interface as `lockstep-api` describes it: every
//! method a client calls in JSON-RPC batches by name is served.

use lockstep_api::node::methods::BATCHED;
use lockstep_api::RpcApiClient;

use crate::harness::DevNode;

#[tokio::test]
async fn every_method_called_by_name_is_served() {
    let node = DevNode::start().await;
    let listing = node.http.methods().await.unwrap();
    assert_eq!(listing.version, 1);
    for method in BATCHED {
        assert!(
            listing.methods.iter().any(|m| m == method),
            "{method} is not served: {:?}",
            listing.methods
        );
    }
    assert!(listing.methods.iter().any(|m| m == "rpc_methods"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocks_receipts_are_its_receipts_root_leaves_with_each_transfers_outcome() {
    use jsonrpsee::core::client::{ClientT, Error as ClientError};
    use jsonrpsee::rpc_params;
    use lockstep_api::node::{receipts_at, AuthorApiClient, ChainApiClient};
    use lockstep_runtime::genesis::DEV_ENDOWMENT;
    use lockstep_runtime::primitives::from_hex;
    use lockstep_runtime::{merkle, DispatchError, Hash, Keypair, Outcome, Receipt, SignedTx};
    use serde_json::{json, Value};

    use crate::harness::hex;

    let node = DevNode::start().await;
    let bob = Keypair::dev("bob").public();
    // Nonces 1 to 3 wait in the pool for nonce 0, so the four become ready
    // at once and go into one block; nonce 2 asks for more than alice
    // holds: included, and failed.
    let txs = [
        node.transfer("alice", 0, bob, 5),
        node.transfer("alice", 1, bob, 6),
        node.transfer("alice", 2, bob, DEV_ENDOWMENT * 2),
        node.transfer("alice", 3, bob, 7),
    ];
    for tx in txs[1..].iter().chain(&txs[..1]) {
        node.http.submit_extrinsic(hex(tx)).await.unwrap();
    }
    let status = node.await_finalized(&txs[3].hash()).await;
    let block_hash = status.block_hash.unwrap();
    let receipts = node.http.receipts(block_hash).await.unwrap().unwrap();

    // Leaf i of the header's receipts root is receipts[i].hash().
    let block = node.http.block(Some(block_hash)).await.unwrap().unwrap();
    let header = &block.block.header;
    assert_eq!(header.hash(), block_hash);
    let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
    assert_eq!(merkle::root(&leaves), header.receipts_root);
    // In transaction order: receipt i is the block's extrinsic i, and the
    // block holds the four transfers in nonce order.
    let in_block: Vec<Hash> = block
        .block
        .extrinsics
        .iter()
        .map(|x| {
            SignedTx::decode_bounded(&from_hex(x).unwrap())
                .unwrap()
                .hash()
        })
        .collect();
    let receipted: Vec<Hash> = receipts.iter().map(|r| r.tx_hash).collect();
    assert_eq!(receipted, in_block);
    let sent: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
    assert_eq!(receipted, sent);
    // Each outcome is the transfer's: the one too large failed, the others
    // took effect, as tx_getStatus says too.
    let failed = Outcome::Failed(DispatchError::InsufficientBalance);
    let outcomes: Vec<Outcome> = receipts.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Success, Outcome::Success, failed, Outcome::Success]
    );
    for receipt in &receipts {
        let status = node.status(&receipt.tx_hash).await;
        assert_eq!(status.outcome, Some(receipt.outcome));
        assert_eq!(status.block_hash, Some(block_hash));
    }
    assert_eq!(node.balance("bob").await, DEV_ENDOWMENT + 5 + 6 + 7);

    // The client helper checks the receipts against the header itself.
    let checked = receipts_at(&node.http, block_hash).await.unwrap();
    assert_eq!(checked, Some(receipts));
    // Genesis has no transactions: no receipts, and its root is empty.
    let genesis = node.http.block_hash(Some(0)).await.unwrap().unwrap();
    assert_eq!(
        receipts_at(&node.http, genesis).await.unwrap(),
        Some(Vec::new())
    );

    // A block the node does not have: null.
    let unknown = Hash::digest(b"no such block");
    assert_eq!(node.http.receipts(unknown).await.unwrap(), None);
    assert_eq!(receipts_at(&node.http, unknown).await.unwrap(), None);

    // A malformed hash is invalid params, not a panic or an empty answer.
    for bad in [json!("0x1234"), json!("nothex"), json!(7), json!(null)] {
        let answer: Result<Value, _> = node
            .http
            .request("chain_getReceipts", rpc_params![bad.clone()])
            .await;
        assert!(
            matches!(&answer, Err(ClientError::Call(e)) if e.code() == -32602),
            "{bad}: {answer:?}"
        );
    }
    let missing: Result<Value, _> = node.http.request("chain_getReceipts", rpc_params![]).await;
    assert!(
        matches!(&missing, Err(ClientError::Call(e)) if e.code() == -32602),
        "{missing:?}"
    );
    node.stop().await;
}
