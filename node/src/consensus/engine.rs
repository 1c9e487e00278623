//! The consensus engine task.
//!
//! One task owns the core. Everything reaches it through its inbox (gossip
//! from peers, timer firings, block-building cues), so the core sees one
//! input at a time and the order of outputs is the order of effects:
//!
//! 1. `Persist` is written (synced) before the broadcasts after it, so
//!    whatever left the node is covered by the stored checkpoint;
//! 2. own proposals and votes are signed with the validator key, recorded
//!    (a vote's signature may become part of a justification) and sent;
//! 3. timeouts become timer tasks that post back into the inbox;
//! 4. `RequestValue` waits for the block time since the head, then builds a
//!    block from the pool; `ValidateValue` re-executes the proposed block on
//!    the head's state and checks every root;
//! 5. `Decide` imports the block with the decided round's precommit
//!    signatures as its justification, in one atomic write (if block sync
//!    imported that height first, the decision is already on disk);
//! 6. a ticker re-sends the height's known votes, with their stored
//!    signatures, whenever the core has stayed at one (height, round) for a
//!    whole interval, and its known proposals on every fourth tick at one
//!    height, whatever the round: gossip is best effort, and Tendermint
//!    needs every message a correct validator saw to reach the others
//!    eventually.
//!
//! The node runs this task on a thread of its own (`service::run_engine`):
//! what it does blocks (synced writes, block execution and import), and
//! must not hold an async worker that RPC calls and the network share.
//!
//! Blocks are produced every block time even when the pool is empty: the
//! chain's height is its clock, and transaction expiry (`valid_until`) is
//! judged by it, so an idle chain must keep counting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep_consensus::{
    Checkpoint, Config, Core, Decision, Evidence, Input, Message, Output, Proposal, Step,
    ValidatorSet, ValueId, Vote,
};
use lockstep_runtime::codec::decode_exact;
use lockstep_runtime::{AccountId, Block, Executed, Hash, Justification, Keypair, Signature};
use parity_scale_codec::Encode;
use tokio::sync::{mpsc, watch};

use super::{ConsensusNetwork, Gossip};
use crate::chain::Chain;

/// How many messages may wait in the engine's inbox.
pub const INBOX_CAPACITY: usize = 4096;
/// Most vote signatures kept for justifications (current and next height).
const MAX_SIGNATURES: usize = 65_536;
/// Most proposed blocks kept while a height is undecided.
const MAX_CANDIDATES: usize = 64;
/// Largest checkpoint read back from the database.
const MAX_CHECKPOINT_BYTES: usize = 1 << 20;

/// What the engine reacts to.
#[derive(Debug)]
pub enum EngineEvent {
    /// A consensus message from a peer (not yet verified). Boxed: a proposal
    /// carries a whole block.
    Gossip(Box<Gossip>),
    /// A timer the core asked for has fired.
    Timeout {
        /// Its height.
        height: u64,
        /// Its round.
        round: u32,
        /// Its step.
        step: Step,
    },
    /// The block time has passed: build the proposal for (height, round).
    Build {
        /// The height to propose for.
        height: u64,
        /// The round to propose for.
        round: u32,
    },
    /// The chain was advanced by sync to this height: move the core on.
    Synced,
    /// Time to re-send what the engine knows of the current height.
    Rebroadcast,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Core timeouts.
    pub timeouts: Config,
    /// Time between blocks.
    pub block_time: Duration,
    /// How often the engine re-sends the signed proposal and votes it knows
    /// for the current height (TENDERMINT.md, "Gossip"): a message lost on
    /// the way, or sent before a peer connected, still arrives.
    pub rebroadcast_interval: Duration,
}

/// Why the engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// This node's key is not in the validator set.
    #[error("this node's key {0} is not in the chain's validator set")]
    NotAValidator(AccountId),
    /// The stored checkpoint is unreadable.
    #[error("stored consensus checkpoint is damaged: {0}")]
    Checkpoint(String),
    /// The core refused its configuration.
    #[error("consensus core: {0}")]
    Core(String),
    /// The database failed (a validator must not go on without it).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The engine's own runtime could not start.
    #[error("consensus thread: {0}")]
    Thread(String),
}

