//! Signed transactions (extrinsics) and the calls they carry.
//!
//! A [`SignedTx`] is `{signer, nonce, valid_until, call, signature}`, SCALE
//! encoded in that order. The signature covers a domain-separated payload:
//!
//! ```text
//! "lockstep/tx/v1" ‖ genesis_hash ‖ spec_version (u32 LE) ‖ SCALE(signer, nonce, valid_until, call)
//! ```
//!
//! so a transaction cannot be replayed on another chain (other genesis) or
//! after a runtime upgrade (other spec version). `tx_hash = SHA-256(SCALE(tx))`.

use parity_scale_codec::{Compact, Decode, Encode, Input};
use serde::{Deserialize, Serialize};

use crate::codec::{decode_exact, DecodeError};
use crate::crypto::{self, Keypair, Signature};
use crate::primitives::{balance_string, AccountId, AssetId, Balance, BlockNumber, Hash, Nonce};

/// Version of the state-transition rules. Part of every signature, so bumping
/// it invalidates transactions signed for the old rules.
pub const SPEC_VERSION: u32 = 1;

/// Largest encoded transaction accepted anywhere (pool, block, RPC).
pub const MAX_TX_SIZE: usize = 1024;

/// Longest asset name, in bytes of UTF-8.
pub const MAX_ASSET_NAME: usize = 32;

/// Domain tag that starts every transaction signing payload.
const TX_DOMAIN: &[u8] = b"lockstep/tx/v1";

/// What a signature binds a transaction to: the chain (by its genesis hash)
/// and the rules (by spec version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningContext {
    /// Hash of the chain's genesis block.
    pub genesis_hash: Hash,
    /// The runtime's [`SPEC_VERSION`].
    pub spec_version: u32,
}

impl SigningContext {
    /// The context of the chain with this genesis under the current rules.
    pub fn new(genesis_hash: Hash) -> SigningContext {
        SigningContext {
            genesis_hash,
            spec_version: SPEC_VERSION,
        }
    }
}

/// The name of an asset: UTF-8, at most [`MAX_ASSET_NAME`] bytes. Decoding
/// enforces the bound before allocating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetName(String);

/// Why an asset name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetNameError {
    /// Longer than [`MAX_ASSET_NAME`] bytes.
    #[error("asset name is {0} bytes; at most {MAX_ASSET_NAME} are allowed")]
    TooLong(usize),
    /// Empty.
    #[error("asset name is empty")]
    Empty,
}

impl AssetName {
    /// Checks the bounds.
    pub fn new(name: impl Into<String>) -> Result<AssetName, AssetNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(AssetNameError::Empty);
        }
        if name.len() > MAX_ASSET_NAME {
            return Err(AssetNameError::TooLong(name.len()));
        }
        Ok(AssetName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AssetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AssetName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        AssetName::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Encode for AssetName {
    fn size_hint(&self) -> usize {
        self.0.as_bytes().size_hint()
    }

    fn encode_to<T: parity_scale_codec::Output + ?Sized>(&self, dest: &mut T) {
        self.0.as_bytes().encode_to(dest);
    }
}

impl Decode for AssetName {
    fn decode<I: Input>(input: &mut I) -> Result<Self, parity_scale_codec::Error> {
        let len = Compact::<u32>::decode(input)?.0 as usize;
        if len == 0 || len > MAX_ASSET_NAME {
            return Err("asset name length out of bounds".into());
        }
        let mut bytes = vec![0u8; len];
        input.read(&mut bytes)?;
        let name = String::from_utf8(bytes).map_err(|_| "asset name is not UTF-8")?;
        Ok(AssetName(name))
    }
}

/// What a transaction asks the chain to do.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Call {
    /// Move `amount` of `asset` from the signer to `to`. `reference` is an
    /// opaque 32 bytes the chain stores nothing of but includes in the tx
    /// hash (for example the off-chain event it belongs to).
    #[codec(index = 0)]
    Transfer {
        /// The asset.
        asset: AssetId,
        /// The recipient.
        to: AccountId,
        /// How much.
        #[serde(with = "balance_string")]
        amount: Balance,
        /// Optional caller's reference.
        #[serde(default)]
        reference: Option<Hash>,
    },
    /// Create a new asset `id`, with the signer as its issuer and no supply.
    #[codec(index = 1)]
    CreateAsset {
        /// A new, unused id.
        id: AssetId,
        /// Display name.
        name: AssetName,
        /// Decimal places for display.
        decimals: u8,
    },
    /// Issue `amount` new units of `asset` to `to`. Only the issuer may.
    #[codec(index = 2)]
    Mint {
        /// The asset.
        asset: AssetId,
        /// The recipient.
        to: AccountId,
        /// How much.
        #[serde(with = "balance_string")]
        amount: Balance,
    },
}

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SignedTx {
    /// Who signs and pays; also the account whose nonce is used.
    pub signer: AccountId,
    /// Must equal the signer's next nonce when the tx is included.
    pub nonce: Nonce,
    /// Last block number at which the tx may be included (a mortal tx).
    pub valid_until: BlockNumber,
    /// What to do.
    pub call: Call,
    /// Signature over [`SignedTx::signing_payload`].
    pub signature: Signature,
}

