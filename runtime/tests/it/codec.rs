//! SCALE round trips for every consensus type, and decoders that never panic
//! on arbitrary bytes.

use lockstep_runtime::block::MAX_BLOCK_SIZE;
use lockstep_runtime::codec::{decode_exact, DecodeError};
use lockstep_runtime::merkle::MerkleProof;
use lockstep_runtime::smt::StateProof;
use lockstep_runtime::state::AssetInfo;
use lockstep_runtime::transaction::AssetName;
use lockstep_runtime::{
    AccountId, Block, Call, DispatchError, Hash, Header, Justification, Outcome, Receipt,
    Signature, SignedTx, ValidatorSet, MAX_TX_SIZE,
};
use parity_scale_codec::{Decode, Encode};
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn account() -> impl Strategy<Value = AccountId> {
    any::<[u8; 32]>().prop_map(AccountId)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        Signature(bytes)
    })
}

fn asset_name() -> impl Strategy<Value = AssetName> {
    "[A-Za-z0-9 ]{1,32}".prop_map(|s| AssetName::new(s).unwrap())
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (
            any::<u32>(),
            account(),
            any::<u128>(),
            prop::option::of(hash())
        )
            .prop_map(|(asset, to, amount, reference)| Call::Transfer {
                asset,
                to,
                amount,
                reference
            }),
        (any::<u32>(), asset_name(), any::<u8>())
            .prop_map(|(id, name, decimals)| Call::CreateAsset { id, name, decimals }),
        (any::<u32>(), account(), any::<u128>()).prop_map(|(asset, to, amount)| Call::Mint {
            asset,
            to,
            amount
        }),
    ]
}

fn signed_tx() -> impl Strategy<Value = SignedTx> {
    (account(), any::<u64>(), any::<u64>(), call(), signature()).prop_map(
        |(signer, nonce, valid_until, call, signature)| SignedTx {
            signer,
            nonce,
            valid_until,
            call,
            signature,
        },
    )
}

fn header() -> impl Strategy<Value = Header> {
    (
        hash(),
        any::<u64>(),
        any::<u64>(),
        account(),
        hash(),
        hash(),
        hash(),
    )
        .prop_map(
            |(
                parent_hash,
                number,
                timestamp,
                proposer,
                extrinsics_root,
                receipts_root,
                state_root,
            )| {
                Header {
                    parent_hash,
                    number,
                    timestamp,
                    proposer,
                    extrinsics_root,
                    receipts_root,
                    state_root,
                }
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Success),
        prop::sample::select(vec![
            DispatchError::InsufficientBalance,
            DispatchError::UnknownAsset,
            DispatchError::NotIssuer,
            DispatchError::Overflow,
            DispatchError::AssetExists,
            DispatchError::ZeroAmount,
        ])
        .prop_map(Outcome::Failed),
    ]
}

fn roundtrip<T: Encode + Decode + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = value.encode();
    let decoded: T =
        decode_exact(&bytes, bytes.len()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, value);
    prop_assert_eq!(decoded.encode(), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_type_roundtrips(
        tx in signed_tx(),
        header in header(),
        txs in prop::collection::vec(signed_tx(), 0..8),
        h in hash(),
        outcome in outcome(),
        sigs in prop::collection::vec((account(), signature()), 0..6),
        round in any::<u32>(),
        validators in prop::collection::btree_set(account(), 1..8),
        name in asset_name(),
        numbers in (any::<u32>(), any::<u128>(), any::<u64>(), any::<u8>()),
        siblings in prop::collection::vec(hash(), 0..20),
    ) {
        roundtrip(&tx)?;
        roundtrip(&tx.call)?;
        roundtrip(&header)?;
        roundtrip(&Block { header: header.clone(), extrinsics: txs })?;
        roundtrip(&h)?;
        roundtrip(&tx.signer)?;
        roundtrip(&tx.signature)?;
        roundtrip(&Receipt { tx_hash: h, outcome })?;
        roundtrip(&outcome)?;
        roundtrip(&Justification { round, block_hash: h, signatures: sigs })?;
        roundtrip(&ValidatorSet::new(validators.into_iter().collect()).unwrap())?;
        let (asset, amount, nonce, decimals) = numbers;
        roundtrip(&AssetInfo { name: name.clone(), decimals, issuer: tx.signer, supply: amount })?;
        roundtrip(&name)?;
        roundtrip(&asset)?;
        roundtrip(&amount)?;
        roundtrip(&nonce)?;
        roundtrip(&MerkleProof { index: asset, leaf_count: asset.saturating_add(1), siblings: siblings.clone() })?;
        roundtrip(&StateProof { siblings, leaf: Some((h, h)) })?;
    }

    #[test]
    fn text_forms_roundtrip(h in hash(), tx in signed_tx()) {
        prop_assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        let json = serde_json::to_string(&tx).unwrap();
        prop_assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), tx);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: every decoder answers, none panics.
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedTx::decode_bounded(&bytes);
        let _ = Block::decode_bounded(&bytes);
        let _ = decode_exact::<Header>(&bytes, 1024);
        let _ = decode_exact::<Justification>(&bytes, 1024);
        let _ = decode_exact::<Receipt>(&bytes, 1024);
        let _ = decode_exact::<Call>(&bytes, 1024);
        let _ = decode_exact::<MerkleProof>(&bytes, 1024);
        let _ = decode_exact::<StateProof>(&bytes, 1024);
        let _ = decode_exact::<AssetInfo>(&bytes, 1024);
        let _ = decode_exact::<ValidatorSet>(&bytes, 1024);
    }

    /// Valid encodings with bytes flipped or cut: decode or fail, never panic.
    #[test]
    fn mutated_encodings_never_panic(tx in signed_tx(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let block = Block { header: Header {
            parent_hash: Hash::ZERO, number: 1, timestamp: 0, proposer: tx.signer,
            extrinsics_root: Hash::ZERO, receipts_root: Hash::ZERO, state_root: Hash::ZERO,
        }, extrinsics: vec![tx.clone(), tx.clone()] };
        for mut bytes in [tx.encode(), block.encode()] {
            for (at, byte) in &flips {
                let len = bytes.len();
                bytes[at % len] ^= byte;
            }
            let _ = SignedTx::decode_bounded(&bytes);
            let _ = Block::decode_bounded(&bytes);
            let cut = cut % (bytes.len() + 1);
            let _ = SignedTx::decode_bounded(&bytes[..cut]);
            let _ = Block::decode_bounded(&bytes[..cut]);
        }
    }
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    // A block header followed by a compact length of ~2^30 transactions and
    // nothing else: decoding must fail fast, not reserve gigabytes.
    let header = Header {
        parent_hash: Hash::ZERO,
        number: 1,
        timestamp: 0,
        proposer: AccountId([0; 32]),
        extrinsics_root: Hash::ZERO,
        receipts_root: Hash::ZERO,
        state_root: Hash::ZERO,
    };
    let mut bytes = header.encode();
    bytes.extend(parity_scale_codec::Compact(1u32 << 30).encode());
    assert!(matches!(
        Block::decode_bounded(&bytes),
        Err(DecodeError::Invalid(_))
    ));

    let mut sigs = Hash::ZERO.encode();
    sigs.splice(0..0, 0u32.encode());
    sigs.extend(parity_scale_codec::Compact(u32::MAX).encode());
    assert!(decode_exact::<Justification>(&sigs, 1024).is_err());

    assert!(matches!(
        SignedTx::decode_bounded(&vec![0u8; MAX_TX_SIZE + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        Block::decode_bounded(&vec![0u8; MAX_BLOCK_SIZE + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
}
