//! A deterministic, in-process simulation of n validators, each a [`Core`]
//! driven by a small host, over a simulated network.
//!
//! Everything is an event in one queue ordered by `(virtual time, sequence
//! number)`, and every random choice comes from one seeded [`Rng`], so a seed
//! fixes the whole run. A run has two phases:
//!
//! - *chaos*, `[0, chaos_ms)`: random delays, drops, duplicates (hence
//!   reordering), partitions that heal, and crashes; a crashed node loses its
//!   in-flight messages and timers, and restarts from its last persisted
//!   checkpoint (possibly having crashed halfway through carrying out one
//!   input's outputs);
//! - *calm*, from `chaos_ms` on: every node is up, the network delivers
//!   everything within a few milliseconds. Byzantine validators keep
//!   misbehaving.
//!
//! The host around each core does what a real node would: persists
//! checkpoints, answers validation and block requests, gossips (a status
//! with its height, plus everything its core counted to peers at its
//! height), and syncs whole heights from peers with their justifications.
//!
//! Checked on every step, for correct validators: agreement at every height;
//! no invalid block decided; no equivocation across incarnations; every
//! broadcast covered by the last persisted checkpoint; evidence only ever
//! accuses byzantine validators; every decision carries a quorum of
//! matching precommits.

mod scenarios;

use std::collections::{BTreeMap, BTreeSet};

use parity_scale_codec::Encode;

use super::Rng;
use crate::{
    Checkpoint, Config, Core, Decision, Evidence, Height, Input, Message, Output, Proposal, Round,
    TimeoutSchedule, ValidatorIndex, ValidatorSet, ValueId, Vote, VoteKind,
};

/// First byte of a block the hosts consider invalid.
const INVALID_MARK: u8 = 0xFF;
/// Network delay bound once calm, in ms.
const CALM_DELAY_MS: u64 = 20;
/// Period of each host's gossip, in ms.
const GOSSIP_PERIOD_MS: u64 = 150;
/// Heights of certificates sent in answer to one status.
const SYNC_BATCH: u64 = 5;
/// A run processing more events than this is stuck in a loop.
const MAX_EVENTS: u64 = 3_000_000;

/// A byzantine validator's misbehaviour.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Byzantine {
    /// Its index.
    pub(crate) index: usize,
    /// Whether the blocks it builds are invalid.
    pub(crate) invalid_blocks: bool,
}

/// What a run looks like.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) n: u32,
    pub(crate) seed: u64,
    /// Validators that equivocate (every one of them splits its peers into
    /// two camps per round and tells each camp something different).
    pub(crate) byzantine: Vec<Byzantine>,
    /// Length of the chaos phase.
    pub(crate) chaos_ms: u64,
    pub(crate) drop_per_mille: u64,
    pub(crate) duplicate_per_mille: u64,
    /// Network delay bound during chaos.
    pub(crate) chaos_delay_ms: u64,
    pub(crate) partitions: bool,
    pub(crate) crashes: bool,
    /// Heights every correct validator must decide once calm.
    pub(crate) progress_heights: u64,
    /// Virtual time allowed for them.
    pub(crate) progress_budget_ms: u64,
}

impl Scenario {
    /// A perfect network, no faults.
    pub(crate) fn calm(n: u32, seed: u64) -> Self {
        Self {
            n,
            seed,
            byzantine: Vec::new(),
            chaos_ms: 0,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            chaos_delay_ms: CALM_DELAY_MS,
            partitions: false,
            crashes: false,
            progress_heights: 20,
            progress_budget_ms: 20_000,
        }
    }

    /// Every fault at once, with one equivocating validator (the last).
    pub(crate) fn stormy(n: u32, seed: u64) -> Self {
        let last = usize::try_from(n - 1).unwrap();
        Self {
            n,
            seed,
            byzantine: vec![Byzantine {
                index: last,
                invalid_blocks: false,
            }],
            chaos_ms: 5_000,
            drop_per_mille: 100,
            duplicate_per_mille: 50,
            chaos_delay_ms: 100,
            partitions: true,
            crashes: true,
            progress_heights: 15,
            progress_budget_ms: 60_000,
        }
    }
}

