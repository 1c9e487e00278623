//! What the host feeds into [`Core::handle`](crate::Core::handle).

use crate::message::{Proposal, Vote};
use crate::types::{Height, Round, Step, ValueId};

/// One event for the state machine. Every variant may be given at any time,
/// in any order, any number of times: inputs that do not apply (old heights,
/// past rounds, duplicates, answers nobody asked for) are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin (or, after [`Core::restore`](crate::Core::restore), resume)
    /// driving consensus. Until then messages are recorded but no rule runs.
    /// Given once; later copies are ignored.
    Start,
    /// A proposal received from the network. The host has checked its
    /// signature against `proposal.proposer`'s key; the core checks that the
    /// signer is the proposer of its round.
    Proposal(Proposal),
    /// A vote received from the network, signature checked against
    /// `vote.validator`'s key by the host.
    Vote(Vote),
    /// A timeout the core scheduled with
    /// [`Output::ScheduleTimeout`](crate::Output::ScheduleTimeout) has fired.
    Timeout {
        /// Height it was scheduled for.
        height: Height,
        /// Round it was scheduled for.
        round: Round,
        /// Step it was scheduled for.
        step: Step,
    },
    /// The host's verdict on a block the core asked about with
    /// [`Output::ValidateValue`](crate::Output::ValidateValue).
    ValidationResult {
        /// Height of the block.
        height: Height,
        /// Round of the proposal that carried it (informative only: the
        /// verdict is about the block, whatever round proposed it).
        round: Round,
        /// The block's hash.
        value_id: ValueId,
        /// Whether the block is valid at this height.
        valid: bool,
    },
    /// The host's answer to
    /// [`Output::RequestValue`](crate::Output::RequestValue): a new block it
    /// built for `(height, round)`, which it considers valid.
    ProposeValue {
        /// Height asked for.
        height: Height,
        /// Round asked for.
        round: Round,
        /// The new block's hash.
        value_id: ValueId,
    },
    /// The host committed every height up to `height` without this core
    /// deciding it (block sync with verified justifications). The core moves
    /// to `height + 1`, round 0; nothing happens if it is already past it.
    SyncedTo {
        /// The highest height the host has committed.
        height: Height,
    },
}
