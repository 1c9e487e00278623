//! Starting a JSON-RPC server (HTTP and WebSocket on one port, jsonrpsee)
//! the same way in every service: bounded requests, responses, connections,
//! subscriptions and batches, every call timed into [`RpcTimes`], with a
//! [`Guard`] ([`start_guarded`]) every caller authenticated and every call
//! authorized ([`crate::auth`]), and with a [`ServerTls`] every connection
//! TLS (`https://`, `wss://`; [`crate::tls`]).
//!
//! The accept loop is this module's own, not jsonrpsee's, for two reasons:
//! TLS, and a per-connection rate limit that holds for HTTP too. jsonrpsee
//! builds the RPC middleware again for every HTTP request, so a limiter
//! made there would be one request's; here the limiter is made once per
//! accepted TCP connection and shared by every request on it. At most
//! `max_connections` connections are open at once (one over is closed
//! when accepted), a TLS handshake has [`crate::tls::HANDSHAKE_TIMEOUT`],
//! and a connection that sends no request is closed by jsonrpsee after its
//! first-request timeout.
//!
//! The HTTP middleware runs on each HTTP request and WebSocket upgrade,
//! before its body is read; the RPC middleware on each call, outermost
//! first: timing, the rate limit, then the role check, then the method.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    serve_with_graceful_shutdown, stop_channel, BatchRequestConfig, HttpBody, HttpRequest, Methods,
    Server, ServerConfig, ServerHandle,
};
use jsonrpsee::RpcModule;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::{AuthLayer, Authorize, Guard};
use crate::rpc_metrics::RpcTimes;
use crate::tls::{ServerTls, HANDSHAKE_TIMEOUT};

const LOG_TARGET: &str = "lockstep::rpc";
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
/// `times`, over TLS when `tls` is given; returns the server's handle and
/// the bound address (port 0 picks one).
pub async fn start(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
    tls: Option<ServerTls>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    serve(addr, limits, module, times, None, tls).await
}

/// [`start`], with callers admitted and calls checked by `guard`.
pub async fn start_guarded(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
    guard: Guard,
    tls: Option<ServerTls>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    serve(addr, limits, module, times, Some(guard), tls).await
}

async fn serve(
    addr: SocketAddr,
    limits: RpcLimits,
    module: RpcModule<()>,
    times: RpcTimes,
    guard: Option<Guard>,
    tls: Option<ServerTls>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_bytes)
        .max_response_body_size(limits.max_response_bytes)
        .max_connections(limits.max_connections)
        .max_subscriptions_per_connection(limits.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch_len))
        .build();
    let names: Vec<String> = module.method_names().map(str::to_owned).collect();
    if let Some(guard) = &guard {
        guard.serve(names.iter().cloned());
    }
    times.serve(names);
    // Without a guard both auth layers pass everything through, so that
    // every server is one type.
    // A stranger is refused before any body is read; only then are the
    // envelopes checked (crate::jsonrpc_envelope).
    let http = tower::ServiceBuilder::new()
        .layer(AuthLayer::new(guard.clone()))
        .layer(crate::jsonrpc_envelope::EnvelopeLayer::new(
            limits.max_request_bytes,
        ));
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(http)
        .to_service_builder();
    let (stop, handle) = stop_channel();
    let methods: Methods = module.into();
    let acceptor = tls.map(|tls| tls.acceptor());
    let open = Arc::new(Semaphore::new(limits.max_connections as usize));
    tokio::spawn(async move {
        let mut errors = 0u32;
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        errors = 0;
                        accepted
                    }
                    Err(e) => {
                        // Out of file descriptors, say: pause instead of
                        // spinning on the same error.
                        let pause = crate::backoff(Duration::from_millis(10), Duration::from_secs(1), errors);
                        errors = errors.saturating_add(1);
                        tracing::warn!(target: LOG_TARGET, "RPC on {bound}: accept failed ({e}); retrying in {pause:?}");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                },
                () = stop.clone().shutdown() => break,
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::debug!(target: LOG_TARGET, "RPC on {bound}: {peer} refused, {} connections open", limits.max_connections);
                continue;
            };
            // This connection's middleware: its own rate limiter, shared by
            // every request and call made on it.
            let limiter = limits.rate_limit.map(|limit| limit.connection());
            let rpc =
                RpcServiceBuilder::new()
                    .layer_fn({
                        let times = times.clone();
                        move |service| times.wrap(service)
                    })
                    .option_layer(limiter.map(|limiter| {
                        tower::layer::layer_fn(move |service| limiter.wrap(service))
                    }))
                    .layer_fn({
                        let guard = guard.clone();
                        move |service| Authorize::new(guard.clone(), service)
                    });
            let service = WithHttpBody(
                builder
                    .clone()
                    .set_rpc_middleware(rpc)
                    .build(methods.clone(), stop.clone()),
            );
            let stopped = stop.clone().shutdown();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = socket.set_nodelay(true);
                let served = match acceptor {
                    None => serve_with_graceful_shutdown(socket, service, stopped).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await
                        {
                            Ok(Ok(stream)) => {
                                serve_with_graceful_shutdown(stream, service, stopped).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(target: LOG_TARGET, "RPC on {bound}: TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(target: LOG_TARGET, "RPC on {bound}: no TLS handshake from {peer} in {HANDSHAKE_TIMEOUT:?}");
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(target: LOG_TARGET, "RPC on {bound}: connection from {peer} ended: {e}");
                }
            });
        }
    });
    Ok((handle, bound))
}

/// jsonrpsee's service over the body type its HTTP middleware is written
/// for: hyper hands each connection's requests over with its own body.
#[derive(Clone)]
struct WithHttpBody<S>(S);

impl<S> tower::Service<http::Request<hyper::body::Incoming>> for WithHttpBody<S>
where
    S: tower::Service<HttpRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.0.call(request.map(HttpBody::new))
    }
}
