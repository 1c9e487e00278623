//! The state transition: inclusion rules, dispatch outcomes, conservation,
//! determinism, and the proofs a light client relies on.

use lockstep_runtime::execution::{check_block, execute, execute_with, TxError};
use lockstep_runtime::genesis::{DEV_ASSET, DEV_ENDOWMENT};
use lockstep_runtime::{
    merkle, smt, state, AssetId, BlockError, Call, DispatchError, Hash, Keypair, Outcome, SignedTx,
    SigningContext,
};
use proptest::prelude::*;

use crate::chain::{dev, TestChain, ENDOWMENT};

#[test]
fn a_transfer_moves_balance_and_uses_the_nonce() {
    let mut chain = TestChain::dev();
    let (alice, bob) = (dev("alice"), dev("bob"));
    let tx = chain.transfer(&alice, 0, bob.public(), 250);
    let built = chain.produce(vec![tx.clone()]);
    assert_eq!(built.block.extrinsics, vec![tx.clone()]);
    assert_eq!(built.executed.receipts[0].tx_hash, tx.hash());
    assert_eq!(built.executed.receipts[0].outcome, Outcome::Success);
    let state = chain.state();
    assert_eq!(
        state.balance(&alice.public(), DEV_ASSET).unwrap(),
        ENDOWMENT - 250
    );
    assert_eq!(
        state.balance(&bob.public(), DEV_ASSET).unwrap(),
        ENDOWMENT + 250
    );
    assert_eq!(state.nonce(&alice.public()).unwrap(), 1);
    assert_eq!(state.nonce(&bob.public()).unwrap(), 0);
}

#[test]
fn replay_of_the_same_nonce_is_rejected() {
    let mut chain = TestChain::dev();
    let tx = chain.transfer(&dev("alice"), 0, dev("bob").public(), 1);
    chain.produce(vec![tx.clone()]);

    // The builder drops it for good...
    let built = chain.produce(vec![tx.clone()]);
    assert!(built.block.extrinsics.is_empty());
    assert_eq!(
        built.rejected,
        vec![(
            tx.hash(),
            TxError::StaleNonce {
                expected: 1,
                got: 0
            }
        )]
    );
    // ...and a block carrying it is invalid.
    let number = chain.head.number + 1;
    assert_eq!(
        execute(
            &chain.store,
            &chain.context,
            number,
            std::slice::from_ref(&tx)
        ),
        Err(BlockError::NotIncludable {
            index: 0,
            tx_hash: tx.hash(),
            error: TxError::StaleNonce {
                expected: 1,
                got: 0
            }
        })
    );
    // Twice in one block: the second copy is stale too.
    let fresh = chain.transfer(&dev("alice"), 1, dev("bob").public(), 1);
    assert!(matches!(
        execute(
            &chain.store,
            &chain.context,
            number,
            &[fresh.clone(), fresh]
        ),
        Err(BlockError::NotIncludable {
            index: 1,
            error: TxError::StaleNonce { .. },
            ..
        })
    ));
}

#[test]
fn a_tx_signed_for_another_genesis_is_rejected() {
    let mut chain = TestChain::dev();
    let other = SigningContext::new(Hash::digest(b"another chain"));
    let call = Call::Transfer {
        asset: DEV_ASSET,
        to: dev("bob").public(),
        amount: 1,
        reference: None,
    };
    let foreign = SignedTx::sign(&dev("alice"), &other, 0, 100, call);
    let number = chain.head.number + 1;
    assert_eq!(
        execute(
            &chain.store,
            &chain.context,
            number,
            std::slice::from_ref(&foreign)
        ),
        Err(BlockError::NotIncludable {
            index: 0,
            tx_hash: foreign.hash(),
            error: TxError::BadSignature
        })
    );
    let good = chain.transfer(&dev("bob"), 0, dev("alice").public(), 1);
    let built = chain.produce(vec![good.clone(), foreign.clone()]);
    assert_eq!(built.block.extrinsics, vec![good]);
    assert_eq!(
        built.rejected,
        vec![(foreign.hash(), TxError::BadSignature)]
    );
}

