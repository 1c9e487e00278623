//! One test (or a few) per rule of Algorithm 1, with the paper's line
//! numbers, plus the tricky cases the paper's proofs depend on.
//!
//! Unless said otherwise: n = 4 (quorum 3, f+1 = 2), height 1, and the core
//! under test is validator 0. Proposers at height 1 are round-robin
//! `(1 + round) mod 4`: round 0 → 1, round 1 → 2, round 2 → 3, round 3 → 0.

use super::driver::{
    decision, evidence, proposals, requests_value, timeouts, value, vote_of, votes, Driver,
};
use crate::{
    Evidence, Input, Output, Proposal, RoundValue, Step, TimeoutSchedule, ValidatorSet, Vote,
    VoteKind,
};

const PREVOTE: VoteKind = VoteKind::Prevote;
const PRECOMMIT: VoteKind = VoteKind::Precommit;

/// The value the single prevote in `outputs` is for (`None` = nil).
fn prevoted(outputs: &[Output]) -> Option<Option<[u8; 32]>> {
    vote_of(outputs, PREVOTE).map(|vote| vote.value_id)
}

fn precommitted(outputs: &[Output]) -> Option<Option<[u8; 32]>> {
    vote_of(outputs, PRECOMMIT).map(|vote| vote.value_id)
}

/// Validator 0 locked on `value(1)` in round 0 (l. 36).
fn locked_in_round_0() -> Driver {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    let outputs = driver.prevotes(&[1, 2], 0, Some(value(1)));
    assert_eq!(precommitted(&outputs), Some(Some(value(1))));
    assert_eq!(
        driver.core.locked(),
        Some(RoundValue {
            value_id: value(1),
            round: 0
        })
    );
    driver
}

// ----- Validator set -----------------------------------------------------

#[test]
fn thresholds_follow_the_standard_formulas() {
    let expected = [
        (1, 0, 1, 1),
        (2, 0, 2, 1),
        (3, 0, 3, 1),
        (4, 1, 3, 2),
        (5, 1, 4, 2),
        (6, 1, 5, 2),
        (7, 2, 5, 3),
        (10, 3, 7, 4),
        (100, 33, 67, 34),
    ];
    for (n, f, quorum, skip) in expected {
        let set = ValidatorSet::new(n).unwrap();
        assert_eq!(
            (set.max_faulty(), set.quorum(), set.skip_threshold()),
            (f, quorum, skip),
            "n = {n}"
        );
    }
    for n in 1..300 {
        let set = ValidatorSet::new(n).unwrap();
        // Two quorums share f+1 validators, so at least one correct one.
        assert!(2 * set.quorum() >= n + set.skip_threshold(), "n = {n}");
        // The correct validators alone form a quorum.
        assert!(set.quorum() <= n - set.max_faulty(), "n = {n}");
    }
    assert!(ValidatorSet::new(0).is_err());
    assert_eq!(ValidatorSet::new(u32::MAX).unwrap().quorum(), 2_863_311_531);
}

#[test]
fn proposer_rotates_round_robin() {
    let set = ValidatorSet::new(4).unwrap();
    let at_height_1: Vec<_> = (0..6).map(|round| set.proposer(1, round)).collect();
    assert_eq!(at_height_1, [1, 2, 3, 0, 1, 2]);
    assert_eq!(set.proposer(2, 0), 2);
    // No overflow at the extremes.
    assert!(set.proposer(u64::MAX, u32::MAX) < 4);
    let big = ValidatorSet::new(u32::MAX).unwrap();
    assert!(big.proposer(u64::MAX, u32::MAX) < u32::MAX);
}

// ----- StartRound (l. 11) ------------------------------------------------

