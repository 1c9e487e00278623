//! Timeout configuration.
//!
//! Every timeout grows linearly with the round, `base + round × delta`
//! (saturating), so that after GST some round lasts long enough for correct
//! validators to hear each other: that growth is what liveness rests on.

use crate::types::{Round, Step};

/// One timeout's schedule: `base_ms + round × delta_ms`, saturating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutSchedule {
    /// Duration in round 0, in milliseconds.
    pub base_ms: u64,
    /// Added for every further round, in milliseconds.
    pub delta_ms: u64,
}

impl TimeoutSchedule {
    /// The duration of this timeout in `round`.
    pub fn duration_ms(&self, round: Round) -> u64 {
        self.base_ms
            .saturating_add(self.delta_ms.saturating_mul(u64::from(round)))
    }
}

/// Configuration of a [`Core`](crate::Core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long to wait for a round's proposal before prevoting nil (l. 57).
    ///
    /// The proposer schedules it too: a host that paces block production
    /// must answer [`Output::RequestValue`](crate::Output::RequestValue)
    /// well within it, or its own round will see nil prevotes.
    pub propose: TimeoutSchedule,
    /// How long to wait, after any 2f+1 prevotes, for a polka before
    /// precommitting nil (l. 34, l. 61).
    pub prevote: TimeoutSchedule,
    /// How long to wait, after any 2f+1 precommits, for a decision before
    /// moving to the next round (l. 47, l. 65).
    pub precommit: TimeoutSchedule,
}

impl Config {
    /// The duration of the timeout for `step` in `round`.
    pub fn timeout_ms(&self, step: Step, round: Round) -> u64 {
        match step {
            Step::Propose => self.propose.duration_ms(round),
            Step::Prevote => self.prevote.duration_ms(round),
            Step::Precommit => self.precommit.duration_ms(round),
        }
    }
}

impl Default for Config {
    /// Tendermint's customary values: 3 s to propose, 1 s for each vote
    /// step, and half a second more per round for each.
    fn default() -> Self {
        Self {
            propose: TimeoutSchedule {
                base_ms: 3_000,
                delta_ms: 500,
            },
            prevote: TimeoutSchedule {
                base_ms: 1_000,
                delta_ms: 500,
            },
            precommit: TimeoutSchedule {
                base_ms: 1_000,
                delta_ms: 500,
            },
        }
    }
}
