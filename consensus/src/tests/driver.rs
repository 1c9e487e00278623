//! A driver for one [`Core`] in unit tests: feeds messages "from" other
//! validators, answers block validation like a host would, and checks on
//! every call that each newly signed message was persisted first.

use std::collections::BTreeSet;

use crate::{
    Checkpoint, Config, Core, Decision, Evidence, Height, Input, Message, Output, Proposal, Round,
    Step, TimeoutSchedule, ValidatorIndex, ValidatorSet, ValueId, Vote, VoteKind,
};

/// A value id made of one repeated byte.
pub(crate) fn value(byte: u8) -> ValueId {
    [byte; 32]
}

/// Small, distinct timeouts so tests can tell them apart.
pub(crate) fn test_config() -> Config {
    Config {
        propose: TimeoutSchedule {
            base_ms: 300,
            delta_ms: 30,
        },
        prevote: TimeoutSchedule {
            base_ms: 200,
            delta_ms: 20,
        },
        precommit: TimeoutSchedule {
            base_ms: 100,
            delta_ms: 10,
        },
    }
}

/// One core under test plus the host behaviour around it.
#[derive(Debug)]
pub(crate) struct Driver {
    pub(crate) core: Core,
    /// Blocks the host answers "invalid" for; every other block is valid.
    pub(crate) invalid: BTreeSet<ValueId>,
    /// Answer `ValidateValue` at once (otherwise the test answers).
    pub(crate) auto_validate: bool,
    /// The last checkpoint the host persisted.
    pub(crate) persisted: Option<Checkpoint>,
    /// Everything the core ever asked to broadcast.
    pub(crate) sent: Vec<Message>,
}

impl Driver {
    /// Validator `me` of `n`, at `height`, not started.
    pub(crate) fn new(n: u32, me: ValidatorIndex, height: Height) -> Self {
        let validators = ValidatorSet::new(n).unwrap();
        Self::wrap(Core::new(test_config(), validators, me, height).unwrap())
    }

    /// Wraps an existing core (e.g. a restored one).
    pub(crate) fn wrap(core: Core) -> Self {
        Self {
            core,
            invalid: BTreeSet::new(),
            auto_validate: true,
            persisted: None,
            sent: Vec::new(),
        }
    }

    /// Validator `me` of `n` restored from `checkpoint`, not started; the
    /// checkpoint counts as persisted.
    pub(crate) fn restored(n: u32, me: ValidatorIndex, checkpoint: Checkpoint) -> Self {
        let validators = ValidatorSet::new(n).unwrap();
        let core = Core::restore(test_config(), validators, me, checkpoint.clone()).unwrap();
        let mut driver = Self::wrap(core);
        driver.persisted = Some(checkpoint);
        driver
    }

    /// Validator `me` of `n` at height 1, started.
    pub(crate) fn started(n: u32, me: ValidatorIndex) -> (Self, Vec<Output>) {
        let mut driver = Self::new(n, me, 1);
        let outputs = driver.input(Input::Start);
        (driver, outputs)
    }

