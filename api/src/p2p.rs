//! What validators and nodes say to each other over libp2p, and the bounds
//! on every message: the peer-to-peer wire format, kept apart from the
//! node's networking so that its decoders (every one of them reads bytes
//! from strangers) can be fuzzed and reused without linking libp2p or a
//! storage engine.
//!
//! - Gossipsub topics carry a batch of transactions (SCALE `Vec<SignedTx>`
//!   of at most [`MAX_TXS_PER_GOSSIP`], [`decode_tx_batch`]), a [`Gossip`]
//!   consensus message ([`decode_gossip`]) and a [`BlockAnnouncement`]
//!   ([`decode_announcement`]).
//! - The sync protocol carries a [`SyncRequest`] ([`decode_sync_request`])
//!   and its [`SyncResponse`] ([`decode_sync_response`]), each a 4-byte
//!   big-endian length and a SCALE body; the node's codec refuses a length
//!   above the bound before reading it.
//!
//! Every decoder refuses input above its bound and input with bytes left
//! over ([`decode_exact`]).

use lockstep_consensus::{Proposal, Vote};
use lockstep_runtime::block::MAX_BLOCK_SIZE;
use lockstep_runtime::codec::{decode_exact, DecodeError};
use lockstep_runtime::{
    crypto, AccountId, Block, BlockNumber, Hash, Justification, Signature, SignedTx, MAX_TX_SIZE,
};
use parity_scale_codec::{Decode, Encode};

/// Most transactions in one gossip message.
pub const MAX_TXS_PER_GOSSIP: usize = 512;
/// Largest transactions message on gossip. A batch is sent before it would
/// grow past this, so any single transaction fits.
pub const MAX_TX_MESSAGE: usize = 128 * 1024;
const _: () = assert!(MAX_TX_MESSAGE > 2 * MAX_TX_SIZE);
/// Largest consensus message (a proposal carries a whole block).
pub const MAX_CONSENSUS_MESSAGE: usize = MAX_BLOCK_SIZE + 64 * 1024;
/// Largest block announcement (a block and its justification).
pub const MAX_BLOCK_MESSAGE: usize = MAX_BLOCK_SIZE + 64 * 1024;
/// Largest sync request.
pub const MAX_SYNC_REQUEST: usize = 1024;
/// Largest sync response: at least one whole block always fits.
pub const MAX_SYNC_RESPONSE: usize = MAX_BLOCK_SIZE + 1024 * 1024;
/// Most blocks one sync response may carry.
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 128;
/// A server stops adding blocks to a response once it holds this many
/// bytes (it always sends at least one block).
pub const SOFT_SYNC_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Transactions accepted by the local pool, waiting to be gossiped as one
/// message.
#[derive(Debug, Default)]
pub struct TxBatch {
    count: usize,
    body: Vec<u8>,
}

impl TxBatch {
    /// Adds a SCALE-encoded transaction. Returns the batch so far as a
    /// message to send first when this one would not fit beside it.
    pub fn push(&mut self, tx: &[u8]) -> Option<Vec<u8>> {
        // 5 bytes: the longest compact length prefix of the count.
        let full =
            self.count == MAX_TXS_PER_GOSSIP || 5 + self.body.len() + tx.len() > MAX_TX_MESSAGE;
        let previous = if full { self.take() } else { None };
        self.body.extend_from_slice(tx);
        self.count += 1;
        previous
    }

    /// The batch as a message (SCALE `Vec<SignedTx>`), if it holds any.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        let mut message = parity_scale_codec::Compact(count).encode();
        message.append(&mut self.body);
        self.count = 0;
        Some(message)
    }
}

/// Decodes a gossiped batch of transactions: at most [`MAX_TX_MESSAGE`]
/// bytes, at most [`MAX_TXS_PER_GOSSIP`] transactions, none larger than
/// [`MAX_TX_SIZE`].
pub fn decode_tx_batch(data: &[u8]) -> Result<Vec<SignedTx>, DecodeError> {
    let txs: Vec<SignedTx> = decode_exact(data, MAX_TX_MESSAGE)?;
    if txs.len() > MAX_TXS_PER_GOSSIP {
        return Err(DecodeError::Invalid(format!(
            "{} transactions in one message, at most {MAX_TXS_PER_GOSSIP}",
            txs.len()
        )));
    }
    if let Some(tx) = txs.iter().find(|tx| tx.encoded_size() > MAX_TX_SIZE) {
        return Err(DecodeError::TooLarge {
            size: tx.encoded_size(),
            limit: MAX_TX_SIZE,
        });
    }
    Ok(txs)
}

/// A consensus message between validators.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Gossip {
    /// A signed proposal and the block it proposes.
    Proposal {
        /// The proposal.
        proposal: Proposal,
        /// The proposer's signature over its signing bytes.
        signature: Signature,
        /// The block whose hash is `proposal.value_id`.
        block: Block,
    },
    /// A signed vote.
    Vote {
        /// The vote.
        vote: Vote,
        /// The voter's signature over its signing bytes.
        signature: Signature,
    },
}

/// Why a consensus message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The claimed signer is not in the validator set.
    #[error("signer index {0} is not a validator")]
    UnknownSigner(u32),
    /// The signature does not verify (or is for another chain).
    #[error("bad signature")]
    BadSignature,
    /// The proposal's block is not the block it names.
    #[error("proposal names block {named} but carries {carried}")]
    BlockMismatch {
        /// `proposal.value_id`.
        named: Hash,
        /// The hash of the carried block.
        carried: Hash,
    },
}

