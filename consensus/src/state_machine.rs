//! The Tendermint state machine (Algorithm 1 of the paper) as a pure
//! function from `(state, input)` to `(state, outputs)`.
//!
//! [`Core::handle`] records the input, then fires the enabled "upon" rules
//! one at a time until none is enabled. Every rule changes the state so that
//! it cannot fire again on the same facts (a step moves forward, a
//! once-per-round flag is set, the round or height changes), so the loop
//! ends. Rules are tried in this order:
//!
//! 1. decide (l. 49), in any round of the height;
//! 2. round skip (l. 55);
//! 3. in the current round: prevote on the proposal (l. 22, l. 28), schedule
//!    the prevote timeout (l. 34), polka (l. 36), nil polka (l. 44),
//!    schedule the precommit timeout (l. 47).
//!
//! # Invariants
//!
//! - At most one proposal per round and one vote per `(round, kind)` is ever
//!   signed at a height, across restarts: every signing goes through
//!   `sign_vote`/`sign_proposal`, which consult the log of signed messages
//!   restored from the checkpoint and re-send the existing message instead
//!   of signing a new one.
//! - Every newly signed message is preceded, in the same output list, by an
//!   [`Output::Persist`] of a checkpoint that contains it and the lock it
//!   implies.
//! - A value is voted for or decided only once the host said it is valid.
//! - Memory is bounded (see the `vote_log` module): only the current height and
//!   the next one are kept, later heights are dropped.

use std::collections::BTreeMap;
use std::mem;

use crate::checkpoint::{Checkpoint, SignedLog};
use crate::config::Config;
use crate::error::{CoreError, CoreResult};
use crate::input::Input;
use crate::message::{Message, Proposal, Vote};
use crate::output::{Decision, Output};
use crate::types::{
    Height, Round, RoundValue, Step, ValidatorIndex, ValidatorSet, ValueId, VoteKind,
};
use crate::vote_log::{HeightLog, Recorded};

/// Upper bound on rules fired by one input. Each rule fires a bounded number
/// of times per round and an input causes at most a round skip and a height
/// change, so this is never reached; it only keeps a bug from hanging the host.
const MAX_RULE_FIRINGS: usize = 1_000;

/// The host's answer about a block, per height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Asked with `ValidateValue`, no answer yet.
    Pending,
    Valid,
    Invalid,
}

/// Once-per-round facts, reset by `StartRound`.
#[derive(Clone, Copy, Debug, Default)]
struct RoundFlags {
    /// l. 34 fired: the prevote timeout is scheduled.
    prevote_timeout_scheduled: bool,
    /// l. 47 fired: the precommit timeout is scheduled.
    precommit_timeout_scheduled: bool,
    /// l. 36 fired.
    polka_handled: bool,
    /// `RequestValue` was emitted for this round and not answered yet.
    awaiting_value: bool,
}

/// One validator's Tendermint state machine.
///
/// The core is only for validators: it signs (through the host) as `me`.
/// Drive it with [`Core::handle`]; carry out the returned outputs in order.
#[derive(Debug)]
pub struct Core {
    config: Config,
    validators: ValidatorSet,
    me: ValidatorIndex,
    height: Height,
    round: Round,
    step: Step,
    locked: Option<RoundValue>,
    valid: Option<RoundValue>,
    started: bool,
    /// Messages of the current height.
    log: HeightLog,
    /// Messages of the next height, replayed when the core gets there.
    next_log: HeightLog,
    /// What this validator signed at the current height.
    signed: SignedLog,
    verdicts: BTreeMap<ValueId, Verdict>,
    flags: RoundFlags,
    /// Outputs of the input being handled.
    outputs: Vec<Output>,
}

impl Core {
    /// A validator that has signed nothing at `height` (and will decide it
    /// next), in round 0. Nothing happens until [`Input::Start`].
    pub fn new(
        config: Config,
        validators: ValidatorSet,
        me: ValidatorIndex,
        height: Height,
    ) -> CoreResult<Self> {
        if !validators.contains(me) {
            return Err(CoreError::NotAValidator {
                me,
                size: validators.size(),
            });
        }
        Ok(Self {
            config,
            validators,
            me,
            height,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            started: false,
            log: HeightLog::new(validators, height),
            next_log: HeightLog::new(validators, height.saturating_add(1)),
            signed: SignedLog::default(),
            verdicts: BTreeMap::new(),
            flags: RoundFlags::default(),
            outputs: Vec::new(),
        })
    }

