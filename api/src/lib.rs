//! # lockstep-api
//!
//! Every Lockstep service's interface, and nothing of its implementation:
//! the JSON-RPC methods as `#[rpc(server, client)]` traits, every request,
//! response and subscription type, the error codes, and the protocol's pure
//! rules that clients share with servers. A service implements the server
//! traits; every client (the CLI, the account bridge, the event system's
//! node client, benches and tests) calls the generated client traits, so a
//! server change that breaks a client fails to compile.
//!
//! ## Layout
//!
//! - [`node`]: the node's methods (Substrate's names), its views and error
//!   codes, and the batched calls;
//! - [`offchain`]: the event system's methods, pages, stats, batch items
//!   and error codes;
//! - [`event`] and [`lifecycle`]: what an event is on the wire (the
//!   registration and its checks, the record, transitions, the bridge's
//!   receipt and the bytes it signs) and the states' legal moves;
//! - [`bus`]: the message a bus carries to the account bridge;
//! - [`broker`]: what both sides agree on when that bus is NATS JetStream
//!   (`--bus`, the stream, subject and consumer names, the bounds);
//! - [`p2p`]: what nodes say to each other over libp2p (consensus
//!   gossip, transaction batches, block announcements, sync), with the
//!   bounds and decoders of each message;
//! - [`quorum`]: the quorum rule the confirmer and the audit share;
//! - [`client`]: building clients (one place for timeouts, limits, the
//!   bearer token and the CAs trusted for TLS), batches, and readable
//!   errors.
//!
//! This crate depends only on the runtime, serde, jsonrpsee and the rustls
//! its clients already use: linking it
//! brings in no storage engine and no networking stack.

pub mod broker;
pub mod bus;
pub mod client;
pub mod event;
pub mod lifecycle;
pub mod node;
pub mod offchain;
pub mod p2p;
pub mod proof;
pub mod quorum;

use jsonrpsee::proc_macros::rpc;
use jsonrpsee::RpcModule;
use serde::{Deserialize, Serialize};

/// `rpc_methods`: the methods a server serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcMethods {
    /// Version of this listing's shape.
    pub version: u32,
    /// Method names, sorted.
    pub methods: Vec<String>,
}

/// `rpc_methods`, served by every Lockstep service.
#[rpc(client, namespace = "rpc")]
pub trait RpcApi {
    /// The methods this server serves.
    #[method(name = "methods")]
    fn methods(&self) -> jsonrpsee::core::RpcResult<RpcMethods>;
}

/// Merges `parts` into one module and adds `rpc_methods` listing them all.
/// Method names are distinct across a service's namespaces, so merging
/// cannot fail; a clash would be a programming error, logged by the caller
/// from the returned names.
pub fn merge_with_listing(
    parts: impl IntoIterator<Item = RpcModule<()>>,
) -> Result<RpcModule<()>, String> {
    let mut module = RpcModule::new(());
    for part in parts {
        module.merge(part).map_err(|e| e.to_string())?;
    }
    let mut methods: Vec<String> = module.method_names().map(str::to_owned).collect();
    methods.push("rpc_methods".into());
    methods.sort();
    let listing = serde_json::to_value(RpcMethods {
        version: 1,
        methods,
    })
    .map_err(|e| e.to_string())?;
    module
        .register_method("rpc_methods", move |_, _, _| listing.clone())
        .map_err(|e| e.to_string())?;
    Ok(module)
}