#[test]
fn a_future_nonce_waits_and_a_bad_signature_is_named() {
    let mut chain = TestChain::dev();
    let alice = dev("alice");
    let second = chain.transfer(&alice, 1, dev("bob").public(), 1);
    let first = chain.transfer(&alice, 0, dev("bob").public(), 1);
    // Out of order: the builder skips the future one without rejecting it.
    let built = chain.produce(vec![second.clone(), first.clone()]);
    assert_eq!(built.block.extrinsics, vec![first]);
    assert!(built.rejected.is_empty());
    let built = chain.produce(vec![second.clone()]);
    assert_eq!(built.block.extrinsics, vec![second]);

    let mut txs: Vec<SignedTx> = (0..8)
        .map(|i| chain.transfer(&dev(&format!("u{i}")), 0, alice.public(), 1))
        .collect();
    txs[5].signature.0[0] ^= 1;
    let number = chain.head.number + 1;
    assert!(matches!(
        execute(&chain.store, &chain.context, number, &txs),
        Err(BlockError::NotIncludable {
            index: 5,
            error: TxError::BadSignature,
            ..
        })
    ));
}

#[test]
fn only_unflagged_signatures_are_checked_and_a_bad_one_keeps_its_index() {
    let chain = TestChain::dev();
    let alice = dev("alice");
    let mut txs: Vec<SignedTx> = (0..8)
        .map(|i| chain.transfer(&dev(&format!("u{i}")), 0, alice.public(), 1))
        .collect();
    txs[2].signature.0[0] ^= 1;
    txs[6].signature.0[0] ^= 1;
    let number = chain.head.number + 1;
    let bad_signature_at = |verified: &[bool]| match execute_with(
        &chain.store,
        &chain.context,
        number,
        &txs,
        verified,
    ) {
        Err(BlockError::NotIncludable {
            index,
            error: TxError::BadSignature,
            ..
        }) => Some(index),
        Ok(_) => None,
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(bad_signature_at(&[]), Some(2));
    // Flagged as verified (by a pool that checked these very bytes): not
    // checked again. The first bad one left keeps its index in the block.
    let mut verified = [false; 8];
    verified[2] = true;
    assert_eq!(bad_signature_at(&verified), Some(6));
    verified[6] = true;
    assert_eq!(bad_signature_at(&verified), None);
    // Fewer flags than transactions: the rest are checked.
    assert_eq!(bad_signature_at(&[true, true, true]), Some(6));
}

#[test]
fn an_expired_tx_is_rejected() {
    let mut chain = TestChain::dev();
    chain.produce(vec![]);
    chain.produce(vec![]);
    let call = Call::Transfer {
        asset: DEV_ASSET,
        to: dev("bob").public(),
        amount: 1,
        reference: None,
    };
    // The head is block 2, so block 3 is next: valid_until 2 is past.
    let expired = SignedTx::sign(&dev("alice"), &chain.context, 0, 2, call.clone());
    let number = chain.head.number + 1;
    assert_eq!(
        execute(
            &chain.store,
            &chain.context,
            number,
            std::slice::from_ref(&expired)
        ),
        Err(BlockError::NotIncludable {
            index: 0,
            tx_hash: expired.hash(),
            error: TxError::Expired {
                valid_until: 2,
                block: 3
            }
        })
    );
    let built = chain.produce(vec![expired.clone()]);
    assert!(built.block.extrinsics.is_empty());
    // valid_until is inclusive: the last block it names still takes it.
    let last_chance = SignedTx::sign(&dev("alice"), &chain.context, 0, 4, call);
    assert_eq!(chain.produce(vec![last_chance]).block.extrinsics.len(), 1);
}

#[test]
fn an_insufficient_balance_transfer_is_included_as_failed_and_uses_its_nonce() {
    let mut chain = TestChain::dev();
    let (alice, bob) = (dev("alice"), dev("bob"));
    let root_before = chain.head.state_root;
    let too_much = chain.transfer(&alice, 0, bob.public(), ENDOWMENT + 1);
    let built = chain.produce(vec![too_much.clone()]);
    assert_eq!(built.block.extrinsics, vec![too_much]);
    assert_eq!(
        built.executed.receipts[0].outcome,
        Outcome::Failed(DispatchError::InsufficientBalance)
    );
    let state = chain.state();
    assert_eq!(
        state.balance(&alice.public(), DEV_ASSET).unwrap(),
        ENDOWMENT
    );
    assert_eq!(state.balance(&bob.public(), DEV_ASSET).unwrap(), ENDOWMENT);
    assert_eq!(state.nonce(&alice.public()).unwrap(), 1);
    // Only the nonce changed: exactly one state entry written (plus tree nodes).
    let entries: Vec<_> = built
        .executed
        .changes
        .writes
        .iter()
        .filter(|(k, _)| k[0] != smt::NODE_KEY_PREFIX)
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, state::keys::nonce(&alice.public()));
    assert_ne!(chain.head.state_root, root_before);
}

