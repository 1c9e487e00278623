//! Four validators and a full node: blocks finalize, a transfer sent to one
//! node is finalized and visible everywhere, and every node holds the same
//! headers (block hashes, state roots, receipt roots) at every height.

use jsonrpsee::rpc_params;
use serde_json::Value;

use crate::harness::{exclusive, Testnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_and_a_full_node_agree() {
    let _one_at_a_time = exclusive().await;
    let net = Testnet::start(4, 1).await;
    let all = [0, 1, 2, 3, 4];

    let health: Value = net.call(4, "system_health", rpc_params![]).await.unwrap();
    assert_eq!(health["shouldHavePeers"], true);
    let peer_id: String = net
        .call(0, "system_localPeerId", rpc_params![])
        .await
        .unwrap();
    assert!(!peer_id.is_empty());
    net.await_condition("every node sees the four others", || async {
        for i in all {
            let peers: Vec<Value> = net
                .call(i, "system_peers", rpc_params![])
                .await
                .unwrap_or_default();
            if peers.len() < 4 {
                return false;
            }
        }
        true
    })
    .await;

    // Sent to one validator, gossiped to the proposers.
    let tx = net.transfer("alice", 0, "bob", 1_000);
    let hash = net.submit(2, &tx).await;
    let mut statuses = Vec::new();
    for i in all {
        let status = net.await_tx(i, &hash).await;
        statuses.push((
            status["blockHash"].clone(),
            status["blockNumber"].clone(),
            status["index"].clone(),
            status["outcome"].clone(),
        ));
    }
    assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");
    assert_eq!(statuses[0].3["status"], "success");

    // And one sent to the full node reaches the validators too.
    let tx = net.transfer("bob", 0, "charlie", 10);
    let hash = net.submit(4, &tx).await;
    for i in all {
        net.await_tx(i, &hash).await;
    }

    let top = net.best(&all).await;
    net.await_height(&all, top).await;
    net.assert_agreement(&all).await;
    let mut balances = Vec::new();
    for i in all {
        let balance: Value = net
            .call(
                i,
                "state_getBalance",
                rpc_params![
                    lockstep_runtime::Keypair::dev("bob").public(),
                    lockstep_runtime::genesis::DEV_ASSET
                ],
            )
            .await
            .unwrap();
        balances.push(balance);
    }
    assert!(balances.windows(2).all(|w| w[0] == w[1]), "{balances:?}");
}
