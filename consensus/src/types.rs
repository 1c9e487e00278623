//! The vocabulary of the protocol: heights, rounds, validator indices, value
//! ids, steps, and the validator set with its two thresholds.

use parity_scale_codec::{Decode, Encode};

use crate::error::CoreError;

/// A position in the chain. Each height decides exactly one value.
pub type Height = u64;

/// An attempt at deciding a height. Round 0 is the first; "no round" (the
/// paper's −1) is written `Option<Round>::None`.
pub type Round = u32;

/// Index into the fixed, ordered validator set the host gave at construction.
pub type ValidatorIndex = u32;

/// Identity of a proposed value: the hash of a block. The core never sees
/// block bodies; the host keeps them and validates them on request.
pub type ValueId = [u8; 32];

/// The step of a validator inside a round (paper: `step_p`).
///
/// The derived order is the protocol order: `Propose < Prevote < Precommit`,
/// which is what "step ≥ prevote" (l. 36) compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Step {
    /// Waiting for the round's proposal.
    Propose,
    /// Prevoted; waiting for a quorum of prevotes.
    Prevote,
    /// Precommitted; waiting for a quorum of precommits or the round's end.
    Precommit,
}

/// The two kinds of vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum VoteKind {
    /// First vote of a round: "this proposal looks acceptable to me".
    Prevote,
    /// Second vote of a round: "I saw a polka for this value (or nil)".
    Precommit,
}

/// A value together with the round in which it was locked or seen valid
/// (the paper's `lockedValue/lockedRound` and `validValue/validRound` pairs,
/// which are always set and reset together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct RoundValue {
    /// The value.
    pub value_id: ValueId,
    /// The round of the polka that justified it.
    pub round: Round,
}

/// The validator set: `size` validators of equal weight, indexed `0..size`.
///
/// Only the size matters to the core; the host maps indices to keys. The
/// thresholds are the standard ones for any `n`, not only `n = 3f + 1`:
/// a quorum ("2f+1") is `floor(2n/3) + 1` distinct validators, and "f+1" is
/// `floor((n−1)/3) + 1`, enough to include at least one correct validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    size: u32,
}

impl ValidatorSet {
    /// A set of `size` validators. Fails on an empty set.
    pub fn new(size: u32) -> Result<Self, CoreError> {
        if size == 0 {
            return Err(CoreError::EmptyValidatorSet);
        }
        Ok(Self { size })
    }

    /// Number of validators, `n`.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether `index` names a member of the set.
    pub fn contains(&self, index: ValidatorIndex) -> bool {
        index < self.size
    }

    /// The largest number of byzantine validators tolerated, `f = floor((n−1)/3)`.
    pub fn max_faulty(&self) -> u32 {
        (self.size - 1) / 3
    }

    /// "2f+1": votes from this many distinct validators form a quorum;
    /// `floor(2n/3) + 1`, so two quorums always share `f + 1` validators.
    pub fn quorum(&self) -> u32 {
        let two_thirds = u64::from(self.size) * 2 / 3;
        // two_thirds < size, so the sum fits in u32.
        u32::try_from(two_thirds + 1).unwrap_or(u32::MAX)
    }

    /// "f+1": this many distinct validators include at least one correct one.
    pub fn skip_threshold(&self) -> u32 {
        self.max_faulty() + 1
    }

    /// The proposer of `(height, round)`: round-robin, `(height + round) mod n`.
    pub fn proposer(&self, height: Height, round: Round) -> ValidatorIndex {
        let n = u64::from(self.size);
        let index = (height % n + u64::from(round) % n) % n;
        // index < n ≤ u32::MAX.
        u32::try_from(index).unwrap_or(0)
    }
}