/// Counters of a run, to show the faults really happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) events: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
    pub(crate) partitions: u64,
    pub(crate) crashes: u64,
    pub(crate) crashes_mid_output: u64,
    pub(crate) restores: u64,
    pub(crate) evidence: u64,
    pub(crate) invalid_proposals: u64,
    pub(crate) decisions: u64,
    pub(crate) synced: u64,
    pub(crate) highest_decision_round: Round,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// Hash of every event processed and every decision: equal for equal runs.
    pub(crate) trace: u64,
    pub(crate) stats: Stats,
    /// The value decided at each height (by any correct validator).
    pub(crate) decided: BTreeMap<Height, ValueId>,
    /// Chain length of each correct validator at the end.
    pub(crate) heights: Vec<u64>,
    /// Time from the end of chaos until every correct validator had decided
    /// `progress_heights` more heights; `None` if the budget ran out.
    pub(crate) progress_ms: Option<u64>,
    /// One line per node at the end, for failure messages.
    pub(crate) final_states: Vec<String>,
}

#[derive(Clone, Debug)]
enum Packet {
    Consensus(Message),
    Status { from: usize, height: Height },
    Certificate(Decision),
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        to: usize,
        incarnation: u64,
        packet: Packet,
    },
    /// An input from the node's own host (timer, validation, new block).
    Local {
        node: usize,
        incarnation: u64,
        input: Input,
    },
    Gossip {
        node: usize,
    },
    PartitionStart {
        isolated: BTreeSet<usize>,
    },
    PartitionEnd,
    Crash {
        node: usize,
        mid_output: bool,
    },
    Restart {
        node: usize,
    },
    Heal,
}

/// One validator's host: its durable storage and its running core.
#[derive(Debug)]
struct Node {
    byzantine: Option<Byzantine>,
    /// `None` while crashed.
    core: Option<Core>,
    /// Bumped at every crash; events of older incarnations are lost.
    incarnation: u64,
    /// Durable: the last persisted checkpoint.
    persisted: Option<Checkpoint>,
    /// Durable: the committed chain, `chain[i]` deciding height `i + 1`.
    chain: Vec<Decision>,
    /// Crash partway through carrying out the next outputs.
    crash_during_next_outputs: bool,
    /// Last height each peer reported.
    peer_heights: Vec<Option<Height>>,
    /// Every message this node ever broadcast, by slot, across incarnations.
    signed: BTreeMap<(Height, Round, u8), Message>,
    /// Byzantine only: per `(height, round)`, the camp mask and the other value.
    camps: BTreeMap<(Height, Round), (u64, ValueId)>,
}

impl Node {
    fn next_height(&self) -> Height {
        u64::try_from(self.chain.len()).unwrap() + 1
    }
}

/// FNV-1a, to fold a run into one number.
#[derive(Debug)]
struct Trace(u64);

impl Trace {
    fn add(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn add_u64(&mut self, value: u64) {
        self.add(&value.to_le_bytes());
    }
}

/// Runs one scenario to the end and reports; panics (with the seed) on any
/// safety violation.
pub(crate) fn run(scenario: Scenario) -> Report {
    let mut sim = Sim::new(scenario);
    sim.run()
}

#[derive(Debug)]
struct Sim {
    scenario: Scenario,
    validators: ValidatorSet,
    config: Config,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    isolated: Option<BTreeSet<usize>>,
    decided: BTreeMap<Height, ValueId>,
    /// Chain lengths when calm began.
    baseline: Option<Vec<u64>>,
    trace: Trace,
    stats: Stats,
}

impl Sim {
    fn new(scenario: Scenario) -> Self {
        let validators = ValidatorSet::new(scenario.n).unwrap();
        let n = usize::try_from(scenario.n).unwrap();
        let config = Config {
            propose: TimeoutSchedule {
                base_ms: 200,
                delta_ms: 50,
            },
            prevote: TimeoutSchedule {
                base_ms: 100,
                delta_ms: 50,
            },
            precommit: TimeoutSchedule {
                base_ms: 100,
                delta_ms: 50,
            },
        };
        let nodes = (0..n)
            .map(|index| Node {
                byzantine: scenario
                    .byzantine
                    .iter()
                    .copied()
                    .find(|b| b.index == index),
                core: Some(Core::new(config, validators, as_validator(index), 1).unwrap()),
                incarnation: 0,
                persisted: None,
                chain: Vec::new(),
                crash_during_next_outputs: false,
                peer_heights: vec![None; n],
                signed: BTreeMap::new(),
                camps: BTreeMap::new(),
            })
            .collect();
        Self {
            rng: Rng::new(scenario.seed),
            scenario,
            validators,
            config,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            isolated: None,
            decided: BTreeMap::new(),
            baseline: None,
            trace: Trace(0xCBF2_9CE4_8422_2325),
            stats: Stats::default(),
        }
    }