#[test]
fn every_dispatch_failure_is_typed() {
    let mut chain = TestChain::dev();
    let (alice, bob) = (dev("alice"), dev("bob"));
    let ctx = chain.context;
    let tx = |key: &Keypair, nonce, call| SignedTx::sign(key, &ctx, nonce, 100, call);
    let cases = vec![
        (
            tx(
                &bob,
                0,
                Call::Transfer {
                    asset: 77,
                    to: alice.public(),
                    amount: 1,
                    reference: None,
                },
            ),
            Outcome::Failed(DispatchError::UnknownAsset),
        ),
        (
            tx(
                &bob,
                1,
                Call::Transfer {
                    asset: DEV_ASSET,
                    to: alice.public(),
                    amount: 0,
                    reference: None,
                },
            ),
            Outcome::Failed(DispatchError::ZeroAmount),
        ),
        (
            tx(
                &bob,
                2,
                Call::Mint {
                    asset: DEV_ASSET,
                    to: bob.public(),
                    amount: 5,
                },
            ),
            Outcome::Failed(DispatchError::NotIssuer),
        ),
        (
            tx(
                &alice,
                0,
                Call::Mint {
                    asset: DEV_ASSET,
                    to: bob.public(),
                    amount: u128::MAX,
                },
            ),
            Outcome::Failed(DispatchError::Overflow),
        ),
        (
            tx(
                &alice,
                1,
                Call::Mint {
                    asset: 9,
                    to: bob.public(),
                    amount: 5,
                },
            ),
            Outcome::Failed(DispatchError::UnknownAsset),
        ),
        (
            tx(&bob, 3, create(DEV_ASSET, "DUP")),
            Outcome::Failed(DispatchError::AssetExists),
        ),
        (tx(&bob, 4, create(9, "BOBCOIN")), Outcome::Success),
        (
            tx(
                &bob,
                5,
                Call::Mint {
                    asset: 9,
                    to: alice.public(),
                    amount: 40,
                },
            ),
            Outcome::Success,
        ),
        (
            tx(
                &alice,
                2,
                Call::Mint {
                    asset: 9,
                    to: alice.public(),
                    amount: 1,
                },
            ),
            Outcome::Failed(DispatchError::NotIssuer),
        ),
        (
            tx(
                &alice,
                3,
                Call::Transfer {
                    asset: 9,
                    to: bob.public(),
                    amount: 41,
                    reference: None,
                },
            ),
            Outcome::Failed(DispatchError::InsufficientBalance),
        ),
        (
            tx(
                &alice,
                4,
                Call::Transfer {
                    asset: 9,
                    to: alice.public(),
                    amount: 40,
                    reference: None,
                },
            ),
            Outcome::Success,
        ),
    ];
    let (txs, expected): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let built = chain.produce(txs);
    let outcomes: Vec<Outcome> = built.executed.receipts.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, expected);
    let state = chain.state();
    let info = state.asset(9).unwrap().unwrap();
    assert_eq!((info.issuer, info.supply), (bob.public(), 40));
    assert_eq!(state.balance(&alice.public(), 9).unwrap(), 40);
    assert_eq!(
        state.asset(DEV_ASSET).unwrap().unwrap().supply,
        DEV_ENDOWMENT * 8
    );
    assert_eq!(state.nonce(&bob.public()).unwrap(), 6);
    assert_eq!(state.nonce(&alice.public()).unwrap(), 5);
}

