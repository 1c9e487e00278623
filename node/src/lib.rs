//! # lockstep-node
//!
//! The validator node: RocksDB storage, a transaction pool, a Tendermint
//! consensus engine driving the pure core of `lockstep-consensus`, libp2p
//! networking with block sync, and a Substrate-style JSON-RPC server. The binary (`src/main.rs`) only parses
//! the command line and calls [`service::start`].
//!
//! ## Tasks
//!
//! - the consensus engine ([`consensus::engine::Engine`]): one task owning
//!   the core; builds, checks and imports blocks;
//! - the JSON-RPC server (jsonrpsee), one task per connection;
//! - the Prometheus endpoint ([`metrics`]), if enabled;
//! - timer tasks that post timeouts back to the engine;
//! - the network task ([`network::NetworkService`]): libp2p gossip of
//!   transactions, consensus messages and finalized blocks, status and block
//!   sync with peers (a validator's engine and a full node both follow the
//!   chain through it).
//!
//! ## Where to start reading
//!
//! [`service`] wires everything; [`chain::Chain`] is the shared state every
//! task uses (database, pool, notifications); [`storage`] explains the
//! database layout and the one-batch-per-block rule; [`pool`] the ready and
//! future queues; [`rpc`] the API and its error codes; [`network`] peers,
//! gossip validation, block sync and the offences that get a peer dropped.
//!
//! With the cargo feature `test-utils`, `test_utils::DevNode` runs a dev
//! node in a test's own process (the tests of this crate and of its
//! clients use it).

pub mod chain;
pub mod cli;
pub mod consensus;
// Key files moved to the runtime (the bridge reads them too); the old path stays.
pub use lockstep_service::keyfile;
pub mod metrics;
pub mod network;
pub mod pool;
pub mod rpc;
pub mod service;
pub mod storage;
#[cfg(feature = "test-utils")]
pub mod test_utils;