#[test]
fn non_proposer_starts_by_scheduling_the_propose_timeout() {
    let (driver, outputs) = Driver::started(4, 0);
    assert_eq!(
        outputs,
        [Output::ScheduleTimeout {
            height: 1,
            round: 0,
            step: Step::Propose,
            duration_ms: 300
        }]
    );
    assert_eq!(
        (driver.core.round(), driver.core.step()),
        (0, Step::Propose)
    );
}

#[test]
fn proposer_requests_a_value_then_proposes_and_prevotes_it() {
    let (mut driver, outputs) = Driver::started(4, 1);
    assert!(outputs.contains(&Output::RequestValue {
        height: 1,
        round: 0
    }));
    let outputs = driver.input(Input::ProposeValue {
        height: 1,
        round: 0,
        value_id: value(7),
    });
    let proposal = Proposal {
        height: 1,
        round: 0,
        value_id: value(7),
        valid_round: None,
        proposer: 1,
    };
    // Its own block needs no validation; each signature is persisted first.
    assert!(matches!(
        outputs.as_slice(),
        [
            Output::Persist(_),
            Output::BroadcastProposal(p),
            Output::Persist(_),
            Output::BroadcastVote(v),
        ] if *p == proposal && v.kind == PREVOTE && v.value_id == Some(value(7))
    ));
}

#[test]
fn propose_value_out_of_turn_is_ignored() {
    let (mut driver, _) = Driver::started(4, 1);
    let wrong_round = driver.input(Input::ProposeValue {
        height: 1,
        round: 1,
        value_id: value(7),
    });
    let wrong_height = driver.input(Input::ProposeValue {
        height: 2,
        round: 0,
        value_id: value(7),
    });
    assert!(wrong_round.is_empty() && wrong_height.is_empty());
    // Not the proposer at all.
    let (mut other, _) = Driver::started(4, 0);
    assert!(other
        .input(Input::ProposeValue {
            height: 1,
            round: 0,
            value_id: value(7)
        })
        .is_empty());
    // Answered twice: one proposal only.
    driver.input(Input::ProposeValue {
        height: 1,
        round: 0,
        value_id: value(7),
    });
    let again = driver.input(Input::ProposeValue {
        height: 1,
        round: 0,
        value_id: value(8),
    });
    assert!(proposals(&again).is_empty());
}

#[test]
fn messages_before_start_wait_for_it() {
    let mut driver = Driver::new(4, 0, 1);
    assert!(driver.proposal(0, value(1), None).is_empty());
    assert!(driver.prevotes(&[1, 2], 0, Some(value(1))).is_empty());
    assert!(driver.timeout(Step::Propose, 0).is_empty());
    let outputs = driver.input(Input::Start);
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
    assert_eq!(precommitted(&outputs), Some(Some(value(1))));
    assert!(driver.input(Input::Start).is_empty());
}

// ----- Fresh proposal (l. 22) --------------------------------------------

#[test]
fn fresh_valid_proposal_gets_a_prevote() {
    let (mut driver, _) = Driver::started(4, 0);
    let outputs = driver.proposal(0, value(1), None);
    assert!(outputs.contains(&Output::ValidateValue {
        height: 1,
        round: 0,
        value_id: value(1)
    }));
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
    assert_eq!(driver.core.step(), Step::Prevote);
}

#[test]
fn prevote_waits_for_the_validation_verdict() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.auto_validate = false;
    let outputs = driver.proposal(0, value(1), None);
    assert_eq!(prevoted(&outputs), None);
    assert_eq!(driver.core.step(), Step::Propose);
    let outputs = driver.input(Input::ValidationResult {
        height: 1,
        round: 0,
        value_id: value(1),
        valid: true,
    });
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

#[test]
fn invalid_proposal_gets_a_nil_prevote() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.invalid.insert(value(1));
    let outputs = driver.proposal(0, value(1), None);
    assert_eq!(prevoted(&outputs), Some(None));
}

