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
//! A payment leaves only for a transfer that commits to its event: its
//! `reference` is
//! [`settlement_commitment`](lockstep_api::event::settlement_commitment) of
//! the event id and payment. A registration that gave the signed transfer
//! was checked then ([`Commitment::Verified`]); for one that gave only the
//! hash, the confirmer checks the finalized transfer's own bytes before it
//! moves the event: the bytes the watcher holds for the block it is
//! processing, else the block at the agreed number from any node (bytes
//! whose SHA-256 is the transfer's hash are the transfer, so a lying node
//! cannot forge them, only withhold them). A transfer that does not commit
//! → Cancelled as [`Reason::NotCommitted`], nothing in the outbox; bytes no
//! node serves → no move, the reconciler asks again.
//!
//! Because q > 1/2, two different answers can never both reach t: any two
//! sets of t nodes share a node, and a node gives one answer per check.
//! [`decide`] is the pure rule (in `lockstep_api::quorum`, shared with the
//! audit); [`QuorumConfirmer`] does the I/O around it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::node::TxStatusView;
pub use lockstep_api::quorum::{decide, Decision, Quorum};
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{BlockNumber, Hash};

use crate::metrics::Metrics;
use crate::nodes::Node;
use crate::store::{EventStore, Move, StoreError, StoreResult};
use lockstep_api::event::{bytes_commit_to, Commitment, Event, Evidence};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_service::{backoff, now_ms};

/// Transactions' encoded bytes by their hash (`SHA-256` of the bytes), as
/// a finalized block holds them: what the watcher hands the confirmer for
/// the block it is processing, so that checking a commitment costs no
/// call.
pub type TxBodies = HashMap<Hash, Vec<u8>>;

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
    /// (one batch per node) and applies what the quorum decides. `bodies`
    /// holds transactions the caller already has (the watcher: the block it
    /// is processing; the reconciler: none); an unverified commitment whose
    /// transfer is not among them is checked in the block fetched from a
    /// node.
    pub async fn confirm(
        &self,
        ids: &[String],
        mut bodies: TxBodies,
    ) -> StoreResult<ConfirmSummary> {
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((event, commitment)) = self.store.get_with_commitment(id)? {
                if event.state == State::Registered {
                    events.push((event, commitment));
                }
            }
        }
        if events.is_empty() {
            return Ok(ConfirmSummary::default());
        }
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.tx_hash).collect();
        let calls = self.nodes.iter().map(|node| node.tx_statuses(&hashes));
        let results = futures::future::join_all(calls).await;
        let per_node: Vec<Vec<Option<TxStatusView>>> = results
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
        for (i, (event, commitment)) in events.iter().enumerate() {
            let answers: Vec<(String, Option<TxStatusView>)> = self
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
                } => {
                    let reason = if !outcome.is_success() {
                        Reason::Failed
                    } else if *commitment == Commitment::Verified {
                        Reason::Succeeded
                    } else {
                        match self
                            .check_commitment(event, block_number, &mut bodies)
                            .await
                        {
                            Some(reason) => reason,
                            None => {
                                self.defer(event, now).await?;
                                summary.undecided += 1;
                                continue;
                            }
                        }
                    };
                    moves.push(Move {
                        id: event.id.clone(),
                        reason,
                        evidence: Some(Evidence {
                            block_hash: Some(block_hash),
                            block_number,
                            outcome: Some(outcome),
                            confirmed_by,
                            nodes_asked: self.nodes.len(),
                        }),
                    })
                }
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
                    self.defer(event, now).await?;
                    summary.undecided += 1;
                }
            }
        }
        if !moves.is_empty() {
            // One write for all of them: one fsync per block, not per event.
            let pending_due = now.saturating_add(self.pending_resend_base.as_millis() as u64);
            let staged = moves.clone();
            let results = self
                .store
                .blocking(move |store| store.transition_many(&staged, now, pending_due))
                .await?;
            for (one, result) in moves.iter().zip(results) {
                match result {
                    Ok(moved) => {
                        summary.moved += 1;
                        if one.reason == Reason::NotCommitted {
                            Metrics::inc(&self.metrics.not_committed);
                        }
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

    /// Leaves an undecided event Registered and schedules the next check,
    /// with capped exponential backoff.
    async fn defer(&self, event: &Event, now: u64) -> StoreResult<()> {
        let delay = backoff(self.recheck.base, self.recheck.cap, event.checks);
        let id = event.id.clone();
        let due = now.saturating_add(delay.as_millis() as u64);
        self.store
            .blocking(move |store| store.reschedule(&id, State::Registered, due))
            .await
    }

    /// The move for an event registered by hash whose transfer a quorum
    /// saw finalized and successful in block `block_number`: Succeeded when
    /// the transfer's bytes commit to it, NotCommitted when they do not;
    /// `None` when no node served the bytes (undecided). A fetched block's
    /// transactions go into `bodies`, so the other events of that block
    /// need no call.
    async fn check_commitment(
        &self,
        event: &Event,
        block_number: BlockNumber,
        bodies: &mut TxBodies,
    ) -> Option<Reason> {
        if !bodies.contains_key(&event.tx_hash) {
            for node in &self.nodes {
                match node.block_at(block_number).await {
                    Ok(Some(block)) => {
                        for hex in &block.extrinsics {
                            if let Ok(bytes) = from_hex(hex) {
                                bodies.insert(Hash::digest(&bytes), bytes);
                            }
                        }
                        // A node that withholds the transfer from its copy
                        // of the block: ask the next.
                        if bodies.contains_key(&event.tx_hash) {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        Metrics::inc(&self.metrics.node_errors);
                        tracing::warn!(target: "lockstep::offchain", "{e}");
                    }
                }
            }
        }
        let Some(bytes) = bodies.get(&event.tx_hash) else {
            tracing::warn!(
                target: "lockstep::offchain",
                "event {:?}: no node served transfer {} from block #{block_number}; its commitment is checked later",
                event.id, event.tx_hash
            );
            return None;
        };
        match bytes_commit_to(bytes, &event.id, &event.payment) {
            Ok(()) => Some(Reason::Succeeded),
            Err(e) => {
                tracing::warn!(
                    target: "lockstep::offchain",
                    "event {:?}: transfer {} finalized in #{block_number}, but {e}; cancelled, nothing is paid",
                    event.id, event.tx_hash
                );
                Some(Reason::NotCommitted)
            }
        }
    }
}
