//! The quorum rule, shared by the event system's confirmer and the audit:
//! with n nodes and quorum q (more than 1/2, at most 1), the threshold is
//! t = ceil(q × n). For one transfer:
//!
//! - at least t nodes report it finalized in the **same block** (hash and
//!   number) with the **same outcome** → included, with that outcome;
//! - at least t nodes report it not included (`unknown`, or `pool`) with a
//!   finalized height past which it can never be included
//!   ([`lockstep_runtime::expired_after`]) → expired;
//! - anything else (conflicting answers, nodes down, not final yet) →
//!   undecided.
//!
//! Because q > 1/2, two different answers can never both reach t: any two
//! sets of t nodes share a node, and a node gives one answer per check.

use lockstep_runtime::{BlockNumber, Hash, Outcome};

use crate::node::{TxState, TxStatusView};

/// A quorum as a fraction `num/den`, with 1/2 < num/den ≤ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    num: u32,
    den: u32,
}

impl Quorum {
    /// Checks the bounds.
    pub fn new(num: u32, den: u32) -> Result<Quorum, String> {
        if den == 0 || num > den || 2 * u64::from(num) <= u64::from(den) {
            return Err(format!(
                "quorum {num}/{den} must be more than 1/2 and at most 1"
            ));
        }
        Ok(Quorum { num, den })
    }

    /// How many of `n` nodes must agree: ceil(num × n / den).
    pub fn threshold(&self, n: usize) -> usize {
        let n = n as u64;
        let (num, den) = (u64::from(self.num), u64::from(self.den));
        ((num * n).div_ceil(den)) as usize
    }
}

impl std::str::FromStr for Quorum {
    type Err = String;

    fn from_str(text: &str) -> Result<Quorum, String> {
        let (num, den) = text
            .split_once('/')
            .ok_or_else(|| format!("quorum {text:?}: expected a fraction like 2/3"))?;
        let parse = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("quorum {text:?}: expected a fraction like 2/3"))
        };
        Quorum::new(parse(num)?, parse(den)?)
    }
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum { num: 2, den: 3 }
    }
}

/// What a quorum check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Finalized in one block with one outcome, on the quorum.
    Included {
        /// The block.
        block_hash: Hash,
        /// Its number.
        block_number: BlockNumber,
        /// The outcome.
        outcome: Outcome,
        /// The agreeing nodes.
        confirmed_by: Vec<String>,
    },
    /// Not included on the quorum, whose finalized heights are all past
    /// `valid_until`.
    Expired {
        /// The lowest finalized height among the agreeing nodes.
        height: BlockNumber,
        /// The agreeing nodes.
        confirmed_by: Vec<String>,
    },
    /// No move.
    Undecided {
        /// Whether answers conflicted (not merely missing or not final).
        disagreement: bool,
        /// How many nodes answered.
        answered: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Vote {
    Included(Hash, BlockNumber, Outcome),
    NotIncludedPastExpiry(BlockNumber),
    NotYet,
}

fn vote(answer: &TxStatusView, valid_until: BlockNumber) -> Option<Vote> {
    match answer.status {
        TxState::Finalized => match (answer.block_hash, answer.block_number, answer.outcome) {
            (Some(hash), Some(number), Some(outcome)) => {
                Some(Vote::Included(hash, number, outcome))
            }
            // A "finalized" answer without its location is no answer.
            _ => None,
        },
        TxState::Unknown | TxState::Pool
            if lockstep_runtime::expired_after(valid_until, answer.finalized_number) =>
        {
            Some(Vote::NotIncludedPastExpiry(answer.finalized_number))
        }
        TxState::Unknown | TxState::Pool => Some(Vote::NotYet),
    }
}

/// The quorum rule. `answers` holds one entry per configured node (its URL
/// and its answer, if any).
pub fn decide(
    answers: &[(String, Option<TxStatusView>)],
    valid_until: BlockNumber,
    threshold: usize,
) -> Decision {
    let votes: Vec<(&str, Vote)> = answers
        .iter()
        .filter_map(|(url, answer)| Some((url.as_str(), vote(answer.as_ref()?, valid_until)?)))
        .collect();
    let mut included: Vec<((Hash, BlockNumber, Outcome), Vec<String>)> = Vec::new();
    let mut expired = Vec::new();
    let mut expired_height = BlockNumber::MAX;
    for (url, vote) in &votes {
        match vote {
            Vote::Included(hash, number, outcome) => {
                let key = (*hash, *number, *outcome);
                match included.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, urls)) => urls.push((*url).to_owned()),
                    None => included.push((key, vec![(*url).to_owned()])),
                }
            }
            Vote::NotIncludedPastExpiry(height) => {
                expired.push((*url).to_owned());
                expired_height = expired_height.min(*height);
            }
            Vote::NotYet => {}
        }
    }
    if let Some(((block_hash, block_number, outcome), confirmed_by)) =
        included.iter().find(|(_, urls)| urls.len() >= threshold)
    {
        return Decision::Included {
            block_hash: *block_hash,
            block_number: *block_number,
            outcome: *outcome,
            confirmed_by: confirmed_by.clone(),
        };
    }
    if expired.len() >= threshold {
        return Decision::Expired {
            height: expired_height,
            confirmed_by: expired,
        };
    }
    // Conflicting: two different inclusions, or an inclusion beside a node
    // that is past expiry without it. "Not yet" beside an inclusion is a
    // node that is behind, not a conflict.
    let disagreement = included.len() > 1 || (!included.is_empty() && !expired.is_empty());
    Decision::Undecided {
        disagreement,
        answered: votes.len(),
    }
}

