//! # lockstep-consensus
//!
//! Tendermint (Buchman, Kwon, Milosevic 2018, "The latest gossip on BFT
//! consensus", Algorithm 1) as a pure state machine: inputs in, outputs out,
//! no I/O, no clock, no threads, no randomness. The host (the node) does the
//! networking, signing, timers, block validation and storage; the core only
//! decides which value id (block hash) each height commits.
//!
//! # Where to start reading
//!
//! [`Core`] in `state_machine.rs`: [`Core::handle`] takes one [`Input`] and
//! returns the [`Output`]s to carry out, in order. Its module docs list the
//! rules with the paper's line numbers.
//!
//! # Layout
//!
//! - `types`: heights, rounds, value ids, steps, [`ValidatorSet`] (its
//!   thresholds and round-robin proposer).
//! - `message`: [`Proposal`], [`Vote`] and their signing bytes.
//! - `input` / `output`: the [`Input`] and [`Output`] enums, [`Decision`]
//!   (a decided height and its justification) and [`Evidence`].
//! - `config`: timeouts growing with the round.
//! - `vote_log`: per-height bookkeeping of received messages: tallies,
//!   equivocation detection, memory bounds.
//! - `checkpoint`: [`Checkpoint`], what must survive a crash.
//! - `state_machine`: the rules.
//! - `tests` (test builds only): a driver for one core, tests per rule, and
//!   a deterministic multi-validator simulation with faults.
//!
//! # Driving a core
//!
//! 1. Build it with [`Core::new`] at the next height to decide (or
//!    [`Core::restore`] from the last persisted [`Checkpoint`]), then give
//!    [`Input::Start`].
//! 2. Feed every proposal and vote received, after checking its signature
//!    against the claimed signer's key and the chain id; other heights,
//!    duplicates and non-members are ignored by the core, so no further
//!    filtering is needed.
//! 3. Carry out the outputs in order: [`Output::Persist`] durably *before*
//!    the broadcasts that follow it; sign and gossip broadcasts; arm timers
//!    for [`Output::ScheduleTimeout`] and feed back [`Input::Timeout`];
//!    answer [`Output::ValidateValue`] with [`Input::ValidationResult`] and
//!    [`Output::RequestValue`] with [`Input::ProposeValue`] (after any
//!    block-time pacing); on [`Output::Decide`] commit the block with the
//!    stored signatures of [`Decision::precommits`] as its justification
//!    (they all sign [`Vote::precommit_signing_bytes`]).
//! 4. Gossip: periodically re-send [`Core::known_messages`] (or at least
//!    [`Core::signed_messages`]); a peer behind by whole heights catches up
//!    by block sync, then [`Input::SyncedTo`].
//!
//! # Invariants
//!
//! - Safety: never two different values decided at one height by correct
//!   validators, whatever the network does, with at most f byzantine.
//! - No equivocation, even across crashes: at most one proposal per round
//!   and one vote per `(round, kind)` at a height, and every new signature
//!   is preceded by a persisted checkpoint that records it.
//! - No panic and bounded memory on any input: heights other than the
//!   current and next one are dropped, rounds ahead of the current one are
//!   limited per validator, each validator counts once per tally.

mod checkpoint;
mod config;
mod error;
mod input;
mod message;
mod output;
mod state_machine;
mod types;
mod vote_log;

#[cfg(test)]
mod tests;

pub use checkpoint::Checkpoint;
pub use config::{Config, TimeoutSchedule};
pub use error::{CoreError, CoreResult};
pub use input::Input;
pub use message::{Message, Proposal, Vote, PROPOSAL_DOMAIN, VOTE_DOMAIN};
pub use output::{Decision, Evidence, Output};
pub use state_machine::Core;
pub use types::{Height, Round, RoundValue, Step, ValidatorIndex, ValidatorSet, ValueId, VoteKind};