#[test]
fn proposal_from_another_validator_than_the_proposer_is_ignored() {
    let (mut driver, _) = Driver::started(4, 0);
    let outputs = driver.input(Input::Proposal(Proposal {
        height: 1,
        round: 0,
        value_id: value(1),
        valid_round: None,
        proposer: 2,
    }));
    assert!(outputs.is_empty());
    // A valid round not before the round is malformed.
    let outputs = driver.proposal(0, value(1), Some(0));
    assert!(outputs.is_empty());
}

#[test]
fn unsolicited_validation_result_is_ignored() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.auto_validate = false;
    let outputs = driver.input(Input::ValidationResult {
        height: 1,
        round: 0,
        value_id: value(1),
        valid: true,
    });
    assert!(outputs.is_empty());
    // The core still asks when the block is actually proposed.
    let outputs = driver.proposal(0, value(1), None);
    assert!(outputs.contains(&Output::ValidateValue {
        height: 1,
        round: 0,
        value_id: value(1)
    }));
    assert_eq!(prevoted(&outputs), None);
}

// ----- Timeouts (l. 57–65) -----------------------------------------------

#[test]
fn propose_timeout_prevotes_nil_once() {
    let (mut driver, _) = Driver::started(4, 0);
    let outputs = driver.timeout(Step::Propose, 0);
    assert_eq!(prevoted(&outputs), Some(None));
    assert!(driver.timeout(Step::Propose, 0).is_empty());
    // A proposal arriving late changes nothing.
    let late = driver.proposal(0, value(1), None);
    assert_eq!(prevoted(&late), None);
}

#[test]
fn timeouts_of_other_rounds_and_heights_do_nothing() {
    let (mut driver, _) = Driver::started(4, 0);
    for (height, round) in [(1, 1), (0, 0), (2, 0), (u64::MAX, u32::MAX)] {
        for step in [Step::Propose, Step::Prevote, Step::Precommit] {
            let outputs = driver.input(Input::Timeout {
                height,
                round,
                step,
            });
            assert!(outputs.is_empty(), "{height} {round} {step:?}");
        }
    }
    // Prevote and precommit timeouts out of their step do nothing either.
    assert!(driver.timeout(Step::Prevote, 0).is_empty());
    driver.skip_to_round(1);
    for step in [Step::Propose, Step::Prevote, Step::Precommit] {
        assert!(driver.timeout(step, 0).is_empty(), "{step:?}");
    }
    assert_eq!(driver.core.round(), 1);
}

#[test]
fn timeouts_grow_with_the_round() {
    let (mut driver, _) = Driver::started(4, 0);
    for round in 0..6 {
        let step = u64::from(round);
        let mut outputs = driver.timeout(Step::Propose, round);
        outputs.extend(driver.prevotes(&[1, 2], round, Some(value(1))));
        outputs.extend(driver.timeout(Step::Prevote, round));
        outputs.extend(driver.precommits(&[1, 2], round, None));
        assert_eq!(
            timeouts(&outputs),
            [
                (1, round, Step::Prevote, 200 + 20 * step),
                (1, round, Step::Precommit, 100 + 10 * step)
            ]
        );
        let next = driver.timeout(Step::Precommit, round);
        assert_eq!(
            timeouts(&next),
            [(1, round + 1, Step::Propose, 300 + 30 * (step + 1))]
        );
    }
    let huge = TimeoutSchedule {
        base_ms: u64::MAX - 1,
        delta_ms: u64::MAX,
    };
    assert_eq!(huge.duration_ms(u32::MAX), u64::MAX);
}

// ----- Any 2f+1 prevotes (l. 34) and nil polka (l. 44) -------------------

#[test]
fn split_prevotes_schedule_the_prevote_timeout_once() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.timeout(Step::Propose, 0);
    driver.vote(PREVOTE, 1, 0, Some(value(1)));
    let outputs = driver.vote(PREVOTE, 2, 0, Some(value(2)));
    assert_eq!(timeouts(&outputs), [(1, 0, Step::Prevote, 200)]);
    assert!(driver.vote(PREVOTE, 3, 0, Some(value(3))).is_empty());
    let outputs = driver.timeout(Step::Prevote, 0);
    assert_eq!(precommitted(&outputs), Some(None));
    assert_eq!(driver.core.step(), Step::Precommit);
}

