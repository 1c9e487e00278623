//! The quorum confirmer: asks every configured node where a transfer is and
//! moves its event only when enough of them agree.
//!
//! With n nodes and quorum q (more than 1/2, at most 1), the threshold is
//! t = ceil(q × n). For each event:
//!
//! - at least t nodes report the tx finalized in the **same block** (hash and
//!   number) with the **same outcome** → PendingAccount (success, with the
//!   outbox entry in the same write) or Cancelled (failure);
//! - at least t nodes report it not included (`unknown`, or `pool`) with a
//!   finalized height past `valid_until` → Cancelled as expired: the tx can
//!   never be included any more;
//! - anything else (conflicting answers, nodes down, not final yet) → no
//!   move; the event is rescheduled with capped exponential backoff and the
//!   reconciler asks again.
//!
//! Because q > 1/2, two different answers can never both reach t: any two
//! sets of t nodes share a node, and a node gives one answer per check.
//! [`decide`] is the pure rule; [`QuorumConfirmer`] does the I/O around it.

use std::sync::Arc;
use std::time::Duration;

use lockstep_runtime::{BlockNumber, Hash, Outcome};

use crate::event::Evidence;
use crate::lifecycle::{Reason, State};
use crate::metrics::Metrics;
use crate::nodes::{Node, TxStatusAnswer};
use crate::store::{EventStore, Move, StoreError, StoreResult};
use crate::{backoff, now_ms};

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

fn vote(answer: &TxStatusAnswer, valid_until: BlockNumber) -> Option<Vote> {
    match answer.status.as_str() {
        "finalized" => match (answer.block_hash, answer.block_number, answer.outcome) {
            (Some(hash), Some(number), Some(outcome)) => {
                Some(Vote::Included(hash, number, outcome))
            }
            // A "finalized" answer without its location is no answer.
            _ => None,
        },
        "unknown" | "pool" if answer.finalized_number > valid_until => {
            Some(Vote::NotIncludedPastExpiry(answer.finalized_number))
        }
        "unknown" | "pool" => Some(Vote::NotYet),
        _ => None,
    }
}

/// The quorum rule. `answers` holds one entry per configured node (its URL
/// and its answer, if any).
pub fn decide(
    answers: &[(String, Option<TxStatusAnswer>)],
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
    let mut not_yet = 0;
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
            Vote::NotYet => not_yet += 1,
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
    let _ = not_yet;
    Decision::Undecided {
        disagreement,
        answered: votes.len(),
    }
}

/// Timing of re-checks for undecided events.
#[derive(Debug, Clone, Copy)]
pub struct RecheckPolicy {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

/// Asks the nodes and applies the decisions to the store.
#[derive(Debug)]
pub struct QuorumConfirmer {
    nodes: Vec<Node>,
    quorum: Quorum,
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    recheck: RecheckPolicy,
    pending_resend_base: Duration,
}

/// What one [`QuorumConfirmer::confirm`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfirmSummary {
    /// Events moved.
    pub moved: usize,
    /// Events left in Registered.
    pub undecided: usize,
}

impl QuorumConfirmer {
    /// A confirmer over `nodes`. `pending_resend_base` is when a new
    /// PendingAccount event is first due for the reconciler's resend check.
    pub fn new(
        nodes: Vec<Node>,
        quorum: Quorum,
        store: Arc<EventStore>,
        metrics: Arc<Metrics>,
        recheck: RecheckPolicy,
        pending_resend_base: Duration,
    ) -> QuorumConfirmer {
        QuorumConfirmer {
            nodes,
            quorum,
            store,
            metrics,
            recheck,
            pending_resend_base,
        }
    }