impl Gossip {
    /// Checks the signature against the claimed signer's key (and, for a
    /// proposal, that the block is the one named).
    pub fn verify(&self, chain_id: &str, validators: &[AccountId]) -> Result<(), GossipError> {
        let (signer, bytes, signature) = match self {
            Gossip::Proposal {
                proposal,
                signature,
                block,
            } => {
                let carried = block.hash();
                if carried.0 != proposal.value_id {
                    return Err(GossipError::BlockMismatch {
                        named: Hash(proposal.value_id),
                        carried,
                    });
                }
                (
                    proposal.proposer,
                    proposal.signing_bytes(chain_id),
                    signature,
                )
            }
            Gossip::Vote { vote, signature } => {
                (vote.validator, vote.signing_bytes(chain_id), signature)
            }
        };
        let key = validators
            .get(signer as usize)
            .ok_or(GossipError::UnknownSigner(signer))?;
        if crypto::verify(key, &bytes, signature) {
            Ok(())
        } else {
            Err(GossipError::BadSignature)
        }
    }
}

/// Decodes a consensus message: at most [`MAX_CONSENSUS_MESSAGE`] bytes.
pub fn decode_gossip(data: &[u8]) -> Result<Gossip, DecodeError> {
    decode_exact(data, MAX_CONSENSUS_MESSAGE)
}

/// A finalized block as announced on the blocks topic.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BlockAnnouncement {
    /// The block.
    pub block: Block,
    /// Its justification.
    pub justification: Justification,
}

/// Decodes a block announcement: at most [`MAX_BLOCK_MESSAGE`] bytes.
pub fn decode_announcement(data: &[u8]) -> Result<BlockAnnouncement, DecodeError> {
    decode_exact(data, MAX_BLOCK_MESSAGE)
}

/// A request on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncRequest {
    /// The peer's chain and finalized head.
    Status,
    /// Finalized blocks `from ..= from + count - 1` (fewer if the peer has
    /// fewer, or the response would be too large).
    Blocks {
        /// The first block number.
        from: BlockNumber,
        /// How many, at most [`MAX_BLOCKS_PER_RESPONSE`].
        count: u32,
    },
}

/// Decodes a sync request's body: at most [`MAX_SYNC_REQUEST`] bytes.
pub fn decode_sync_request(data: &[u8]) -> Result<SyncRequest, DecodeError> {
    decode_exact(data, MAX_SYNC_REQUEST)
}

/// A response on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncResponse {
    /// Answer to [`SyncRequest::Status`].
    Status {
        /// The peer's genesis hash.
        genesis: Hash,
        /// Its finalized height.
        finalized_number: BlockNumber,
        /// Its finalized head's hash.
        finalized_hash: Hash,
    },
    /// Answer to [`SyncRequest::Blocks`]: consecutive blocks from `from`.
    Blocks(Vec<BlockAnnouncement>),
}

/// Decodes a sync response's body: at most [`MAX_SYNC_RESPONSE`] bytes.
pub fn decode_sync_response(data: &[u8]) -> Result<SyncResponse, DecodeError> {
    decode_exact(data, MAX_SYNC_RESPONSE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::{Call, Keypair, SigningContext};

    fn tx(nonce: u64) -> SignedTx {
        let call = Call::Transfer {
            asset: 1,
            to: Keypair::dev("bob").public(),
            amount: 1,
            reference: None,
        };
        let context = SigningContext::new(Hash([1; 32]));
        SignedTx::sign(&Keypair::dev("alice"), &context, nonce, 100, call)
    }

    #[test]
    fn a_tx_batch_fills_up_then_starts_again_and_round_trips() {
        let mut batch = TxBatch::default();
        assert_eq!(batch.take(), None);
        let txs: Vec<SignedTx> = (0..MAX_TXS_PER_GOSSIP as u64 + 3).map(tx).collect();
        let mut sent = Vec::new();
        for tx in &txs {
            sent.extend(batch.push(&tx.encode()));
        }
        sent.extend(batch.take());
        assert_eq!(sent.len(), 2, "one full batch, then the rest");
        let decoded: Vec<SignedTx> = sent
            .iter()
            .flat_map(|message| decode_tx_batch(message).unwrap())
            .collect();
        assert_eq!(decoded, txs);
        assert!(sent.iter().all(|m| m.len() <= MAX_TX_MESSAGE));
    }

    #[test]
    fn bad_tx_batches_are_refused() {
        assert!(decode_tx_batch(&[0xff; 40]).is_err());
        assert!(decode_tx_batch(&vec![0u8; MAX_TX_MESSAGE + 1]).is_err());
        let too_many: Vec<SignedTx> = (0..MAX_TXS_PER_GOSSIP as u64 + 1).map(tx).collect();
        assert!(decode_tx_batch(&too_many.encode()).is_err());
        let mut trailing = vec![tx(0)].encode();
        trailing.push(0);
        assert!(decode_tx_batch(&trailing).is_err());
    }

    #[test]
    fn sync_messages_round_trip_and_refuse_trailing_bytes() {
        let request = SyncRequest::Blocks { from: 5, count: 9 };
        assert_eq!(decode_sync_request(&request.encode()), Ok(request.clone()));
        let mut trailing = request.encode();
        trailing.push(0);
        assert_eq!(
            decode_sync_request(&trailing),
            Err(DecodeError::TrailingBytes)
        );
        assert!(decode_sync_request(&[0u8; MAX_SYNC_REQUEST + 1]).is_err());
        let response = SyncResponse::Status {
            genesis: Hash([3; 32]),
            finalized_number: 7,
            finalized_hash: Hash([4; 32]),
        };
        assert_eq!(decode_sync_response(&response.encode()), Ok(response));
    }
}