#[test]
fn nil_polka_precommits_nil() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.timeout(Step::Propose, 0);
    let outputs = driver.prevotes(&[1, 2], 0, None);
    assert_eq!(precommitted(&outputs), Some(None));
    assert_eq!(driver.core.locked(), None);
}

// ----- Polka (l. 36) -----------------------------------------------------

#[test]
fn polka_locks_and_precommits() {
    let driver = locked_in_round_0();
    assert_eq!(
        driver.core.valid(),
        Some(RoundValue {
            value_id: value(1),
            round: 0
        })
    );
    assert_eq!(driver.core.step(), Step::Precommit);
}

#[test]
fn polka_seen_after_precommitting_only_updates_the_valid_value() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.auto_validate = false;
    driver.proposal(0, value(1), None);
    driver.timeout(Step::Propose, 0);
    // A polka for value(1), but the block is not validated yet.
    driver.prevotes(&[1, 2, 3], 0, Some(value(1)));
    let outputs = driver.timeout(Step::Prevote, 0);
    assert_eq!(precommitted(&outputs), Some(None));
    let outputs = driver.input(Input::ValidationResult {
        height: 1,
        round: 0,
        value_id: value(1),
        valid: true,
    });
    assert!(votes(&outputs).is_empty());
    assert_eq!(driver.core.locked(), None);
    assert_eq!(
        driver.core.valid(),
        Some(RoundValue {
            value_id: value(1),
            round: 0
        })
    );
}

#[test]
fn polka_for_an_invalid_value_is_not_followed() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.invalid.insert(value(1));
    driver.proposal(0, value(1), None);
    let outputs = driver.prevotes(&[1, 2, 3], 0, Some(value(1)));
    assert_eq!(precommitted(&outputs), None);
    assert_eq!(driver.core.valid(), None);
}

// ----- Any 2f+1 precommits (l. 47) and decide (l. 49) ----------------------

#[test]
fn split_precommits_schedule_the_precommit_timeout_then_next_round() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.vote(PRECOMMIT, 1, 0, Some(value(1)));
    driver.vote(PRECOMMIT, 2, 0, None);
    let outputs = driver.vote(PRECOMMIT, 3, 0, Some(value(3)));
    assert_eq!(timeouts(&outputs), [(1, 0, Step::Precommit, 100)]);
    let outputs = driver.timeout(Step::Precommit, 0);
    assert_eq!(timeouts(&outputs), [(1, 1, Step::Propose, 330)]);
    assert_eq!(
        (driver.core.round(), driver.core.step()),
        (1, Step::Propose)
    );
}

#[test]
fn decides_with_the_precommits_as_justification() {
    let mut driver = locked_in_round_0();
    let outputs = driver.precommits(&[2, 3], 0, Some(value(1)));
    let decided = decision(&outputs).expect("decided");
    assert_eq!((decided.height, decided.round), (1, 0));
    assert_eq!(decided.value_id, value(1));
    let signers: Vec<_> = decided.precommits.iter().map(|v| v.validator).collect();
    assert_eq!(signers, [0, 2, 3]);
    assert!(decided
        .precommits
        .iter()
        .all(|v| v.kind == PRECOMMIT && v.height == 1 && v.round == 0));
    // On to height 2, round 0, with the lock reset.
    assert_eq!(driver.core.height(), 2);
    assert_eq!(
        (driver.core.round(), driver.core.step()),
        (0, Step::Propose)
    );
    assert_eq!((driver.core.locked(), driver.core.valid()), (None, None));
    assert_eq!(timeouts(&outputs), [(2, 0, Step::Propose, 300)]);
    // More precommits for the decided height do nothing.
    let late = driver.input(Input::Vote(Vote {
        kind: PRECOMMIT,
        height: 1,
        round: 0,
        value_id: Some(value(1)),
        validator: 1,
    }));
    assert!(late.is_empty());
}

