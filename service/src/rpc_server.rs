//! Starting a JSON-RPC server (HTTP and WebSocket on one port, jsonrpsee)
//! the same way in every service: bounded requests, responses, connections,
//! subscriptions and batches, every call timed into [`RpcTimes`], and, with
//! a [`Guard`] ([`start_guarded`]), every caller authenticated and every
//! call authorized ([`crate::auth`]).
//!
//! The HTTP middleware runs on each HTTP request and WebSocket upgrade,
//! before its body is read; the RPC middleware on each call, outermost
//! first: timing, then the role check, then the method.

use std::net::SocketAddr;

use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::RpcModule;

use crate::auth::{AuthLayer, Authorize, Guard};
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
    /// Calls a minute one connection may make ([`crate::rpc_rate_limit`]);
    /// `None` for no bound.
    pub rate_limit: Option<crate::rpc_rate_limit::RateLimit>,
}

/// Starts `module` on `addr`, open to every caller, timing every call into
/// `times`; returns the server's handle and the bound address (port 0
/// picks one).
pub async fn start(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    serve(addr, limits, module, times, None).await
}

/// [`start`], with callers admitted and calls checked by `guard`.
pub async fn start_guarded(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
    guard: Guard,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    serve(addr, limits, module, times, Some(guard)).await
}

async fn serve(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
    guard: Option<Guard>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_bytes)
        .max_response_body_size(limits.max_response_bytes)
        .max_connections(limits.max_connections)
        .max_subscriptions_per_connection(limits.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch_len))
        .build();
    let methods: Vec<String> = module.method_names().map(str::to_owned).collect();
    if let Some(guard) = &guard {
        guard.serve(methods.iter().cloned());
    }
    times.serve(methods);
    // Without a guard both auth layers pass everything through, so that
    // every server is one type.
    // A stranger is refused before any body is read; only then are the
    // envelopes checked (crate::jsonrpc_envelope).
    let http = tower::ServiceBuilder::new()
        .layer(AuthLayer::new(guard.clone()))
        .layer(crate::jsonrpc_envelope::EnvelopeLayer::new(
            limits.max_request_bytes,
        ));
    let rate_limit = limits.rate_limit;
    let rpc = RpcServiceBuilder::new()
        .layer_fn(move |service| times.wrap(service))
        // Per connection: jsonrpsee builds this stack for each one.
        .option_layer(
            rate_limit.map(|limit| tower::layer::layer_fn(move |service| limit.wrap(service))),
        )
        .layer_fn(move |service| Authorize::new(guard.clone(), service));
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(http)
        .set_rpc_middleware(rpc)
        .build(addr)
        .await?;
    let bound = server.local_addr()?;
    Ok((server.start(module), bound))
}
