//! Validators killed with SIGKILL: with one down the others go on, and the
//! restarted one catches up and votes again; with two down finalization
//! halts without any conflicting block, and resumes when one returns.

use crate::harness::{exclusive, Testnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_validator_killed_and_restarted_catches_up_and_votes() {
    let _one_at_a_time = exclusive().await;
    let mut net = Testnet::start(4, 0).await;

    net.kill(3);
    let height = net.best(&[0, 1, 2]).await;
    net.await_height(&[0, 1, 2], height + 3).await;

    net.spawn(3);
    let target = net.best(&[0, 1, 2]).await;
    net.await_height(&[3], target).await;

    // With node 0 down, a quorum (3 of 4) needs node 3's precommits: new
    // blocks prove that it votes again.
    net.kill(0);
    let height = net.best(&[1, 2, 3]).await;
    net.await_height(&[1, 2, 3], height + 3).await;

    net.spawn(0);
    let target = net.best(&[1, 2, 3]).await;
    net.await_height(&[0, 1, 2, 3], target).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_validators_killed_halt_then_one_restarted_resumes() {
    let _one_at_a_time = exclusive().await;
    let mut net = Testnet::start(4, 0).await;
    net.await_height(&[0, 1, 2, 3], 3).await;

    net.kill(2);
    net.kill(3);
    // A block whose precommits were already out may still finalize; after
    // that, two of four can never make a quorum.
    let at_kill = net.best(&[0, 1]).await;
    let mut observed = Vec::new();
    for _ in 0..30 {
        observed.push(net.best(&[0, 1]).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let halted_at = *observed.last().expect("observations");
    assert!(
        halted_at <= at_kill + 1,
        "finalized past a quorum: #{at_kill} at the kill, then {observed:?}"
    );
    net.assert_agreement(&[0, 1]).await;

    net.spawn(2);
    net.await_height(&[0, 1, 2], halted_at + 3).await;

    net.spawn(3);
    let target = net.best(&[0, 1, 2]).await;
    net.await_height(&[0, 1, 2, 3], target).await;
    net.assert_agreement(&[0, 1, 2, 3]).await;
}
