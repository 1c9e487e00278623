//! Signing bytes (which other crates verify signatures against, so their
//! layout is pinned here) and SCALE encoding of everything the host stores
//! or gossips.

use parity_scale_codec::{Decode, Encode};

use super::driver::value;
use crate::{
    Checkpoint, Decision, Evidence, Message, Proposal, RoundValue, Step, Vote, VoteKind,
    PROPOSAL_DOMAIN, VOTE_DOMAIN,
};

const CHAIN: &str = "lockstep-test";

fn precommit(validator: u32) -> Vote {
    Vote {
        kind: VoteKind::Precommit,
        height: 9,
        round: 2,
        value_id: Some(value(5)),
        validator,
    }
}

#[test]
fn proposal_signing_bytes_have_the_documented_layout() {
    let proposal = Proposal {
        height: 0x0102,
        round: 3,
        value_id: value(0xAB),
        valid_round: Some(1),
        proposer: 2,
    };
    let mut expected = PROPOSAL_DOMAIN.to_vec();
    expected.push(u8::try_from(CHAIN.len() * 4).unwrap()); // SCALE compact length
    expected.extend_from_slice(CHAIN.as_bytes());
    expected.extend_from_slice(&0x0102_u64.to_le_bytes());
    expected.extend_from_slice(&3_u32.to_le_bytes());
    expected.extend_from_slice(&[0xAB; 32]);
    expected.push(1); // Some
    expected.extend_from_slice(&1_u32.to_le_bytes());
    assert_eq!(proposal.signing_bytes(CHAIN), expected);
}

#[test]
fn vote_signing_bytes_have_the_documented_layout() {
    let nil_prevote = Vote {
        kind: VoteKind::Prevote,
        height: 7,
        round: 1,
        value_id: None,
        validator: 3,
    };
    let mut expected = VOTE_DOMAIN.to_vec();
    expected.push(u8::try_from(CHAIN.len() * 4).unwrap());
    expected.extend_from_slice(CHAIN.as_bytes());
    expected.push(0); // Prevote
    expected.extend_from_slice(&7_u64.to_le_bytes());
    expected.extend_from_slice(&1_u32.to_le_bytes());
    expected.push(0); // None
    assert_eq!(nil_prevote.signing_bytes(CHAIN), expected);
}

#[test]
fn signing_bytes_separate_domains_chains_kinds_and_values() {
    let vote = precommit(1);
    let bytes = vote.signing_bytes(CHAIN);
    assert!(bytes.starts_with(VOTE_DOMAIN));
    assert_ne!(bytes, vote.signing_bytes("other-chain"));
    let prevote = Vote {
        kind: VoteKind::Prevote,
        ..vote.clone()
    };
    assert_ne!(bytes, prevote.signing_bytes(CHAIN));
    let nil = Vote {
        value_id: None,
        ..vote.clone()
    };
    assert_ne!(bytes, nil.signing_bytes(CHAIN));
    let proposal = Proposal {
        height: 9,
        round: 2,
        value_id: value(5),
        valid_round: None,
        proposer: 1,
    };
    assert!(proposal.signing_bytes(CHAIN).starts_with(PROPOSAL_DOMAIN));
    assert_ne!(proposal.signing_bytes(CHAIN), bytes);
    assert_eq!(
        Message::Vote(vote.clone()).signing_bytes(CHAIN),
        bytes,
        "Message delegates"
    );
}

#[test]
fn every_precommit_of_a_justification_signs_the_same_bytes() {
    let expected = Vote::precommit_signing_bytes(CHAIN, 9, 2, &value(5));
    for validator in 0..4 {
        assert_eq!(precommit(validator).signing_bytes(CHAIN), expected);
    }
}

#[test]
fn everything_the_host_stores_or_gossips_round_trips_through_scale() {
    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(item: T) {
        let bytes = item.encode();
        assert_eq!(T::decode(&mut bytes.as_slice()).unwrap(), item);
    }
    let proposal = Proposal {
        height: u64::MAX,
        round: u32::MAX,
        value_id: value(1),
        valid_round: Some(4),
        proposer: 0,
    };
    round_trip(proposal.clone());
    round_trip(precommit(3));
    round_trip(Message::Proposal(proposal.clone()));
    round_trip(Message::Vote(precommit(2)));
    round_trip(Checkpoint {
        height: 9,
        round: 2,
        step: Step::Precommit,
        locked: Some(RoundValue {
            value_id: value(5),
            round: 2,
        }),
        valid: None,
        proposals: vec![proposal.clone()],
        valid_polka: Vec::new(),
        round_evidence: Vec::new(),
        votes: vec![precommit(0)],
    });
    round_trip(Decision {
        height: 9,
        round: 2,
        value_id: value(5),
        precommits: (0..3).map(precommit).collect(),
    });
    round_trip(Evidence::DoubleVote {
        first: precommit(1),
        second: Vote {
            value_id: None,
            ..precommit(1)
        },
    });
    round_trip(Evidence::DoubleProposal {
        first: proposal.clone(),
        second: Proposal {
            value_id: value(2),
            ..proposal
        },
    });
}

#[test]
fn decoding_garbage_fails_without_panicking() {
    let mut rng = super::Rng::new(7);
    for length in 0..200 {
        let bytes: Vec<u8> = (0..length)
            .map(|_| rng.next_u64().to_le_bytes()[0])
            .collect();
        let _ = Message::decode(&mut bytes.as_slice());
        let _ = Checkpoint::decode(&mut bytes.as_slice());
    }
    assert!(Vote::decode(&mut [0xFF_u8, 1, 2].as_slice()).is_err());
}
