//! The quorum with one node of three lying or down, and with too few honest
//! answers.

use std::sync::atomic::Ordering;

use lockstep_api::lifecycle::State;
use lockstep_api::node::TxState;
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::{Keypair, Outcome};

use crate::harness::{down_node, evidence, proxy, Behaviour, DevNode, EventSystem, VALID_UNTIL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_liar_of_three_cannot_sway_the_quorum() {
    let node = DevNode::start().await;
    let (_l, liar) = proxy(node.addr, Behaviour::Lying).await;
    let (_h, honest) = proxy(node.addr, Behaviour::Honest).await;
    let events = EventSystem::start(vec![node.url(), liar.clone(), honest.clone()], "2/3").await;

    let bob = Keypair::dev("bob").public();
    let good = node.settling("alice", 0, VALID_UNTIL, bob, 7, ("good", 1));
    let bad = node.settling("eve", 0, VALID_UNTIL, bob, DEV_ENDOWMENT + 1, ("bad", 2));
    events.register("good", &good, 1).await.unwrap();
    events.register("bad", &bad, 2).await.unwrap();
    node.submit(&good).await;
    node.submit(&bad).await;

    let pending = events.await_state("good", State::PendingAccount).await;
    assert_eq!(
        evidence(&pending).confirmed_by,
        vec![node.url(), honest.clone()]
    );
    assert_eq!(
        evidence(&pending).block_hash,
        node.status(&good.hash()).await.block_hash
    );
    // The liar claims success; the honest majority says failed.
    let cancelled = events.await_state("bad", State::Cancelled).await;
    assert_eq!(evidence(&cancelled).confirmed_by, vec![node.url(), honest]);
    assert!(
        matches!(evidence(&cancelled).outcome, Some(Outcome::Failed(_))),
        "{:?}",
        evidence(&cancelled).outcome
    );
    // Every check saw the liar contradict the others.
    assert!(
        events
            .service()
            .metrics
            .quorum_checks
            .load(Ordering::Relaxed)
            >= 2
    );

    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_of_three_and_the_watcher_fails_over() {
    let node = DevNode::start().await;
    let (_h, honest) = proxy(node.addr, Behaviour::Honest).await;
    // The down node comes first: the watcher must fail over to the next.
    let down = down_node().await;
    let events = EventSystem::start(vec![down, node.url(), honest.clone()], "2/3").await;

    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 7, ("with-one-down", 1));
    events.register("with-one-down", &tx, 1).await.unwrap();
    node.submit(&tx).await;
    let pending = events
        .await_state("with-one-down", State::PendingAccount)
        .await;
    assert_eq!(evidence(&pending).confirmed_by, vec![node.url(), honest]);
    assert!(
        events
            .service()
            .metrics
            .watcher_failovers
            .load(Ordering::Relaxed)
            >= 1
    );

    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_honest_answers_move_nothing() {
    let node = DevNode::start().await;
    let (_l, liar) = proxy(node.addr, Behaviour::Lying).await;
    let down = down_node().await;
    let events = EventSystem::start(vec![node.url(), liar, down], "2/3").await;

    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 7, ("contested", 1));
    events.register("contested", &tx, 1).await.unwrap();
    node.submit(&tx).await;
    // The honest node and the liar disagree on the block; the third is
    // down: no quorum. Wait for a few disagreements (the watcher's check and
    // the reconciler's re-checks).
    events
        .await_metrics(|m| m.quorum_disagreements.load(Ordering::Relaxed) >= 3)
        .await;
    let event = events.event("contested").await;
    assert_eq!(event.state, State::Registered);
    assert!(event.checks >= 1);
    let history = events.history("contested").await;
    assert_eq!(history.len(), 1);
    assert_eq!(node.status(&tx.hash()).await.status, TxState::Finalized);
    let stats = events.event_stats().await;
    assert_eq!(stats.registered, 1);
    assert_eq!(stats.bus_depth, 0);

    events.stop().await;
    node.stop().await;
}