    /// Feeds one input and carries out the host's side: persisting, and
    /// answering validation requests if `auto_validate`. Returns every
    /// output, including those caused by the automatic answers.
    pub(crate) fn input(&mut self, input: Input) -> Vec<Output> {
        let mut all = Vec::new();
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            let outputs = self.core.handle(input);
            for output in &outputs {
                self.carry_out(output);
                if let Output::ValidateValue {
                    height,
                    round,
                    value_id,
                } = output
                {
                    if self.auto_validate {
                        pending.insert(
                            0,
                            Input::ValidationResult {
                                height: *height,
                                round: *round,
                                value_id: *value_id,
                                valid: !self.invalid.contains(value_id),
                            },
                        );
                    }
                }
            }
            all.extend(outputs);
        }
        all
    }

    /// Persist-before-broadcast: a broadcast message must be in the
    /// checkpoint persisted before it (for its height).
    fn carry_out(&mut self, output: &Output) {
        match output {
            Output::Persist(checkpoint) => self.persisted = Some(checkpoint.clone()),
            Output::BroadcastProposal(proposal) => {
                let persisted = self
                    .persisted
                    .as_ref()
                    .expect("broadcast before any persist");
                assert!(
                    persisted.proposals.contains(proposal),
                    "proposal broadcast before being persisted: {proposal:?}"
                );
                self.sent.push(Message::Proposal(proposal.clone()));
            }
            Output::BroadcastVote(vote) => {
                let persisted = self
                    .persisted
                    .as_ref()
                    .expect("broadcast before any persist");
                assert!(
                    persisted.votes.contains(vote),
                    "vote broadcast before being persisted: {vote:?}"
                );
                self.sent.push(Message::Vote(vote.clone()));
            }
            _ => {}
        }
    }

    /// The proposal of `round` at the core's height, from its proposer.
    pub(crate) fn proposal(
        &mut self,
        round: Round,
        value_id: ValueId,
        valid_round: Option<Round>,
    ) -> Vec<Output> {
        let height = self.core.height();
        let proposer = self.core.validators().proposer(height, round);
        self.input(Input::Proposal(Proposal {
            height,
            round,
            value_id,
            valid_round,
            proposer,
        }))
    }

    /// A vote at the core's height.
    pub(crate) fn vote(
        &mut self,
        kind: VoteKind,
        from: ValidatorIndex,
        round: Round,
        value_id: Option<ValueId>,
    ) -> Vec<Output> {
        let height = self.core.height();
        self.input(Input::Vote(Vote {
            kind,
            height,
            round,
            value_id,
            validator: from,
        }))
    }

    /// Prevotes from each of `from`.
    pub(crate) fn prevotes(
        &mut self,
        from: &[ValidatorIndex],
        round: Round,
        value_id: Option<ValueId>,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        for validator in from {
            outputs.extend(self.vote(VoteKind::Prevote, *validator, round, value_id));
        }
        outputs
    }

    /// Precommits from each of `from`.
    pub(crate) fn precommits(
        &mut self,
        from: &[ValidatorIndex],
        round: Round,
        value_id: Option<ValueId>,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        for validator in from {
            outputs.extend(self.vote(VoteKind::Precommit, *validator, round, value_id));
        }
        outputs
    }

    /// Fires the timeout for `step` in `round` at the core's height.
    pub(crate) fn timeout(&mut self, step: Step, round: Round) -> Vec<Output> {
        let height = self.core.height();
        self.input(Input::Timeout {
            height,
            round,
            step,
        })
    }

    /// Drives the core to the start of `round` by precommit timeouts, with
    /// no messages from peers: prevote nil and precommit nil each round.
    pub(crate) fn skip_to_round(&mut self, round: Round) {
        while self.core.round() < round {
            let current = self.core.round();
            self.timeout(Step::Propose, current);
            self.timeout(Step::Prevote, current);
            self.timeout(Step::Precommit, current);
        }
    }
}

/// The votes broadcast in `outputs`.
pub(crate) fn votes(outputs: &[Output]) -> Vec<Vote> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::BroadcastVote(vote) => Some(vote.clone()),
            _ => None,
        })
        .collect()
}

/// The single vote of `kind` broadcast in `outputs`, if any.
pub(crate) fn vote_of(outputs: &[Output], kind: VoteKind) -> Option<Vote> {
    let mut found = votes(outputs).into_iter().filter(|vote| vote.kind == kind);
    let vote = found.next();
    assert!(found.next().is_none(), "two {kind:?} votes in {outputs:?}");
    vote
}

/// The proposals broadcast in `outputs`.
pub(crate) fn proposals(outputs: &[Output]) -> Vec<Proposal> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::BroadcastProposal(proposal) => Some(proposal.clone()),
            _ => None,
        })
        .collect()
}

/// The decision in `outputs`, if any.
pub(crate) fn decision(outputs: &[Output]) -> Option<Decision> {
    outputs.iter().find_map(|output| match output {
        Output::Decide(decision) => Some(decision.clone()),
        _ => None,
    })
}

/// The timeouts scheduled in `outputs`, as `(height, round, step, duration)`.
pub(crate) fn timeouts(outputs: &[Output]) -> Vec<(Height, Round, Step, u64)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => Some((*height, *round, *step, *duration_ms)),
            _ => None,
        })
        .collect()
}

/// The evidence reported in `outputs`.
pub(crate) fn evidence(outputs: &[Output]) -> Vec<Evidence> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Equivocation(evidence) => Some(evidence.clone()),
            _ => None,
        })
        .collect()
}

/// Whether `outputs` asks for a new block.
pub(crate) fn requests_value(outputs: &[Output]) -> bool {
    outputs
        .iter()
        .any(|output| matches!(output, Output::RequestValue { .. }))
}