impl SignedTx {
    /// Builds and signs a transaction.
    pub fn sign(
        key: &Keypair,
        context: &SigningContext,
        nonce: Nonce,
        valid_until: BlockNumber,
        call: Call,
    ) -> SignedTx {
        let signer = key.public();
        let payload = signing_payload(context, &signer, nonce, valid_until, &call);
        let signature = key.sign(&payload);
        SignedTx {
            signer,
            nonce,
            valid_until,
            call,
            signature,
        }
    }

    /// The bytes the signature covers.
    pub fn signing_payload(&self, context: &SigningContext) -> Vec<u8> {
        signing_payload(
            context,
            &self.signer,
            self.nonce,
            self.valid_until,
            &self.call,
        )
    }

    /// Whether the signature is valid for this chain and spec version.
    pub fn verify_signature(&self, context: &SigningContext) -> bool {
        crypto::verify(
            &self.signer,
            &self.signing_payload(context),
            &self.signature,
        )
    }

    /// `SHA-256(SCALE(tx))`: the transaction's identity everywhere.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }

    /// Decodes a transaction from untrusted bytes: at most [`MAX_TX_SIZE`]
    /// bytes, every byte consumed, never a panic.
    pub fn decode_bounded(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        decode_exact(bytes, MAX_TX_SIZE)
    }
}

fn signing_payload(
    context: &SigningContext,
    signer: &AccountId,
    nonce: Nonce,
    valid_until: BlockNumber,
    call: &Call,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(TX_DOMAIN.len() + 36 + 48 + call.size_hint());
    payload.extend_from_slice(TX_DOMAIN);
    payload.extend_from_slice(&context.genesis_hash.0);
    payload.extend_from_slice(&context.spec_version.to_le_bytes());
    signer.encode_to(&mut payload);
    nonce.encode_to(&mut payload);
    valid_until.encode_to(&mut payload);
    call.encode_to(&mut payload);
    payload
}

/// The one expiry rule: whether a transaction valid until `valid_until`
/// (the last block number at which it may be included, a mortal
/// transaction) may be included in the block at `height`. Block execution
/// and the pool judge by it.
pub fn includable_at(valid_until: BlockNumber, height: BlockNumber) -> bool {
    height <= valid_until
}

/// Whether a transaction that a node reports not included, with `finalized`
/// as its finalized height, can never be included any more. Judged one
/// block late on purpose (`finalized > valid_until`, although no block
/// after `valid_until` can include it): a status read taken a moment before
/// the import of block `valid_until` must not call it expired. The event
/// system's confirmer, the CLI, the bench and the audit all judge by it.
pub fn expired_after(valid_until: BlockNumber, finalized: BlockNumber) -> bool {
    !includable_at(valid_until, finalized)
}