#[test]
fn decides_from_precommits_alone_without_having_voted() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.auto_validate = false;
    driver.precommits(&[1, 2, 3], 0, Some(value(1)));
    let outputs = driver.proposal(0, value(1), None);
    assert_eq!(
        decision(&outputs),
        None,
        "not before the block is validated"
    );
    let outputs = driver.input(Input::ValidationResult {
        height: 1,
        round: 0,
        value_id: value(1),
        valid: true,
    });
    assert_eq!(decision(&outputs).map(|d| d.value_id), Some(value(1)));
}

#[test]
fn decides_in_a_past_round() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    // f+1 validators are in round 1 already: skip there (l. 55).
    driver.prevotes(&[2, 3], 1, None);
    assert_eq!(driver.core.round(), 1);
    // The precommits of round 0 arrive late (l. 49 holds for any round).
    let outputs = driver.precommits(&[1, 2, 3], 0, Some(value(1)));
    let decided = decision(&outputs).expect("decided");
    assert_eq!(
        (decided.height, decided.round, decided.value_id),
        (1, 0, value(1))
    );
    assert_eq!(driver.core.height(), 2);
}

#[test]
fn an_invalid_value_is_never_decided() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.invalid.insert(value(9));
    driver.proposal(0, value(9), None);
    let outputs = driver.precommits(&[1, 2, 3], 0, Some(value(9)));
    assert_eq!(decision(&outputs), None);
    assert_eq!(driver.core.height(), 1);
}

#[test]
fn precommits_for_another_value_than_the_proposal_do_not_decide() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    let outputs = driver.precommits(&[1, 2, 3], 0, Some(value(2)));
    assert_eq!(decision(&outputs), None);
}

// ----- Round skip (l. 55) --------------------------------------------------

#[test]
fn f_plus_one_messages_from_a_higher_round_skip_there() {
    let (mut driver, _) = Driver::started(4, 0);
    assert!(driver.vote(PREVOTE, 1, 5, None).is_empty());
    let outputs = driver.vote(PRECOMMIT, 2, 5, Some(value(1)));
    assert_eq!(driver.core.round(), 5);
    assert_eq!(timeouts(&outputs), [(1, 5, Step::Propose, 450)]);
}

