//! What proves each event's outcome, written in the batch that moves it.
//!
//! - `blocks` (block hash → SCALE `(Header, Justification)`): a verified
//!   block's justified header, written once per block whatever number of
//!   its events move;
//! - `proofs` (event id → SCALE [`ProofRecord`]): the event's receipt, its
//!   Merkle path under the header's `receipts_root` and the transfer's own
//!   bytes.
//!
//! SCALE rather than the store's JSON: these are chain types with a fixed
//! encoding already (the header's hash is over it), and a Merkle path in
//! hex JSON would double the bytes per event. Both are read only by
//! [`EventStore::proof`], which joins them into the API's
//! [`EventProof`].

use std::collections::HashSet;
use std::sync::Arc;

use lockstep_api::proof::EventProof;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{merkle::MerkleProof, Hash, Header, Justification, Receipt};
use parity_scale_codec::{Decode, Encode};

use super::{EventStore, Pending, StoreError, StoreResult, CF_BLOCKS, CF_PROOFS};

/// A verified block's justified header, shared by the moves of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenBlock {
    /// The header; its hash is the block's.
    pub header: Header,
    /// The validators' precommits for it, verified against the chain spec.
    pub justification: Justification,
    /// `header.hash()`.
    pub hash: Hash,
}

/// One event's proof as a move carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveProof {
    /// The block.
    pub block: Arc<ProvenBlock>,
    /// The transfer's receipt.
    pub receipt: Receipt,
    /// Its path under `block.header.receipts_root`.
    pub receipt_proof: MerkleProof,
    /// The transfer's bytes.
    pub extrinsic: Vec<u8>,
}

/// The `proofs` value.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct ProofRecord {
    block_hash: Hash,
    receipt: Receipt,
    receipt_proof: MerkleProof,
    extrinsic: Vec<u8>,
}

/// Most bytes a stored record may hold when read back: far above any real
/// one (a header, a justification of a few hundred validators, a path of
/// 64 hashes, a transaction), so a corrupt length cannot ask for more.
const MAX_RECORD: usize = 1 << 20;

fn decode_scale<T: Decode>(what: &str, bytes: &[u8]) -> StoreResult<T> {
    if bytes.len() > MAX_RECORD {
        return Err(StoreError::Corrupt(format!(
            "{what}: {} bytes",
            bytes.len()
        )));
    }
    let mut input = bytes;
    let value = T::decode(&mut input).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    if !input.is_empty() {
        return Err(StoreError::Corrupt(format!("{what}: trailing bytes")));
    }
    Ok(value)
}

impl EventStore {
    /// Stages `proof` as event `id`'s, and its block once per batch
    /// (`blocks_staged` remembers which).
    pub(super) fn stage_proof(
        &self,
        pending: &mut Pending,
        blocks_staged: &mut HashSet<Hash>,
        id: &str,
        proof: &MoveProof,
    ) -> StoreResult<()> {
        let block = &proof.block;
        if blocks_staged.insert(block.hash) {
            pending.batch.put_cf(
                self.cf(CF_BLOCKS)?,
                block.hash.0,
                (&block.header, &block.justification).encode(),
            );
        }
        let record = ProofRecord {
            block_hash: block.hash,
            receipt: proof.receipt,
            receipt_proof: proof.receipt_proof.clone(),
            extrinsic: proof.extrinsic.clone(),
        };
        pending
            .batch
            .put_cf(self.cf(CF_PROOFS)?, id, record.encode());
        Ok(())
    }

    /// What proves event `id`'s outcome; none when it has no proof (not
    /// found, Registered, Cancelled as expired, or moved by a version
    /// that kept none).
    pub fn proof(&self, id: &str) -> StoreResult<Option<EventProof>> {
        let Some(bytes) = self.db.get_cf(self.cf(CF_PROOFS)?, id)? else {
            return Ok(None);
        };
        let record: ProofRecord = decode_scale("proof", &bytes)?;
        let Some(block) = self.db.get_cf(self.cf(CF_BLOCKS)?, record.block_hash.0)? else {
            return Err(StoreError::Corrupt(format!(
                "the proof of {id:?} names block {} which is not stored",
                record.block_hash
            )));
        };
        let (header, justification): (Header, Justification) = decode_scale("block", &block)?;
        Ok(Some(EventProof {
            event_id: id.to_owned(),
            header,
            justification,
            receipt: record.receipt,
            receipt_proof: record.receipt_proof,
            extrinsic: to_hex(&record.extrinsic),
        }))
    }
}
