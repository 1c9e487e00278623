//! Four validators and a full node: blocks finalize, a transfer sent to one
//! node is finalized and visible everywhere, and every node holds the same
//! headers (block hashes, state roots, receipt roots) at every height.

use lockstep_api::node::{StateApiClient, SystemApiClient};
use lockstep_runtime::Outcome;

use crate::harness::{exclusive, Testnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_and_a_full_node_agree() {
    let _one_at_a_time = exclusive().await;
    let net = Testnet::start(4, 1).await;
    let all = [0, 1, 2, 3, 4];

    let health = net.rpc(4).health().await.unwrap();
    assert!(health.should_have_peers);
    let peer_id = net.rpc(0).local_peer_id().await.unwrap();
    assert!(!peer_id.is_empty());
    net.await_condition("every node sees the four others", || async {
        for i in all {
            let peers = net.rpc(i).peers().await.unwrap_or_default();
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
            status.block_hash,
            status.block_number,
            status.index,
            status.outcome,
        ));
    }
    assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");
    assert_eq!(statuses[0].3, Some(Outcome::Success));

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
        let balance = net
            .rpc(i)
            .balance(
                lockstep_runtime::Keypair::dev("bob").public(),
                lockstep_runtime::genesis::DEV_ASSET,
                None,
            )
            .await
            .unwrap();
        balances.push(balance);
    }
    assert!(balances.windows(2).all(|w| w[0] == w[1]), "{balances:?}");
}
