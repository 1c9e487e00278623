//! Inputs a byzantine peer or a confused host may produce: absurd heights,
//! rounds and indices, floods, random sequences. No panic, bounded memory,
//! and no effect beyond what the rules allow.

use std::collections::BTreeMap;

use super::driver::{test_config, value, Driver};
use super::Rng;
use crate::vote_log::FUTURE_ROUNDS_PER_VALIDATOR;
use crate::{Core, Input, Message, Output, Proposal, Step, ValidatorSet, Vote, VoteKind};

fn vote(
    kind: VoteKind,
    height: u64,
    round: u32,
    validator: u32,
    value_id: Option<[u8; 32]>,
) -> Input {
    Input::Vote(Vote {
        kind,
        height,
        round,
        value_id,
        validator,
    })
}

#[test]
fn absurd_heights_rounds_and_indices_do_nothing() {
    let (mut driver, _) = Driver::started(4, 0);
    let mut inputs = Vec::new();
    for validator in [4, 5, 1000, u32::MAX] {
        inputs.push(vote(VoteKind::Prevote, 1, 0, validator, None));
        inputs.push(vote(VoteKind::Precommit, 1, 0, validator, Some(value(1))));
        inputs.push(Input::Proposal(Proposal {
            height: 1,
            round: 0,
            value_id: value(1),
            valid_round: None,
            proposer: validator,
        }));
    }
    for height in [0, 3, 1 << 40, u64::MAX] {
        for validator in 1..4 {
            inputs.push(vote(
                VoteKind::Precommit,
                height,
                0,
                validator,
                Some(value(1)),
            ));
        }
    }
    // One validator alone in a far round: recorded, but no skip.
    inputs.push(vote(VoteKind::Prevote, 1, u32::MAX, 1, None));
    inputs.push(vote(VoteKind::Precommit, 1, u32::MAX - 1, 1, None));
    inputs.push(Input::Proposal(Proposal {
        height: 1,
        round: 3,
        value_id: value(1),
        valid_round: Some(u32::MAX),
        proposer: 0,
    }));
    inputs.push(Input::ValidationResult {
        height: u64::MAX,
        round: u32::MAX,
        value_id: value(3),
        valid: true,
    });
    inputs.push(Input::ProposeValue {
        height: 1,
        round: u32::MAX,
        value_id: value(3),
    });
    for input in inputs {
        let outputs = driver.input(input.clone());
        assert!(outputs.is_empty(), "{input:?} gave {outputs:?}");
    }
    assert_eq!(
        (
            driver.core.height(),
            driver.core.round(),
            driver.core.step()
        ),
        (1, 0, Step::Propose)
    );
}

#[test]
fn the_last_round_and_the_last_height_do_not_overflow() {
    let (mut driver, _) = Driver::started(4, 0);
    // Two validators (f+1) claim the last round: the core follows (l. 55).
    driver.input(vote(VoteKind::Prevote, 1, u32::MAX, 1, None));
    driver.input(vote(VoteKind::Prevote, 1, u32::MAX, 2, None));
    assert_eq!(driver.core.round(), u32::MAX);
    driver.timeout(Step::Propose, u32::MAX);
    driver.prevotes(&[3], u32::MAX, None);
    driver.precommits(&[1, 2], u32::MAX, None);
    driver.timeout(Step::Precommit, u32::MAX);
    assert_eq!(driver.core.round(), u32::MAX);

    let validators = ValidatorSet::new(4).unwrap();
    let core = Core::new(test_config(), validators, 0, u64::MAX).unwrap();
    let mut driver = Driver::wrap(core);
    driver.input(Input::Start);
    driver.proposal(0, value(1), None);
    let outputs = driver.precommits(&[1, 2, 3], 0, Some(value(1)));
    assert!(outputs.iter().any(|o| matches!(o, Output::Decide(_))));
    assert!(!driver.core.is_started(), "nothing after the last height");
    assert!(driver
        .input(Input::SyncedTo { height: u64::MAX })
        .is_empty());
}

