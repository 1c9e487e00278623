//! The quorum confirmer: moves events on proven blocks, not on single
//! transfers.
//!
//! With n nodes and quorum q (more than 1/2, at most 1), the threshold is
//! t = ceil(q × n). For each finalized block that holds registered
//! transfers ([`QuorumConfirmer::confirm_block`], called by the watcher):
//!
//! 1. every node is asked the hash of the finalized block at that height
//!    (`chain_getBlockHash`); at least t must name the same hash
//!    ([`agree_on_block`]), else nothing moves and the reconciler asks
//!    again;
//! 2. the block is taken from the node that served it (or fetched by hash
//!    from any node), and its **justification is verified against the
//!    chain spec's validator set** and its transactions against the
//!    header's `extrinsics_root`;
//! 3. its receipts are fetched once, from any node (`chain_getReceipts`),
//!    and checked against the header's `receipts_root`, one for one with
//!    the transactions;
//! 4. every Registered event whose transfer the block holds moves in **one
//!    atomic write**, with the proof of its outcome (the justified header,
//!    its receipt and Merkle path, the transfer's bytes): a successful
//!    transfer that commits to the event → PendingAccount (and its outbox
//!    entry in the same write); a failed one → Cancelled (Failed); a
//!    successful one that does not commit → Cancelled (NotCommitted),
//!    nothing in the outbox.
//!
//! A proof that no node can serve (a justification signed by too few or by
//! strangers, transactions or receipts that do not match the header) moves
//! nothing: it is counted in `proof_failures`, logged, and the events are
//! re-checked later.
//!
//! What a block cannot answer — a transfer the watcher has not seen in a
//! block (registered after its block, or past the watcher's catch-up
//! window), or one that never made it into a block — is asked per transfer
//! ([`QuorumConfirmer::confirm`], called by the reconciler): `tx_getStatus`
//! on every node, [`decide`]d by the same threshold. A quorum that sees it
//! in a block hands that block to the steps above (its hash already
//! agreed); a quorum that sees it not included past `valid_until` cancels
//! it as expired (no proof: nothing was included to prove).
//!
//! Because q > 1/2, two different answers can never both reach t: any two
//! sets of t nodes share a node, and a node gives one answer per check.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::event::{Event, Evidence};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::node::{SignedBlockView, TxStatusView};
use lockstep_api::proof::{outcome_move, verify_justification, ChainTrust};
pub use lockstep_api::quorum::{agree_on_block, decide, BlockAgreement, Decision, Quorum};
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{merkle, BlockNumber, Hash, Receipt};

use crate::metrics::Metrics;
use crate::nodes::Node;
use crate::store::{EventStore, Move, MoveProof, ProvenBlock, StoreError, StoreResult};
use lockstep_service::{backoff, now_ms};

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
    trust: ChainTrust,
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    recheck: RecheckPolicy,
    pending_resend_base: Duration,
}

/// What one confirmation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfirmSummary {
    /// Events moved.
    pub moved: usize,
    /// Events left in Registered.
    pub undecided: usize,
}

impl ConfirmSummary {
    fn add(&mut self, other: ConfirmSummary) {
        self.moved += other.moved;
        self.undecided += other.undecided;
    }
}

/// A block whose header is agreed by the quorum and justified by the
/// validators, with its transactions and receipts checked against it.
#[derive(Debug)]
struct VerifiedBlock {
    block: Arc<ProvenBlock>,
    /// The transactions' bytes, in order.
    extrinsics: Vec<Vec<u8>>,
    /// Their receipts, in the same order.
    receipts: Vec<Receipt>,
}

/// A Registered event found in a block.
#[derive(Debug)]
struct Found {
    event: Event,
    index: usize,
}

