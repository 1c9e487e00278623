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
//! 4. Gossip: periodically re-send [`Core::known_messages`] to peers at the
//!    same height (at least [`Core::signed_messages`]); the protocol needs
//!    every message a correct validator has seen to reach the others. A peer
//!    behind by whole heights catches up by block sync (blocks plus
//!    justifications), then [`Input::SyncedTo`].
//! 5. After a crash: if the last persisted [`Checkpoint`] is for the height
//!    after the host's chain tip, [`Core::restore`] from it; otherwise
//!    [`Core::new`] at that height (nothing was signed there). Then
//!    [`Input::Start`].
//!
//! The core is for validators only: it signs as one member of the set. A full
//! node follows the chain by block sync and needs no core.
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
//!   limited per validator, each validator counts at most once per tally.
//!
//! # Where this goes beyond the paper
//!
//! - Block validity is asked of the host asynchronously; rules that need
//!   `valid(v)` wait for the verdict.
//! - The proposer schedules the propose timeout too, so a slow host cannot
//!   leave it in propose forever.
//! - An equivocating validator's second vote counts toward its own value
//!   (never twice toward one value) when that value can matter, as the
//!   paper's counting implies; otherwise a polka shown to one validator only
//!   can stall a height (see `vote_log`).
//! - Crash recovery (the paper has none): besides what was signed, the
//!   checkpoint keeps the polka behind the valid value and the messages that
//!   justify the current round, which peers may be unable to get from
//!   anyone else after the crash (see `checkpoint`).
//! - Round skip (l. 55) goes to the highest round with f+1 senders.

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
