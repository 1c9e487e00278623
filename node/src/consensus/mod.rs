//! The consensus host: drives the pure Tendermint core of
//! `lockstep-consensus` with real time, keys, storage and a network.
//!
//! - [`Gossip`] is what validators exchange: signed proposals (with the
//!   proposed block) and signed votes. Its signatures cover the core's
//!   domain-separated signing bytes, which include the chain id.
//! - [`ConsensusNetwork`] is where the engine sends them; the dev node has
//!   no peers ([`NoNetwork`]), the libp2p service gossips them.
//! - [`engine::Engine`] is the task: it verifies incoming messages, feeds the
//!   core, carries out the core's outputs (persist, sign and send, timers,
//!   build or check a block, import the decided one with its justification).

pub mod engine;

pub use lockstep_api::p2p::{Gossip, GossipError};

/// Where the engine sends consensus messages.
pub trait ConsensusNetwork: Send + Sync + 'static {
    /// Sends `message` to every other validator, best effort: the engine
    /// re-sends what matters, so a lost message only costs time.
    fn broadcast(&self, message: Gossip);
}

/// A network with nobody on it: a single validator's dev chain.
#[derive(Debug, Default)]
pub struct NoNetwork;

impl ConsensusNetwork for NoNetwork {
    fn broadcast(&self, _message: Gossip) {}
}
