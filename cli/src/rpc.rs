//! Connecting to the nodes and the event system through their typed
//! interfaces (`lockstep_api`), with errors that name the service and its
//! URL, then the server's own message and code.

use std::time::Duration;

use anyhow::anyhow;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{self, BearerToken, ClientOptions};
pub use lockstep_api::client::{describe, refusal_code, Error as ClientError};

/// Timeout of one call (a batch is one call).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for a service (nothing is connected until the first call).
pub fn http(url: &str) -> anyhow::Result<HttpClient> {
    http_as(url, None)
}

/// A WebSocket client for a service (for subscriptions).
pub async fn ws(url: &str) -> anyhow::Result<WsClient> {
    ws_as(url, None).await
}

/// [`http`], presenting `token` (the event system's clients; a node takes
/// none, and is never sent the event system's token).
pub fn http_as(url: &str, token: Option<BearerToken>) -> anyhow::Result<HttpClient> {
    Ok(client::http_with(
        url,
        &ClientOptions::new(CALL_TIMEOUT).with_token(token),
    )?)
}

/// [`ws`], presenting `token` with the upgrade request.
pub async fn ws_as(url: &str, token: Option<BearerToken>) -> anyhow::Result<WsClient> {
    client::ws_with(url, &ClientOptions::new(CALL_TIMEOUT).with_token(token))
        .await
        .map_err(|e| anyhow!("cannot open a WebSocket to {url}: {}", describe(&e)))
}

/// Whether the server answered (and refused): as opposed to a transport
/// failure, after which another node may be tried.
pub fn is_refusal(error: &ClientError) -> bool {
    refusal_code(error).is_some()
}

/// A call's result, its error naming what was asked of which service.
pub trait At<T> {
    /// `what` at `url`: the server's message and code, or the cause.
    fn at(self, what: &str, url: &str) -> anyhow::Result<T>;
}

impl<T> At<T> for Result<T, ClientError> {
    fn at(self, what: &str, url: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{what} at {url}: {}", describe(&e)))
    }
}
