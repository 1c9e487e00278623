//! What [`Core::handle`](crate::Core::handle) asks the host to do.
//!
//! Outputs are returned in the order they must be carried out. In particular
//! a [`Output::Persist`] always precedes the broadcast of whatever was newly
//! signed, and a [`Output::Decide`] precedes the outputs of the next height.

use parity_scale_codec::{Decode, Encode};

use crate::checkpoint::Checkpoint;
use crate::message::{Proposal, Vote};
use crate::types::{Height, Round, Step, ValueId};

/// One effect for the host to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Durably store this checkpoint, replacing the previous one, and only
    /// then carry out the next outputs. It is emitted just before the
    /// broadcast of anything newly signed; after a crash, give the last
    /// stored one to [`Core::restore`](crate::Core::restore).
    Persist(Checkpoint),
    /// Sign and gossip this proposal to all validators.
    BroadcastProposal(Proposal),
    /// Sign and gossip this vote to all validators.
    BroadcastVote(Vote),
    /// After `duration_ms`, feed back
    /// [`Input::Timeout`](crate::Input::Timeout) with the same height, round
    /// and step. Timeouts never need cancelling: stale ones are ignored.
    ScheduleTimeout {
        /// Height to report back.
        height: Height,
        /// Round to report back.
        round: Round,
        /// Step to report back.
        step: Step,
        /// How long to wait, in milliseconds.
        duration_ms: u64,
    },
    /// Check whether block `value_id` (proposed in `round`) is valid at
    /// `height`, then answer with
    /// [`Input::ValidationResult`](crate::Input::ValidationResult). Until it
    /// does, the core neither votes for the block nor decides it. Asked at
    /// most once per block and height. A host that lacks the block body
    /// answers once it has fetched it (the propose timeout covers the wait).
    ValidateValue {
        /// Height the block is for.
        height: Height,
        /// Round of the proposal carrying it.
        round: Round,
        /// The block's hash.
        value_id: ValueId,
    },
    /// This validator proposes in `(height, round)` and has no valid value
    /// to re-propose: build a block (after any pacing delay) and answer with
    /// [`Input::ProposeValue`](crate::Input::ProposeValue). An answer for a
    /// round the core has left is ignored.
    RequestValue {
        /// Height to build for.
        height: Height,
        /// Round to build for.
        round: Round,
    },
    /// `height` is decided. Commit the block; the core has moved on to
    /// `height + 1`.
    Decide(Decision),
    /// A validator signed two conflicting messages. Keep as evidence
    /// (log, metric, RPC). Reported once per slot; the equivocator never
    /// counts twice toward one quorum.
    Equivocation(Evidence),
}

/// A decided height with its justification.
///
/// The precommits are the 2f+1 (or more) counted precommits for `value_id` in
/// `round`, one per validator, in validator order. They all sign the same
/// bytes, [`Vote::precommit_signing_bytes`]`(chain_id, height, round,
/// value_id)`: the host builds the block's justification by attaching the
/// signature it stored for each of these votes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Decision {
    /// The decided height.
    pub height: Height,
    /// The round whose precommits decided it.
    pub round: Round,
    /// The decided block's hash.
    pub value_id: ValueId,
    /// The precommits that decided it.
    pub precommits: Vec<Vote>,
}

/// Proof that a validator equivocated: two messages it signed for the same
/// slot with different contents. Both carry its signature at the host.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Evidence {
    /// Two different votes of one kind for one `(height, round)`.
    DoubleVote {
        /// The vote received first; it counts.
        first: Vote,
        /// A later, conflicting vote; it counts only toward its own value,
        /// and only where that value can matter to a rule.
        second: Vote,
    },
    /// Two different proposals for one `(height, round)`.
    DoubleProposal {
        /// The proposal received first; the only one used.
        first: Proposal,
        /// A later, conflicting proposal; ignored.
        second: Proposal,
    },
}
