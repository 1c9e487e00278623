//! Bookkeeping of the messages received for one height: per round, the
//! proposal and the prevotes and precommits, with the tallies the rules ask
//! about.
//!
//! # Counting
//!
//! Each validator counts at most once toward any one tally:
//! - "any 2f+1" (l. 34, l. 47) and "f+1 messages of round r" (l. 55) count
//!   distinct validators, whatever they voted;
//! - "2f+1 for value x" counts distinct validators that voted x.
//!
//! A validator that signs two different votes for one `(round, kind)` is
//! reported once as [`Evidence::DoubleVote`]. Its first vote counts. Its later
//! vote is kept, and counts toward *its own value*, only when that value can
//! matter to a rule: nil, the round's proposed value, or (for prevotes) a
//! value re-proposed with this round as its valid round. Counting it there is
//! safe (two quorums for different values in one round still need a correct
//! validator to vote twice) and it is what the paper counts: without it, an
//! equivocator that showed a polka to one correct validator only can leave
//! that validator locked on a value nobody else will ever accept (l. 28),
//! and the height never decides.
//!
//! # Bounds
//!
//! Memory stays proportional to `n × rounds really reached`, whatever
//! byzantine validators send:
//! - per round, a validator holds one proposal (if it proposes that round),
//!   one first vote per kind, and conflicting votes only for the bounded set
//!   of values that matter;
//! - rounds at or below the owner's current round (the *horizon*) are only
//!   reached through correct validators (a round is entered by timeout or by
//!   f+1 senders), so there are few of them;
//! - above the horizon, each validator occupies at most
//!   [`FUTURE_ROUNDS_PER_VALIDATOR`] rounds: a message for a higher round
//!   evicts that validator's messages from its lowest future round, a lower
//!   one is dropped. Keeping the highest rounds lets a lagging validator see
//!   f+1 senders in the round the others are really in and skip there (l. 55).

use std::collections::{BTreeMap, BTreeSet};

use crate::message::{Message, Proposal, Vote};
use crate::output::Evidence;
use crate::types::{Height, Round, ValidatorIndex, ValidatorSet, ValueId, VoteKind};

/// How many rounds above the horizon one validator may have messages in.
pub(crate) const FUTURE_ROUNDS_PER_VALIDATOR: usize = 4;

/// What recording a message did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The message was new and now counts toward some tally.
    pub(crate) counted: bool,
    /// The message revealed an equivocation (reported once per slot).
    pub(crate) evidence: Option<Evidence>,
}

impl Recorded {
    const IGNORED: Self = Self {
        counted: false,
        evidence: None,
    };
    const COUNTED: Self = Self {
        counted: true,
        evidence: None,
    };
}

/// The votes of one kind in one round.
#[derive(Debug, Default)]
pub(crate) struct VoteSet {
    /// Each validator's first vote.
    first: BTreeMap<ValidatorIndex, Vote>,
    /// Later, conflicting votes that can matter, keyed by signer and value.
    conflicting: BTreeMap<(ValidatorIndex, Option<ValueId>), Vote>,
    /// Distinct validators per value, over `first` and `conflicting`.
    tally: BTreeMap<Option<ValueId>, u32>,
    /// Validators already reported as equivocating here.
    reported: BTreeSet<ValidatorIndex>,
}

impl VoteSet {
    /// Distinct validators that voted, whatever for.
    pub(crate) fn total(&self) -> u32 {
        u32::try_from(self.first.len()).unwrap_or(u32::MAX)
    }

    /// Distinct validators that voted for `value`.
    pub(crate) fn count(&self, value: Option<ValueId>) -> u32 {
        self.tally.get(&value).copied().unwrap_or(0)
    }

    /// The counted votes for `value`, one per validator, in validator order.
    pub(crate) fn votes_for(&self, value: Option<ValueId>) -> Vec<Vote> {
        let mut by_validator: BTreeMap<ValidatorIndex, &Vote> = BTreeMap::new();
        for vote in self.first.values().filter(|vote| vote.value_id == value) {
            by_validator.insert(vote.validator, vote);
        }
        for ((validator, _), vote) in self.conflicting.iter().filter(|(key, _)| key.1 == value) {
            by_validator.insert(*validator, vote);
        }
        by_validator.into_values().cloned().collect()
    }

    fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    fn first_of(&self, validator: ValidatorIndex) -> Option<&Vote> {
        self.first.get(&validator)
    }

    fn holds(&self, vote: &Vote) -> bool {
        self.first.get(&vote.validator) == Some(vote)
            || self
                .conflicting
                .contains_key(&(vote.validator, vote.value_id))
    }

    fn insert_first(&mut self, vote: Vote) {
        *self.tally.entry(vote.value_id).or_default() += 1;
        self.first.insert(vote.validator, vote);
    }

    fn insert_conflicting(&mut self, vote: Vote) {
        *self.tally.entry(vote.value_id).or_default() += 1;
        self.conflicting
            .insert((vote.validator, vote.value_id), vote);
    }

    /// Whether `validator` is reported for the first time.
    fn report(&mut self, validator: ValidatorIndex) -> bool {
        self.reported.insert(validator)
    }

    fn remove_validator(&mut self, validator: ValidatorIndex) {
        let mut removed: Vec<Option<ValueId>> = Vec::new();
        if let Some(vote) = self.first.remove(&validator) {
            removed.push(vote.value_id);
        }
        let keys: Vec<_> = self
            .conflicting
            .range((validator, None)..)
            .take_while(|(key, _)| key.0 == validator)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            self.conflicting.remove(&key);
            removed.push(key.1);
        }
        for value in removed {
            if let Some(count) = self.tally.get_mut(&value) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.tally.remove(&value);
                }
            }
        }
    }

    fn messages(&self) -> impl Iterator<Item = &Vote> {
        self.first.values().chain(self.conflicting.values())
    }
}

/// Everything received for one round.
#[derive(Debug, Default)]
pub(crate) struct RoundLog {
    /// The first proposal from the round's proposer.
    pub(crate) proposal: Option<Proposal>,
    proposal_reported: bool,
    /// Prevotes of the round.
    pub(crate) prevotes: VoteSet,
    /// Precommits of the round.
    pub(crate) precommits: VoteSet,
    /// Validators with any counted message in the round (l. 55).
    senders: BTreeSet<ValidatorIndex>,
}

impl RoundLog {
    /// The votes of `kind`.
    pub(crate) fn votes(&self, kind: VoteKind) -> &VoteSet {
        match kind {
            VoteKind::Prevote => &self.prevotes,
            VoteKind::Precommit => &self.precommits,
        }
    }

    fn votes_mut(&mut self, kind: VoteKind) -> &mut VoteSet {
        match kind {
            VoteKind::Prevote => &mut self.prevotes,
            VoteKind::Precommit => &mut self.precommits,
        }
    }

    fn is_empty(&self) -> bool {
        self.proposal.is_none() && self.prevotes.is_empty() && self.precommits.is_empty()
    }

    fn evict(&mut self, validator: ValidatorIndex) {
        if self
            .proposal
            .as_ref()
            .is_some_and(|proposal| proposal.proposer == validator)
        {
            self.proposal = None;
        }
        self.prevotes.remove_validator(validator);
        self.precommits.remove_validator(validator);
        self.senders.remove(&validator);
    }
}

/// The messages received for one height, bounded as the module docs say.
#[derive(Debug)]
pub(crate) struct HeightLog {
    validators: ValidatorSet,
    height: Height,
    /// The owner's current round: rounds above it are quota-limited.
    horizon: Round,
    rounds: BTreeMap<Round, RoundLog>,
    /// For each validator, the rounds above the horizon it has messages in.
    future: BTreeMap<ValidatorIndex, BTreeSet<Round>>,
}

impl HeightLog {
    /// An empty log for `height`, with the horizon at round 0.
    pub(crate) fn new(validators: ValidatorSet, height: Height) -> Self {
        Self {
            validators,
            height,
            horizon: 0,
            rounds: BTreeMap::new(),
            future: BTreeMap::new(),
        }
    }

