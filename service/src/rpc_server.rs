//! Starting a JSON-RPC server (HTTP and WebSocket on one port, jsonrpsee)
//! the same way in every service: bounded requests, responses, connections,
//! subscriptions and batches, and every call timed into [`RpcTimes`].

use std::net::SocketAddr;

use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::RpcModule;

use crate::rpc_metrics::RpcTimes;

/// Limits of a JSON-RPC server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest request body, in bytes.
    pub max_request_bytes: u32,
    /// Largest response body, in bytes.
    pub max_response_bytes: u32,
    /// Most open connections.
    pub max_connections: u32,
    /// Most subscriptions on one WebSocket connection.
    pub max_subscriptions_per_connection: u32,
    /// Most calls in one batch.
    pub max_batch_len: u32,
}

/// Starts `module` on `addr`, timing every call into `times`; returns the
/// server's handle and the bound address (port 0 picks one).
pub async fn start(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_bytes)
        .max_response_body_size(limits.max_response_bytes)
        .max_connections(limits.max_connections)
        .max_subscriptions_per_connection(limits.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch_len))
        .build();
    times.serve(module.method_names().map(str::to_owned));
    let middleware = RpcServiceBuilder::new().layer_fn(move |service| times.wrap(service));
    let server = Server::builder()
        .set_config(config)
        .set_rpc_middleware(middleware)
        .build(addr)
        .await?;
    let bound = server.local_addr()?;
    Ok((server.start(module), bound))
}