    /// The configured nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Checks the Registered events among `ids` with every node at once
    /// (one batch per node) and applies what the quorum decides.
    pub async fn confirm(&self, ids: &[String]) -> StoreResult<ConfirmSummary> {
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(event) = self.store.get(id)? {
                if event.state == State::Registered {
                    events.push(event);
                }
            }
        }
        if events.is_empty() {
            return Ok(ConfirmSummary::default());
        }
        let hashes: Vec<Hash> = events.iter().map(|e| e.tx_hash).collect();
        let calls = self.nodes.iter().map(|node| node.tx_statuses(&hashes));
        let results = futures::future::join_all(calls).await;
        let per_node: Vec<Vec<Option<TxStatusAnswer>>> = results
            .into_iter()
            .map(|result| match result {
                Ok(answers) => answers,
                Err(e) => {
                    Metrics::inc(&self.metrics.node_errors);
                    tracing::warn!(target: "lockstep::offchain", "{e}");
                    vec![None; hashes.len()]
                }
            })
            .collect();
        let threshold = self.quorum.threshold(self.nodes.len());
        let mut summary = ConfirmSummary::default();
        let mut moves = Vec::new();
        let now = now_ms();
        for (i, event) in events.iter().enumerate() {
            let answers: Vec<(String, Option<TxStatusAnswer>)> = self
                .nodes
                .iter()
                .zip(&per_node)
                .map(|(node, answers)| (node.url.clone(), answers.get(i).cloned().flatten()))
                .collect();
            Metrics::inc(&self.metrics.quorum_checks);
            match decide(&answers, event.valid_until, threshold) {
                Decision::Included {
                    block_hash,
                    block_number,
                    outcome,
                    confirmed_by,
                } => moves.push(Move {
                    id: event.id.clone(),
                    reason: if outcome.is_success() {
                        Reason::Succeeded
                    } else {
                        Reason::Failed
                    },
                    evidence: Some(Evidence {
                        block_hash: Some(block_hash),
                        block_number,
                        outcome: Some(outcome),
                        confirmed_by,
                        nodes_asked: self.nodes.len(),
                    }),
                }),
                Decision::Expired {
                    height,
                    confirmed_by,
                } => moves.push(Move {
                    id: event.id.clone(),
                    reason: Reason::Expired,
                    evidence: Some(Evidence {
                        block_hash: None,
                        block_number: height,
                        outcome: None,
                        confirmed_by,
                        nodes_asked: self.nodes.len(),
                    }),
                }),
                Decision::Undecided {
                    disagreement,
                    answered,
                } => {
                    Metrics::inc(&self.metrics.quorum_undecided);
                    if disagreement {
                        Metrics::inc(&self.metrics.quorum_disagreements);
                        tracing::warn!(
                            target: "lockstep::offchain",
                            "event {:?}: nodes disagree on tx {} ({answered} of {} answered); retrying later",
                            event.id, event.tx_hash, self.nodes.len()
                        );
                    } else {
                        tracing::debug!(
                            target: "lockstep::offchain",
                            "event {:?}: no quorum yet for tx {} ({answered} of {} answered)",
                            event.id, event.tx_hash, self.nodes.len()
                        );
                    }
                    let delay = backoff(self.recheck.base, self.recheck.cap, event.checks);
                    self.store.reschedule(
                        &event.id,
                        State::Registered,
                        now.saturating_add(delay.as_millis() as u64),
                    )?;
                    summary.undecided += 1;
                }
            }
        }
        if !moves.is_empty() {
            // One write for all of them: one fsync per block, not per event.
            let pending_due = now.saturating_add(self.pending_resend_base.as_millis() as u64);
            for result in self.store.transition_many(&moves, now, pending_due)? {
                match result {
                    Ok(moved) => {
                        summary.moved += 1;
                        tracing::debug!(
                            target: "lockstep::offchain",
                            "event {:?} -> {} (tx {})", moved.id, moved.state, moved.tx_hash
                        );
                    }
                    // The watcher and the reconciler may race on an event:
                    // the second move is refused, as it should be.
                    Err(StoreError::Illegal { .. } | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.metrics.bump();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::DispatchError;

    fn finalized(hash: u8, outcome: Outcome) -> Option<TxStatusAnswer> {
        Some(TxStatusAnswer {
            status: "finalized".into(),
            block_hash: Some(Hash([hash; 32])),
            block_number: Some(7),
            outcome: Some(outcome),
            finalized_number: 9,
        })
    }

    fn unknown(height: BlockNumber) -> Option<TxStatusAnswer> {
        Some(TxStatusAnswer {
            status: "unknown".into(),
            block_hash: None,
            block_number: None,
            outcome: None,
            finalized_number: height,
        })
    }

    fn answers(list: Vec<Option<TxStatusAnswer>>) -> Vec<(String, Option<TxStatusAnswer>)> {
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
