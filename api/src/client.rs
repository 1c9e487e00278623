//! Connecting to a Lockstep service: one place that builds the HTTP and
//! WebSocket clients every caller uses (timeouts, size limits; credentials
//! and TLS go here too), JSON-RPC batches of one method, and errors as a
//! person reads them.
//!
//! The typed calls are the generated client traits of each interface
//! ([`crate::node`], [`crate::offchain`]): bring the trait into scope and
//! call its methods on an [`HttpClient`] or a [`WsClient`].

use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;

pub use jsonrpsee::core::client::{Error, Subscription};

/// Timeout of one call when the caller does not choose one (a batch is
/// one call).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted (a full block, a page of events).
pub const MAX_RESPONSE: u32 = 64 * 1024 * 1024;
/// Notifications buffered per subscription: the client drops a
/// subscription whose buffer overflows, so a follower of a busy stream
/// resumes from its last sequence number.
pub const SUBSCRIPTION_BUFFER: usize = 16 * 1024;

/// A service URL that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URL {url:?}: {reason}")]
pub struct BadUrl {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// The same endpoint as `http(s)://` and `ws(s)://` (a Lockstep service
/// serves both on one port). Refuses any other scheme.
pub fn endpoint_urls(url: &str) -> Result<(String, String), BadUrl> {
    let bad = |reason: &str| BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("http://") {
        Ok((url.to_owned(), format!("ws://{rest}")))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok((url.to_owned(), format!("wss://{rest}")))
    } else if let Some(rest) = url.strip_prefix("ws://") {
        Ok((format!("http://{rest}"), url.to_owned()))
    } else if let Some(rest) = url.strip_prefix("wss://") {
        Ok((format!("https://{rest}"), url.to_owned()))
    } else {
        Err(bad("expected http://, https://, ws:// or wss://"))
    }
}

/// An HTTP client for the service at `url` (any of the four schemes;
/// nothing is connected until the first call).
pub fn http(url: &str, timeout: Duration) -> Result<HttpClient, BadUrl> {
    let (http_url, _) = endpoint_urls(url)?;
    HttpClientBuilder::default()
        .request_timeout(timeout)
        .max_response_size(MAX_RESPONSE)
        .build(&http_url)
        .map_err(|e| BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

/// A WebSocket client for the service at `url` (for subscriptions).
pub async fn ws(url: &str, timeout: Duration) -> Result<WsClient, ClientError> {
    let (_, ws_url) = endpoint_urls(url).map_err(|e| ClientError::Custom(e.to_string()))?;
    WsClientBuilder::default()
        .request_timeout(timeout)
        .connection_timeout(timeout)
        .max_response_size(MAX_RESPONSE)
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .build(&ws_url)
        .await
}

/// A client error as a person reads it: the server's message and code for
/// a refusal, the cause for a transport failure.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Call(e) => describe_refusal(e),
        ClientError::Transport(e) => format!("cannot reach it: {e}"),
        ClientError::RequestTimeout => "no answer in time".into(),
        other => other.to_string(),
    }
}

/// A server's refusal as a person reads it.
pub fn describe_refusal(error: &ErrorObjectOwned) -> String {
    format!("{} (code {})", error.message(), error.code())
}

/// The code of a refusal; none for a transport failure (after which
/// another node may be tried).
pub fn refusal_code(error: &ClientError) -> Option<i32> {
    match error {
        ClientError::Call(e) => Some(e.code()),
        _ => None,
    }
}

/// One JSON-RPC batch of calls to `method`; each entry is its own answer or
/// the server's refusal. A transport failure fails the whole batch, and so
/// does an answer with the wrong number of entries.
pub async fn batch<T: DeserializeOwned + std::fmt::Debug>(
    client: &HttpClient,
    method: &str,
    params: Vec<ArrayParams>,
) -> Result<Vec<Result<T, ErrorObjectOwned>>, ClientError> {
    let mut request = BatchRequestBuilder::new();
    let mut count = 0;
    for p in params {
        request
            .insert(method, p)
            .map_err(|e| ClientError::Custom(format!("{method}: cannot encode parameters: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let response = client.batch_request::<T>(request).await?;
    let answers: Vec<Result<T, ErrorObjectOwned>> = response
        .into_iter()
        .map(|answer| answer.map_err(|e| e.into_owned()))
        .collect();
    if answers.len() != count {
        return Err(ClientError::Custom(format!(
            "{method}: {count} calls in a batch, {} answers",
            answers.len()
        )));
    }
    Ok(answers)
}