#[test]
fn round_skip_counts_a_proposal_as_a_message() {
    let (mut driver, _) = Driver::started(4, 0);
    // Round 5's proposer is validator 2.
    driver.proposal(5, value(1), None);
    assert_eq!(driver.core.round(), 0);
    let outputs = driver.vote(PREVOTE, 3, 5, Some(value(1)));
    assert_eq!(driver.core.round(), 5);
    // The buffered proposal is acted on at once.
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

#[test]
fn one_validator_in_many_rounds_does_not_skip() {
    let (mut driver, _) = Driver::started(7, 0);
    for round in 1..20 {
        driver.vote(PREVOTE, 3, round, None);
        driver.vote(PRECOMMIT, 3, round, None);
    }
    // Two validators (f = 2 for n = 7) are not enough either.
    driver.vote(PREVOTE, 4, 19, None);
    assert_eq!(driver.core.round(), 0);
    driver.vote(PREVOTE, 5, 19, None);
    assert_eq!(driver.core.round(), 19);
}

// ----- Locks: hidden lock, re-proposals, unlocking (l. 22, l. 28) ---------

#[test]
fn hidden_lock_holds_against_a_new_value() {
    let mut driver = locked_in_round_0();
    // Nobody else saw the polka: they precommit nil and move to round 1.
    driver.precommits(&[2, 3], 0, None);
    driver.timeout(Step::Precommit, 0);
    assert_eq!(driver.core.round(), 1);
    let outputs = driver.proposal(1, value(2), None);
    assert_eq!(prevoted(&outputs), Some(None));
    assert_eq!(driver.core.locked().map(|l| l.value_id), Some(value(1)));
}

#[test]
fn hidden_lock_holds_against_a_polka_older_than_the_lock() {
    let (mut driver, _) = Driver::started(4, 0);
    // A polka for value(2) in round 0, where validator 0 did not prevote.
    driver.timeout(Step::Propose, 0);
    driver.prevotes(&[1, 2, 3], 0, Some(value(2)));
    // Lock on value(1) in round 1.
    driver.timeout(Step::Prevote, 0);
    driver.precommits(&[1, 2], 0, None);
    driver.timeout(Step::Precommit, 0);
    driver.proposal(1, value(1), None);
    let outputs = driver.prevotes(&[1, 3], 1, Some(value(1)));
    assert_eq!(precommitted(&outputs), Some(Some(value(1))));
    // Round 2 re-proposes value(2) on the strength of the round-0 polka.
    driver.precommits(&[1, 3], 1, None);
    driver.timeout(Step::Precommit, 1);
    let outputs = driver.proposal(2, value(2), Some(0));
    assert_eq!(prevoted(&outputs), Some(None), "0 < lockedRound 1");
}

#[test]
fn reproposal_waits_for_its_polka() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.skip_to_round(1);
    let outputs = driver.proposal(1, value(2), Some(0));
    assert_eq!(prevoted(&outputs), None);
    // The round-0 polka arrives late; now the re-proposal is acceptable.
    let outputs = driver.prevotes(&[1, 2, 3], 0, Some(value(2)));
    assert_eq!(prevoted(&outputs), Some(Some(value(2))));
}

#[test]
fn reproposal_without_its_polka_times_out_to_nil() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.skip_to_round(1);
    driver.proposal(1, value(2), Some(0));
    let outputs = driver.timeout(Step::Propose, 1);
    assert_eq!(prevoted(&outputs), Some(None));
}

#[test]
fn newer_polka_unlocks_and_relocks() {
    let mut driver = locked_in_round_0();
    // Others saw a polka for value(2) in round 1.
    driver.prevotes(&[1, 2, 3], 1, Some(value(2)));
    assert_eq!(driver.core.round(), 1);
    // Round 2's proposer (3) re-proposes value(2) with valid round 1.
    driver.proposal(2, value(2), Some(1));
    let outputs = driver.vote(PREVOTE, 1, 2, Some(value(2)));
    assert_eq!(driver.core.round(), 2);
    assert_eq!(
        prevoted(&outputs),
        Some(Some(value(2))),
        "lockedRound 0 <= 1"
    );
    // A polka in round 2 moves the lock.
    let outputs = driver.vote(PREVOTE, 2, 2, Some(value(2)));
    assert_eq!(precommitted(&outputs), Some(Some(value(2))));
    assert_eq!(
        driver.core.locked(),
        Some(RoundValue {
            value_id: value(2),
            round: 2
        })
    );
}

