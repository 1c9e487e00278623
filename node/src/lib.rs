//! # lockstep-node
//!
//! The validator node: RocksDB storage, transaction pool, Tendermint
//! consensus (driving the pure core in `lockstep-consensus`), libp2p gossip
//! and sync, and the Substrate-style JSON-RPC server.
//!
//! Status: not built yet. The node issue fills this crate; until then it only
//! holds its place in the workspace so that the dependency direction
//! `runtime` ← `consensus` ← `node` ← `offchain` ← `account-bridge` is fixed.