    /// A validator resuming from the last checkpoint it persisted. On
    /// [`Input::Start`] it re-sends what it signed at the checkpoint's height
    /// and carries on; it never signs a message conflicting with those.
    ///
    /// If the host's chain already holds the checkpoint's height (it
    /// committed it before crashing), follow with
    /// [`Input::SyncedTo`] for the chain's tip, or use [`Core::new`].
    pub fn restore(
        config: Config,
        validators: ValidatorSet,
        me: ValidatorIndex,
        checkpoint: Checkpoint,
    ) -> CoreResult<Self> {
        let mut core = Self::new(config, validators, me, checkpoint.height)?;
        let signed = SignedLog::from_checkpoint(&checkpoint, validators, me)?;
        let round = checkpoint.round;
        // A vote signed in the current round means the step was reached,
        // whatever the stored step says.
        let mut step = checkpoint.step;
        if signed.vote(round, VoteKind::Precommit).is_some() {
            step = Step::Precommit;
        } else if signed.vote(round, VoteKind::Prevote).is_some() {
            step = step.max(Step::Prevote);
        }
        core.round = round;
        core.step = step;
        core.locked = checkpoint.locked;
        core.valid = checkpoint.valid;
        core.log.set_horizon(round);
        // What this validator proposed, locked or saw valid was valid then.
        for value in checkpoint
            .locked
            .iter()
            .chain(checkpoint.valid.iter())
            .map(|v| v.value_id)
            .chain(checkpoint.proposals.iter().map(|p| p.value_id))
        {
            core.verdicts.insert(value, Verdict::Valid);
        }
        // The polka behind its valid value, the messages that brought it to
        // its round, and its own messages count as before the crash.
        for vote in checkpoint.valid_polka {
            core.log.record_vote(vote);
        }
        for message in checkpoint
            .round_evidence
            .into_iter()
            .chain(signed.messages())
        {
            match message {
                Message::Proposal(proposal) => {
                    core.log.record_proposal(proposal);
                }
                Message::Vote(vote) => {
                    core.log.record_vote(vote);
                }
            }
        }
        core.signed = signed;
        Ok(core)
    }