#[test]
fn locked_value_reproposed_with_an_older_round_gets_a_prevote() {
    let (mut driver, _) = Driver::started(4, 0);
    // Polka for value(1) in round 0 without validator 0; then lock in round 1.
    driver.timeout(Step::Propose, 0);
    driver.prevotes(&[1, 2, 3], 0, Some(value(1)));
    driver.timeout(Step::Prevote, 0);
    driver.precommits(&[1, 2], 0, None);
    driver.timeout(Step::Precommit, 0);
    driver.proposal(1, value(1), Some(0));
    driver.prevotes(&[1, 2], 1, Some(value(1)));
    assert_eq!(driver.core.locked().map(|l| l.round), Some(1));
    driver.precommits(&[1, 2], 1, None);
    driver.timeout(Step::Precommit, 1);
    // value(1) again with valid round 0 < lockedRound 1: still fine (l. 29).
    let outputs = driver.proposal(2, value(1), Some(0));
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

#[test]
fn locked_value_proposed_fresh_gets_a_prevote() {
    let mut driver = locked_in_round_0();
    driver.precommits(&[2, 3], 0, None);
    driver.timeout(Step::Precommit, 0);
    let outputs = driver.proposal(1, value(1), None);
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

#[test]
fn proposer_reproposes_its_valid_value() {
    // Validator 3 proposes in round 2.
    let (mut driver, _) = Driver::started(4, 3);
    driver.proposal(0, value(1), None);
    driver.prevotes(&[0, 1], 0, Some(value(1)));
    assert!(driver.core.valid().is_some());
    let outputs = driver.prevotes(&[0, 1], 2, None);
    assert_eq!(driver.core.round(), 2);
    assert!(!requests_value(&outputs));
    assert_eq!(
        proposals(&outputs),
        [Proposal {
            height: 1,
            round: 2,
            value_id: value(1),
            valid_round: Some(0),
            proposer: 3
        }]
    );
    // It accepts its own re-proposal: the polka of round 0 is in its log.
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

// ----- Equivocation and duplicates ---------------------------------------

#[test]
fn equivocating_votes_are_reported_once_and_counted_once() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.timeout(Step::Propose, 0);
    driver.vote(PREVOTE, 1, 0, Some(value(1)));
    let outputs = driver.vote(PREVOTE, 1, 0, Some(value(2)));
    assert_eq!(
        evidence(&outputs),
        [Evidence::DoubleVote {
            first: Vote {
                kind: PREVOTE,
                height: 1,
                round: 0,
                value_id: Some(value(1)),
                validator: 1
            },
            second: Vote {
                kind: PREVOTE,
                height: 1,
                round: 0,
                value_id: Some(value(2)),
                validator: 1
            },
        }]
    );
    // Reported once; and two validators (0 and 1) are not 2f+1, however
    // many votes validator 1 signs.
    for byte in 3..10 {
        let outputs = driver.vote(PREVOTE, 1, 0, Some(value(byte)));
        assert!(outputs.is_empty());
    }
    let outputs = driver.vote(PREVOTE, 1, 0, None);
    assert!(outputs.is_empty());
    let outputs = driver.vote(PREVOTE, 2, 0, Some(value(1)));
    assert_eq!(timeouts(&outputs), [(1, 0, Step::Prevote, 200)]);
}

#[test]
fn an_equivocator_counts_once_toward_each_value_that_matters() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    driver.vote(PREVOTE, 1, 0, Some(value(1)));
    // Validator 3 prevotes nil, then (to others) value(1): the second vote
    // is for the proposed value, so it counts toward value(1)'s polka.
    driver.vote(PREVOTE, 3, 0, None);
    let outputs = driver.vote(PREVOTE, 3, 0, Some(value(1)));
    assert_eq!(evidence(&outputs).len(), 1);
    assert_eq!(precommitted(&outputs), Some(Some(value(1))));
    // A vote for a value that matters to no rule is not kept.
    let before = driver.core.known_messages().len();
    driver.vote(PREVOTE, 3, 0, Some(value(5)));
    assert_eq!(driver.core.known_messages().len(), before);
}

#[test]
fn double_proposal_is_reported_and_the_first_is_kept() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.auto_validate = false;
    driver.proposal(0, value(1), None);
    let outputs = driver.proposal(0, value(2), None);
    assert!(matches!(
        evidence(&outputs).as_slice(),
        [Evidence::DoubleProposal { first, second }]
            if first.value_id == value(1) && second.value_id == value(2)
    ));
    assert!(driver.proposal(0, value(3), None).is_empty());
    let outputs = driver.input(Input::ValidationResult {
        height: 1,
        round: 0,
        value_id: value(1),
        valid: true,
    });
    assert_eq!(prevoted(&outputs), Some(Some(value(1))));
}

