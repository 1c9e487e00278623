//! JSON-RPC clients for the nodes and the event system, with errors that
//! name the service, the method and the server's own message and code.

use std::time::Duration;

use anyhow::{anyhow, Context};
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;

/// Timeout of one call (a batch is one call).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted (a full block, a page of events).
const MAX_RESPONSE: u32 = 64 * 1024 * 1024;
/// Notifications buffered per subscription: the client drops a
/// subscription whose buffer overflows, so followers of busy streams
/// resume from their last sequence number (see `bench`) as well.
const SUBSCRIPTION_BUFFER: usize = 16 * 1024;

/// The same endpoint over HTTP.
pub fn http_url(url: &str) -> String {
    url.replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1)
}

/// The same endpoint over WebSocket.
pub fn ws_url(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1)
}

/// An HTTP client for a service (nothing is connected until the first call).
pub fn http(url: &str) -> anyhow::Result<HttpClient> {
    HttpClientBuilder::default()
        .request_timeout(CALL_TIMEOUT)
        .max_response_size(MAX_RESPONSE)
        .build(http_url(url))
        .with_context(|| format!("bad URL {url}"))
}

/// A WebSocket client for a service (for subscriptions).
pub async fn ws(url: &str) -> anyhow::Result<WsClient> {
    WsClientBuilder::default()
        .request_timeout(CALL_TIMEOUT)
        .max_response_size(MAX_RESPONSE)
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .build(ws_url(url))
        .await
        .map_err(|e| anyhow!("cannot open a WebSocket to {url}: {}", describe(&e)))
}

/// A client error as a person reads it: the server's message and code for
/// a refusal, the cause for a transport failure.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Call(e) => format!("{} (code {})", e.message(), e.code()),
        ClientError::Transport(e) => format!("cannot reach it: {e}"),
        ClientError::RequestTimeout => "no answer in time".into(),
        other => other.to_string(),
    }
}

/// Whether the server answered (and refused): as opposed to a transport
/// failure, after which another node may be tried.
pub fn is_refusal(error: &ClientError) -> bool {
    matches!(error, ClientError::Call(_))
}

/// The code of a refusal.
pub fn refusal_code(error: &ClientError) -> Option<i32> {
    match error {
        ClientError::Call(e) => Some(e.code()),
        _ => None,
    }
}

/// One call; the error names the endpoint and the method.
pub async fn call<T: DeserializeOwned>(
    client: &impl ClientT,
    url: &str,
    method: &str,
    params: ArrayParams,
) -> anyhow::Result<T> {
    client
        .request(method, params)
        .await
        .map_err(|e| anyhow!("{method} at {url}: {}", describe(&e)))
}

/// One JSON-RPC batch of the same method; each entry is its own answer or
/// the server's refusal. A transport failure fails the whole batch.
pub async fn batch<T: DeserializeOwned + std::fmt::Debug>(
    client: &HttpClient,
    url: &str,
    method: &str,
    params: impl IntoIterator<Item = ArrayParams>,
) -> anyhow::Result<Vec<Result<T, String>>> {
    let mut request = BatchRequestBuilder::new();
    let mut count = 0;
    for p in params {
        request
            .insert(method, p)
            .map_err(|e| anyhow!("{method}: cannot encode the parameters: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let response = client
        .batch_request::<T>(request)
        .await
        .map_err(|e| anyhow!("{method} batch at {url}: {}", describe(&e)))?;
    let answers: Vec<Result<T, String>> = response
        .into_iter()
        .map(|r| r.map_err(|e| format!("{} (code {})", e.message(), e.code())))
        .collect();
    if answers.len() != count {
        anyhow::bail!(
            "{method} batch at {url}: {count} calls, {} answers",
            answers.len()
        );
    }
    Ok(answers)
}
