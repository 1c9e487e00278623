//! Peer-to-peer networking over libp2p: TCP, Noise, Yamux; gossipsub for
//! transactions, consensus messages and finalized blocks; one
//! request-response protocol for status and block sync; identify and ping.
//!
//! # Layout
//!
//! - [`protocol`]: topics, the sync protocol's messages and codec, and the
//!   size bound of every message.
//! - [`peers`]: per-peer state (finalized head, score) and the offences
//!   that get a peer dropped.
//! - [`sync`]: verifying (justification against the validator set, then
//!   re-execution) and importing finalized blocks that come from peers.
//! - [`key`]: the persistent network key (the peer id).
//! - this module: [`NetworkService`], the one task that owns the swarm.
//!
//! # The network task
//!
//! [`NetworkService::run`] reacts to swarm events, to consensus messages
//! from the engine ([`P2pConsensus`], bounded queue, dropped when full: the
//! engine re-sends), to transactions accepted by the local pool (gathered
//! into batches of up to [`protocol::MAX_TXS_PER_GOSSIP`], one gossip
//! message each, sent 20 ms after the batch's first transaction at the
//! latest), to new finalized heads (a validator announces them on the
//! blocks topic), and to two ticks: status requests to every peer and
//! re-dialling bootnodes that are not connected. The batch's flush is a
//! deadline armed by its first transaction, not a tick: an idle node does
//! not wake up 50 times a second for nothing.
//!
//! Gossip is validated before gossipsub forwards it (`validate_messages`):
//! consensus messages are decoded and their signatures checked, block
//! announcements their justification, transaction batches go through
//! [`Chain::submit_batch_from_peer`] (known, finalized and stale ones
//! skipped before any signature check; a batch that brings nothing new is
//! not forwarded). Undecodable or falsely signed data gets the
//! sender dropped and refused ([`peers::Offence`]).
//!
//! # Sync
//!
//! A peer's request for blocks is answered from the database on a blocking
//! thread (a range of full blocks is megabytes to read), at most
//! [`MAX_ANSWERS_IN_FLIGHT`] at once; one over that gets no answer and asks
//! again later, as after a lost request.
//!
//! Each status answer records the peer's finalized head. When a peer is
//! ahead, one block-range request at a time goes to the best peer; its
//! response is checked for shape (consecutive blocks from the requested
//! number) and then imported on a blocking thread ([`sync::import_finalized`]),
//! never more than one import job at a time. After an import the engine is
//! told ([`EngineEvent::Synced`]). A validator one block behind leaves the
//! block to its own engine, which is likely deciding it right now, unless
//! its head has not moved for [`NetworkConfig::stall_after`]; a full node
//! imports every announced block.

pub mod key;
pub mod peers;
pub mod protocol;
pub mod sync;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, identify, identity, ping, Multiaddr, PeerId, Swarm};
use lockstep_runtime::{Hash, ValidatorSet};
use parity_scale_codec::Encode;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, watch};

use self::peers::{Offence, PeerTable};
use self::protocol::{
    decode_tx_batch, BlockAnnouncement, SyncCodec, SyncRequest, SyncRequestFrame, SyncResponse,
    Topics, TxBatch, MAX_BLOCKS_PER_RESPONSE, MAX_BLOCK_MESSAGE, MAX_CONSENSUS_MESSAGE,
    MAX_TX_MESSAGE, SOFT_SYNC_RESPONSE_BYTES,
};
use self::sync::{ImportError, SyncProgress};
use crate::chain::{Chain, SubmitError};
use crate::consensus::engine::EngineEvent;
use crate::consensus::{ConsensusNetwork, Gossip};
use crate::rpc::{NetworkInfo, PeerView};

