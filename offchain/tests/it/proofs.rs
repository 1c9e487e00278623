//! Outcomes proven per block: a real event's proof verifies offline; a
//! proof that does not verify — receipts that do not match the header, a
//! justification by strangers or by too few validators, a block hash only
//! liars agree on — moves nothing and is reported.

use std::sync::atomic::Ordering;

use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::EventApiClient;
use lockstep_api::proof::{ChainTrust, ProofError};
use lockstep_offchain::test_utils::{dev_chain_for, EventSystem as Shared};
use lockstep_runtime::genesis::DEV_ENDOWMENT;
use lockstep_runtime::{Keypair, ValidatorSet};

use crate::harness::{bridge_key, proxy, Behaviour, DevNode, EventSystem, VALID_UNTIL};

/// These tests' chain id (the harness's dev nodes).
const CHAIN: &str = "lockstep-offchain-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_moved_event_carries_a_proof_that_verifies_with_the_chain_spec_alone() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let bob = Keypair::dev("bob").public();
    let good = node.settling("alice", 0, VALID_UNTIL, bob, 7, ("proven", 1));
    let bad = node.settling("eve", 0, VALID_UNTIL, bob, DEV_ENDOWMENT + 1, ("failed", 2));
    events.register("proven", &good, 1).await.unwrap();
    events.register("failed", &bad, 2).await.unwrap();
    // Not decided yet: no proof.
    assert_eq!(events.http.proof("proven".into()).await.unwrap(), None);
    node.submit(&good).await;
    node.submit(&bad).await;

    let pending = events.await_state("proven", State::PendingAccount).await;
    let cancelled = events.await_state("failed", State::Cancelled).await;
    let trust = dev_chain_for(CHAIN);
    for (event, state, reason) in [
        (&pending, State::PendingAccount, Reason::Succeeded),
        (&cancelled, State::Cancelled, Reason::Failed),
    ] {
        let proof = events
            .http
            .proof(event.id.clone())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no proof", event.id));
        let proven = proof.verify(event, &trust).unwrap();
        assert_eq!((proven.state, proven.reason), (state, reason));
        let evidence = event.evidence.as_ref().unwrap();
        assert_eq!(Some(proven.block_hash), evidence.block_hash);
        assert_eq!(proven.block_number, evidence.block_number);
        assert_eq!(Some(proof.receipt.outcome), evidence.outcome);
        // Another chain's validators did not sign it.
        let strangers = ChainTrust {
            chain_id: CHAIN.into(),
            validators: ValidatorSet::new(vec![Keypair::dev("mallory").public()]).unwrap(),
        };
        assert!(matches!(
            proof.verify(event, &strangers),
            Err(ProofError::Justification { .. })
        ));
    }
    // The proof of one event is not the proof of another.
    let mut proof = events.http.proof("proven".into()).await.unwrap().unwrap();
    assert!(matches!(
        proof.verify(&cancelled, &trust),
        Err(ProofError::OtherEvent { .. })
    ));
    // Relabelled, its receipt is still another transfer's.
    proof.event_id = cancelled.id.clone();
    assert!(matches!(
        proof.verify(&cancelled, &trust),
        Err(ProofError::OtherTransaction { .. })
    ));
    // An unknown event is refused, not answered with null.
    assert!(events.http.proof("no-such-event".into()).await.is_err());
    // Per block, not per transfer: a handful of node calls for the block.
    let calls = events.service().metrics.node_calls.load(Ordering::Relaxed);
    assert!(calls > 0);

    events.stop().await;
    node.stop().await;
}

/// Registers and submits one transfer; waits until its block failed its
/// proof twice, then checks that the event did not move.
async fn nothing_moves(node: &DevNode, events: &Shared, id: &str) {
    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 7, (id, 1));
    let request = crate::harness::register_request(id, &tx, 1);
    events.http.register(request).await.unwrap();
    node.submit(&tx).await;
    node.await_finalized(&tx.hash()).await;
    // At least two failed attempts (the watcher's or the reconciler's,
    // then a re-check): the event still has not moved.
    events
        .await_metrics(|m| m.proof_failures.load(Ordering::Relaxed) >= 2)
        .await;
    let event = events.event(id).await;
    assert_eq!(event.state, State::Registered);
    assert_eq!(events.history(id).await.len(), 1);
    assert_eq!(events.http.proof(id.into()).await.unwrap(), None);
    let stats = events.stats().await;
    assert_eq!((stats.pending_account, stats.bus_depth), (0, 0));
}

async fn through(behaviour: Behaviour) -> (DevNode, Shared, jsonrpsee::server::ServerHandle) {
    let node = DevNode::start().await;
    let (handle, bad) = proxy(node.addr, behaviour).await;
    // The proxy alone: every proof must come from it.
    let events = Shared::start_with(vec![bad], bridge_key().public(), |config| {
        config.quorum = "1/1".parse().unwrap();
        config.chain = Some(dev_chain_for(CHAIN));
    })
    .await;
    (node, events, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_that_do_not_match_the_header_move_nothing() {
    let (node, events, _proxy) = through(Behaviour::TamperedReceipts).await;
    nothing_moves(&node, &events, "tampered").await;
    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_justification_signed_by_strangers_moves_nothing() {
    let (node, events, _proxy) = through(Behaviour::StrangerJustification).await;
    nothing_moves(&node, &events, "forged").await;
    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_justification_signed_by_too_few_validators_moves_nothing() {
    // The event system trusts four validators; the dev chain's blocks
    // carry alice's signature alone, one of the three needed.
    let node = DevNode::start().await;
    let four = ["alice", "bob", "carol", "dave"].map(|n| Keypair::dev(n).public());
    let events = Shared::start_with(vec![node.url()], bridge_key().public(), |config| {
        config.quorum = "1/1".parse().unwrap();
        config.chain = Some(ChainTrust {
            chain_id: CHAIN.into(),
            validators: ValidatorSet::new(four.to_vec()).unwrap(),
        });
    })
    .await;
    nothing_moves(&node, &events, "too-few").await;
    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_hash_only_liars_agree_on_moves_nothing() {
    // Two liars of three name the same block that does not exist: they
    // reach the threshold, but no node can serve that block with a
    // justification, so nothing moves.
    let node = DevNode::start().await;
    let (_l1, liar1) = proxy(node.addr, Behaviour::Lying).await;
    let (_l2, liar2) = proxy(node.addr, Behaviour::Lying).await;
    let events = Shared::start_with(
        vec![node.url(), liar1, liar2],
        bridge_key().public(),
        |config| {
            config.quorum = "2/3".parse().unwrap();
        },
    )
    .await;
    nothing_moves(&node, &events, "outvoted").await;
    assert!(events.event("outvoted").await.evidence.is_none());
    events.stop().await;
    node.stop().await;
}