    fn correct(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].byzantine.is_none())
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Start, gossip ticks, and the chaos phase's partitions and crashes,
    /// all drawn up front from the seed.
    fn schedule_setup(&mut self) {
        for node in 0..self.nodes.len() {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(
                0,
                Event::Local {
                    node,
                    incarnation,
                    input: Input::Start,
                },
            );
            let first_gossip = self.rng.below(GOSSIP_PERIOD_MS);
            self.schedule(first_gossip, Event::Gossip { node });
        }
        let chaos = self.scenario.chaos_ms;
        if self.scenario.partitions {
            let mut t = self.rng.between(100, 1_000);
            while t < chaos {
                let end = (t + self.rng.between(100, 600)).min(chaos);
                let size = self.rng.between(1, u64::from(self.scenario.n / 2));
                let mut isolated = BTreeSet::new();
                while u64::try_from(isolated.len()).unwrap() < size {
                    isolated.insert(self.random_node());
                }
                self.schedule(t, Event::PartitionStart { isolated });
                self.schedule(end, Event::PartitionEnd);
                t = end + self.rng.between(300, 1_200);
            }
        }
        if self.scenario.crashes {
            let correct: Vec<usize> = self.correct().collect();
            let mut t = self.rng.between(100, 1_000);
            while t < chaos {
                let node = correct[usize::try_from(self.rng.below(correct.len() as u64)).unwrap()];
                let mid_output = self.rng.chance(500);
                self.schedule(t, Event::Crash { node, mid_output });
                let back = t + self.rng.between(50, 600);
                self.schedule(back, Event::Restart { node });
                t += self.rng.between(400, 1_500);
            }
        }
        self.schedule(chaos, Event::Heal);
    }

    fn random_node(&mut self) -> usize {
        usize::try_from(self.rng.below(u64::from(self.scenario.n))).unwrap()
    }

    fn run(&mut self) -> Report {
        self.schedule_setup();
        let deadline = self.scenario.chaos_ms + self.scenario.progress_budget_ms;
        let mut progress_ms = None;
        while let Some(((time, _), event)) = self.queue.pop_first() {
            if time > deadline {
                break;
            }
            self.now = time;
            self.stats.events += 1;
            assert!(
                self.stats.events < MAX_EVENTS,
                "seed {}: runaway simulation",
                self.scenario.seed
            );
            self.trace_event(&event);
            self.step(event);
            if self.progress_reached() {
                progress_ms = Some(self.now - self.scenario.chaos_ms);
                break;
            }
        }
        Report {
            trace: self.trace.0,
            stats: self.stats.clone(),
            decided: self.decided.clone(),
            heights: self
                .correct()
                .map(|i| u64::try_from(self.nodes[i].chain.len()).unwrap())
                .collect(),
            progress_ms,
            final_states: self.nodes.iter().map(describe).collect(),
        }
    }

    fn progress_reached(&self) -> bool {
        let Some(baseline) = &self.baseline else {
            return false;
        };
        self.correct().all(|i| {
            let height = u64::try_from(self.nodes[i].chain.len()).unwrap();
            height >= baseline[i] + self.scenario.progress_heights
        })
    }

