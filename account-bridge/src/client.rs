//! The event system as the bridge uses it, through its typed interface
//! (`lockstep_api::offchain`): `bus_pull`, `bus_ack`, `event_postReceipts`
//! (many receipts in one call), `event_postReceipt` and `event_get`.

use std::time::Duration;

use jsonrpsee::http_client::HttpClient;
use lockstep_api::bus::Pulled;
use lockstep_api::client::{self, BearerToken, ClientOptions, Error as RpcError, TrustedCas};
use lockstep_api::event::PaymentReceipt;
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{error, BusApiClient, EventApiClient, ItemError, MAX_BATCH_ITEMS};
use serde_json::value::RawValue;

/// Most receipts in one `event_postReceipts` call.
pub const MAX_BATCH_CALLS: usize = 500;
const _: () = assert!(MAX_BATCH_CALLS <= MAX_BATCH_ITEMS);

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
        /// The JSON-RPC error code (`lockstep_api::offchain::error`).
        code: i32,
        /// Its message.
        message: String,
        /// For a receipt refused because the event is not awaiting one:
        /// the event's state, from the error's `data`.
        state: Option<State>,
    },
}

impl ClientError {
    fn refused(code: i32, message: String, data: Option<&RawValue>) -> ClientError {
        ClientError::Call {
            code,
            message,
            state: error::not_awaiting_state(code, data),
        }
    }
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Call(e) => ClientError::refused(e.code(), e.message().to_owned(), e.data()),
            other => ClientError::Transport(client::describe(&other)),
        }
    }
}

impl From<ItemError> for ClientError {
    fn from(e: ItemError) -> Self {
        ClientError::refused(e.code, e.message, e.data.as_deref())
    }
}

/// A client of one event system.
#[derive(Debug, Clone)]
pub struct EventSystemClient {
    http: HttpClient,
}

impl EventSystemClient {
    /// A client for `url` (`http://host:port`, or `https://` verified
    /// against `cas`, the system's roots when `None`), presenting `token`.
    pub fn new(
        url: &str,
        timeout: Duration,
        token: Option<BearerToken>,
        cas: Option<TrustedCas>,
    ) -> Result<EventSystemClient, ClientError> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ClientError::Url {
                url: url.to_owned(),
                reason: "must start with http:// or https://".into(),
            });
        }
        let options = ClientOptions::new(timeout).with_token(token).with_cas(cas);
        let http = client::http_with(url, &options).map_err(|e| ClientError::Url {
            url: url.to_owned(),
            reason: e.reason,
        })?;
        Ok(EventSystemClient { http })
    }

    /// Leases up to `max` instructions for `lease`.
    pub async fn pull(&self, max: usize, lease: Duration) -> Result<Pulled, ClientError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        Ok(BusApiClient::pull(&self.http, Some(max), Some(lease_ms)).await?)
    }

    /// Acknowledges every message of a lease; returns how many left the queue.
    pub async fn ack(&self, lease_id: &str) -> Result<u64, ClientError> {
        let answer = BusApiClient::ack(&self.http, lease_id.to_owned(), None).await?;
        Ok(answer.acked as u64)
    }

    /// Posts receipts with one `event_postReceipts` call (at most
    /// [`MAX_BATCH_CALLS`]; the event system writes them in one batch);
    /// each slot holds the event's state after the call, or the refusal.
    pub async fn post_receipts(
        &self,
        receipts: &[PaymentReceipt],
    ) -> Result<Vec<Result<State, ClientError>>, ClientError> {
        let answers = self.http.post_receipts(receipts.to_vec()).await?;
        if answers.len() != receipts.len() {
            return Err(ClientError::Transport(format!(
                "{} answers to {} receipts",
                answers.len(),
                receipts.len()
            )));
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer
                    .into_result()
                    .map(|event| event.state)
                    .map_err(ClientError::from)
            })
            .collect())
    }

    /// Posts one receipt; the event's state after it.
    pub async fn post_receipt(&self, receipt: &PaymentReceipt) -> Result<State, ClientError> {
        Ok(self.http.post_receipt(receipt.clone()).await?.state)
    }

    /// An event's state.
    pub async fn event_state(&self, id: &str) -> Result<State, ClientError> {
        Ok(self.http.get(id.to_owned()).await?.state)
    }
}