/// Consensus messages waiting for the network task.
const CONSENSUS_QUEUE: usize = 4096;
/// Most peers listed by `system_peers`.
const MAX_LISTED_PEERS: usize = 1024;
/// Longest an accepted transaction waits for its gossip batch to fill.
const TX_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Most block-range requests being answered (read on blocking threads) at
/// once.
pub const MAX_ANSWERS_IN_FLIGHT: usize = 4;

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on (e.g. `/ip4/127.0.0.1/tcp/30333`; port 0
    /// picks a free one).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and re-dial while not connected.
    pub bootnodes: Vec<Multiaddr>,
    /// Where the network key is kept.
    pub key_path: PathBuf,
    /// How often every peer is asked for its status.
    pub status_interval: Duration,
    /// How often unconnected bootnodes are dialled again.
    pub redial_interval: Duration,
    /// A validator whose head has not moved for this long syncs even a
    /// single missing block.
    pub stall_after: Duration,
}

impl NetworkConfig {
    /// Defaults: listen on `listen`, no bootnodes.
    pub fn new(listen: Vec<Multiaddr>, key_path: PathBuf) -> NetworkConfig {
        NetworkConfig {
            listen,
            bootnodes: Vec::new(),
            key_path,
            status_interval: Duration::from_secs(1),
            redial_interval: Duration::from_secs(2),
            stall_after: Duration::from_secs(3),
        }
    }
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The network key is unusable.
    #[error("network key {path}: {reason}")]
    Key {
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// libp2p refused the setup.
    #[error("network setup: {0}")]
    Setup(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// The consensus engine's view of the network: messages go into a bounded
/// queue that the network task publishes on the consensus topic.
#[derive(Debug, Clone)]
pub struct P2pConsensus {
    queue: mpsc::Sender<Gossip>,
}

impl ConsensusNetwork for P2pConsensus {
    fn broadcast(&self, message: Gossip) {
        if self.queue.try_send(message).is_err() {
            tracing::debug!(target: "lockstep::network", "consensus queue full: message dropped");
        }
    }
}

/// The libp2p behaviours the node runs.
#[derive(NetworkBehaviour)]
struct LockstepBehaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A block-range answer read on a blocking thread, to send.
type Answer = (
    request_response::ResponseChannel<SyncResponse>,
    SyncResponse,
);

/// An import job's result, back from the blocking thread.
struct ImportDone {
    peer: Option<PeerId>,
    imported: u64,
    error: Option<ImportError>,
}

/// A block-range request in flight.
struct SyncInFlight {
    id: OutboundRequestId,
    peer: PeerId,
    from: u64,
    count: u32,
}

/// The network task.
pub struct NetworkService {
    swarm: Swarm<LockstepBehaviour>,
    chain: Arc<Chain>,
    info: Arc<NetworkInfo>,
    config: NetworkConfig,
    topics: Topics,
    genesis: Hash,
    validators: Vec<lockstep_runtime::AccountId>,
    validator_set: ValidatorSet,
    is_validator: bool,
    consensus_queue: mpsc::Receiver<Gossip>,
    peers: PeerTable,
    bootnode_peers: HashMap<Multiaddr, PeerId>,
    sync_in_flight: Option<SyncInFlight>,
    importing: bool,
    import_done_tx: mpsc::Sender<ImportDone>,
    import_done_rx: mpsc::Receiver<ImportDone>,
    answers_in_flight: usize,
    answer_tx: mpsc::Sender<Answer>,
    answer_rx: mpsc::Receiver<Answer>,
    progress: Option<SyncProgress>,
    head_moved_at: (u64, Instant),
    /// Blocks recently announced by peers: not announced again (gossipsub
    /// would refuse the duplicate anyway).
    announced_by_peers: std::collections::VecDeque<Hash>,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn message_id(consensus: gossipsub::TopicHash) -> impl Fn(&gossipsub::Message) -> MessageId {
    move |message: &gossipsub::Message| {
        if message.topic == consensus {
            // Validators re-send their consensus messages on purpose; the
            // publisher's sequence number makes each copy new.
            let mut id = message.source.map(|p| p.to_bytes()).unwrap_or_default();
            id.extend(message.sequence_number.unwrap_or_default().to_be_bytes());
            MessageId::from(id)
        } else {
            // A transaction or block announced by several nodes is one message.
            MessageId::from(Sha256::digest(&message.data).to_vec())
        }
    }
}

impl NetworkService {
    /// Builds the swarm and starts listening. Returns the service (run it
    /// with [`NetworkService::run`]) and the engine's network handle.
    pub fn new(
        config: NetworkConfig,
        chain: Arc<Chain>,
        info: Arc<NetworkInfo>,
        is_validator: bool,
    ) -> Result<(NetworkService, P2pConsensus), NetworkError> {
        let key = key::load_or_generate(&config.key_path)?;
        let genesis = chain.db().genesis_hash();
        let topics = Topics::new(&genesis);
        let behaviour = behaviour(&key, &topics, &genesis)?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| NetworkError::Setup(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| NetworkError::Setup(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
            .build();
        for topic in [&topics.transactions, &topics.consensus, &topics.blocks] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(topic)
                .map_err(|e| NetworkError::Setup(e.to_string()))?;
        }
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let local = *swarm.local_peer_id();
        tracing::info!(target: "lockstep::network", "local peer id {local}");
        *crate::rpc::lock(&info.local_peer_id) = local.to_string();
        info.should_have_peers.store(
            !config.bootnodes.is_empty() || chain.spec().validators.len() > 1,
            Ordering::Relaxed,
        );
        let validators = chain.spec().validators.clone();
        let validator_set = ValidatorSet::new(validators.clone())
            .ok_or_else(|| NetworkError::Setup("the chain spec has no validators".into()))?;
        let (queue_tx, queue_rx) = mpsc::channel(CONSENSUS_QUEUE);
        let (import_done_tx, import_done_rx) = mpsc::channel(4);
        let (answer_tx, answer_rx) = mpsc::channel(MAX_ANSWERS_IN_FLIGHT);
        let head = chain.head().number;
        let service = NetworkService {
            swarm,
            chain,
            info,
            config,
            topics,
            genesis,
            validators,
            validator_set,
            is_validator,
            consensus_queue: queue_rx,
            peers: PeerTable::default(),
            bootnode_peers: HashMap::new(),
            sync_in_flight: None,
            importing: false,
            import_done_tx,
            import_done_rx,
            answers_in_flight: 0,
            answer_tx,
            answer_rx,
            progress: None,
            head_moved_at: (head, Instant::now()),
            announced_by_peers: std::collections::VecDeque::new(),
        };
        Ok((service, P2pConsensus { queue: queue_tx }))
    }

    /// The node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until `shutdown` turns true. `engine` receives peers'
    /// consensus messages and sync notices (none for a full node).
    pub async fn run(
        mut self,
        engine: Option<mpsc::Sender<EngineEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut accepted_txs = self.chain.subscribe_accepted();
        let mut heads = self.chain.subscribe_heads();
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        let mut redial_tick = tokio::time::interval(self.config.redial_interval);
        // Accepted transactions go out in batches: one gossip message (and
        // one gossip signature to make and check) per batch, sent when full
        // or TX_FLUSH_INTERVAL after its first transaction.
        let mut tx_batch = TxBatch::default();
        let flush = tokio::time::sleep(TX_FLUSH_INTERVAL);
        tokio::pin!(flush);
        let mut flush_armed = false;
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        redial_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = self.swarm.select_next_some() => self.on_swarm_event(event, engine.as_ref()),
                Some(message) = self.consensus_queue.recv() => {
                    let topic = self.topics.consensus.clone();
                    self.publish(topic, message.encode());
                }
                tx = accepted_txs.recv() => match tx {
                    Ok(bytes) => {
                        if let Some(message) = tx_batch.push(&bytes) {
                            let topic = self.topics.transactions.clone();
                            self.publish(topic, message);
                            // What is left is this one transaction.
                            flush_armed = false;
                        }
                        if !flush_armed {
                            flush.as_mut().reset(tokio::time::Instant::now() + TX_FLUSH_INTERVAL);
                            flush_armed = true;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(target: "lockstep::network", "{n} transactions not gossiped (queue lagged)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                head = heads.recv() => match head {
                    Ok(header) => self.on_new_head(header),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(done) = self.import_done_rx.recv() => self.on_import_done(done, engine.as_ref()),
                Some((channel, response)) = self.answer_rx.recv() => {
                    self.answers_in_flight = self.answers_in_flight.saturating_sub(1);
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                _ = status_tick.tick() => {
                    self.request_statuses();
                    self.maybe_sync();
                }
                _ = redial_tick.tick() => self.redial(),
                _ = &mut flush, if flush_armed => {
                    flush_armed = false;
                    if let Some(message) = tx_batch.take() {
                        let topic = self.topics.transactions.clone();
                        self.publish(topic, message);
                    }
                }
            }
        }
    }

    fn publish(&mut self, topic: gossipsub::IdentTopic, data: Vec<u8>) {
        if let Err(error) = self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            tracing::trace!(target: "lockstep::network", "publish: {error}");
        }
    }

    fn on_new_head(&mut self, header: lockstep_runtime::Header) {
        if header.number != self.head_moved_at.0 {
            self.head_moved_at = (header.number, Instant::now());
        }
        if !self.is_validator || self.progress.is_some() {
            return;
        }
        let hash = header.hash();
        if self.announced_by_peers.contains(&hash) {
            return;
        }
        let (block, justification) = match (
            self.chain.db().block(&hash),
            self.chain.db().justification(&hash),
        ) {
            (Ok(Some(block)), Ok(Some(justification))) => (block, justification),
            _ => return,
        };
        let topic = self.topics.blocks.clone();
        self.publish(
            topic,
            BlockAnnouncement {
                block,
                justification,
            }
            .encode(),
        );
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<LockstepBehaviourEvent>,
        engine: Option<&mpsc::Sender<EngineEvent>>,
    ) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let local = self.local_peer_id();
                tracing::info!(target: "lockstep::network", "listening on {address}/p2p/{local}");
                crate::rpc::lock(&self.info.listen_addresses).push(address.to_string());
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let address = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() && self.config.bootnodes.contains(&address) {
                    self.bootnode_peers.insert(address.clone(), peer_id);
                }
                if !self.peers.contains(&peer_id) {
                    tracing::info!(target: "lockstep::network", "connected to {peer_id} at {address}");
                    self.peers.connected(peer_id, address);
                    self.swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&peer_id, Ok(SyncRequest::Status));
                }
                self.publish_peers();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(target: "lockstep::network", "disconnected from {peer_id}");
                self.peers.disconnected(&peer_id);
                if self
                    .sync_in_flight
                    .as_ref()
                    .is_some_and(|s| s.peer == peer_id)
                {
                    self.sync_in_flight = None;
                }
                self.publish_peers();
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                tracing::debug!(target: "lockstep::network", "dial failed: {error}");
            }
            SwarmEvent::Behaviour(LockstepBehaviourEvent::Gossipsub(event)) => {
                self.on_gossip(event, engine)
            }
            SwarmEvent::Behaviour(LockstepBehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(LockstepBehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. },
            )) => {
                tracing::debug!(target: "lockstep::network", "{peer_id} is {} ({})", info.agent_version, info.protocol_version);
            }
            _ => {}
        }
    }

    fn publish_peers(&self) {
        self.info
            .peers
            .store(self.peers.len() as u64, Ordering::Relaxed);
        let list: Vec<PeerView> = self
            .peers
            .iter()
            .take(MAX_LISTED_PEERS)
            .map(|(peer, state)| PeerView {
                peer_id: peer.to_string(),
                address: state.address.as_ref().map(|a| a.to_string()),
                finalized_number: state.finalized_number,
                finalized_hash: state.finalized_hash,
                score: state.score,
            })
            .collect();
        *crate::rpc::lock(&self.info.peer_list) = list;
    }

    /// Charges an offence, and drops and refuses the peer if it must go.
    fn penalise(&mut self, peer: PeerId, offence: Offence, why: &str) {
        tracing::warn!(target: "lockstep::network", "peer {peer}: {offence:?}: {why}");
        if self.peers.penalise(&peer, offence) {
            tracing::warn!(target: "lockstep::network", "dropping and banning peer {peer}");
            let behaviour = self.swarm.behaviour_mut();
            behaviour.blocked.block_peer(peer);
            behaviour.gossipsub.blacklist_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            self.peers.disconnected(&peer);
            if self.sync_in_flight.as_ref().is_some_and(|s| s.peer == peer) {
                self.sync_in_flight = None;
            }
            self.publish_peers();
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event, engine: Option<&mpsc::Sender<EngineEvent>>) {
        let gossipsub::Event::Message {
            propagation_source: peer,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let (acceptance, offence) = if message.topic == self.topics.consensus.hash() {
            self.on_consensus_message(&message.data, engine)
        } else if message.topic == self.topics.transactions.hash() {
            self.on_transaction(&message.data)
        } else if message.topic == self.topics.blocks.hash() {
            self.on_block_announcement(peer, &message.data)
        } else {
            (MessageAcceptance::Ignore, None)
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &peer, acceptance);
        if let Some((offence, why)) = offence {
            self.penalise(peer, offence, &why);
        }
    }

    fn on_consensus_message(
        &mut self,
        data: &[u8],
        engine: Option<&mpsc::Sender<EngineEvent>>,
    ) -> (MessageAcceptance, Option<(Offence, String)>) {
        let gossip = match lockstep_api::p2p::decode_gossip(data) {
            Ok(gossip) => gossip,
            Err(error) => {
                return (
                    MessageAcceptance::Reject,
                    Some((Offence::Undecodable, format!("consensus message: {error}"))),
                )
            }
        };
        if let Err(error) = gossip.verify(&self.chain.spec().chain_id, &self.validators) {
            return (
                MessageAcceptance::Reject,
                Some((Offence::BadSignature, format!("consensus message: {error}"))),
            );
        }
        if let Some(engine) = engine {
            if engine
                .try_send(EngineEvent::Gossip(Box::new(gossip)))
                .is_err()
            {
                tracing::debug!(target: "lockstep::network", "engine inbox full: consensus message dropped");
            }
        }
        (MessageAcceptance::Accept, None)
    }

    fn on_transaction(&mut self, data: &[u8]) -> (MessageAcceptance, Option<(Offence, String)>) {
        let txs = match decode_tx_batch(data) {
            Ok(txs) => txs,
            Err(error) => {
                return (
                    MessageAcceptance::Reject,
                    Some((Offence::Undecodable, format!("transactions: {error}"))),
                )
            }
        };
        match self.chain.submit_batch_from_peer(txs) {
            // Forwarded only when it brought something new: a replay of
            // known or finalized transactions goes no further.
            Ok(0) => (MessageAcceptance::Ignore, None),
            Ok(_) => (MessageAcceptance::Accept, None),
            Err(SubmitError::Decode(error)) => (
                MessageAcceptance::Reject,
                Some((Offence::Undecodable, format!("transaction: {error}"))),
            ),
            Err(SubmitError::BadSignature(_)) => (
                MessageAcceptance::Reject,
                Some((Offence::BadSignature, "transaction signature".into())),
            ),
            // Known, stale, pool full...: not the sender's fault.
            Err(_) => (MessageAcceptance::Ignore, None),
        }
    }

    fn on_block_announcement(
        &mut self,
        peer: PeerId,
        data: &[u8],
    ) -> (MessageAcceptance, Option<(Offence, String)>) {
        let announcement = match lockstep_api::p2p::decode_announcement(data) {
            Ok(announcement) => announcement,
            Err(error) => {
                return (
                    MessageAcceptance::Reject,
                    Some((Offence::Undecodable, format!("block announcement: {error}"))),
                )
            }
        };
        let block = &announcement.block;
        let hash = block.hash();
        let message = lockstep_consensus::Vote::precommit_signing_bytes(
            &self.chain.spec().chain_id,
            block.header.number,
            announcement.justification.round,
            &hash.0,
        );
        if let Err(error) = announcement
            .justification
            .verify(&hash, &self.validator_set, &message)
        {
            return (
                MessageAcceptance::Reject,
                Some((
                    Offence::BadSignature,
                    format!("block announcement: {error}"),
                )),
            );
        }
        if self.announced_by_peers.len() >= 16 {
            self.announced_by_peers.pop_front();
        }
        self.announced_by_peers.push_back(hash);
        let head = self.chain.head().number;
        let number = block.header.number;
        if number == head + 1 && !self.importing && (!self.is_validator || self.stalled()) {
            self.spawn_import(Some(peer), vec![announcement]);
        } else if number > head + 1 {
            // Behind: block sync fetches the gap from peers whose status
            // shows they hold it (the forwarder may not have imported it).
            self.maybe_sync();
        }
        (MessageAcceptance::Accept, None)
    }

    fn stalled(&self) -> bool {
        self.head_moved_at.1.elapsed() >= self.config.stall_after
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequestFrame, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let request = match request {
                        Ok(request) => request,
                        Err(malformed) => {
                            // The channel is dropped: no answer.
                            self.penalise(
                                peer,
                                Offence::Undecodable,
                                &format!("sync request: {}", malformed.0),
                            );
                            return;
                        }
                    };
                    self.answer(peer, request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_sync_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if self
                    .sync_in_flight
                    .as_ref()
                    .is_some_and(|s| s.id == request_id)
                {
                    self.sync_in_flight = None;
                }
                match error {
                    request_response::OutboundFailure::UnsupportedProtocols => {
                        // Another chain (the protocol name carries the genesis).
                        self.penalise(
                            peer,
                            Offence::WrongGenesis,
                            "does not speak this chain's sync protocol",
                        );
                    }
                    request_response::OutboundFailure::Io(error)
                        if error.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        self.penalise(
                            peer,
                            Offence::Undecodable,
                            &format!("sync response: {error}"),
                        );
                    }
                    error => {
                        tracing::debug!(target: "lockstep::network", "request to {peer} failed: {error}")
                    }
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(error) = &error {
                    if error.kind() == std::io::ErrorKind::InvalidData {
                        self.penalise(
                            peer,
                            Offence::Undecodable,
                            &format!("sync request: {error}"),
                        );
                        return;
                    }
                }
                tracing::debug!(target: "lockstep::network", "request from {peer} failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers a request: a status at once (it is in memory), blocks from
    /// the database on a blocking thread, the answer sent when it is back
    /// (at most [`MAX_ANSWERS_IN_FLIGHT`] at once: beyond that the channel
    /// is dropped, the peer's request fails and it asks again later).
    fn answer(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        match request {
            SyncRequest::Status => {
                let head = self.chain.head();
                let response = SyncResponse::Status {
                    genesis: self.genesis,
                    finalized_number: head.number,
                    finalized_hash: head.hash(),
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            SyncRequest::Blocks { from, count } => {
                if self.answers_in_flight >= MAX_ANSWERS_IN_FLIGHT {
                    tracing::debug!(target: "lockstep::sync", "blocks from #{from} for {peer}: {MAX_ANSWERS_IN_FLIGHT} answers being read already; not answered");
                    return;
                }
                self.answers_in_flight += 1;
                let chain = self.chain.clone();
                let answers = self.answer_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let response = read_blocks(&chain, from, count);
                    let _ = answers.blocking_send((channel, response));
                });
            }
        }
    }

    fn on_sync_response(
        &mut self,
        peer: PeerId,
        request_id: OutboundRequestId,
        response: SyncResponse,
    ) {
        match response {
            SyncResponse::Status {
                genesis,
                finalized_number,
                finalized_hash,
            } => {
                if genesis != self.genesis {
                    self.penalise(peer, Offence::WrongGenesis, &format!("genesis {genesis}"));
                    return;
                }
                self.peers.status(&peer, finalized_number, finalized_hash);
                self.publish_peers();
                self.maybe_sync();
            }
            SyncResponse::Blocks(blocks) => {
                let Some(request) = self.sync_in_flight.take_if(|s| s.id == request_id) else {
                    self.penalise(peer, Offence::UnrequestedData, "unrequested blocks");
                    return;
                };
                let shape_ok = blocks.len() <= request.count as usize
                    && blocks
                        .iter()
                        .enumerate()
                        .all(|(i, b)| b.block.header.number == request.from + i as u64);
                if !shape_ok {
                    self.penalise(
                        peer,
                        Offence::UnrequestedData,
                        "blocks that were not asked for",
                    );
                    return;
                }
                if blocks.is_empty() {
                    // An honest peer never loses finalized blocks: one that
                    // claimed this range and serves nothing misled the sync.
                    let claimed = self
                        .peers
                        .iter()
                        .any(|(p, s)| *p == peer && s.finalized_number >= request.from);
                    if claimed {
                        self.penalise(
                            peer,
                            Offence::UnrequestedData,
                            "claimed blocks it does not serve",
                        );
                    }
                    return;
                }
                self.spawn_import(Some(peer), blocks);
            }
        }
    }

    fn spawn_import(&mut self, peer: Option<PeerId>, blocks: Vec<BlockAnnouncement>) {
        self.importing = true;
        let chain = self.chain.clone();
        let validators = self.validator_set.clone();
        let done = self.import_done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut imported = 0;
            let mut error = None;
            for announcement in &blocks {
                match sync::import_finalized(
                    &chain,
                    &validators,
                    &announcement.block,
                    &announcement.justification,
                ) {
                    Ok(()) => imported += 1,
                    // Already imported (by the engine, or an earlier job).
                    Err(ImportError::NotNext { number, head }) if number <= head => {}
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let _ = done.blocking_send(ImportDone {
                peer,
                imported,
                error,
            });
        });
    }

    fn on_import_done(&mut self, done: ImportDone, engine: Option<&mpsc::Sender<EngineEvent>>) {
        self.importing = false;
        if let Some(error) = done.error {
            match (done.peer, error.is_peers_fault()) {
                (Some(peer), true) => {
                    self.penalise(peer, Offence::BadSignature, &error.to_string())
                }
                _ => tracing::warn!(target: "lockstep::sync", "import stopped: {error}"),
            }
        }
        if done.imported > 0 {
            if let Some(engine) = engine {
                if engine.try_send(EngineEvent::Synced).is_err() {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let _ = engine.send(EngineEvent::Synced).await;
                    });
                }
            }
        }
        self.maybe_sync();
    }

    fn request_statuses(&mut self) {
        let peers: Vec<PeerId> = self.peers.iter().map(|(p, _)| *p).collect();
        for peer in peers {
            self.swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Ok(SyncRequest::Status));
        }
    }

    /// Asks the best peer for the next blocks when behind (one request at a
    /// time), and keeps the syncing flag and the progress log.
    fn maybe_sync(&mut self) {
        let head = self.chain.head().number;
        let target = self.peers.best_height();
        // A validator one block behind is most likely deciding that block
        // itself; a full node is never "deciding".
        let gap_needed = if self.is_validator && !self.stalled() {
            2
        } else {
            1
        };
        let behind = target >= head + gap_needed;
        self.info
            .syncing
            .store(target > head + 1, Ordering::Relaxed);
        if target > head + 1 {
            let progress = self.progress.get_or_insert_with(|| {
                tracing::info!(target: "lockstep::sync", "behind: #{head}, peers at #{target}: syncing");
                SyncProgress::new(head)
            });
            progress.log(head, target, false);
        } else if let Some(progress) = self.progress.take() {
            tracing::info!(
                target: "lockstep::sync",
                "in sync at #{head} ({:.1} blocks/s)",
                progress.rate(head)
            );
        }
        if !behind || self.importing || self.sync_in_flight.is_some() {
            return;
        }
        let Some((peer, peer_height)) = self.peers.best_above(head) else {
            return;
        };
        let from = head + 1;
        let count = u32::try_from((peer_height - head).min(u64::from(MAX_BLOCKS_PER_RESPONSE)))
            .unwrap_or(MAX_BLOCKS_PER_RESPONSE);
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Ok(SyncRequest::Blocks { from, count }));
        self.sync_in_flight = Some(SyncInFlight {
            id,
            peer,
            from,
            count,
        });
    }

    fn redial(&mut self) {
        let bootnodes = self.config.bootnodes.clone();
        for addr in bootnodes {
            if let Some(peer) = self.bootnode_peers.get(&addr) {
                if self.peers.contains(peer) {
                    continue;
                }
            }
            if let Err(error) = self.swarm.dial(addr.clone()) {
                tracing::debug!(target: "lockstep::network", "cannot dial {addr}: {error}");
            }
        }
    }
}

/// Up to `count` (at most [`MAX_BLOCKS_PER_RESPONSE`]) finalized blocks
/// from `from` on, with their justifications, stopping at the first the
/// database lacks and once past [`SOFT_SYNC_RESPONSE_BYTES`] (always at
/// least one block).
fn read_blocks(chain: &Chain, from: u64, count: u32) -> SyncResponse {
    let count = u64::from(count.min(MAX_BLOCKS_PER_RESPONSE));
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    let db = chain.db();
    for number in from.max(1)..from.max(1).saturating_add(count) {
        let Ok(Some(hash)) = db.hash_by_number(number) else {
            break;
        };
        let (Ok(Some(block)), Ok(Some(justification))) = (db.block(&hash), db.justification(&hash))
        else {
            break;
        };
        let announcement = BlockAnnouncement {
            block,
            justification,
        };
        bytes += announcement.encoded_size();
        if !blocks.is_empty() && bytes > SOFT_SYNC_RESPONSE_BYTES {
            break;
        }
        blocks.push(announcement);
    }
    SyncResponse::Blocks(blocks)
}

fn behaviour(
    key: &identity::Keypair,
    topics: &Topics,
    genesis: &Hash,
) -> Result<LockstepBehaviour, NetworkError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_CONSENSUS_MESSAGE.max(MAX_BLOCK_MESSAGE))
        .max_transmit_size_for_topic(MAX_TX_MESSAGE, topics.transactions.hash())
        .message_id_fn(message_id(topics.consensus.hash()))
        .build()
        .map_err(|e| NetworkError::Setup(format!("gossipsub: {e}")))?;
    let gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| NetworkError::Setup(format!("gossipsub: {e}")))?;
    let sync = request_response::Behaviour::with_codec(
        SyncCodec,
        [(protocol::sync_protocol(genesis), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(20))
            .with_max_concurrent_streams(64),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new("/lockstep/1".into(), key.public())
            .with_agent_version(format!("lockstep-node/{}", env!("CARGO_PKG_VERSION"))),
    );
    Ok(LockstepBehaviour {
        blocked: allow_block_list::Behaviour::default(),
        gossipsub,
        sync,
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}