fn create(id: AssetId, name: &str) -> Call {
    Call::CreateAsset {
        id,
        name: lockstep_runtime::transaction::AssetName::new(name).unwrap(),
        decimals: 2,
    }
}

#[test]
fn executing_the_same_block_twice_gives_the_same_roots() {
    let mut chain = TestChain::dev();
    let txs: Vec<SignedTx> = (0..50)
        .map(|i| {
            chain.transfer(
                &dev(&format!("p{}", i % 7)),
                (i / 7) as u64,
                dev("bob").public(),
                1,
            )
        })
        .collect();
    // Some succeed (alice..), most fail for lack of funds: both kinds count.
    let mut funded = vec![chain.transfer(&dev("alice"), 0, dev("p0").public(), 100)];
    funded.extend(txs);
    let built = chain.produce(vec![]);
    let parent = built.block.header.clone();
    let number = parent.number + 1;
    let first = execute(&chain.store, &chain.context, number, &funded).unwrap();
    let second = execute(&chain.store, &chain.context, number, &funded).unwrap();
    assert_eq!(first, second);
    assert!(first.receipts.iter().any(|r| r.outcome.is_success()));
    assert!(first.receipts.iter().any(|r| !r.outcome.is_success()));
}

#[test]
fn a_block_with_a_wrong_root_or_link_is_refused() {
    let mut chain = TestChain::dev();
    let parent = chain.head.clone();
    let built = chain.produce(vec![chain.transfer(
        &dev("alice"),
        0,
        dev("bob").public(),
        5,
    )]);
    // Rewind: check the same block against the parent state again, tampered.
    let mut fresh = TestChain::dev();
    assert_eq!(fresh.head, parent);
    let limits = fresh.limits;
    let check = |block: &lockstep_runtime::Block, fresh: &TestChain| {
        check_block(&fresh.store, &fresh.context, &parent, block, &limits)
    };
    assert!(check(&built.block, &fresh).is_ok());
    for which in ["extrinsics", "receipts", "state"] {
        let mut bad = built.block.clone();
        match which {
            "extrinsics" => bad.header.extrinsics_root.0[0] ^= 1,
            "receipts" => bad.header.receipts_root.0[0] ^= 1,
            _ => bad.header.state_root.0[0] ^= 1,
        }
        assert!(
            matches!(check(&bad, &fresh), Err(BlockError::RootMismatch { which: w, .. }) if w == which)
        );
    }
    let mut bad = built.block.clone();
    bad.header.parent_hash = Hash::ZERO;
    assert!(matches!(
        check(&bad, &fresh),
        Err(BlockError::WrongParent { .. })
    ));
    let mut bad = built.block.clone();
    bad.header.number = 5;
    assert!(matches!(
        check(&bad, &fresh),
        Err(BlockError::WrongNumber { .. })
    ));
    fresh.limits.max_txs = 0;
    let limits = fresh.limits;
    assert!(matches!(
        check_block(&fresh.store, &fresh.context, &parent, &built.block, &limits),
        Err(BlockError::TooLarge(_))
    ));
}

