//! Crash safety: what a validator must remember so that, after a restart, it
//! never signs a message that conflicts with one it signed before.
//!
//! The [`Checkpoint`] is emitted in an [`Output::Persist`](crate::Output::Persist)
//! right before every newly signed message, so whatever left the node is
//! covered by the last stored checkpoint. It holds the round state (height,
//! round, step, lock, valid value) and the [`SignedLog`]: every proposal and
//! vote this validator signed at the height. On restore the core re-sends
//! those and refuses to sign anything else in their slots.
//!
//! Everything else received is lost in a crash and comes back through
//! gossip, except what a byzantine validator showed to this validator alone
//! and never repeats. Two such things can stall a height after a restart, so
//! the checkpoint keeps them:
//! - the polka behind the valid value: without it, the validator keeps
//!   re-proposing that value (l. 16) with a valid round nobody else can check
//!   (l. 28) while staying locked;
//! - the messages that brought it to its round (2f+1 precommits of the
//!   previous round, or f+1 messages of this one): without them, peers left
//!   behind in an earlier round may never see enough to follow it (l. 47,
//!   l. 55) while it waits for them in its round.

use std::collections::BTreeMap;

use parity_scale_codec::{Decode, Encode};

use crate::error::{CoreError, CoreResult};
use crate::message::{Message, Proposal, Vote};
use crate::types::{Height, Round, RoundValue, Step, ValidatorIndex, ValidatorSet, VoteKind};

/// The durable state of a validator at one height. SCALE-encoded by the host.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Checkpoint {
    /// Current height.
    pub height: Height,
    /// Current round.
    pub round: Round,
    /// Current step.
    pub step: Step,
    /// `lockedValue/lockedRound`, `None` for nil/−1.
    pub locked: Option<RoundValue>,
    /// `validValue/validRound`, `None` for nil/−1.
    pub valid: Option<RoundValue>,
    /// Proposals this validator signed at `height`, by round.
    pub proposals: Vec<Proposal>,
    /// Votes this validator signed at `height`, by round and kind.
    pub votes: Vec<Vote>,
    /// The 2f+1 prevotes for `valid` in its round (empty when `valid` is
    /// `None`), restored into the log so they can be gossiped again.
    pub valid_polka: Vec<Vote>,
    /// Peers' messages that justify being in `round`: the precommits of
    /// `round − 1` if there are 2f+1 of them, otherwise the messages of
    /// `round` (where f+1 validators sent some). Empty in round 0.
    pub round_evidence: Vec<Message>,
}

/// What this validator signed at its current height: at most one proposal
/// per round and one vote per `(round, kind)`. A slot once filled is never
/// signed again with other contents.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignedLog {
    proposals: BTreeMap<Round, Proposal>,
    votes: BTreeMap<(Round, VoteKind), Vote>,
}

impl SignedLog {
    /// The proposal signed for `round`, if any.
    pub(crate) fn proposal(&self, round: Round) -> Option<&Proposal> {
        self.proposals.get(&round)
    }

    /// The `kind` vote signed for `round`, if any.
    pub(crate) fn vote(&self, round: Round, kind: VoteKind) -> Option<&Vote> {
        self.votes.get(&(round, kind))
    }

    /// Fills the proposal slot of its round. The caller has checked it is empty.
    pub(crate) fn insert_proposal(&mut self, proposal: Proposal) {
        self.proposals.insert(proposal.round, proposal);
    }

    /// Fills the vote slot of its round and kind. The caller has checked it is empty.
    pub(crate) fn insert_vote(&mut self, vote: Vote) {
        self.votes.insert((vote.round, vote.kind), vote);
    }

    /// Everything signed, round by round, proposals first.
    pub(crate) fn messages(&self) -> Vec<Message> {
        let mut messages: Vec<(Round, u8, Message)> = Vec::new();
        for (round, proposal) in &self.proposals {
            messages.push((*round, 0, Message::Proposal(proposal.clone())));
        }
        for ((round, kind), vote) in &self.votes {
            let order = match kind {
                VoteKind::Prevote => 1,
                VoteKind::Precommit => 2,
            };
            messages.push((*round, order, Message::Vote(vote.clone())));
        }
        messages.sort_by_key(|(round, order, _)| (*round, *order));
        messages
            .into_iter()
            .map(|(_, _, message)| message)
            .collect()
    }

    /// The proposals, for a checkpoint.
    pub(crate) fn proposal_list(&self) -> Vec<Proposal> {
        self.proposals.values().cloned().collect()
    }

    /// The votes, for a checkpoint.
    pub(crate) fn vote_list(&self) -> Vec<Vote> {
        self.votes.values().cloned().collect()
    }

    /// Rebuilds the log from a checkpoint, refusing anything `me` cannot have
    /// signed at the checkpoint's height and round.
    pub(crate) fn from_checkpoint(
        checkpoint: &Checkpoint,
        validators: ValidatorSet,
        me: ValidatorIndex,
    ) -> CoreResult<Self> {
        let fail = |reason| CoreError::InconsistentCheckpoint {
            height: checkpoint.height,
            round: checkpoint.round,
            reason,
        };
        let past_round = |round: Option<Round>| round.is_some_and(|r| r > checkpoint.round);
        if past_round(checkpoint.locked.map(|l| l.round))
            || past_round(checkpoint.valid.map(|v| v.round))
        {
            return Err(fail("locked or valid round after the current round"));
        }
        let backs_valid = |vote: &Vote| {
            checkpoint.valid.is_some_and(|valid| {
                vote.kind == VoteKind::Prevote
                    && vote.height == checkpoint.height
                    && vote.round == valid.round
                    && vote.value_id == Some(valid.value_id)
                    && validators.contains(vote.validator)
            })
        };
        if !checkpoint.valid_polka.iter().all(backs_valid) {
            return Err(fail("a polka vote that does not back the valid value"));
        }
        let justifies_round = |message: &Message| {
            let round = message.round();
            message.height() == checkpoint.height
                && validators.contains(message.signer())
                && (round == checkpoint.round || Some(round) == checkpoint.round.checked_sub(1))
        };
        if !checkpoint.round_evidence.iter().all(justifies_round) {
            return Err(fail("round evidence from another height or round"));
        }
        let mut log = Self::default();
        for proposal in &checkpoint.proposals {
            if proposal.height != checkpoint.height
                || proposal.proposer != me
                || validators.proposer(proposal.height, proposal.round) != me
            {
                return Err(fail(
                    "a proposal not signed by this validator at this height",
                ));
            }
            if proposal.round > checkpoint.round
                || proposal.valid_round.is_some_and(|vr| vr >= proposal.round)
            {
                return Err(fail(
                    "a proposal for a later round or with a bad valid round",
                ));
            }
            match log.proposal(proposal.round) {
                Some(existing) if existing != proposal => {
                    return Err(fail("two different proposals for one round"));
                }
                _ => log.insert_proposal(proposal.clone()),
            }
        }
        for vote in &checkpoint.votes {
            if vote.height != checkpoint.height || vote.validator != me {
                return Err(fail("a vote not signed by this validator at this height"));
            }
            if vote.round > checkpoint.round {
                return Err(fail("a vote for a later round"));
            }
            match log.vote(vote.round, vote.kind) {
                Some(existing) if existing != vote => {
                    return Err(fail("two different votes for one round and kind"));
                }
                _ => log.insert_vote(vote.clone()),
            }
        }
        Ok(log)
    }
}
