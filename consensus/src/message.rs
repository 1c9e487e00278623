//! The signed messages validators exchange, and the exact bytes they sign.
//!
//! Signing bytes are `domain tag ‖ SCALE(chain id) ‖ SCALE(fields)`. The tag
//! separates proposals from votes (and from anything else the key signs), the
//! chain id separates networks. The signer's index is deliberately *not* part
//! of the signed bytes: the host checks the signature against the key of the
//! claimed validator, so the index is bound by the key; leaving it out makes
//! every precommit for one `(height, round, value)` sign the same bytes, so a
//! block justification is verified against one message
//! ([`Vote::precommit_signing_bytes`]).

use parity_scale_codec::{Decode, Encode};

use crate::types::{Height, Round, ValidatorIndex, ValueId, VoteKind};

/// Domain tag that starts the signing bytes of a [`Proposal`].
pub const PROPOSAL_DOMAIN: &[u8] = b"lockstep/consensus/v1/proposal";

/// Domain tag that starts the signing bytes of a [`Vote`].
pub const VOTE_DOMAIN: &[u8] = b"lockstep/consensus/v1/vote";

/// `PROPOSAL(h, r, v, vr)` from the proposer of `(h, r)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Proposal {
    /// Height being decided.
    pub height: Height,
    /// Round of the proposal.
    pub round: Round,
    /// The proposed block's hash.
    pub value_id: ValueId,
    /// `Some(vr)` when re-proposing a value that had a polka in round `vr < round`
    /// (paper l. 28); `None` (the paper's −1) for a fresh value (l. 22).
    pub valid_round: Option<Round>,
    /// Index of the validator that signed it.
    pub proposer: ValidatorIndex,
}

impl Proposal {
    /// The bytes the proposer signs and peers verify.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut bytes = PROPOSAL_DOMAIN.to_vec();
        chain_id.encode_to(&mut bytes);
        (self.height, self.round, self.value_id, self.valid_round).encode_to(&mut bytes);
        bytes
    }
}

/// `PREVOTE(h, r, id)` or `PRECOMMIT(h, r, id)`; `value_id = None` is a vote for nil.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Vote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Height being decided.
    pub height: Height,
    /// Round of the vote.
    pub round: Round,
    /// The value voted for, `None` for nil.
    pub value_id: Option<ValueId>,
    /// Index of the validator that signed it.
    pub validator: ValidatorIndex,
}

impl Vote {
    /// The bytes the voter signs and peers verify.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        Self::signing_bytes_for(chain_id, self.kind, self.height, self.round, self.value_id)
    }

    /// The signing bytes of any vote, from its fields (the voter is not part
    /// of them, see the module docs).
    pub fn signing_bytes_for(
        chain_id: &str,
        kind: VoteKind,
        height: Height,
        round: Round,
        value_id: Option<ValueId>,
    ) -> Vec<u8> {
        let mut bytes = VOTE_DOMAIN.to_vec();
        chain_id.encode_to(&mut bytes);
        (kind, height, round, value_id).encode_to(&mut bytes);
        bytes
    }

    /// The bytes every precommit for `value_id` at `(height, round)` signs:
    /// a block justification (2f+1 such precommits) is a list of
    /// `(validator, signature)` pairs all verified against these bytes.
    /// Usable without a running [`Core`](crate::Core), e.g. by block sync.
    pub fn precommit_signing_bytes(
        chain_id: &str,
        height: Height,
        round: Round,
        value_id: &ValueId,
    ) -> Vec<u8> {
        Self::signing_bytes_for(
            chain_id,
            VoteKind::Precommit,
            height,
            round,
            Some(*value_id),
        )
    }
}

/// Either consensus message, as a host would gossip it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Message {
    /// A proposal.
    Proposal(Proposal),
    /// A prevote or precommit.
    Vote(Vote),
}

impl Message {
    /// The height the message is about.
    pub fn height(&self) -> Height {
        match self {
            Self::Proposal(proposal) => proposal.height,
            Self::Vote(vote) => vote.height,
        }
    }

    /// The round the message is about.
    pub fn round(&self) -> Round {
        match self {
            Self::Proposal(proposal) => proposal.round,
            Self::Vote(vote) => vote.round,
        }
    }

    /// The validator that signed it.
    pub fn signer(&self) -> ValidatorIndex {
        match self {
            Self::Proposal(proposal) => proposal.proposer,
            Self::Vote(vote) => vote.validator,
        }
    }

    /// The bytes its signer signs.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        match self {
            Self::Proposal(proposal) => proposal.signing_bytes(chain_id),
            Self::Vote(vote) => vote.signing_bytes(chain_id),
        }
    }
}
