//! Crash and restart from the last persisted checkpoint: the restored core
//! re-sends what it signed, never signs a conflicting message, and the round
//! still completes.

use std::collections::BTreeMap;

use super::driver::{decision, proposals, requests_value, test_config, value, votes, Driver};
use crate::{
    Checkpoint, Core, CoreError, Input, Message, Output, Proposal, RoundValue, Step, ValidatorSet,
    Vote, VoteKind,
};

const PREVOTE: VoteKind = VoteKind::Prevote;
const PRECOMMIT: VoteKind = VoteKind::Precommit;

fn vote(kind: VoteKind, validator: u32, round: u32, value_id: Option<[u8; 32]>) -> Input {
    Input::Vote(Vote {
        kind,
        height: 1,
        round,
        value_id,
        validator,
    })
}

fn proposal(round: u32, value_id: [u8; 32], valid_round: Option<u32>) -> Input {
    Input::Proposal(Proposal {
        height: 1,
        round,
        value_id,
        valid_round,
        proposer: (1 + round) % 4,
    })
}

/// Panics if two of `sent` fill one slot with different contents.
fn assert_no_equivocation(sent: &[Message]) {
    let mut slots: BTreeMap<(u64, u32, u8), &Message> = BTreeMap::new();
    for message in sent {
        let slot = match message {
            Message::Proposal(p) => (p.height, p.round, 0),
            Message::Vote(v) if v.kind == PREVOTE => (v.height, v.round, 1),
            Message::Vote(v) => (v.height, v.round, 2),
        };
        if let Some(earlier) = slots.insert(slot, message) {
            assert_eq!(earlier, message, "equivocation across a restart");
        }
    }
}

#[test]
fn restart_after_a_nil_prevote_never_prevotes_again() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.timeout(Step::Propose, 0);
    let checkpoint = driver.persisted.clone().unwrap();
    assert_eq!((checkpoint.round, checkpoint.step), (0, Step::Prevote));

    let mut restarted = Driver::restored(4, 0, checkpoint);
    let outputs = restarted.input(Input::Start);
    assert_eq!(
        outputs,
        [Output::BroadcastVote(Vote {
            kind: PREVOTE,
            height: 1,
            round: 0,
            value_id: None,
            validator: 0
        })]
    );
    // The proposal a fresh core would prevote for: no second prevote.
    let outputs = restarted.input(proposal(0, value(1), None));
    assert!(votes(&outputs).is_empty());
    // The round completes: polka, lock, precommit, decision.
    let outputs = restarted.prevotes(&[1, 2, 3], 0, Some(value(1)));
    assert_eq!(
        votes(&outputs)
            .iter()
            .map(|v| (v.kind, v.value_id))
            .collect::<Vec<_>>(),
        [(PRECOMMIT, Some(value(1)))]
    );
    let outputs = restarted.precommits(&[1, 2], 0, Some(value(1)));
    assert_eq!(decision(&outputs).map(|d| d.value_id), Some(value(1)));
    let mut sent = driver.sent.clone();
    sent.extend(restarted.sent);
    assert_no_equivocation(&sent);
}

#[test]
fn restart_after_precommitting_keeps_the_lock() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.proposal(0, value(1), None);
    driver.prevotes(&[1, 2], 0, Some(value(1)));
    let checkpoint = driver.persisted.clone().unwrap();
    let lock = Some(RoundValue {
        value_id: value(1),
        round: 0,
    });
    assert_eq!(
        (checkpoint.step, checkpoint.locked),
        (Step::Precommit, lock)
    );

    let mut restarted = Driver::restored(4, 0, checkpoint);
    let outputs = restarted.input(Input::Start);
    assert_eq!(
        votes(&outputs).len(),
        2,
        "re-sends its prevote and precommit"
    );
    assert_eq!(restarted.core.locked(), lock);
    restarted.precommits(&[2, 3], 0, None);
    restarted.timeout(Step::Precommit, 0);
    let outputs = restarted.input(proposal(1, value(2), None));
    assert_eq!(
        votes(&outputs)
            .iter()
            .map(|v| v.value_id)
            .collect::<Vec<_>>(),
        [None],
        "still locked on value(1)"
    );
}