/// The one validity-window rule: whether a transaction valid until
/// `valid_until` may be accepted while the chain's head is `head`, on a
/// chain whose spec allows `max_validity` blocks
/// ([`ChainSpec::max_validity_blocks`](crate::ChainSpec::max_validity_blocks)).
/// The pool and the event system judge by it.
pub fn within_validity_window(
    valid_until: BlockNumber,
    head: BlockNumber,
    max_validity: u64,
) -> bool {
    valid_until <= head.saturating_add(max_validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validity_window_ends_max_validity_blocks_past_the_head() {
        assert!(within_validity_window(110, 10, 100));
        assert!(!within_validity_window(111, 10, 100));
        assert!(within_validity_window(u64::MAX, u64::MAX - 1, 100));
        assert!(!within_validity_window(u64::MAX, 0, 100));
    }

    fn context() -> SigningContext {
        SigningContext::new(Hash::digest(b"genesis"))
    }

    fn transfer() -> Call {
        Call::Transfer {
            asset: 1,
            to: Keypair::dev("bob").public(),
            amount: 10,
            reference: Some(Hash([9; 32])),
        }
    }

    #[test]
    fn signature_binds_chain_and_spec_version() {
        let tx = SignedTx::sign(&Keypair::dev("alice"), &context(), 0, 100, transfer());
        assert!(tx.verify_signature(&context()));
        let other_chain = SigningContext::new(Hash::digest(b"other genesis"));
        assert!(!tx.verify_signature(&other_chain));
        let upgraded = SigningContext {
            spec_version: SPEC_VERSION + 1,
            ..context()
        };
        assert!(!tx.verify_signature(&upgraded));
    }

    #[test]
    fn every_field_is_signed() {
        let tx = SignedTx::sign(&Keypair::dev("alice"), &context(), 0, 100, transfer());
        let mut changed = vec![tx.clone(), tx.clone(), tx.clone(), tx.clone()];
        changed[0].nonce += 1;
        changed[1].valid_until += 1;
        changed[2].signer = Keypair::dev("bob").public();
        changed[3].call = Call::Transfer {
            asset: 1,
            to: Keypair::dev("bob").public(),
            amount: 11,
            reference: Some(Hash([9; 32])),
        };
        for tampered in changed {
            assert!(!tampered.verify_signature(&context()));
            assert_ne!(tampered.hash(), tx.hash());
        }
    }

    #[test]
    fn decode_bounded_rejects_trailing_and_oversized_input() {
        let tx = SignedTx::sign(&Keypair::dev("alice"), &context(), 3, 100, transfer());
        let bytes = tx.encode();
        assert_eq!(SignedTx::decode_bounded(&bytes).unwrap(), tx);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            SignedTx::decode_bounded(&trailing),
            Err(DecodeError::TrailingBytes)
        );
        assert!(matches!(
            SignedTx::decode_bounded(&vec![0; MAX_TX_SIZE + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            SignedTx::decode_bounded(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn asset_name_bounds() {
        assert!(AssetName::new("LOCK").is_ok());
        assert_eq!(AssetName::new(""), Err(AssetNameError::Empty));
        assert_eq!(
            AssetName::new("x".repeat(33)),
            Err(AssetNameError::TooLong(33))
        );
        // A huge declared length is refused before anything is allocated.
        let mut bytes = Compact(u32::MAX).encode();
        bytes.extend_from_slice(b"abc");
        assert!(AssetName::decode(&mut &bytes[..]).is_err());
        let invalid_utf8 = [Compact(2u32).encode(), vec![0xff, 0xfe]].concat();
        assert!(AssetName::decode(&mut &invalid_utf8[..]).is_err());
    }

    #[test]
    fn json_view_is_readable() {
        let tx = SignedTx::sign(&Keypair::dev("alice"), &context(), 0, 100, transfer());
        let json = serde_json::to_value(&tx).unwrap();
        assert_eq!(json["call"]["type"], "transfer");
        assert_eq!(json["call"]["amount"], "10");
        let back: SignedTx = serde_json::from_value(json).unwrap();
        assert_eq!(back, tx);
    }
}