    /// Feeds one input; returns what the host must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Start => self.on_start(),
            Input::Proposal(proposal) => self.record_proposal(proposal),
            Input::Vote(vote) => self.record_vote(vote),
            Input::Timeout {
                height,
                round,
                step,
            } => self.on_timeout(height, round, step),
            Input::ValidationResult {
                height,
                value_id,
                valid,
                ..
            } => self.on_validation_result(height, value_id, valid),
            Input::ProposeValue {
                height,
                round,
                value_id,
            } => self.on_propose_value(height, round, value_id),
            Input::SyncedTo { height } => self.on_synced_to(height),
        }
        self.evaluate();
        mem::take(&mut self.outputs)
    }

    /// The state to persist now, the same as the last
    /// [`Output::Persist`] plus any unsigned progress since.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            height: self.height,
            round: self.round,
            step: self.step,
            locked: self.locked,
            valid: self.valid,
            proposals: self.signed.proposal_list(),
            votes: self.signed.vote_list(),
            valid_polka: self.valid.map_or_else(Vec::new, |valid| {
                self.log
                    .votes_for(VoteKind::Prevote, valid.round, Some(valid.value_id))
            }),
            round_evidence: self.round_evidence(),
        }
    }

    /// Peers' messages that justify being in the current round (see
    /// [`Checkpoint::round_evidence`]).
    fn round_evidence(&self) -> Vec<Message> {
        let Some(previous) = self.round.checked_sub(1) else {
            return Vec::new();
        };
        if self.log.total(VoteKind::Precommit, previous) >= self.validators.quorum() {
            let precommits = self.log.all_votes(VoteKind::Precommit, previous);
            return precommits.into_iter().map(Message::Vote).collect();
        }
        let mut messages = self.log.round_messages(self.round);
        messages.retain(|message| message.signer() != self.me);
        messages
    }

    /// Everything this validator signed at the current height, for the
    /// host's periodic re-broadcast.
    pub fn signed_messages(&self) -> Vec<Message> {
        self.signed.messages()
    }

    /// Every message counted at the current height (this validator's and its
    /// peers'), for the host's gossip: the protocol needs every message a
    /// correct validator has seen to reach all the others eventually.
    pub fn known_messages(&self) -> Vec<Message> {
        self.log.messages()
    }

    /// The height being decided.
    pub fn height(&self) -> Height {
        self.height
    }

    /// The current round.
    pub fn round(&self) -> Round {
        self.round
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// `lockedValue/lockedRound`.
    pub fn locked(&self) -> Option<RoundValue> {
        self.locked
    }

    /// `validValue/validRound`.
    pub fn valid(&self) -> Option<RoundValue> {
        self.valid
    }

    /// This validator's index.
    pub fn me(&self) -> ValidatorIndex {
        self.me
    }

    /// The validator set.
    pub fn validators(&self) -> ValidatorSet {
        self.validators
    }

    /// Whether [`Input::Start`] was given.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// `(rounds, messages)` stored for the current and the next height.
    #[cfg(test)]
    pub(crate) fn log_sizes(&self) -> [(usize, usize); 2] {
        [
            (self.log.round_count(), self.log.message_count()),
            (self.next_log.round_count(), self.next_log.message_count()),
        ]
    }

    // ----- Inputs -------------------------------------------------------

    fn on_start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        // After a restore: what was signed before the crash may not have
        // reached anyone. For a fresh core this is empty.
        for message in self.signed.messages() {
            self.outputs.push(match message {
                Message::Proposal(proposal) => Output::BroadcastProposal(proposal),
                Message::Vote(vote) => Output::BroadcastVote(vote),
            });
        }
        // Past the propose step the quorums re-arm the timeouts (l. 34, l. 47).
        if self.step == Step::Propose {
            self.enter_propose_step();
        }
    }

    fn record_proposal(&mut self, proposal: Proposal) {
        let recorded = if proposal.height == self.height {
            self.log.record_proposal(proposal)
        } else if Some(proposal.height) == self.height.checked_add(1) {
            self.next_log.record_proposal(proposal)
        } else {
            return;
        };
        self.report(recorded);
    }

    fn record_vote(&mut self, vote: Vote) {
        let recorded = if vote.height == self.height {
            self.log.record_vote(vote)
        } else if Some(vote.height) == self.height.checked_add(1) {
            self.next_log.record_vote(vote)
        } else {
            return;
        };
        self.report(recorded);
    }

    fn report(&mut self, recorded: Recorded) {
        if let Some(evidence) = recorded.evidence {
            self.outputs.push(Output::Equivocation(evidence));
        }
    }

    /// l. 57–65. A timeout for another height or round does nothing.
    fn on_timeout(&mut self, height: Height, round: Round, step: Step) {
        if !self.started || height != self.height || round != self.round {
            return;
        }
        match step {
            Step::Propose if self.step == Step::Propose => {
                self.step = Step::Prevote;
                self.sign_vote(VoteKind::Prevote, None);
            }
            Step::Prevote if self.step == Step::Prevote => {
                self.step = Step::Precommit;
                self.sign_vote(VoteKind::Precommit, None);
            }
            Step::Precommit => {
                if let Some(next) = round.checked_add(1) {
                    self.start_round(next);
                }
            }
            Step::Propose | Step::Prevote => {}
        }
    }

    fn on_validation_result(&mut self, height: Height, value_id: ValueId, valid: bool) {
        if height != self.height {
            return;
        }
        if let Some(verdict) = self.verdicts.get_mut(&value_id) {
            if *verdict == Verdict::Pending {
                *verdict = if valid {
                    Verdict::Valid
                } else {
                    Verdict::Invalid
                };
            }
        }
    }

    fn on_propose_value(&mut self, height: Height, round: Round, value_id: ValueId) {
        if !self.started
            || height != self.height
            || round != self.round
            || !self.flags.awaiting_value
        {
            return;
        }
        self.flags.awaiting_value = false;
        self.sign_proposal(value_id, None);
    }

    fn on_synced_to(&mut self, height: Height) {
        if height < self.height {
            return;
        }
        if let Some(next) = height.checked_add(1) {
            self.enter_height(next);
        }
    }

    // ----- Rules --------------------------------------------------------

    fn evaluate(&mut self) {
        for _ in 0..MAX_RULE_FIRINGS {
            if !self.started {
                return;
            }
            self.request_validations();
            let fired = self.try_decide()
                || self.try_round_skip()
                || self.try_prevote_on_proposal()
                || self.try_schedule_prevote_timeout()
                || self.try_polka()
                || self.try_nil_polka()
                || self.try_schedule_precommit_timeout();
            if !fired {
                return;
            }
        }
    }

    /// Asks the host about every block proposed in a round this validator
    /// has reached. Future rounds wait, so a byzantine proposer cannot make
    /// the host validate blocks for rounds nobody is in.
    fn request_validations(&mut self) {
        let mut requests = Vec::new();
        for (round, log) in self.log.rounds_up_to(self.round) {
            if let Some(proposal) = &log.proposal {
                if !self.verdicts.contains_key(&proposal.value_id) {
                    requests.push((round, proposal.value_id));
                }
            }
        }
        for (round, value_id) in requests {
            if self.verdicts.contains_key(&value_id) {
                continue;
            }
            self.verdicts.insert(value_id, Verdict::Pending);
            self.outputs.push(Output::ValidateValue {
                height: self.height,
                round,
                value_id,
            });
        }
    }

    fn is_valid(&self, value_id: &ValueId) -> Option<bool> {
        match self.verdicts.get(value_id) {
            Some(Verdict::Valid) => Some(true),
            Some(Verdict::Invalid) => Some(false),
            Some(Verdict::Pending) | None => None,
        }
    }

    /// l. 49: a proposal for `(h, r')` with 2f+1 precommits for it, valid:
    /// decide, in whatever round `r'` it happened.
    fn try_decide(&mut self) -> bool {
        let quorum = self.validators.quorum();
        let decided = self.log.rounds().find_map(|(round, log)| {
            let value_id = log.proposal.as_ref()?.value_id;
            let enough = log.precommits.count(Some(value_id)) >= quorum;
            (enough && self.is_valid(&value_id) == Some(true)).then_some((round, value_id))
        });
        let Some((round, value_id)) = decided else {
            return false;
        };
        let precommits = self
            .log
            .votes_for(VoteKind::Precommit, round, Some(value_id));
        self.outputs.push(Output::Decide(Decision {
            height: self.height,
            round,
            value_id,
            precommits,
        }));
        match self.height.checked_add(1) {
            Some(next) => self.enter_height(next),
            // The last height there is: nothing more to decide.
            None => self.started = false,
        }
        true
    }

    /// l. 55: f+1 validators sent messages for a higher round: go there.
    fn try_round_skip(&mut self) -> bool {
        let threshold = self.validators.skip_threshold();
        match self.log.highest_round_with_senders(self.round, threshold) {
            Some(round) => {
                self.start_round(round);
                true
            }
            None => false,
        }
    }

    /// l. 22 (fresh proposal) and l. 28 (re-proposal backed by a polka at
    /// its valid round), while in propose.
    fn try_prevote_on_proposal(&mut self) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some(proposal) = self.log.proposal(self.round) else {
            return false;
        };
        let value_id = proposal.value_id;
        let acceptable = match proposal.valid_round {
            // l. 23: not locked, or locked on this very value.
            None => self.locked.is_none_or(|lock| lock.value_id == value_id),
            Some(valid_round) => {
                let polka = self
                    .log
                    .count(VoteKind::Prevote, valid_round, Some(value_id));
                if polka < self.validators.quorum() {
                    return false;
                }
                // l. 29: the polka is at least as recent as the lock, or it
                // is for the locked value.
                self.locked
                    .is_none_or(|lock| lock.round <= valid_round || lock.value_id == value_id)
            }
        };
        let Some(valid) = self.is_valid(&value_id) else {
            return false;
        };
        self.step = Step::Prevote;
        let vote = (valid && acceptable).then_some(value_id);
        self.sign_vote(VoteKind::Prevote, vote);
        true
    }

    /// l. 34: any 2f+1 prevotes while in prevote, the first time.
    fn try_schedule_prevote_timeout(&mut self) -> bool {
        if self.step != Step::Prevote
            || self.flags.prevote_timeout_scheduled
            || self.log.total(VoteKind::Prevote, self.round) < self.validators.quorum()
        {
            return false;
        }
        self.flags.prevote_timeout_scheduled = true;
        self.schedule_timeout(Step::Prevote);
        true
    }

    /// l. 36: the proposal of this round, valid, with 2f+1 prevotes for it,
    /// step ≥ prevote, the first time. Lock and precommit if still in
    /// prevote; in any case remember it as the valid value.
    fn try_polka(&mut self) -> bool {
        if self.step < Step::Prevote || self.flags.polka_handled {
            return false;
        }
        let Some(proposal) = self.log.proposal(self.round) else {
            return false;
        };
        let value_id = proposal.value_id;
        if self.is_valid(&value_id) != Some(true)
            || self
                .log
                .count(VoteKind::Prevote, self.round, Some(value_id))
                < self.validators.quorum()
        {
            return false;
        }
        self.flags.polka_handled = true;
        let polka = RoundValue {
            value_id,
            round: self.round,
        };
        self.valid = Some(polka);
        if self.step == Step::Prevote {
            self.locked = Some(polka);
            self.step = Step::Precommit;
            self.sign_vote(VoteKind::Precommit, Some(value_id));
        }
        true
    }

    /// l. 44: 2f+1 prevotes for nil while in prevote.
    fn try_nil_polka(&mut self) -> bool {
        if self.step != Step::Prevote
            || self.log.count(VoteKind::Prevote, self.round, None) < self.validators.quorum()
        {
            return false;
        }
        self.step = Step::Precommit;
        self.sign_vote(VoteKind::Precommit, None);
        true
    }

    /// l. 47: any 2f+1 precommits, the first time in the round.
    fn try_schedule_precommit_timeout(&mut self) -> bool {
        if self.flags.precommit_timeout_scheduled
            || self.log.total(VoteKind::Precommit, self.round) < self.validators.quorum()
        {
            return false;
        }
        self.flags.precommit_timeout_scheduled = true;
        self.schedule_timeout(Step::Precommit);
        true
    }

    // ----- Transitions --------------------------------------------------

    /// StartRound (l. 11).
    fn start_round(&mut self, round: Round) {
        self.round = round;
        self.step = Step::Propose;
        self.flags = RoundFlags::default();
        self.log.set_horizon(round);
        self.enter_propose_step();
    }

    /// The body of StartRound once round and step are set: propose if it is
    /// this validator's turn, and schedule the propose timeout. The proposer
    /// schedules it too, so that a host slow to build a block cannot leave
    /// it waiting in propose forever.
    fn enter_propose_step(&mut self) {
        let round = self.round;
        if self.validators.proposer(self.height, round) == self.me
            && self.signed.proposal(round).is_none()
        {
            match self.valid {
                Some(valid) => self.sign_proposal(valid.value_id, Some(valid.round)),
                None => {
                    self.flags.awaiting_value = true;
                    self.outputs.push(Output::RequestValue {
                        height: self.height,
                        round,
                    });
                }
            }
        }
        self.schedule_timeout(Step::Propose);
    }

    /// Moves to `height`, round 0, replaying what was buffered for it.
    fn enter_height(&mut self, height: Height) {
        let buffered = if Some(height) == self.height.checked_add(1) {
            mem::replace(
                &mut self.next_log,
                HeightLog::new(self.validators, height.saturating_add(1)),
            )
        } else {
            self.next_log = HeightLog::new(self.validators, height.saturating_add(1));
            HeightLog::new(self.validators, height)
        };
        self.log = buffered;
        self.height = height;
        self.locked = None;
        self.valid = None;
        self.signed = SignedLog::default();
        self.verdicts.clear();
        if self.started {
            self.start_round(0);
        } else {
            self.round = 0;
            self.step = Step::Propose;
            self.flags = RoundFlags::default();
            self.log.set_horizon(0);
        }
    }

    fn schedule_timeout(&mut self, step: Step) {
        self.outputs.push(Output::ScheduleTimeout {
            height: self.height,
            round: self.round,
            step,
            duration_ms: self.config.timeout_ms(step, self.round),
        });
    }

    /// Signs a `kind` vote for the current round, unless one was signed
    /// already (before a crash): then that one is re-sent and nothing new
    /// is signed. The caller has already updated step and lock, so the
    /// persisted checkpoint reflects them.
    fn sign_vote(&mut self, kind: VoteKind, value_id: Option<ValueId>) {
        if let Some(existing) = self.signed.vote(self.round, kind) {
            self.outputs.push(Output::BroadcastVote(existing.clone()));
            return;
        }
        let vote = Vote {
            kind,
            height: self.height,
            round: self.round,
            value_id,
            validator: self.me,
        };
        self.signed.insert_vote(vote.clone());
        self.outputs.push(Output::Persist(self.checkpoint()));
        self.outputs.push(Output::BroadcastVote(vote.clone()));
        // Broadcast includes oneself.
        self.record_vote(vote);
    }

    /// Signs this round's proposal, unless one was signed already.
    fn sign_proposal(&mut self, value_id: ValueId, valid_round: Option<Round>) {
        if let Some(existing) = self.signed.proposal(self.round) {
            self.outputs
                .push(Output::BroadcastProposal(existing.clone()));
            return;
        }
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            value_id,
            valid_round,
            proposer: self.me,
        };
        // The host built it, or it is the valid value: either way valid.
        self.verdicts.insert(value_id, Verdict::Valid);
        self.signed.insert_proposal(proposal.clone());
        self.outputs.push(Output::Persist(self.checkpoint()));
        self.outputs
            .push(Output::BroadcastProposal(proposal.clone()));
        self.record_proposal(proposal);
    }
}