#[test]
fn a_light_client_can_check_inclusion_and_outcome_from_the_header() {
    let mut chain = TestChain::dev();
    let txs: Vec<SignedTx> = (0..9)
        .map(|i| chain.transfer(&dev(&format!("p{i}")), 0, dev("bob").public(), 1))
        .chain([chain.transfer(&dev("alice"), 0, dev("bob").public(), 1)])
        .collect();
    let built = chain.produce(txs);
    let header = &built.block.header;
    let tx_hashes: Vec<Hash> = built.block.extrinsics.iter().map(SignedTx::hash).collect();
    let receipt_hashes: Vec<Hash> = built.executed.receipts.iter().map(|r| r.hash()).collect();
    for i in 0..tx_hashes.len() {
        let inclusion = merkle::prove(&tx_hashes, i).unwrap();
        assert!(merkle::verify(
            &header.extrinsics_root,
            &tx_hashes[i],
            &inclusion
        ));
        let outcome = merkle::prove(&receipt_hashes, i).unwrap();
        let receipt = built.executed.receipts[i];
        assert!(merkle::verify(
            &header.receipts_root,
            &receipt.hash(),
            &outcome
        ));
        // A receipt claiming the opposite outcome does not verify.
        let mut lie = receipt;
        lie.outcome = if receipt.outcome.is_success() {
            Outcome::Failed(DispatchError::InsufficientBalance)
        } else {
            Outcome::Success
        };
        assert!(!merkle::verify(
            &header.receipts_root,
            &lie.hash(),
            &outcome
        ));
    }
    assert!(built.executed.receipts[9].outcome.is_success());
    assert!(!built.executed.receipts[0].outcome.is_success());
    // And a state proof shows bob's new balance under the state root.
    let key = state::keys::balance(&dev("bob").public(), DEV_ASSET);
    let proof = smt::prove(&chain.store, &key).unwrap();
    let value = parity_scale_codec::Encode::encode(&(ENDOWMENT + 1));
    assert!(smt::verify(&header.state_root, &key, Some(&value), &proof));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random transfers between a few accounts, many failing: the supply
    /// never changes and always equals the sum of all balances.
    #[test]
    fn supply_is_conserved_over_random_transfers(
        moves in prop::collection::vec((0usize..6, 0usize..6, 0u128..3 * ENDOWMENT / 2), 1..60),
        block_size in 1usize..12,
    ) {
        let names = ["alice", "bob", "charlie", "dave", "nobody1", "nobody2"];
        let keys: Vec<Keypair> = names.iter().map(|n| dev(n)).collect();
        let mut chain = TestChain::dev();
        let mut nonces = [0u64; 6];
        let mut txs = Vec::new();
        for (from, to, amount) in moves {
            txs.push(chain.transfer(&keys[from], nonces[from], keys[to].public(), amount));
            nonces[from] += 1;
        }
        let mut successes = 0;
        for block in txs.chunks(block_size) {
            let built = chain.produce(block.to_vec());
            prop_assert_eq!(built.block.extrinsics.len(), block.len());
            successes += built.executed.receipts.iter().filter(|r| r.outcome.is_success()).count();
        }
        let state = chain.state();
        let supply = state.asset(DEV_ASSET).unwrap().unwrap().supply;
        prop_assert_eq!(supply, DEV_ENDOWMENT * 8);
        let others = ["eve", "ferdie", "grace", "heidi"];
        let total: u128 = keys.iter().map(|k| k.public())
            .chain(others.iter().map(|n| dev(n).public()))
            .map(|a| state.balance(&a, DEV_ASSET).unwrap())
            .sum();
        prop_assert_eq!(total, supply);
        for (key, nonce) in keys.iter().zip(nonces) {
            prop_assert_eq!(state.nonce(&key.public()).unwrap(), nonce);
        }
        prop_assert!(successes <= txs.len());
    }
}
