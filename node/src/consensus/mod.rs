//! The consensus host: drives the pure Tendermint core of
//! `lockstep-consensus` with real time, keys, storage and a network.
//!
//! - [`Gossip`] is what validators exchange: signed proposals (with the
//!   proposed block) and signed votes. Its signatures cover the core's
//!   domain-separated signing bytes, which include the chain id.
//! - [`ConsensusNetwork`] is where the engine sends them; the dev node has
//!   no peers ([`NoNetwork`]), the libp2p service gossips them.
//! - [`engine::Engine`] is the task: it verifies incoming messages, feeds the
//!   core, carries out the core's outputs (persist, sign and send, timers,
//!   build or check a block, import the decided one with its justification).

pub mod engine;

use lockstep_consensus::{Proposal, Vote};
use lockstep_runtime::{crypto, AccountId, Block, Signature};
use parity_scale_codec::{Decode, Encode};

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

/// Why a consensus message was refused before reaching the core.
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
        named: lockstep_runtime::Hash,
        /// The hash of the carried block.
        carried: lockstep_runtime::Hash,
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
                        named: lockstep_runtime::Hash(proposal.value_id),
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

/// Where the engine sends consensus messages.
pub trait ConsensusNetwork: Send + Sync + 'static {
    /// Sends `message` to every other validator, best effort: the engine
    /// re-sends what matters, so a lost message only costs time.
    fn broadcast(&self, message: Gossip);
}

/// A network with nobody on it: a single validator's dev chain.
#[derive(Debug, Default)]
pub struct NoNetwork;

impl ConsensusNetwork for NoNetwork {
    fn broadcast(&self, _message: Gossip) {}
}