#[test]
fn restart_keeps_the_polka_behind_the_valid_value() {
    // Validator 3 proposes in round 2.
    let (mut driver, _) = Driver::started(4, 3);
    driver.proposal(0, value(1), None);
    driver.prevotes(&[0, 1], 0, Some(value(1)));
    let checkpoint = driver.persisted.clone().unwrap();
    let signers: Vec<_> = checkpoint.valid_polka.iter().map(|v| v.validator).collect();
    assert_eq!(signers, [0, 1, 3]);

    let mut restarted = Driver::restored(4, 3, checkpoint);
    restarted.input(Input::Start);
    let known = restarted.core.known_messages();
    for validator in [0, 1] {
        assert!(known.contains(&Message::Vote(Vote {
            kind: PREVOTE,
            height: 1,
            round: 0,
            value_id: Some(value(1)),
            validator
        })));
    }
    // In its own round it re-proposes the value and, the polka being
    // known, accepts it itself (l. 28).
    let outputs = restarted.prevotes(&[0, 1], 2, None);
    assert_eq!(proposals(&outputs).len(), 1);
    assert_eq!(
        votes(&outputs)
            .iter()
            .map(|v| v.value_id)
            .collect::<Vec<_>>(),
        [Some(value(1))]
    );
}

#[test]
fn restart_keeps_the_messages_that_justify_the_round() {
    // Validator 2 leaves round 0 on a precommit timeout without having
    // precommitted, and proposes in round 1.
    let (mut driver, _) = Driver::started(4, 2);
    driver.timeout(Step::Propose, 0);
    driver.precommits(&[0, 1, 3], 0, None);
    driver.timeout(Step::Precommit, 0);
    driver.input(Input::ProposeValue {
        height: 1,
        round: 1,
        value_id: value(4),
    });
    let checkpoint = driver.persisted.clone().unwrap();
    assert_eq!(checkpoint.round, 1);
    assert_eq!(checkpoint.round_evidence.len(), 3);

    // After a restart it can still show peers stuck in round 0 why it left:
    // they are what it gossips.
    let mut restarted = Driver::restored(4, 2, checkpoint);
    restarted.input(Input::Start);
    let known = restarted.core.known_messages();
    for validator in [0, 1, 3] {
        assert!(known.contains(&Message::Vote(Vote {
            kind: PRECOMMIT,
            height: 1,
            round: 0,
            value_id: None,
            validator
        })));
    }
    // Round skip: the messages of the round itself serve instead.
    let (mut skipped, _) = Driver::started(4, 0);
    skipped.prevotes(&[1, 2], 3, None);
    skipped.timeout(Step::Propose, 3);
    let evidence = skipped.persisted.clone().unwrap().round_evidence;
    assert_eq!(evidence.len(), 2);
    assert!(evidence.iter().all(|m| m.round() == 3 && m.signer() != 0));
}

#[test]
fn restarted_proposer_resends_its_proposal_instead_of_asking_again() {
    let (mut driver, _) = Driver::started(4, 1);
    driver.input(Input::ProposeValue {
        height: 1,
        round: 0,
        value_id: value(7),
    });
    let checkpoint = driver.persisted.clone().unwrap();

    let mut restarted = Driver::restored(4, 1, checkpoint);
    let outputs = restarted.input(Input::Start);
    assert!(!requests_value(&outputs));
    assert_eq!(proposals(&outputs).len(), 1);
    assert_eq!(proposals(&outputs)[0].value_id, value(7));
    assert!(!outputs.iter().any(|o| matches!(o, Output::Persist(_))));
    let outputs = restarted.input(Input::ProposeValue {
        height: 1,
        round: 0,
        value_id: value(8),
    });
    assert!(outputs.is_empty());
}