impl QuorumConfirmer {
    /// A confirmer over `nodes`, verifying justifications against `trust`.
    /// `pending_resend_base` is when a new PendingAccount event is first
    /// due for the reconciler's resend check.
    pub fn new(
        nodes: Vec<Node>,
        quorum: Quorum,
        trust: ChainTrust,
        store: Arc<EventStore>,
        metrics: Arc<Metrics>,
        recheck: RecheckPolicy,
        pending_resend_base: Duration,
    ) -> QuorumConfirmer {
        QuorumConfirmer {
            nodes,
            quorum,
            trust,
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

    /// Confirms the events of one finalized block, as the node the watcher
    /// follows served it: see the module docs. A block without registered
    /// transfers costs no call.
    pub async fn confirm_block(&self, served: SignedBlockView) -> StoreResult<ConfirmSummary> {
        let number = served.block.header.number;
        let served_hash = served.block.header.hash();
        let store = self.store.clone();
        let extrinsics = served.block.extrinsics.clone();
        let found = store
            .blocking(move |store| registered_in_hex(store, &extrinsics))
            .await?;
        if found.is_empty() {
            return Ok(ConfirmSummary::default());
        }
        let calls = self.nodes.iter().map(|node| node.block_hash(number));
        let results = futures::future::join_all(calls).await;
        let answers: Vec<(String, Option<Hash>)> = self
            .nodes
            .iter()
            .zip(results)
            .map(|(node, result)| {
                let answer = match result {
                    Ok(answer) => answer,
                    Err(e) => {
                        Metrics::inc(&self.metrics.node_errors);
                        tracing::warn!(target: "lockstep::offchain", "{e}");
                        None
                    }
                };
                (node.url.clone(), answer)
            })
            .collect();
        let threshold = self.quorum.threshold(self.nodes.len());
        match agree_on_block(&answers, threshold) {
            BlockAgreement::Agreed { hash, confirmed_by } => {
                let served = (hash == served_hash).then_some(served);
                if served.is_none() {
                    tracing::warn!(
                        target: "lockstep::offchain",
                        "block #{number}: the followed node served {served_hash}, the quorum names {hash}; taking the quorum's"
                    );
                }
                self.settle(number, hash, confirmed_by, served.map(|s| (s, found)), &[])
                    .await
            }
            BlockAgreement::Undecided {
                disagreement,
                answered,
            } => {
                let events: Vec<&Event> = found.iter().map(|f| &f.event).collect();
                self.undecided(&events, disagreement, || {
                    format!(
                        "block #{number}: no quorum on its hash ({answered} of {} answered)",
                        self.nodes.len()
                    )
                })
                .await?;
                self.metrics.bump();
                Ok(ConfirmSummary {
                    moved: 0,
                    undecided: events.len(),
                })
            }
        }
    }

    /// Checks the Registered events among `ids` per transfer, with every
    /// node at once (one batch per node): what no block has answered yet.
    /// A transfer the quorum sees in a block settles with that block (every
    /// registered transfer in it moves); one the quorum sees expired is
    /// cancelled.
    pub async fn confirm(&self, ids: &[String]) -> StoreResult<ConfirmSummary> {
        let store = self.store.clone();
        let owned = ids.to_vec();
        let events = store
            .blocking(move |store| {
                let mut events = Vec::with_capacity(owned.len());
                for id in &owned {
                    if let Some(event) = store.get(id)? {
                        if event.state == State::Registered {
                            events.push(event);
                        }
                    }
                }
                Ok(events)
            })
            .await?;
        if events.is_empty() {
            return Ok(ConfirmSummary::default());
        }
        let hashes: Vec<Hash> = events.iter().map(|e| e.tx_hash).collect();
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
        let mut expired = Vec::new();
        let mut undecided: Vec<Event> = Vec::new();
        let mut any_disagreement = false;
        let mut why: Vec<String> = Vec::new();
        // Blocks to settle: hash → (number, agreeing nodes, its events).
        let mut blocks: HashMap<Hash, (BlockNumber, Vec<String>, Vec<Event>)> = HashMap::new();
        for (i, event) in events.into_iter().enumerate() {
            let answers: Vec<(String, Option<TxStatusView>)> = self
                .nodes
                .iter()
                .zip(&per_node)
                .map(|(node, answers)| (node.url.clone(), answers.get(i).cloned().flatten()))
                .collect();
            match decide(&answers, event.valid_until, threshold) {
                Decision::Included {
                    block_hash,
                    block_number,
                    confirmed_by,
                    ..
                } => {
                    // The outcome is taken from the proven receipt, not
                    // from the answers.
                    blocks
                        .entry(block_hash)
                        .or_insert_with(|| (block_number, confirmed_by, Vec::new()))
                        .2
                        .push(event);
                }
                Decision::Expired {
                    height,
                    confirmed_by,
                } => {
                    Metrics::inc(&self.metrics.quorum_checks);
                    expired.push(Move {
                        id: event.id.clone(),
                        reason: Reason::Expired,
                        evidence: Some(Evidence {
                            block_hash: None,
                            block_number: height,
                            outcome: None,
                            confirmed_by,
                            nodes_asked: self.nodes.len(),
                        }),
                        proof: None,
                    })
                }
                Decision::Undecided {
                    disagreement,
                    answered,
                } => {
                    if disagreement || undecided.is_empty() {
                        // The first undecided event names them all in the
                        // log; a disagreement is always named.
                        why.push(format!(
                            "event {:?}: no quorum on tx {} ({answered} of {} answered)",
                            event.id,
                            event.tx_hash,
                            self.nodes.len()
                        ));
                    }
                    any_disagreement |= disagreement;
                    undecided.push(event);
                }
            }
        }
        if !undecided.is_empty() {
            let count = undecided.len();
            let events: Vec<&Event> = undecided.iter().collect();
            self.undecided(&events, any_disagreement, || {
                format!("{count} events undecided; {}", why.join("; "))
            })
            .await?;
            summary.undecided += count;
        }
        if !expired.is_empty() {
            summary.moved += self.apply(expired).await?;
        }
        for (hash, (number, confirmed_by, known)) in blocks {
            summary.add(
                self.settle(number, hash, confirmed_by, None, &known)
                    .await?,
            );
        }
        self.metrics.bump();
        Ok(summary)
    }

    /// Verifies block `hash` at `number` (agreed by `confirmed_by`) and
    /// moves every Registered event whose transfer it holds. `served` is
    /// the block as one node served it, with the events found in it, if at
    /// hand; `known` are the other events the caller came for. All of them
    /// are deferred when no proof can be had.
    async fn settle(
        &self,
        number: BlockNumber,
        hash: Hash,
        confirmed_by: Vec<String>,
        served: Option<(SignedBlockView, Vec<Found>)>,
        known: &[Event],
    ) -> StoreResult<ConfirmSummary> {
        let started = std::time::Instant::now();
        let (served, mut found_in_served) = match served {
            Some((block, found)) => (Some(block), Some(found)),
            None => (None, None),
        };
        let verified = self
            .verified_block(number, hash, &confirmed_by, served)
            .await;
        let Some((verified, from_served)) = verified else {
            Metrics::inc(&self.metrics.proof_failures);
            let mut events: Vec<&Event> = known.iter().collect();
            events.extend(found_in_served.iter().flatten().map(|f| &f.event));
            let waiting = events.len();
            // One warning per block, at WARN; the per-event line is DEBUG.
            tracing::warn!(
                target: "lockstep::offchain",
                "block #{number} ({hash}): no node served a block, justification and receipts that verify; {waiting} events are checked again later"
            );
            self.undecided(&events, false, || format!("block #{number}: no proof"))
                .await?;
            self.metrics.bump();
            return Ok(ConfirmSummary {
                moved: 0,
                undecided: waiting,
            });
        };
        let verified = Arc::new(verified);
        let found = match found_in_served.take().filter(|_| from_served) {
            Some(found) => found,
            None => {
                let store = self.store.clone();
                let block = verified.clone();
                store
                    .blocking(move |store| registered_in(store, &block.extrinsics))
                    .await?
            }
        };
        let tree = merkle::Tree::new(
            &verified
                .receipts
                .iter()
                .map(Receipt::hash)
                .collect::<Vec<_>>(),
        );
        let mut moves = Vec::with_capacity(found.len());
        for Found { event, index } in found {
            let (Some(receipt), Some(bytes), Some(path)) = (
                verified.receipts.get(index),
                verified.extrinsics.get(index),
                tree.prove(index),
            ) else {
                continue;
            };
            let (_, reason) = outcome_move(receipt, bytes, &event);
            Metrics::inc(&self.metrics.quorum_checks);
            if reason == Reason::NotCommitted {
                tracing::warn!(
                    target: "lockstep::offchain",
                    "event {:?}: transfer {} finalized in #{number}, but it does not commit to the event; cancelled, nothing is paid",
                    event.id, event.tx_hash
                );
            }
            moves.push(Move {
                id: event.id.clone(),
                reason,
                evidence: Some(Evidence {
                    block_hash: Some(hash),
                    block_number: number,
                    outcome: Some(receipt.outcome),
                    confirmed_by: confirmed_by.clone(),
                    nodes_asked: self.nodes.len(),
                }),
                proof: Some(MoveProof {
                    block: verified.block.clone(),
                    receipt: *receipt,
                    receipt_proof: path,
                    extrinsic: bytes.clone(),
                }),
            });
        }
        let moved = self.apply(moves).await?;
        lockstep_service::metrics::observe_since(&self.metrics.confirmation_seconds, started);
        self.metrics.bump();
        Ok(ConfirmSummary {
            moved,
            undecided: 0,
        })
    }

    /// Applies `moves` in one write; returns how many moved.
    async fn apply(&self, moves: Vec<Move>) -> StoreResult<usize> {
        if moves.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let pending_due = now.saturating_add(self.pending_resend_base.as_millis() as u64);
        let store = self.store.clone();
        let (moves, results) = store
            .blocking(move |store| {
                let results = store.transition_many(&moves, now, pending_due)?;
                Ok((moves, results))
            })
            .await?;
        let mut moved = 0;
        for (one, result) in moves.iter().zip(results) {
            match result {
                Ok(event) => {
                    moved += 1;
                    if one.reason == Reason::NotCommitted {
                        Metrics::inc(&self.metrics.not_committed);
                    }
                    tracing::debug!(
                        target: "lockstep::offchain",
                        "event {:?} -> {} (tx {})", event.id, event.state, event.tx_hash
                    );
                }
                // The watcher and the reconciler may race on an event: the
                // second move is refused, as it should be.
                Err(StoreError::Illegal { .. } | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// The block `hash` at `number`, its justification verified against
    /// the chain spec and its transactions and receipts against its header:
    /// `served` first, then from the agreeing nodes, then from the others.
    async fn verified_block(
        &self,
        number: BlockNumber,
        hash: Hash,
        confirmed_by: &[String],
        served: Option<SignedBlockView>,
    ) -> Option<(VerifiedBlock, bool)> {
        // Agreeing nodes first: they have the block.
        let mut order: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| confirmed_by.contains(&n.url))
            .collect();
        order.extend(self.nodes.iter().filter(|n| !confirmed_by.contains(&n.url)));
        let mut checked = None;
        if let Some(served) = served {
            checked = self.check_block(&served, hash, "the followed node");
        }
        let from_served = checked.is_some();
        for node in &order {
            if checked.is_some() {
                break;
            }
            match node.block(hash).await {
                Ok(Some(block)) => checked = self.check_block(&block, hash, &node.url),
                Ok(None) => {}
                Err(e) => {
                    Metrics::inc(&self.metrics.node_errors);
                    tracing::warn!(target: "lockstep::offchain", "{e}");
                }
            }
        }
        let (block, extrinsics, tx_hashes) = checked?;
        for node in &order {
            match node.receipts(hash).await {
                Ok(Some(receipts)) => {
                    let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
                    let matches = receipts.len() == tx_hashes.len()
                        && receipts
                            .iter()
                            .zip(&tx_hashes)
                            .all(|(r, h)| r.tx_hash == *h)
                        && merkle::root(&leaves) == block.header.receipts_root;
                    if matches {
                        let verified = VerifiedBlock {
                            block: Arc::new(block),
                            extrinsics,
                            receipts,
                        };
                        return Some((verified, from_served));
                    }
                    tracing::warn!(
                        target: "lockstep::offchain",
                        "block #{number}: {} served receipts that do not match the header's receipts root",
                        node.url
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    Metrics::inc(&self.metrics.node_errors);
                    tracing::warn!(target: "lockstep::offchain", "{e}");
                }
            }
        }
        None
    }

    /// Whether `signed` is block `hash` with a justification by the
    /// validators and transactions matching its root; its proven header,
    /// transaction bytes and hashes if so.
    fn check_block(
        &self,
        signed: &SignedBlockView,
        hash: Hash,
        from: &str,
    ) -> Option<(ProvenBlock, Vec<Vec<u8>>, Vec<Hash>)> {
        let header = &signed.block.header;
        let refuse = |why: String| {
            tracing::warn!(target: "lockstep::offchain", "block #{} from {from}: {why}", header.number);
            None
        };
        if header.hash() != hash {
            return refuse(format!("hash {} is not the quorum's {hash}", header.hash()));
        }
        if let Err(e) = verify_justification(header, signed.justification.as_ref(), &self.trust) {
            return refuse(e.to_string());
        }
        let mut extrinsics = Vec::with_capacity(signed.block.extrinsics.len());
        for hex in &signed.block.extrinsics {
            match from_hex(hex) {
                Ok(bytes) => extrinsics.push(bytes),
                Err(e) => return refuse(format!("a transaction is not hex: {e}")),
            }
        }
        let tx_hashes: Vec<Hash> = extrinsics.iter().map(|b| Hash::digest(b)).collect();
        if merkle::root(&tx_hashes) != header.extrinsics_root {
            return refuse("its transactions do not match the header's extrinsics root".into());
        }
        let justification = signed.justification.clone()?;
        Some((
            ProvenBlock {
                header: header.clone(),
                justification,
                hash,
            },
            extrinsics,
            tx_hashes,
        ))
    }

    /// Counts and logs undecided events and schedules their next check,
    /// with capped exponential backoff.
    async fn undecided(
        &self,
        events: &[&Event],
        disagreement: bool,
        why: impl FnOnce() -> String,
    ) -> StoreResult<()> {
        for _ in events {
            Metrics::inc(&self.metrics.quorum_checks);
            Metrics::inc(&self.metrics.quorum_undecided);
            if disagreement {
                Metrics::inc(&self.metrics.quorum_disagreements);
            }
        }
        if disagreement {
            tracing::warn!(target: "lockstep::offchain", "{}: nodes disagree; retrying later", why());
        } else {
            tracing::debug!(target: "lockstep::offchain", "{}; retrying later", why());
        }
        let now = now_ms();
        let due: Vec<(String, u64)> = events
            .iter()
            .map(|event| {
                let delay = backoff(self.recheck.base, self.recheck.cap, event.checks);
                (
                    event.id.clone(),
                    now.saturating_add(delay.as_millis() as u64),
                )
            })
            .collect();
        // One write for all of them, off the async workers.
        self.store
            .blocking(move |store| store.reschedule_many(&due, State::Registered))
            .await
    }
}

/// The Registered events whose transfers are among `extrinsics` (bytes),
/// with their positions.
fn registered_in(store: &EventStore, extrinsics: &[Vec<u8>]) -> StoreResult<Vec<Found>> {
    registered_among(
        store,
        extrinsics.iter().map(|bytes| Some(Hash::digest(bytes))),
    )
}

/// [`registered_in`] for `0x`-hex transactions as a node serves them; a
/// transaction that is not hex holds no registered transfer.
fn registered_in_hex(store: &EventStore, extrinsics: &[String]) -> StoreResult<Vec<Found>> {
    registered_among(
        store,
        extrinsics
            .iter()
            .map(|hex| from_hex(hex).ok().map(|bytes| Hash::digest(&bytes))),
    )
}

/// The Registered events among transactions given by hash (none: not a
/// transaction), with their positions.
fn registered_among(
    store: &EventStore,
    hashes: impl Iterator<Item = Option<Hash>>,
) -> StoreResult<Vec<Found>> {
    let mut found = Vec::new();
    for (index, hash) in hashes.enumerate() {
        let Some(hash) = hash else { continue };
        if let Some(event) = registered_by_tx(store, &hash)? {
            found.push(Found { event, index });
        }
    }
    Ok(found)
}

fn registered_by_tx(store: &EventStore, tx: &Hash) -> StoreResult<Option<Event>> {
    let Some(id) = store.id_by_tx(tx)? else {
        return Ok(None);
    };
    Ok(store.get(&id)?.filter(|e| e.state == State::Registered))
}