    fn trace_event(&mut self, event: &Event) {
        self.trace.add_u64(self.now);
        match event {
            Event::Deliver { to, packet, .. } => {
                self.trace.add(&[0, byte(*to)]);
                match packet {
                    Packet::Consensus(message) => self.trace.add(&message.encode()),
                    Packet::Status { from, height } => {
                        self.trace.add(&[byte(*from)]);
                        self.trace.add_u64(*height);
                    }
                    Packet::Certificate(decision) => self.trace.add(&decision.encode()),
                }
            }
            Event::Local { node, input, .. } => {
                self.trace.add(&[1, byte(*node)]);
                self.trace.add(format!("{input:?}").as_bytes());
            }
            Event::Gossip { node } => self.trace.add(&[2, byte(*node)]),
            Event::PartitionStart { isolated } => {
                self.trace.add(&[3]);
                self.trace
                    .add(&isolated.iter().map(|i| byte(*i)).collect::<Vec<_>>());
            }
            Event::PartitionEnd => self.trace.add(&[4]),
            Event::Crash { node, .. } => self.trace.add(&[5, byte(*node)]),
            Event::Restart { node } => self.trace.add(&[6, byte(*node)]),
            Event::Heal => self.trace.add(&[7]),
        }
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver {
                to,
                incarnation,
                packet,
            } => {
                let node = &self.nodes[to];
                if node.core.is_none() || node.incarnation != incarnation {
                    return;
                }
                match packet {
                    Packet::Consensus(Message::Proposal(proposal)) => {
                        self.handle(to, Input::Proposal(proposal));
                    }
                    Packet::Consensus(Message::Vote(vote)) => self.handle(to, Input::Vote(vote)),
                    Packet::Status { from, height } => self.on_status(to, from, height),
                    Packet::Certificate(decision) => self.on_certificate(to, decision),
                }
            }
            Event::Local {
                node,
                incarnation,
                input,
            } => {
                if self.nodes[node].core.is_some() && self.nodes[node].incarnation == incarnation {
                    self.handle(node, input);
                }
            }
            Event::Gossip { node } => {
                self.gossip(node);
                let next = self.now + GOSSIP_PERIOD_MS;
                self.schedule(next, Event::Gossip { node });
            }
            Event::PartitionStart { isolated } => {
                self.stats.partitions += 1;
                self.isolated = Some(isolated);
            }
            Event::PartitionEnd => self.isolated = None,
            Event::Crash { node, mid_output } => {
                if self.nodes[node].core.is_none() {
                    return;
                }
                if mid_output {
                    self.nodes[node].crash_during_next_outputs = true;
                } else {
                    self.crash(node);
                }
            }
            Event::Restart { node } => self.restart(node),
            Event::Heal => {
                self.isolated = None;
                for node in 0..self.nodes.len() {
                    self.nodes[node].crash_during_next_outputs = false;
                    self.restart(node);
                }
                self.baseline = Some(
                    self.nodes
                        .iter()
                        .map(|node| u64::try_from(node.chain.len()).unwrap())
                        .collect(),
                );
            }
        }
    }

    fn crash(&mut self, node: usize) {
        let node = &mut self.nodes[node];
        node.core = None;
        node.incarnation += 1;
        node.crash_during_next_outputs = false;
        self.stats.crashes += 1;
    }

    /// Restarts a crashed node from its durable state; nothing if it is up.
    fn restart(&mut self, index: usize) {
        let node = &self.nodes[index];
        if node.core.is_some() {
            return;
        }
        let next_height = node.next_height();
        let me = as_validator(index);
        let core = match &node.persisted {
            // The checkpoint is for the height still to decide: resume it.
            Some(checkpoint) if checkpoint.height == next_height => {
                self.stats.restores += 1;
                Core::restore(self.config, self.validators, me, checkpoint.clone()).unwrap()
            }
            // Nothing signed at that height yet (older checkpoints are moot).
            _ => Core::new(self.config, self.validators, me, next_height).unwrap(),
        };
        self.nodes[index].core = Some(core);
        self.handle(index, Input::Start);
    }

    fn handle(&mut self, node: usize, input: Input) {
        let Some(core) = self.nodes[node].core.as_mut() else {
            return;
        };
        let outputs = core.handle(input);
        self.execute(node, outputs);
    }

    /// Carries out outputs in order, as a host must; may crash partway.
    fn execute(&mut self, node: usize, outputs: Vec<Output>) {
        let crash_at = if self.nodes[node].crash_during_next_outputs && !outputs.is_empty() {
            self.stats.crashes_mid_output += 1;
            Some(usize::try_from(self.rng.below(outputs.len() as u64 + 1)).unwrap())
        } else {
            None
        };
        let count = outputs.len();
        for (position, output) in outputs.into_iter().enumerate() {
            if crash_at == Some(position) {
                self.crash(node);
                return;
            }
            self.carry_out(node, output);
            if self.nodes[node].core.is_none() {
                return;
            }
        }
        if crash_at == Some(count) {
            self.crash(node);
        }
    }

    fn carry_out(&mut self, node: usize, output: Output) {
        let incarnation = self.nodes[node].incarnation;
        match output {
            Output::Persist(checkpoint) => self.nodes[node].persisted = Some(checkpoint),
            Output::BroadcastProposal(proposal) => {
                self.broadcast(node, Message::Proposal(proposal));
            }
            Output::BroadcastVote(vote) => self.broadcast(node, Message::Vote(vote)),
            Output::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => {
                let at = self.now + duration_ms;
                let input = Input::Timeout {
                    height,
                    round,
                    step,
                };
                self.schedule(
                    at,
                    Event::Local {
                        node,
                        incarnation,
                        input,
                    },
                );
            }
            Output::ValidateValue {
                height,
                round,
                value_id,
            } => {
                let at = self.now + self.rng.between(0, 5);
                let input = Input::ValidationResult {
                    height,
                    round,
                    value_id,
                    valid: value_id[0] != INVALID_MARK,
                };
                self.schedule(
                    at,
                    Event::Local {
                        node,
                        incarnation,
                        input,
                    },
                );
            }
            Output::RequestValue { height, round } => {
                let mut value_id = self.rng.value_id();
                let invalid = self.nodes[node].byzantine.is_some_and(|b| b.invalid_blocks);
                value_id[0] = if invalid { INVALID_MARK } else { 0 };
                // Block-building (and pacing) time.
                let at = self.now + self.rng.between(5, 15);
                let input = Input::ProposeValue {
                    height,
                    round,
                    value_id,
                };
                self.schedule(
                    at,
                    Event::Local {
                        node,
                        incarnation,
                        input,
                    },
                );
            }
            Output::Decide(decision) => self.on_decide(node, decision),
            Output::Equivocation(evidence) => {
                self.stats.evidence += 1;
                let accused = match &evidence {
                    Evidence::DoubleVote { first, .. } => first.validator,
                    Evidence::DoubleProposal { first, .. } => first.proposer,
                };
                let accused = usize::try_from(accused).unwrap();
                assert!(
                    self.nodes[accused].byzantine.is_some(),
                    "seed {}: correct validator {accused} accused: {evidence:?}",
                    self.scenario.seed
                );
            }
        }
    }

    fn broadcast(&mut self, node: usize, message: Message) {
        if let Some(byzantine) = self.nodes[node].byzantine {
            self.byzantine_broadcast(node, byzantine, message);
            return;
        }
        let seed = self.scenario.seed;
        let host = &mut self.nodes[node];
        // Persist-before-broadcast: the stored checkpoint covers the message.
        let persisted = host
            .persisted
            .as_ref()
            .expect("broadcast before any persist");
        let covered = persisted.height == message.height()
            && match &message {
                Message::Proposal(proposal) => persisted.proposals.contains(proposal),
                Message::Vote(vote) => persisted.votes.contains(vote),
            };
        assert!(
            covered,
            "seed {seed}: node {node} broadcast unpersisted {message:?}"
        );
        // No equivocation, across every incarnation of the node.
        let slot = (message.height(), message.round(), slot_kind(&message));
        if let Some(earlier) = host.signed.get(&slot) {
            assert_eq!(earlier, &message, "seed {seed}: node {node} equivocated");
        } else {
            host.signed.insert(slot, message.clone());
        }
        for peer in 0..self.nodes.len() {
            self.send(node, peer, Packet::Consensus(message.clone()));
        }
    }

    /// Splits the peers into two camps per `(height, round)` and tells the
    /// second camp a different value (or, for precommits, nothing); sometimes
    /// adds junk far ahead.
    fn byzantine_broadcast(&mut self, node: usize, byzantine: Byzantine, message: Message) {
        let key = (message.height(), message.round());
        let (mask, other_value) = match self.nodes[node].camps.get(&key) {
            Some(camp) => *camp,
            None => {
                let mut other = self.rng.value_id();
                other[0] = 1;
                let camp = (self.rng.next_u64(), other);
                self.nodes[node].camps.insert(key, camp);
                camp
            }
        };
        if let Message::Proposal(proposal) = &message {
            if proposal.value_id[0] == INVALID_MARK {
                self.stats.invalid_proposals += 1;
            }
        }
        // In some rounds the second camp gets no precommit at all, so that
        // only the first camp can decide.
        let withhold = (mask >> 63) & 1 == 1
            && matches!(&message, Message::Vote(vote) if vote.kind == VoteKind::Precommit);
        for peer in 0..self.nodes.len() {
            let first_camp = (mask >> (peer % 64)) & 1 == 1;
            if !first_camp && withhold {
                continue;
            }
            let told = if first_camp {
                message.clone()
            } else {
                match &message {
                    Message::Proposal(proposal) => Message::Proposal(Proposal {
                        value_id: other_value,
                        ..proposal.clone()
                    }),
                    Message::Vote(vote) => Message::Vote(Vote {
                        value_id: match vote.value_id {
                            Some(_) if byzantine.invalid_blocks => None,
                            _ => Some(other_value),
                        },
                        ..vote.clone()
                    }),
                }
            };
            self.send(node, peer, Packet::Consensus(told));
        }
        if self.rng.chance(50) {
            let junk = Vote {
                kind: VoteKind::Precommit,
                height: message.height() + self.rng.below(3),
                round: message.round() + 1_000 + u32::try_from(self.rng.below(1_000)).unwrap(),
                value_id: Some(other_value),
                validator: as_validator(node),
            };
            for peer in 0..self.nodes.len() {
                self.send(node, peer, Packet::Consensus(Message::Vote(junk.clone())));
            }
        }
    }

    /// Sends over the simulated network: partitions cut, chaos drops,
    /// delays and duplicates.
    fn send(&mut self, from: usize, to: usize, packet: Packet) {
        if from == to {
            return;
        }
        if let Some(isolated) = &self.isolated {
            if isolated.contains(&from) != isolated.contains(&to) {
                self.stats.dropped += 1;
                return;
            }
        }
        let chaos = self.now < self.scenario.chaos_ms;
        if chaos && self.rng.chance(self.scenario.drop_per_mille) {
            self.stats.dropped += 1;
            return;
        }
        let max_delay = if chaos {
            self.scenario.chaos_delay_ms
        } else {
            CALM_DELAY_MS
        };
        let incarnation = self.nodes[to].incarnation;
        if chaos && self.rng.chance(self.scenario.duplicate_per_mille) {
            self.stats.duplicated += 1;
            let at = self.now + self.rng.between(1, max_delay);
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    incarnation,
                    packet: packet.clone(),
                },
            );
        }
        let at = self.now + self.rng.between(1, max_delay);
        self.schedule(
            at,
            Event::Deliver {
                to,
                incarnation,
                packet,
            },
        );
    }

    /// Status to everyone; a correct host also re-sends what its core
    /// counted to the peers at its height (gossip, paper §"Gossip").
    fn gossip(&mut self, node: usize) {
        let Some(core) = &self.nodes[node].core else {
            return;
        };
        let height = self.nodes[node].next_height();
        let messages = if self.nodes[node].byzantine.is_none() {
            core.known_messages()
        } else {
            Vec::new()
        };
        for peer in 0..self.nodes.len() {
            self.send(node, peer, Packet::Status { from: node, height });
            let peer_height = self.nodes[node].peer_heights[peer];
            if peer_height.is_none_or(|h| h == height) {
                for message in &messages {
                    self.send(node, peer, Packet::Consensus(message.clone()));
                }
            }
        }
    }

    /// A peer reported its height: send it the certificates it lacks.
    fn on_status(&mut self, node: usize, from: usize, height: Height) {
        self.nodes[node].peer_heights[from] = Some(height);
        if self.nodes[node].byzantine.is_some() {
            return;
        }
        let have = u64::try_from(self.nodes[node].chain.len()).unwrap();
        let last = have.min(height + SYNC_BATCH - 1);
        for wanted in height..=last {
            let index = usize::try_from(wanted - 1).unwrap();
            let certificate = self.nodes[node].chain[index].clone();
            self.send(node, from, Packet::Certificate(certificate));
        }
    }

    /// Block sync: commit the next height from a verified certificate.
    fn on_certificate(&mut self, node: usize, decision: Decision) {
        if decision.height != self.nodes[node].next_height() {
            return;
        }
        self.check_decision(node, &decision);
        self.stats.synced += 1;
        let height = decision.height;
        self.nodes[node].chain.push(decision);
        self.handle(node, Input::SyncedTo { height });
    }

    fn on_decide(&mut self, node: usize, decision: Decision) {
        let seed = self.scenario.seed;
        assert_eq!(
            decision.height,
            self.nodes[node].next_height(),
            "seed {seed}: node {node} decided out of order"
        );
        self.check_decision(node, &decision);
        self.stats.decisions += 1;
        self.stats.highest_decision_round = self.stats.highest_decision_round.max(decision.round);
        self.trace.add(&[8, byte(node)]);
        self.trace.add(&decision.encode());
        self.nodes[node].chain.push(decision);
    }

    /// Justification, validity and agreement of a decision.
    fn check_decision(&mut self, node: usize, decision: &Decision) {
        let seed = self.scenario.seed;
        let signers: BTreeSet<ValidatorIndex> = decision
            .precommits
            .iter()
            .inspect(|vote| {
                assert!(
                    vote.kind == VoteKind::Precommit
                        && vote.height == decision.height
                        && vote.round == decision.round
                        && vote.value_id == Some(decision.value_id),
                    "seed {seed}: bad justification {decision:?}"
                );
            })
            .map(|vote| vote.validator)
            .collect();
        assert_eq!(
            signers.len(),
            decision.precommits.len(),
            "seed {seed}: repeated signer"
        );
        assert!(
            u32::try_from(signers.len()).unwrap() >= self.validators.quorum(),
            "seed {seed}: decision without a quorum"
        );
        if self.nodes[node].byzantine.is_some() {
            return;
        }
        assert_ne!(
            decision.value_id[0], INVALID_MARK,
            "seed {seed}: node {node} decided an invalid block"
        );
        let agreed = *self
            .decided
            .entry(decision.height)
            .or_insert(decision.value_id);
        assert_eq!(
            agreed, decision.value_id,
            "seed {seed}: disagreement at height {}",
            decision.height
        );
    }
}

/// A node's state in one line.
fn describe(node: &Node) -> String {
    let short =
        |value: Option<crate::RoundValue>| value.map(|v| (v.value_id[..2].to_vec(), v.round));
    match &node.core {
        None => format!("crashed, chain {}", node.chain.len()),
        Some(core) => format!(
            "height {} round {} {:?} locked {:?} valid {:?} chain {} byzantine {}",
            core.height(),
            core.round(),
            core.step(),
            short(core.locked()),
            short(core.valid()),
            node.chain.len(),
            node.byzantine.is_some()
        ),
    }
}

fn as_validator(index: usize) -> ValidatorIndex {
    ValidatorIndex::try_from(index).unwrap()
}

fn byte(index: usize) -> u8 {
    u8::try_from(index).unwrap()
}

fn slot_kind(message: &Message) -> u8 {
    match message {
        Message::Proposal(_) => 0,
        Message::Vote(vote) if vote.kind == VoteKind::Prevote => 1,
        Message::Vote(_) => 2,
    }
}
