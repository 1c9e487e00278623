//! The event system's JSON-RPC API as the bridge uses it: `bus_pull`,
//! `bus_ack`, `event_postReceipts` (many receipts in one call) and
//! `event_get`. Types and
//! error codes come from `lockstep-offchain`.

use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as RpcError};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use lockstep_offchain::event::PaymentReceipt;
use lockstep_offchain::rpc::ItemResult;
use serde::Deserialize;
use serde_json::Value;

/// Most receipts in one `event_postReceipts` call.
pub const MAX_BATCH_CALLS: usize = 500;
const _: () = assert!(MAX_BATCH_CALLS <= lockstep_offchain::rpc::MAX_BATCH_ITEMS);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The URL is unusable.
    #[error("event system URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The call did not get an answer (connection, timeout, bad response).
    #[error("event system unreachable: {0}")]
    Transport(String),
    /// The event system answered with an error.
    #[error("event system refused: {message} (code {code})")]
    Call {
        /// The JSON-RPC error code (see `lockstep_offchain::rpc`).
        code: i32,
        /// Its message.
        message: String,
    },
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Call(e) => ClientError::Call {
                code: e.code(),
                message: e.message().to_owned(),
            },
            other => ClientError::Transport(other.to_string()),
        }
    }
}

/// `bus_pull`'s answer, with each message left as JSON so that one
/// undecodable message cannot hide the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pulled {
    /// Pass it to `bus_ack`.
    pub lease_id: String,
    /// The lease's deadline (ms since the Unix epoch).
    pub deadline_ms: u64,
    /// The messages (`lockstep_offchain::store::BusMessage`).
    pub messages: Vec<Value>,
}

/// A client of one event system.
#[derive(Debug, Clone)]
pub struct EventSystemClient {
    http: HttpClient,
}

impl EventSystemClient {
    /// A client for `url` (`http://host:port`).
    pub fn new(url: &str, timeout: Duration) -> Result<EventSystemClient, ClientError> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ClientError::Url {
                url: url.to_owned(),
                reason: "must start with http:// or https://".into(),
            });
        }
        let http = HttpClientBuilder::default()
            .request_timeout(timeout)
            .max_response_size(64 * 1024 * 1024)
            .build(url)
            .map_err(|e| ClientError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(EventSystemClient { http })
    }

    /// Leases up to `max` instructions for `lease`.
    pub async fn pull(&self, max: usize, lease: Duration) -> Result<Pulled, ClientError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        Ok(self
            .http
            .request("bus_pull", rpc_params![max, lease_ms])
            .await?)
    }

    /// Acknowledges every message of a lease; returns how many left the queue.
    pub async fn ack(&self, lease_id: &str) -> Result<u64, ClientError> {
        let answer: Value = self.http.request("bus_ack", rpc_params![lease_id]).await?;
        Ok(answer["acked"].as_u64().unwrap_or(0))
    }

    /// Posts receipts with one `event_postReceipts` call (at most
    /// [`MAX_BATCH_CALLS`]; the event system writes them in one batch);
    /// each slot holds the event's state after the call, or the refusal.
    pub async fn post_receipts(
        &self,
        receipts: &[PaymentReceipt],
    ) -> Result<Vec<Result<String, ClientError>>, ClientError> {
        let answers: Vec<ItemResult<Value>> = self
            .http
            .request("event_postReceipts", rpc_params![receipts])
            .await?;
        let results: Vec<_> = answers
            .into_iter()
            .map(|answer| match (answer.result, answer.error) {
                (Some(event), _) => Ok(event["state"].as_str().unwrap_or_default().to_owned()),
                (None, Some(e)) => Err(ClientError::Call {
                    code: e.code,
                    message: e.message,
                }),
                (None, None) => Err(ClientError::Transport(
                    "an answer with neither result nor error".into(),
                )),
            })
            .collect();
        if results.len() != receipts.len() {
            return Err(ClientError::Transport(format!(
                "{} answers to {} receipts",
                results.len(),
                receipts.len()
            )));
        }
        Ok(results)
    }

    /// Posts one receipt; the event's state after it.
    pub async fn post_receipt(&self, receipt: &PaymentReceipt) -> Result<String, ClientError> {
        let event: Value = self
            .http
            .request("event_postReceipt", rpc_params![receipt])
            .await?;
        Ok(event["state"].as_str().unwrap_or_default().to_owned())
    }

    /// An event's state (`Registered`, `PendingAccount`, ...).
    pub async fn event_state(&self, id: &str) -> Result<String, ClientError> {
        let event: Value = self.http.request("event_get", rpc_params![id]).await?;
        Ok(event["state"].as_str().unwrap_or_default().to_owned())
    }
}