#[test]
fn proposer_that_crashed_before_proposing_asks_again() {
    // Validator 2 proposes in round 1.
    let (mut driver, _) = Driver::started(4, 2);
    driver.skip_to_round(1);
    let checkpoint = driver.persisted.clone().unwrap();
    assert_eq!((checkpoint.round, checkpoint.step), (0, Step::Precommit));

    let mut restarted = Driver::restored(4, 2, checkpoint);
    let outputs = restarted.input(Input::Start);
    assert_eq!(votes(&outputs).len(), 2);
    // Peers' precommits re-arm the precommit timeout (l. 47).
    let outputs = restarted.precommits(&[0, 1], 0, None);
    assert_eq!(super::driver::timeouts(&outputs).len(), 1);
    let outputs = restarted.timeout(Step::Precommit, 0);
    assert!(outputs.contains(&Output::RequestValue {
        height: 1,
        round: 1
    }));
}

#[test]
fn restore_derives_the_step_from_what_was_signed() {
    let base = Checkpoint {
        height: 1,
        round: 0,
        step: Step::Propose,
        locked: None,
        valid: None,
        proposals: Vec::new(),
        valid_polka: Vec::new(),
        round_evidence: Vec::new(),
        votes: vec![Vote {
            kind: PREVOTE,
            height: 1,
            round: 0,
            value_id: None,
            validator: 0,
        }],
    };
    let mut driver = Driver::restored(4, 0, base.clone());
    assert_eq!(driver.core.step(), Step::Prevote);
    driver.input(Input::Start);
    assert!(votes(&driver.input(proposal(0, value(1), None))).is_empty());
    assert!(votes(&driver.timeout(Step::Propose, 0)).is_empty());

    let mut with_precommit = base;
    with_precommit.votes.push(Vote {
        kind: PRECOMMIT,
        height: 1,
        round: 0,
        value_id: None,
        validator: 0,
    });
    let mut driver = Driver::restored(4, 0, with_precommit);
    assert_eq!(driver.core.step(), Step::Precommit);
    driver.input(Input::Start);
    assert!(votes(&driver.timeout(Step::Prevote, 0)).is_empty());
}

#[test]
fn restore_rejects_checkpoints_it_cannot_have_written() {
    let validators = ValidatorSet::new(4).unwrap();
    let good = Checkpoint {
        height: 5,
        round: 2,
        step: Step::Prevote,
        locked: None,
        valid: None,
        proposals: Vec::new(),
        valid_polka: Vec::new(),
        round_evidence: Vec::new(),
        votes: vec![Vote {
            kind: PREVOTE,
            height: 5,
            round: 2,
            value_id: None,
            validator: 0,
        }],
    };
    assert!(Core::restore(test_config(), validators, 0, good.clone()).is_ok());
    let restore = |checkpoint: Checkpoint| Core::restore(test_config(), validators, 0, checkpoint);

    let mut foreign = good.clone();
    foreign.votes[0].validator = 1;
    let mut other_height = good.clone();
    other_height.votes[0].height = 4;
    let mut later_round = good.clone();
    later_round.votes[0].round = 3;
    let mut conflicting = good.clone();
    conflicting.votes.push(Vote {
        value_id: Some(value(1)),
        ..good.votes[0].clone()
    });
    let mut not_our_turn = good.clone();
    not_our_turn.proposals.push(Proposal {
        height: 5,
        round: 0,
        value_id: value(1),
        valid_round: None,
        proposer: 0,
    });
    let mut bad_polka = good.clone();
    bad_polka.valid_polka.push(Vote {
        kind: PREVOTE,
        height: 5,
        round: 1,
        value_id: Some(value(1)),
        validator: 2,
    });
    let mut stale_evidence = good.clone();
    stale_evidence.round_evidence.push(Message::Vote(Vote {
        kind: PRECOMMIT,
        height: 5,
        round: 0,
        value_id: None,
        validator: 2,
    }));
    let mut lock_ahead = good.clone();
    lock_ahead.locked = Some(RoundValue {
        value_id: value(1),
        round: 3,
    });
    for (name, checkpoint) in [
        ("foreign", foreign),
        ("other height", other_height),
        ("later round", later_round),
        ("conflicting", conflicting),
        ("not our turn", not_our_turn),
        ("lock ahead", lock_ahead),
        ("polka without a valid value", bad_polka),
        ("evidence of an older round", stale_evidence),
    ] {
        assert!(
            matches!(
                restore(checkpoint),
                Err(CoreError::InconsistentCheckpoint { .. })
            ),
            "{name}"
        );
    }
    assert!(matches!(
        Core::restore(test_config(), validators, 4, good),
        Err(CoreError::NotAValidator { me: 4, size: 4 })
    ));
}