#[test]
fn a_byzantine_flood_stays_bounded() {
    let (mut driver, _) = Driver::started(4, 0);
    let mut rng = Rng::new(11);
    let mut evidence = 0;
    // Validator 3 signs everything it can think of.
    for round in 0..20_000_u32 {
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            for height in [1, 2] {
                let outputs = driver.input(vote(kind, height, round, 3, Some(rng.value_id())));
                evidence += outputs
                    .iter()
                    .filter(|o| matches!(o, Output::Equivocation(_)))
                    .count();
            }
        }
        // It proposes in every round where it is the proposer.
        if (1 + round) % 4 == 3 {
            driver.input(Input::Proposal(Proposal {
                height: 1,
                round,
                value_id: rng.value_id(),
                valid_round: round.checked_sub(1),
                proposer: 3,
            }));
        }
    }
    // Thousands of conflicting votes in the current round.
    for _ in 0..5_000 {
        driver.input(vote(VoteKind::Prevote, 1, 0, 3, Some(rng.value_id())));
    }
    assert_eq!(driver.core.round(), 0, "one validator cannot move others");
    let [(rounds, messages), (next_rounds, next_messages)] = driver.core.log_sizes();
    let bound = 1 + FUTURE_ROUNDS_PER_VALIDATOR;
    assert!(
        rounds <= bound && next_rounds <= bound,
        "{rounds} {next_rounds}"
    );
    // Per round: a proposal and a first vote per kind; in round 0 also the
    // conflicting prevote for nil at most.
    assert!(messages <= 3 * bound + 1, "{messages}");
    assert!(next_messages <= 3 * bound + 1, "{next_messages}");
    // Evidence once per slot, never per message.
    assert!(evidence <= 4 * bound, "{evidence}");
}

/// The host's view of what a correct validator broadcast, across heights.
fn check_no_equivocation(sent: &[Message]) {
    let mut slots: BTreeMap<(u64, u32, u8), &Message> = BTreeMap::new();
    for message in sent {
        let slot = match message {
            Message::Proposal(p) => (p.height, p.round, 0),
            Message::Vote(v) if v.kind == VoteKind::Prevote => (v.height, v.round, 1),
            Message::Vote(v) => (v.height, v.round, 2),
        };
        if let Some(earlier) = slots.insert(slot, message) {
            assert_eq!(earlier, message);
        }
    }
}

/// A random input near the core's position, or far away now and then.
fn random_input(rng: &mut Rng, core: &Core, values: &[[u8; 32]]) -> Input {
    let height = match rng.below(10) {
        0 => rng.next_u64(),
        1 => core.height() + 1,
        2 => core.height().saturating_sub(1),
        _ => core.height(),
    };
    let round = match rng.below(10) {
        0 => u32::try_from(rng.below(u64::from(u32::MAX))).unwrap(),
        1..=3 => core
            .round()
            .saturating_add(u32::try_from(rng.below(3)).unwrap()),
        _ => core
            .round()
            .saturating_sub(u32::try_from(rng.below(2)).unwrap()),
    };
    let value_id = values[usize::try_from(rng.below(5)).unwrap()];
    // Never validator 0 itself: the host drops forgeries of its own key.
    // Index 4 is not a member: ignored.
    let validator = 1 + u32::try_from(rng.below(4)).unwrap();
    match rng.below(12) {
        0..=3 => vote(
            VoteKind::Prevote,
            height,
            round,
            validator,
            (rng.below(4) != 0).then_some(value_id),
        ),
        4..=6 => vote(
            VoteKind::Precommit,
            height,
            round,
            validator,
            (rng.below(4) != 0).then_some(value_id),
        ),
        // Only from the round's proposer, and never validator 0 itself.
        7 | 8 if ValidatorSet::new(4).unwrap().proposer(height, round) != 0 => {
            Input::Proposal(Proposal {
                height,
                round,
                value_id,
                valid_round: round.checked_sub(1 + u32::try_from(rng.below(3)).unwrap()),
                proposer: ValidatorSet::new(4).unwrap().proposer(height, round),
            })
        }
        9 => Input::Timeout {
            height,
            round,
            step: [Step::Propose, Step::Prevote, Step::Precommit]
                [usize::try_from(rng.below(3)).unwrap()],
        },
        // The host only proposes blocks it considers valid (value(5) is not).
        10 => Input::ProposeValue {
            height,
            round,
            value_id: values[usize::try_from(rng.below(4)).unwrap()],
        },
        _ => Input::SyncedTo {
            height: height.min(core.height() + 1),
        },
    }
}

#[test]
fn random_inputs_never_panic_and_never_make_it_equivocate() {
    for seed in 0..30 {
        let mut rng = Rng::new(seed);
        let values: Vec<[u8; 32]> = (1..6).map(value).collect();
        let (mut driver, _) = Driver::started(4, 0);
        driver.invalid.insert(value(5));
        for _ in 0..3_000 {
            let input = random_input(&mut rng, &driver.core, &values);
            let outputs = driver.input(input);
            for output in &outputs {
                if let Output::Equivocation(evidence) = output {
                    let accused = match evidence {
                        crate::Evidence::DoubleVote { first, .. } => first.validator,
                        crate::Evidence::DoubleProposal { first, .. } => first.proposer,
                    };
                    assert_ne!(accused, 0, "seed {seed}: a correct node accused");
                }
                if let Output::Decide(decision) = output {
                    assert_ne!(decision.value_id, value(5), "seed {seed}: invalid decided");
                }
            }
        }
        check_no_equivocation(&driver.sent);
    }
}
