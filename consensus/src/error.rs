//! Errors of constructing or restoring a [`Core`](crate::Core).
//!
//! Running the state machine never fails: every network input is either used
//! or ignored. Only the host's own setup can be wrong.

use std::fmt;

use crate::types::{Height, Round, ValidatorIndex};

/// Why a [`Core`](crate::Core) could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// The validator set has no members.
    EmptyValidatorSet,
    /// This node's index is not in the validator set.
    NotAValidator {
        /// The index given for this node.
        me: ValidatorIndex,
        /// The size of the validator set.
        size: u32,
    },
    /// The checkpoint holds a message this validator cannot have signed at
    /// the checkpoint's height and round: it belongs to another node, another
    /// height or a later round, or two of them conflict. Restoring from it
    /// could lead to equivocation, so the host must not start from it.
    InconsistentCheckpoint {
        /// The checkpoint's height.
        height: Height,
        /// The checkpoint's round.
        round: Round,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyValidatorSet => write!(f, "the validator set is empty"),
            Self::NotAValidator { me, size } => {
                write!(f, "validator index {me} is outside a set of {size}")
            }
            Self::InconsistentCheckpoint {
                height,
                round,
                reason,
            } => write!(
                f,
                "checkpoint at height {height} round {round} is inconsistent: {reason}"
            ),
        }
    }
}

impl std::error::Error for CoreError {}

/// Result of constructing a [`Core`](crate::Core).
pub type CoreResult<T> = Result<T, CoreError>;
