//! Blocks, headers, receipts and justifications.

use parity_scale_codec::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec::{decode_exact, DecodeError};
use crate::crypto::{self, Signature};
use crate::primitives::{AccountId, BlockNumber, Hash};
use crate::transaction::SignedTx;

/// Largest encoded block accepted from anywhere.
pub const MAX_BLOCK_SIZE: usize = 16 * 1024 * 1024;

/// A block header. Its hash, `SHA-256(SCALE(header))`, is the block's hash.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Hash of the previous block; zero for genesis.
    pub parent_hash: Hash,
    /// Height; genesis is 0.
    pub number: BlockNumber,
    /// Milliseconds since the Unix epoch, as the proposer saw it.
    pub timestamp: u64,
    /// The validator that built the block.
    pub proposer: AccountId,
    /// Merkle root of the transactions' hashes ([`crate::merkle`]).
    pub extrinsics_root: Hash,
    /// Merkle root of the receipts' hashes, in transaction order.
    pub receipts_root: Hash,
    /// Root of the state after the block ([`crate::smt`]).
    pub state_root: Hash,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }
}

/// A block: a header and the transactions it orders.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, in execution order.
    pub extrinsics: Vec<SignedTx>,
}

impl Block {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Decodes a block from untrusted bytes, at most [`MAX_BLOCK_SIZE`].
    pub fn decode_bounded(bytes: &[u8]) -> Result<Block, DecodeError> {
        decode_exact(bytes, MAX_BLOCK_SIZE)
    }
}

/// Why an included transaction's call had no effect.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize, thiserror::Error,
)]
#[serde(rename_all = "camelCase")]
pub enum DispatchError {
    /// The sender holds less than the amount.
    #[error("insufficient balance")]
    InsufficientBalance,
    /// No asset has that id.
    #[error("unknown asset")]
    UnknownAsset,
    /// Only the asset's issuer may do that.
    #[error("signer is not the asset's issuer")]
    NotIssuer,
    /// A balance or the supply would overflow.
    #[error("arithmetic overflow")]
    Overflow,
    /// An asset with that id exists already.
    #[error("asset id already in use")]
    AssetExists,
    /// A transfer or mint of nothing.
    #[error("amount is zero")]
    ZeroAmount,
}

/// What happened to an included transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status", content = "error")]
pub enum Outcome {
    /// The call took effect.
    Success,
    /// The call failed and changed nothing but the signer's nonce.
    Failed(DispatchError),
}

impl Outcome {
    /// Whether the call took effect.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// The record of one included transaction. Receipts are committed in the
/// header's `receipts_root`, leaf `i` being `SHA-256(SCALE(receipt i))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// Its outcome.
    pub outcome: Outcome,
}

impl Receipt {
    /// The leaf this receipt contributes to the receipts root.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }
}

/// The fixed, ordered validator set of a chain. n = 3f + 1 tolerates f faulty.
/// Never empty, never a validator twice: decoding checks both.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Serialize)]
pub struct ValidatorSet {
    validators: Vec<AccountId>,
}

impl Decode for ValidatorSet {
    fn decode<I: parity_scale_codec::Input>(
        input: &mut I,
    ) -> Result<Self, parity_scale_codec::Error> {
        ValidatorSet::new(Vec::decode(input)?)
            .ok_or_else(|| "empty or repeating validator set".into())
    }
}

impl<'de> Deserialize<'de> for ValidatorSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            validators: Vec<AccountId>,
        }
        let raw = Raw::deserialize(deserializer)?;
        ValidatorSet::new(raw.validators)
            .ok_or_else(|| serde::de::Error::custom("empty or repeating validator set"))
    }
}

impl ValidatorSet {
    /// A set of distinct validators in the given order; `None` if empty or
    /// if a validator appears twice.
    pub fn new(validators: Vec<AccountId>) -> Option<ValidatorSet> {
        let mut sorted = validators.clone();
        sorted.sort();
        sorted.dedup();
        (!validators.is_empty() && sorted.len() == validators.len())
            .then_some(ValidatorSet { validators })
    }

    /// The validators in order.
    pub fn validators(&self) -> &[AccountId] {
        &self.validators
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set is never empty.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Position of a validator in the set.
    pub fn index_of(&self, account: &AccountId) -> Option<usize> {
        self.validators.iter().position(|v| v == account)
    }

    /// Votes needed for a decision: more than two thirds, `floor(2n/3) + 1`
    /// (2f + 1 when n = 3f + 1).
    pub fn quorum(&self) -> usize {
        2 * self.validators.len() / 3 + 1
    }
}

/// Proof that a block is final: precommits for its hash from a quorum of the
/// validator set. The node builds it from the consensus decision.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Justification {
    /// The consensus round in which the block was decided.
    pub round: u32,
    /// The finalized block.
    pub block_hash: Hash,
    /// Precommit signatures over the consensus's precommit message for
    /// (height, round, block hash).
    pub signatures: Vec<(AccountId, Signature)>,
}