#[test]
fn restore_then_sync_leaves_a_committed_height() {
    let (mut driver, _) = Driver::started(4, 0);
    driver.timeout(Step::Propose, 0);
    let checkpoint = driver.persisted.clone().unwrap();
    let mut restarted = Driver::restored(4, 0, checkpoint);
    restarted.input(Input::SyncedTo { height: 1 });
    let outputs = restarted.input(Input::Start);
    assert!(votes(&outputs).is_empty(), "nothing to re-send at height 2");
    assert_eq!(restarted.core.height(), 2);
    assert!(restarted.core.signed_messages().is_empty());
}

/// The inputs of one height at validator 0, where it locks on value(1) in
/// round 0, then (after a hidden-lock nil prevote) follows the round-1 polka
/// for value(2) and decides it.
fn script() -> Vec<Input> {
    let timeout = |round, step| Input::Timeout {
        height: 1,
        round,
        step,
    };
    vec![
        Input::Start,
        proposal(0, value(1), None),
        vote(PREVOTE, 1, 0, Some(value(1))),
        vote(PREVOTE, 2, 0, Some(value(1))),
        vote(PRECOMMIT, 2, 0, None),
        vote(PRECOMMIT, 3, 0, None),
        timeout(0, Step::Precommit),
        proposal(1, value(2), None),
        vote(PREVOTE, 1, 1, Some(value(2))),
        vote(PREVOTE, 2, 1, Some(value(2))),
        vote(PREVOTE, 3, 1, Some(value(2))),
        vote(PRECOMMIT, 1, 1, Some(value(2))),
        vote(PRECOMMIT, 2, 1, Some(value(2))),
    ]
}

#[test]
fn crash_at_every_point_of_a_height_never_equivocates_and_still_decides() {
    let inputs = script();
    // Without a crash.
    let mut reference = Driver::new(4, 0, 1);
    let mut decided = None;
    for input in inputs.clone() {
        decided = decided.or(decision(&reference.input(input)));
    }
    assert_eq!(decided.map(|d| (d.round, d.value_id)), Some((1, value(2))));

    for crash_after in 0..=inputs.len() {
        let mut first = Driver::new(4, 0, 1);
        for input in inputs.iter().take(crash_after).cloned() {
            first.input(input);
        }
        // The network re-delivers everything; the timers fire again.
        let mut second = match first.persisted.clone() {
            Some(checkpoint) => Driver::restored(4, 0, checkpoint),
            None => Driver::new(4, 0, 1),
        };
        let mut decided = None;
        for input in inputs.iter().cloned() {
            decided = decided.or(decision(&second.input(input)));
        }
        let mut sent = first.sent.clone();
        sent.extend(second.sent);
        assert_no_equivocation(&sent);
        assert_eq!(
            decided.map(|d| d.value_id),
            Some(value(2)),
            "crash after {crash_after} inputs"
        );
    }
}