#[test]
fn duplicates_have_no_effect() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    assert!(driver.proposal(0, value(1), None).is_empty());
    driver.vote(PREVOTE, 1, 0, Some(value(1)));
    for _ in 0..5 {
        assert!(driver.vote(PREVOTE, 1, 0, Some(value(1))).is_empty());
    }
    // Still no polka: only validators 0 and 1 prevoted.
    assert_eq!(driver.core.step(), Step::Prevote);
    // Our own vote fed back by the host is a duplicate too.
    assert!(driver.vote(PREVOTE, 0, 0, Some(value(1))).is_empty());
}

// ----- Heights -------------------------------------------------------------

#[test]
fn next_height_messages_are_buffered_and_replayed() {
    let mut driver = locked_in_round_0();
    // Height 2's proposer in round 0 is validator 2.
    let early = [
        Input::Proposal(Proposal {
            height: 2,
            round: 0,
            value_id: value(20),
            valid_round: None,
            proposer: 2,
        }),
        Input::Vote(Vote {
            kind: PREVOTE,
            height: 2,
            round: 0,
            value_id: Some(value(20)),
            validator: 1,
        }),
        Input::Vote(Vote {
            kind: PREVOTE,
            height: 2,
            round: 0,
            value_id: Some(value(20)),
            validator: 2,
        }),
    ];
    for input in early {
        assert!(driver.input(input).is_empty());
    }
    let outputs = driver.precommits(&[1, 2], 0, Some(value(1)));
    assert_eq!(decision(&outputs).map(|d| d.height), Some(1));
    // At height 2 the buffered proposal and polka act at once.
    assert_eq!(driver.core.height(), 2);
    assert!(outputs.contains(&Output::ValidateValue {
        height: 2,
        round: 0,
        value_id: value(20)
    }));
    let at_2: Vec<_> = votes(&outputs)
        .into_iter()
        .filter(|v| v.height == 2)
        .collect();
    assert_eq!(at_2.len(), 2);
    assert_eq!(driver.core.locked().map(|l| l.value_id), Some(value(20)));
}

#[test]
fn messages_for_other_heights_are_dropped() {
    let (mut driver, _) = Driver::started(4, 0);
    for height in [0, 3, 1000, u64::MAX] {
        let outputs = driver.input(Input::Vote(Vote {
            kind: PREVOTE,
            height,
            round: 0,
            value_id: None,
            validator: 1,
        }));
        assert!(outputs.is_empty());
        let outputs = driver.input(Input::Proposal(Proposal {
            height,
            round: 0,
            value_id: value(1),
            valid_round: None,
            proposer: ValidatorSet::new(4).unwrap().proposer(height, 0),
        }));
        assert!(outputs.is_empty());
    }
    driver.input(Input::SyncedTo { height: 1 });
    assert_eq!(driver.core.height(), 2);
    assert!(driver.core.known_messages().is_empty());
}

#[test]
fn synced_to_moves_past_the_committed_height() {
    let (mut driver, _) = Driver::started(4, 0);
    assert!(driver.input(Input::SyncedTo { height: 0 }).is_empty());
    let outputs = driver.input(Input::SyncedTo { height: 1 });
    assert_eq!(driver.core.height(), 2);
    assert_eq!(timeouts(&outputs), [(2, 0, Step::Propose, 300)]);
    driver.input(Input::SyncedTo { height: 10 });
    assert_eq!((driver.core.height(), driver.core.round()), (11, 0));
    assert!(driver.input(Input::SyncedTo { height: 5 }).is_empty());
    // At the last height there is, nothing overflows.
    assert!(driver
        .input(Input::SyncedTo { height: u64::MAX })
        .is_empty());
    assert_eq!(driver.core.height(), 11);
}