    /// Moves the horizon to the owner's new round: rounds up to it are no
    /// longer counted against the future quota.
    pub(crate) fn set_horizon(&mut self, round: Round) {
        self.horizon = round;
        for rounds in self.future.values_mut() {
            rounds.retain(|future_round| *future_round > round);
        }
        self.future.retain(|_, rounds| !rounds.is_empty());
    }

    /// Records a proposal for this height. Ignored unless it comes from the
    /// proposer of its round and its valid round precedes its round.
    pub(crate) fn record_proposal(&mut self, proposal: Proposal) -> Recorded {
        let well_formed = proposal.height == self.height
            && self.validators.contains(proposal.proposer)
            && proposal.proposer == self.validators.proposer(self.height, proposal.round)
            && proposal
                .valid_round
                .is_none_or(|valid_round| valid_round < proposal.round);
        if !well_formed {
            return Recorded::IGNORED;
        }
        let round = proposal.round;
        if let Some(log) = self.rounds.get_mut(&round) {
            if let Some(first) = &log.proposal {
                if *first == proposal || log.proposal_reported {
                    return Recorded::IGNORED;
                }
                log.proposal_reported = true;
                return Recorded {
                    counted: false,
                    evidence: Some(Evidence::DoubleProposal {
                        first: first.clone(),
                        second: proposal,
                    }),
                };
            }
        }
        if !self.admit(proposal.proposer, round) {
            return Recorded::IGNORED;
        }
        let log = self.rounds.entry(round).or_default();
        log.senders.insert(proposal.proposer);
        log.proposal = Some(proposal);
        Recorded::COUNTED
    }

    /// Records a vote for this height. Ignored if its signer is not a
    /// validator, it is a duplicate, or a bound drops it.
    pub(crate) fn record_vote(&mut self, vote: Vote) -> Recorded {
        if vote.height != self.height || !self.validators.contains(vote.validator) {
            return Recorded::IGNORED;
        }
        let (round, kind, validator) = (vote.round, vote.kind, vote.validator);
        let first = self
            .rounds
            .get(&round)
            .and_then(|log| log.votes(kind).first_of(validator))
            .cloned();
        let Some(first) = first else {
            if !self.admit(validator, round) {
                return Recorded::IGNORED;
            }
            let log = self.rounds.entry(round).or_default();
            log.senders.insert(validator);
            log.votes_mut(kind).insert_first(vote);
            return Recorded::COUNTED;
        };
        // The validator already voted in this slot: a duplicate or an equivocation.
        let matters = self.value_matters(kind, round, vote.value_id);
        let Some(votes) = self.rounds.get_mut(&round).map(|log| log.votes_mut(kind)) else {
            return Recorded::IGNORED;
        };
        if votes.holds(&vote) {
            return Recorded::IGNORED;
        }
        let evidence = votes.report(validator).then(|| Evidence::DoubleVote {
            first,
            second: vote.clone(),
        });
        if matters {
            votes.insert_conflicting(vote);
        }
        Recorded {
            counted: matters,
            evidence,
        }
    }

    /// The proposal of `round`, if one was received.
    pub(crate) fn proposal(&self, round: Round) -> Option<&Proposal> {
        self.rounds.get(&round)?.proposal.as_ref()
    }

    /// Distinct validators that sent a `kind` vote for `value` in `round`.
    pub(crate) fn count(&self, kind: VoteKind, round: Round, value: Option<ValueId>) -> u32 {
        self.rounds
            .get(&round)
            .map_or(0, |log| log.votes(kind).count(value))
    }

    /// Distinct validators that sent any `kind` vote in `round`.
    pub(crate) fn total(&self, kind: VoteKind, round: Round) -> u32 {
        self.rounds
            .get(&round)
            .map_or(0, |log| log.votes(kind).total())
    }