/// What the nodes said of the finalized block at one height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockAgreement {
    /// At least the threshold named this hash.
    Agreed {
        /// The block's hash.
        hash: Hash,
        /// The nodes that named it.
        confirmed_by: Vec<String>,
    },
    /// No hash reached the threshold.
    Undecided {
        /// Whether two nodes named different blocks.
        disagreement: bool,
        /// How many nodes named a block.
        answered: usize,
    },
}

/// The quorum rule for a height: `answers` holds one entry per configured
/// node (its URL and the hash it names for the height, if any). Two hashes
/// can never both reach a threshold above half.
pub fn agree_on_block(answers: &[(String, Option<Hash>)], threshold: usize) -> BlockAgreement {
    let mut tally: Vec<(Hash, Vec<String>)> = Vec::new();
    for (url, answer) in answers {
        let Some(hash) = answer else { continue };
        match tally.iter_mut().find(|(h, _)| h == hash) {
            Some((_, urls)) => urls.push(url.clone()),
            None => tally.push((*hash, vec![url.clone()])),
        }
    }
    let answered = tally.iter().map(|(_, urls)| urls.len()).sum();
    match tally
        .iter()
        .find(|(_, urls)| threshold > 0 && urls.len() >= threshold)
    {
        Some((hash, urls)) => BlockAgreement::Agreed {
            hash: *hash,
            confirmed_by: urls.clone(),
        },
        None => BlockAgreement::Undecided {
            disagreement: tally.len() > 1,
            answered,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_needs_the_threshold_on_one_hash() {
        let (a, b) = (Hash([1; 32]), Hash([2; 32]));
        let answers = |hashes: &[Option<Hash>]| -> Vec<(String, Option<Hash>)> {
            hashes
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("n{i}"), *h))
                .collect()
        };
        assert_eq!(
            agree_on_block(&answers(&[Some(a), Some(b), Some(a)]), 2),
            BlockAgreement::Agreed {
                hash: a,
                confirmed_by: vec!["n0".into(), "n2".into()]
            }
        );
        assert_eq!(
            agree_on_block(&answers(&[Some(a), Some(b), None]), 2),
            BlockAgreement::Undecided {
                disagreement: true,
                answered: 2
            }
        );
        assert_eq!(
            agree_on_block(&answers(&[Some(a), None, None]), 2),
            BlockAgreement::Undecided {
                disagreement: false,
                answered: 1
            }
        );
        assert_eq!(
            agree_on_block(&answers(&[]), 0),
            BlockAgreement::Undecided {
                disagreement: false,
                answered: 0
            }
        );
    }
    use lockstep_runtime::DispatchError;

    fn finalized(hash: u8, outcome: Outcome) -> Option<TxStatusView> {
        Some(TxStatusView {
            status: TxState::Finalized,
            block_hash: Some(Hash([hash; 32])),
            block_number: Some(7),
            index: Some(0),
            outcome: Some(outcome),
            finalized_number: 9,
        })
    }

    fn unknown(height: BlockNumber) -> Option<TxStatusView> {
        Some(TxStatusView {
            status: TxState::Unknown,
            block_hash: None,
            block_number: None,
            index: None,
            outcome: None,
            finalized_number: height,
        })
    }

    fn answers(list: Vec<Option<TxStatusView>>) -> Vec<(String, Option<TxStatusView>)> {
        list.into_iter()
            .enumerate()
            .map(|(i, a)| (format!("n{i}"), a))
            .collect()
    }

    #[test]
    fn thresholds() {
        let q = Quorum::default();
        assert_eq!([1, 2, 3, 4, 7].map(|n| q.threshold(n)), [1, 2, 2, 3, 5]);
        assert_eq!("3/4".parse::<Quorum>().map(|q| q.threshold(4)), Ok(3));
        assert!("1/2".parse::<Quorum>().is_err());
        assert!("4/3".parse::<Quorum>().is_err());
        assert!("1/0".parse::<Quorum>().is_err());
        assert!("x".parse::<Quorum>().is_err());
    }

    #[test]
    fn agreement_decides() {
        let d = decide(
            &answers(vec![
                finalized(1, Outcome::Success),
                finalized(1, Outcome::Success),
                None,
            ]),
            5,
            2,
        );
        assert!(
            matches!(d, Decision::Included { outcome: Outcome::Success, ref confirmed_by, .. } if confirmed_by.len() == 2)
        );
        let failed = Outcome::Failed(DispatchError::InsufficientBalance);
        let d = decide(
            &answers(vec![finalized(1, failed), finalized(1, failed), unknown(3)]),
            5,
            2,
        );
        assert!(matches!(
            d,
            Decision::Included {
                outcome: Outcome::Failed(_),
                ..
            }
        ));
    }

    #[test]
    fn a_liar_cannot_decide_alone_or_block_a_quorum() {
        let d = decide(
            &answers(vec![
                finalized(1, Outcome::Success),
                finalized(2, Outcome::Success),
                finalized(1, Outcome::Success),
            ]),
            5,
            2,
        );
        assert!(matches!(d, Decision::Included { block_hash, .. } if block_hash == Hash([1; 32])));
        let d = decide(
            &answers(vec![
                finalized(1, Outcome::Success),
                finalized(2, Outcome::Success),
                None,
            ]),
            5,
            2,
        );
        assert_eq!(
            d,
            Decision::Undecided {
                disagreement: true,
                answered: 2
            }
        );
    }

    #[test]
    fn expiry_needs_the_quorum_past_valid_until() {
        assert!(matches!(
            decide(&answers(vec![unknown(6), unknown(8), None]), 5, 2),
            Decision::Expired { height: 6, .. }
        ));
        assert_eq!(
            decide(&answers(vec![unknown(6), unknown(5), None]), 5, 2),
            Decision::Undecided {
                disagreement: false,
                answered: 2
            }
        );
        assert_eq!(
            decide(
                &answers(vec![unknown(6), finalized(1, Outcome::Success), None]),
                5,
                2
            ),
            Decision::Undecided {
                disagreement: true,
                answered: 2
            }
        );
    }
}
