//! A node whose base path is wiped resyncs from genesis: every block it
//! holds afterwards carries a justification that verifies against the
//! validator set, and it matches the others block for block.

use lockstep_api::node::ChainApiClient;
use lockstep_consensus::Vote;
use lockstep_runtime::ValidatorSet;

use crate::harness::{exclusive, Testnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_resyncs_from_genesis_verifying_justifications() {
    let _one_at_a_time = exclusive().await;
    let mut net = Testnet::start(4, 0).await;
    net.await_height(&[0, 1, 2, 3], 8).await;

    net.kill(3);
    net.wipe(3);
    net.spawn(3);
    let target = net.best(&[0, 1, 2]).await;
    net.await_height(&[3], target).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;

    let validators = ValidatorSet::new(net.spec.validators.clone()).expect("validators");
    for number in 1..=target {
        let hash = net.rpc(3).block_hash(Some(number)).await.unwrap();
        let signed = net.rpc(3).block(hash).await.unwrap().expect("block");
        let justification = signed.justification.expect("justification");
        let header = signed.block.header;
        let block_hash = header.hash();
        let message = Vote::precommit_signing_bytes(
            &net.spec.chain_id,
            number,
            justification.round,
            &block_hash.0,
        );
        justification
            .verify(&block_hash, &validators, &message)
            .unwrap_or_else(|e| panic!("justification of #{number}: {e}"));
    }
}