    /// The counted `kind` votes for `value` in `round`, in validator order.
    pub(crate) fn votes_for(
        &self,
        kind: VoteKind,
        round: Round,
        value: Option<ValueId>,
    ) -> Vec<Vote> {
        self.rounds
            .get(&round)
            .map_or_else(Vec::new, |log| log.votes(kind).votes_for(value))
    }

    /// Every counted `kind` vote of `round`.
    pub(crate) fn all_votes(&self, kind: VoteKind, round: Round) -> Vec<Vote> {
        self.rounds.get(&round).map_or_else(Vec::new, |log| {
            log.votes(kind).messages().cloned().collect()
        })
    }

    /// Every counted message of `round`.
    pub(crate) fn round_messages(&self, round: Round) -> Vec<Message> {
        let Some(log) = self.rounds.get(&round) else {
            return Vec::new();
        };
        let mut messages: Vec<Message> = log
            .proposal
            .iter()
            .cloned()
            .map(Message::Proposal)
            .collect();
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            messages.extend(log.votes(kind).messages().cloned().map(Message::Vote));
        }
        messages
    }

    /// All rounds with any message, in increasing order.
    pub(crate) fn rounds(&self) -> impl Iterator<Item = (Round, &RoundLog)> {
        self.rounds.iter().map(|(round, log)| (*round, log))
    }

    /// Rounds up to and including `last`, in increasing order.
    pub(crate) fn rounds_up_to(&self, last: Round) -> impl Iterator<Item = (Round, &RoundLog)> {
        self.rounds.range(..=last).map(|(round, log)| (*round, log))
    }

    /// The highest round above `above` in which at least `threshold`
    /// distinct validators sent something (l. 55).
    pub(crate) fn highest_round_with_senders(&self, above: Round, threshold: u32) -> Option<Round> {
        let start = above.checked_add(1)?;
        self.rounds
            .range(start..)
            .rev()
            .find(|(_, log)| u32::try_from(log.senders.len()).unwrap_or(u32::MAX) >= threshold)
            .map(|(round, _)| *round)
    }

    /// Every counted message, round by round: what a host re-gossips.
    pub(crate) fn messages(&self) -> Vec<Message> {
        self.rounds
            .keys()
            .flat_map(|round| self.round_messages(*round))
            .collect()
    }

    /// Whether a conflicting `kind` vote for `value` in `round` can make a
    /// rule fire (see the module docs): nil, the round's proposed value, or
    /// for prevotes a value re-proposed with `round` as its valid round.
    fn value_matters(&self, kind: VoteKind, round: Round, value: Option<ValueId>) -> bool {
        let Some(value) = value else {
            return kind == VoteKind::Prevote;
        };
        if self.proposal(round).is_some_and(|p| p.value_id == value) {
            return true;
        }
        kind == VoteKind::Prevote
            && self.rounds.values().any(|log| {
                log.proposal
                    .as_ref()
                    .is_some_and(|p| p.valid_round == Some(round) && p.value_id == value)
            })
    }

    /// Whether `validator` may add a message in `round`, evicting its lowest
    /// future round if it is over quota and `round` is higher.
    fn admit(&mut self, validator: ValidatorIndex, round: Round) -> bool {
        if round <= self.horizon {
            return true;
        }
        let rounds = self.future.entry(validator).or_default();
        if rounds.contains(&round) {
            return true;
        }
        if rounds.len() < FUTURE_ROUNDS_PER_VALIDATOR {
            rounds.insert(round);
            return true;
        }
        let Some(lowest) = rounds.first().copied() else {
            return false;
        };
        if round < lowest {
            return false;
        }
        rounds.remove(&lowest);
        rounds.insert(round);
        if let Some(log) = self.rounds.get_mut(&lowest) {
            log.evict(validator);
            if log.is_empty() {
                self.rounds.remove(&lowest);
            }
        }
        true
    }

    /// Number of rounds with any message (for tests of the bounds).
    #[cfg(test)]
    pub(crate) fn round_count(&self) -> usize {
        self.rounds.len()
    }

    /// Number of stored messages (for tests of the bounds).
    #[cfg(test)]
    pub(crate) fn message_count(&self) -> usize {
        self.messages().len()
    }
}