struct Candidate {
    /// The height it was offered for (proposed, built or restored at):
    /// what it is forgotten by, whatever number its header claims.
    height: u64,
    block: Block,
    /// Known when this node built the block or has checked it.
    executed: Option<Executed>,
    /// Whether the block is kept in the database (see [`Engine::keep`]).
    kept: bool,
}

/// The engine: the core plus what it needs to act.
pub struct Engine {
    chain: Arc<Chain>,
    core: Core,
    key: Keypair,
    validators: Vec<AccountId>,
    chain_id: String,
    config: EngineConfig,
    network: Arc<dyn ConsensusNetwork>,
    inbox: mpsc::Receiver<EngineEvent>,
    /// Used by timer tasks to post back.
    outbox: mpsc::Sender<EngineEvent>,
    candidates: HashMap<ValueId, Candidate>,
    signatures: HashMap<Vote, Signature>,
    /// Signatures of the proposals seen at the current height, to re-send.
    proposal_signatures: HashMap<Proposal, Signature>,
    /// (height, round) at the last rebroadcast tick: see [`resend_on_tick`].
    last_tick_position: (u64, u32),
    /// Ticks since the core reached the height of `last_tick_position`.
    height_ticks: u32,
}

/// Proposals carry whole blocks (megabytes under load, decoded by every
/// receiver), so they are re-sent only on every this many ticks at one
/// height, whatever the rounds do; votes, a few hundred bytes, on every
/// tick at which the round has not moved. A busy chain whose blocks take a
/// little longer than a tick pays nothing for proposals, and every message
/// is still re-sent for as long as the height lasts (counting by height,
/// not round, keeps that true when rounds end quickly).
const PROPOSAL_RESEND_TICKS: u32 = 4;