/// Why a justification does not prove finality.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JustificationError {
    /// It is for another block.
    #[error("justification is for block {found}, expected {expected}")]
    WrongBlock {
        /// The block it should justify.
        expected: Hash,
        /// The block it names.
        found: Hash,
    },
    /// A signer is not a validator.
    #[error("signer {0} is not a validator")]
    UnknownSigner(AccountId),
    /// A validator signed twice.
    #[error("validator {0} appears twice")]
    DuplicateSigner(AccountId),
    /// A signature does not verify.
    #[error("bad signature from {0}")]
    BadSignature(AccountId),
    /// Too few distinct validators signed.
    #[error("{found} signatures, {needed} needed")]
    NoQuorum {
        /// Signatures present.
        found: usize,
        /// The quorum.
        needed: usize,
    },
}

impl Justification {
    /// Checks that a quorum of distinct `validators` signed `message`, the
    /// precommit message the consensus defines for this block's height,
    /// round and hash (so this crate stays independent of the consensus
    /// crate's encoding), and that it names `block_hash`.
    pub fn verify(
        &self,
        block_hash: &Hash,
        validators: &ValidatorSet,
        message: &[u8],
    ) -> Result<(), JustificationError> {
        if self.block_hash != *block_hash {
            return Err(JustificationError::WrongBlock {
                expected: *block_hash,
                found: self.block_hash,
            });
        }
        let mut seen = vec![false; validators.len()];
        for (signer, _) in &self.signatures {
            let index = validators
                .index_of(signer)
                .ok_or(JustificationError::UnknownSigner(*signer))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(JustificationError::DuplicateSigner(*signer));
            }
        }
        if self.signatures.len() < validators.quorum() {
            return Err(JustificationError::NoQuorum {
                found: self.signatures.len(),
                needed: validators.quorum(),
            });
        }
        let signers: Vec<AccountId> = self.signatures.iter().map(|(a, _)| *a).collect();
        let signatures: Vec<Signature> = self.signatures.iter().map(|(_, s)| *s).collect();
        let messages = vec![message; signers.len()];
        if crypto::verify_batch(&signers, &messages, &signatures) {
            return Ok(());
        }
        for (signer, signature) in &self.signatures {
            if !crypto::verify(signer, message, signature) {
                return Err(JustificationError::BadSignature(*signer));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn set(n: usize) -> (Vec<Keypair>, ValidatorSet) {
        let keys: Vec<Keypair> = (0..n).map(|i| Keypair::dev(&format!("v{i}"))).collect();
        let set = ValidatorSet::new(keys.iter().map(Keypair::public).collect()).unwrap();
        (keys, set)
    }

    #[test]
    fn quorum_sizes() {
        for (n, q) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 3),
            (5, 4),
            (6, 5),
            (7, 5),
            (10, 7),
        ] {
            assert_eq!(set(n).1.quorum(), q, "n={n}");
        }
        assert!(ValidatorSet::new(vec![]).is_none());
        let a = Keypair::dev("a").public();
        assert!(ValidatorSet::new(vec![a, a]).is_none());
    }

    #[test]
    fn justification_needs_a_quorum_of_distinct_valid_signatures() {
        let (keys, set) = set(4);
        let block = Hash::digest(b"block");
        let message = b"precommit for block";
        let sign = |k: &Keypair| (k.public(), k.sign(message));
        let good = Justification {
            round: 0,
            block_hash: block,
            signatures: keys[..3].iter().map(sign).collect(),
        };
        assert_eq!(good.verify(&block, &set, message), Ok(()));
        assert!(matches!(
            good.verify(&Hash::ZERO, &set, message),
            Err(JustificationError::WrongBlock { .. })
        ));
        assert!(matches!(
            good.verify(&block, &set, b"another message"),
            Err(JustificationError::BadSignature(_))
        ));

        let mut short = good.clone();
        short.signatures.pop();
        assert_eq!(
            short.verify(&block, &set, message),
            Err(JustificationError::NoQuorum {
                found: 2,
                needed: 3
            })
        );

        let mut doubled = short.clone();
        doubled.signatures.push(doubled.signatures[0]);
        assert!(matches!(
            doubled.verify(&block, &set, message),
            Err(JustificationError::DuplicateSigner(_))
        ));

        let mut outsider = short.clone();
        outsider.signatures.push(sign(&Keypair::dev("mallory")));
        assert!(matches!(
            outsider.verify(&block, &set, message),
            Err(JustificationError::UnknownSigner(_))
        ));

        let mut forged = good.clone();
        forged.signatures[1].1 = keys[1].sign(b"something else");
        assert_eq!(
            forged.verify(&block, &set, message),
            Err(JustificationError::BadSignature(keys[1].public()))
        );
    }
}