/// What a rebroadcast tick re-sends, from the core's (height, round) at the
/// last tick and now, and the ticks counted at the last tick's height:
/// (votes, proposals, ticks counted at the current height).
fn resend_on_tick(last: (u64, u32), now: (u64, u32), height_ticks: u32) -> (bool, bool, u32) {
    let ticks = if last.0 == now.0 {
        height_ticks.wrapping_add(1)
    } else {
        0
    };
    let proposals = ticks > 0 && ticks % PROPOSAL_RESEND_TICKS == 0;
    (last == now, proposals, ticks)
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("height", &self.core.height())
            .field("round", &self.core.round())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// Creates the engine for the validator holding `key`, resuming from the
    /// stored checkpoint when it is for a height not yet committed.
    /// Returns the engine and the sender through which peers' messages and
    /// sync events reach it.
    pub fn new(
        chain: Arc<Chain>,
        key: Keypair,
        config: EngineConfig,
        network: Arc<dyn ConsensusNetwork>,
    ) -> Result<(Engine, mpsc::Sender<EngineEvent>), EngineError> {
        let validators = chain.spec().validators.clone();
        let me = validators
            .iter()
            .position(|v| *v == key.public())
            .ok_or(EngineError::NotAValidator(key.public()))?;
        let me = u32::try_from(me).map_err(|_| EngineError::Core("validator index".into()))?;
        let size = u32::try_from(validators.len())
            .map_err(|_| EngineError::Core("validator set too large".into()))?;
        let set = ValidatorSet::new(size).map_err(|e| EngineError::Core(e.to_string()))?;
        let next_height = chain.head().number + 1;
        let checkpoint = match chain.db().consensus_checkpoint()? {
            Some(bytes) => Some(
                decode_exact::<Checkpoint>(&bytes, MAX_CHECKPOINT_BYTES)
                    .map_err(|e| EngineError::Checkpoint(e.to_string()))?,
            ),
            None => None,
        };
        let core = match checkpoint {
            Some(checkpoint) if checkpoint.height == next_height => {
                tracing::info!(
                    target: "lockstep::consensus",
                    "resuming height {} round {} from the stored checkpoint",
                    checkpoint.height,
                    checkpoint.round
                );
                Core::restore(config.timeouts, set, me, checkpoint)
            }
            _ => Core::new(config.timeouts, set, me, next_height),
        }
        .map_err(|e| EngineError::Core(e.to_string()))?;
        let (outbox, inbox) = mpsc::channel(INBOX_CAPACITY);
        let chain_id = chain.spec().chain_id.clone();
        let candidates = chain
            .db()
            .candidates()?
            .into_iter()
            .map(|block| {
                (
                    block.hash().0,
                    Candidate {
                        height: next_height,
                        block,
                        executed: None,
                        kept: true,
                    },
                )
            })
            .collect();
        let engine = Engine {
            chain,
            core,
            key,
            validators,
            chain_id,
            config,
            network,
            inbox,
            outbox: outbox.clone(),
            candidates,
            signatures: HashMap::new(),
            proposal_signatures: HashMap::new(),
            last_tick_position: (0, 0),
            height_ticks: 0,
        };
        Ok((engine, outbox))
    }

    /// Runs until `shutdown` turns true or the database fails.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), EngineError> {
        self.step(Input::Start)?;
        let outbox = self.outbox.clone();
        let interval = self.config.rebroadcast_interval;
        let ticker = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // Skipped when the inbox is full: the engine is busy anyway.
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    outbox.try_send(EngineEvent::Rebroadcast)
                {
                    return;
                }
            }
        });
        let result = self.run_loop(&mut shutdown).await;
        ticker.abort();
        result
    }

    async fn run_loop(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), EngineError> {
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                event = self.inbox.recv() => match event {
                    Some(event) => event,
                    None => return Ok(()),
                },
            };
            self.on_event(event)?;
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, event: EngineEvent) -> Result<(), EngineError> {
        match event {
            EngineEvent::Gossip(gossip) => self.on_gossip(*gossip),
            EngineEvent::Timeout {
                height,
                round,
                step,
            } => self.step(Input::Timeout {
                height,
                round,
                step,
            }),
            EngineEvent::Build { height, round } => self.build(height, round),
            EngineEvent::Synced => {
                let height = self.chain.head().number;
                self.forget_decided(height)?;
                self.step(Input::SyncedTo { height })
            }
            EngineEvent::Rebroadcast => {
                let position = (self.core.height(), self.core.round());
                let last = std::mem::replace(&mut self.last_tick_position, position);
                let (votes, proposals, ticks) = resend_on_tick(last, position, self.height_ticks);
                self.height_ticks = ticks;
                if votes || proposals {
                    self.rebroadcast(votes, proposals);
                }
                Ok(())
            }
        }
    }

    /// Re-sends every message of the current height the core knows and this
    /// engine holds a signature for (its own are re-signed: ed25519 is
    /// deterministic, so the bytes are the same as the first time): the
    /// votes when `with_votes`, the proposals when `with_proposals`.
    fn rebroadcast(&mut self, with_votes: bool, with_proposals: bool) {
        for message in self.core.known_messages() {
            match message {
                Message::Proposal(_) if !with_proposals => {}
                Message::Vote(_) if !with_votes => {}
                Message::Proposal(proposal) => {
                    let signature = match self.proposal_signatures.get(&proposal) {
                        Some(signature) => *signature,
                        None if proposal.proposer == self.core.me() => {
                            self.key.sign(&proposal.signing_bytes(&self.chain_id))
                        }
                        None => continue,
                    };
                    let Some(candidate) = self.candidates.get(&proposal.value_id) else {
                        continue;
                    };
                    let block = candidate.block.clone();
                    self.network.broadcast(Gossip::Proposal {
                        proposal,
                        signature,
                        block,
                    });
                }
                Message::Vote(vote) => {
                    let signature = match self.signatures.get(&vote) {
                        Some(signature) => *signature,
                        None if vote.validator == self.core.me() => {
                            self.key.sign(&vote.signing_bytes(&self.chain_id))
                        }
                        None => continue,
                    };
                    self.network.broadcast(Gossip::Vote { vote, signature });
                }
            }
        }
    }

    fn on_gossip(&mut self, gossip: Gossip) -> Result<(), EngineError> {
        if let Err(error) = gossip.verify(&self.chain_id, &self.validators) {
            tracing::debug!(target: "lockstep::consensus", "dropped consensus message: {error}");
            return Ok(());
        }
        match gossip {
            Gossip::Proposal {
                proposal,
                block,
                signature,
            } => {
                if proposal.height == self.core.height()
                    && self.proposal_signatures.len() < MAX_CANDIDATES
                {
                    self.proposal_signatures
                        .entry(proposal.clone())
                        .or_insert(signature);
                }
                if proposal.height == self.core.height()
                    && !self.candidates.contains_key(&proposal.value_id)
                    && self.candidates.len() < MAX_CANDIDATES
                {
                    let candidate = Candidate {
                        height: proposal.height,
                        block,
                        executed: None,
                        kept: false,
                    };
                    self.candidates.insert(proposal.value_id, candidate);
                }
                self.step(Input::Proposal(proposal))
            }
            Gossip::Vote { vote, signature } => {
                let height = self.core.height();
                let relevant = vote.height == height || vote.height == height + 1;
                if relevant && self.signatures.len() < MAX_SIGNATURES {
                    self.signatures.entry(vote.clone()).or_insert(signature);
                }
                self.step(Input::Vote(vote))
            }
        }
    }

    /// Feeds one input and carries out the outputs, in order.
    fn step(&mut self, input: Input) -> Result<(), EngineError> {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            for output in self.core.handle(input) {
                if let Some(next) = self.carry_out(output)? {
                    pending.push(next);
                }
            }
        }
        Ok(())
    }

    /// Carries out one output; some produce an input at once (a validation
    /// verdict), returned to be fed next.
    fn carry_out(&mut self, output: Output) -> Result<Option<Input>, EngineError> {
        match output {
            Output::Persist(checkpoint) => {
                self.chain
                    .db()
                    .save_consensus_checkpoint(&checkpoint.encode())?;
            }
            Output::BroadcastProposal(proposal) => {
                self.keep(&proposal.value_id)?;
                self.send_proposal(proposal);
            }
            Output::BroadcastVote(vote) => {
                if let Some(value_id) = &vote.value_id {
                    self.keep(value_id)?;
                }
                let signature = self.key.sign(&vote.signing_bytes(&self.chain_id));
                self.signatures.insert(vote.clone(), signature);
                self.network.broadcast(Gossip::Vote { vote, signature });
            }
            Output::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => {
                let outbox = self.outbox.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                    let _ = outbox
                        .send(EngineEvent::Timeout {
                            height,
                            round,
                            step,
                        })
                        .await;
                });
            }
            Output::ValidateValue {
                height,
                round,
                value_id,
            } => {
                let valid = self.validate(height, &value_id);
                return Ok(Some(Input::ValidationResult {
                    height,
                    round,
                    value_id,
                    valid,
                }));
            }
            Output::RequestValue { height, round } => self.schedule_build(height, round),
            Output::Decide(decision) => self.decide(decision)?,
            Output::Equivocation(evidence) => {
                let metrics = self.chain.metrics();
                metrics
                    .equivocations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match evidence {
                    Evidence::DoubleVote { first, second } => tracing::warn!(
                        target: "lockstep::consensus",
                        "equivocation: validator {} voted twice: {first:?} and {second:?}",
                        first.validator
                    ),
                    Evidence::DoubleProposal { first, second } => tracing::warn!(
                        target: "lockstep::consensus",
                        "equivocation: validator {} proposed twice: {first:?} and {second:?}",
                        first.proposer
                    ),
                }
            }
        }
        Ok(None)
    }

    /// Durably keeps a block before proposing or voting for it: after a
    /// crash, this validator may have to re-propose it (its valid value) or
    /// commit it (its precommit may complete a quorum), and nobody else may
    /// still have it.
    fn keep(&mut self, value_id: &ValueId) -> Result<(), EngineError> {
        if let Some(candidate) = self.candidates.get_mut(value_id) {
            if !candidate.kept {
                self.chain.db().save_candidate(&candidate.block)?;
                candidate.kept = true;
            }
        }
        Ok(())
    }

    fn send_proposal(&mut self, proposal: Proposal) {
        let Some(candidate) = self.candidates.get(&proposal.value_id) else {
            // The core only proposes values it was given or saw proposed.
            tracing::error!(
                target: "lockstep::consensus",
                "asked to propose unknown block {}",
                Hash(proposal.value_id)
            );
            return;
        };
        let signature = self.key.sign(&proposal.signing_bytes(&self.chain_id));
        let block = candidate.block.clone();
        self.network.broadcast(Gossip::Proposal {
            proposal,
            signature,
            block,
        });
    }

    fn schedule_build(&mut self, height: u64, round: u32) {
        let head = self.chain.head();
        let due = head
            .timestamp
            .saturating_add(self.config.block_time.as_millis() as u64);
        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = outbox.send(EngineEvent::Build { height, round }).await;
        });
    }

    fn build(&mut self, height: u64, round: u32) -> Result<(), EngineError> {
        if height != self.core.height() || self.chain.head().number + 1 != height {
            return Ok(());
        }
        let built = match self.chain.build(self.key.public(), now_ms()) {
            Ok(built) => built,
            Err(error) => return Err(EngineError::Storage(error.into())),
        };
        let value_id = built.block.hash().0;
        tracing::debug!(
            target: "lockstep::consensus",
            "built block #{height} ({}) with {} txs",
            Hash(value_id),
            built.block.extrinsics.len()
        );
        let candidate = Candidate {
            height,
            block: built.block,
            executed: Some(built.executed),
            kept: false,
        };
        self.candidates.insert(value_id, candidate);
        self.step(Input::ProposeValue {
            height,
            round,
            value_id,
        })
    }

    fn validate(&mut self, height: u64, value_id: &ValueId) -> bool {
        if height != self.chain.head().number + 1 {
            return false;
        }
        let Some(candidate) = self.candidates.get_mut(value_id) else {
            return false;
        };
        if candidate.executed.is_some() {
            return true;
        }
        match self.chain.check(&candidate.block) {
            Ok(executed) => {
                candidate.executed = Some(executed);
                true
            }
            Err(error) => {
                tracing::warn!(
                    target: "lockstep::consensus",
                    "proposed block {} is invalid: {error}",
                    Hash(*value_id)
                );
                false
            }
        }
    }

    fn decide(&mut self, decision: Decision) -> Result<(), EngineError> {
        let hash = Hash(decision.value_id);
        let Some(candidate) = self.candidates.remove(&decision.value_id) else {
            tracing::error!(target: "lockstep::consensus", "decided unknown block {hash}");
            return Ok(());
        };
        let executed = match candidate.executed {
            Some(executed) => executed,
            None => match self.chain.check(&candidate.block) {
                Ok(executed) => executed,
                Err(error) => {
                    // A quorum decided it, so at least one correct validator
                    // checked it: this node's state must be the one at fault.
                    tracing::error!(
                        target: "lockstep::consensus",
                        "decided block {hash} does not execute here: {error}"
                    );
                    return Ok(());
                }
            },
        };
        let mut signatures = Vec::with_capacity(decision.precommits.len());
        for vote in &decision.precommits {
            let signature = match self.signatures.get(vote) {
                Some(signature) => Some(*signature),
                // This validator's own precommit, restored from its checkpoint
                // after a restart: signing it again yields the same signature
                // (ed25519 is deterministic), so this is not a new vote.
                None if vote.validator == self.core.me() => {
                    Some(self.key.sign(&vote.signing_bytes(&self.chain_id)))
                }
                None => None,
            };
            if let Some(signature) = signature {
                signatures.push((self.validators[vote.validator as usize], signature));
            }
        }
        let justification = Justification {
            round: decision.round,
            block_hash: hash,
            signatures,
        };
        if justification.signatures.len() < decision.precommits.len() {
            tracing::warn!(
                target: "lockstep::consensus",
                "justification of #{} lacks {} precommit signatures",
                decision.height,
                decision.precommits.len() - justification.signatures.len()
            );
        }
        match self
            .chain
            .import(&candidate.block, &justification, &executed)
        {
            Ok(()) => {}
            // Block sync imported this height first: same block (finality
            // is unique), nothing left to do.
            Err(crate::storage::StorageError::NotOnHead { .. })
                if self.chain.head().number >= decision.height =>
            {
                tracing::debug!(
                    target: "lockstep::consensus",
                    "#{} was imported by sync first",
                    decision.height
                );
            }
            Err(error) => return Err(error.into()),
        }
        if candidate.kept {
            self.chain.db().delete_candidates(&[hash])?;
        }
        self.forget_decided(decision.height)
    }

    /// Drops what belongs to heights up to `height`, and deletes the kept
    /// candidates of those heights from the database (by hash: nothing is
    /// scanned).
    fn forget_decided(&mut self, height: u64) -> Result<(), EngineError> {
        let mut stale = Vec::new();
        self.candidates.retain(|value_id, c| {
            let keep = c.height > height;
            if !keep && c.kept {
                stale.push(Hash(*value_id));
            }
            keep
        });
        self.signatures.retain(|vote, _| vote.height > height);
        self.proposal_signatures
            .retain(|proposal, _| proposal.height > height);
        self.chain.db().delete_candidates(&stale)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_candidate_is_forgotten_at_the_height_it_came_for_whatever_its_header_claims() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<Keypair> = ["alice", "bob", "charlie", "dave"]
            .into_iter()
            .map(Keypair::dev)
            .collect();
        let validators: Vec<AccountId> = keys.iter().map(Keypair::public).collect();
        let spec = lockstep_runtime::ChainSpec::dev("lockstep-engine", &validators);
        let genesis = spec.genesis().unwrap();
        let chain = Arc::new(
            Chain::open(
                dir.path(),
                spec,
                &genesis,
                crate::pool::PoolConfig::default(),
                lockstep_runtime::BlockLimits::default(),
                Arc::new(crate::metrics::Metrics::default()),
            )
            .unwrap(),
        );
        let config = EngineConfig {
            timeouts: Config::default(),
            block_time: Duration::from_secs(1),
            rebroadcast_interval: Duration::from_secs(1),
        };
        let network = Arc::new(super::super::NoNetwork);
        let (mut engine, _inbox) =
            Engine::new(chain.clone(), keys[0].clone(), config, network).unwrap();
        // A validator proposes, for height 1, a block whose header claims
        // height 1,000: it must not outlive height 1 (were it kept until a
        // height past its claim, 64 such proposals would fill the
        // candidates and leave no room for real ones).
        let mut block = chain.build(validators[1], 1).unwrap().block;
        block.header.number = 1000;
        let proposal = Proposal {
            height: 1,
            round: 0,
            value_id: block.hash().0,
            valid_round: None,
            proposer: 1,
        };
        let signature = keys[1].sign(&proposal.signing_bytes(&chain.spec().chain_id));
        engine
            .on_event(EngineEvent::Gossip(Box::new(Gossip::Proposal {
                proposal,
                signature,
                block,
            })))
            .unwrap();
        assert_eq!(engine.candidates.len(), 1);
        engine.forget_decided(1).unwrap();
        assert!(engine.candidates.is_empty());
    }

    /// Runs `positions` through the tick rule; returns the ticks (1-based)
    /// at which votes and proposals were re-sent.
    fn resent(positions: &[(u64, u32)]) -> (Vec<usize>, Vec<usize>) {
        let (mut votes, mut proposals) = (Vec::new(), Vec::new());
        let (mut last, mut ticks) = ((0, 0), 0);
        for (tick, &now) in positions.iter().enumerate() {
            let (v, p, t) = resend_on_tick(last, now, ticks);
            (last, ticks) = (now, t);
            if v {
                votes.push(tick + 1);
            }
            if p {
                proposals.push(tick + 1);
            }
        }
        (votes, proposals)
    }

    #[test]
    fn a_progressing_chain_resends_nothing() {
        let heights: Vec<(u64, u32)> = (1..=20).map(|h| (h, 0)).collect();
        assert_eq!(resent(&heights), (vec![], vec![]));
    }

    #[test]
    fn a_stuck_round_resends_votes_every_tick_and_proposals_every_fourth() {
        let stuck = vec![(5, 0); 10];
        // The first tick only reaches the position.
        assert_eq!(resent(&stuck), ((2..=10).collect(), vec![5, 9]));
    }

    #[test]
    fn proposals_are_resent_even_when_every_round_is_shorter_than_a_tick() {
        // One height, a new round at every tick: votes are never stale at a
        // tick, but proposals must still go out again, or a proposal only
        // one validator holds might never reach the others.
        let rounds: Vec<(u64, u32)> = (0..9).map(|r| (7, r)).collect();
        assert_eq!(resent(&rounds), (vec![], vec![5, 9]));
    }

    #[test]
    fn a_block_a_little_slower_than_a_tick_resends_no_proposal() {
        // Each height lasts two ticks: its votes go out again once, its
        // multi-megabyte proposal never.
        let slow: Vec<(u64, u32)> = (1..=10).flat_map(|h| [(h, 0), (h, 0)]).collect();
        let (votes, proposals) = resent(&slow);
        assert_eq!(votes.len(), 10);
        assert!(proposals.is_empty());
    }
}
