//! The event system's JSON-RPC interface (`lockstep-offchain`): HTTP and
//! WebSocket on one port.
//!
//! | method | params | result |
//! |---|---|---|
//! | `event_register` | `{id, tx?, txHash?, validUntil?, payment: {payer, payee, amount, currency}}` | the event (same request again: the same event) |
//! | `event_get` | `id` | the event |
//! | `event_history` | `id` | its transitions, oldest first |
//! | `event_list` | `{state?, overdue?, cursor?, limit?}` | `{events, nextCursor}` (limit ≤ 500, default 100) |
//! | `event_stats` | — | counts per state, overdue, oldest ages, bus depth, last seq and height |
//! | `event_subscribe` | `fromSeq?` | subscription `event_transition`: transitions with `seq ≥ fromSeq` (default: only new ones), then live; unsubscribe `event_unsubscribe` |
//! | `event_postReceipt` | `{eventId, outcome: "paid" \| "failed", paymentReference, reason?, signature}` | `"paid"`: the completed event; `"failed"` (`reason` required): the event, still PendingAccount, with `paymentFailure {reason, paymentReference, atMs, reports}` |
//! | `event_registerBatch` | `[request, ...]` (at most 1000) | `[{result: event} \| {error: {code, message, data?}}, ...]`, one per request, in order: as `event_register` each, written in one group commit |
//! | `event_postReceipts` | `[receipt, ...]` (at most 1000) | `[{result: event} \| {error: {code, message, data?}}, ...]`, one per receipt, in order: as `event_postReceipt` each, written in one atomic batch |
//! | `bus_pull` | `max?` (≤ 1000, default 100), `leaseMs?` (100 ms to 10 min, default 30 s) | `{leaseId, deadlineMs, messages}` |
//! | `bus_ack` | `leaseId`, `messageIds?` | `{acked}` |
//! | `rpc_methods` | — | `{version, methods}` |
//!
//! The receipt signature is ed25519 by the configured bridge key over
//! [`PaymentReceipt::signing_bytes`] for `"paid"`:
//! `"lockstep/receipt/v1" ‖ u32le len ‖ event id ‖ u32le len ‖ "paid" ‖ u32le len ‖ payment reference`,
//! and [`PaymentReceipt::failure_signing_bytes`] for `"failed"`:
//! `"lockstep/receipt/v1" ‖ u32le len ‖ event id ‖ u32le len ‖ "failed" ‖ u32le len ‖ payment reference ‖ u32le len ‖ reason`.
//! A failure report moves no state: the payment stays owed, the reconciler
//! keeps re-sending the instruction, and a later `"paid"` receipt completes
//! the event and clears `paymentFailure`.
//!
//! Every refusal happens before anything is written. The batch methods
//! exist because JSON-RPC batches are served one call after another: a
//! batch of single calls would wait for one write (and one fsync) per call.
//! Error codes are in [`error`].

use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_runtime::BlockNumber;
use serde::{Deserialize, Serialize};

use crate::bus::Pulled;
use crate::event::{Event, PaymentReceipt, RegisterRequest, Transition};
use crate::lifecycle::State;

pub use crate::bus::AckResult;

/// Largest page `event_list` returns.
pub const MAX_PAGE: usize = 500;
/// Page size when the caller does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most items in one `event_registerBatch` or `event_postReceipts` call.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Longest list cursor, in characters.
pub const MAX_CURSOR: usize = 2 * (9 + 128);

/// The event system's error codes. They are part of the API: a code, once
/// given a meaning, keeps it. Messages are for people and may be reworded.
///
/// | code | meaning |
/// |---|---|
/// | -32700, -32600, -32601, -32602 | JSON-RPC's own: parse error, invalid request, unknown method, invalid params (wrong shape, unknown field) |
/// | -32603 | internal error (the store failed) |
/// | 2000 | a field is invalid (the message names it) |
/// | 2001 | no event with this id |
/// | 2002 | the id is registered with a different payload |
/// | 2003 | the tx hash is registered under another id |
/// | 2010 | receipt signature does not verify against the bridge key |
/// | 2011 | receipt for an event not in PendingAccount; `data`: `{"state": ...}` ([`NotAwaitingReceipt`]) |
/// | 2012 | a different receipt is already recorded for the event |
/// | 2020 | unknown lease (never issued, fully acknowledged, or pruned) |
/// | 2021 | the lease expired; its messages are back in the queue |
/// | 2022 | the lease does not hold that message |
/// | 2030 | invalid list cursor |
/// | 2040 | illegal lifecycle move (never expected through the API) |
pub mod error {
    use super::*;

    /// A field is invalid.
    pub const INVALID_FIELD: i32 = 2000;
    /// No such event.
    pub const NOT_FOUND: i32 = 2001;
    /// Same id, different payload.
    pub const ID_CONFLICT: i32 = 2002;
    /// Same tx, different id.
    pub const TX_CONFLICT: i32 = 2003;
    /// Bad receipt signature.
    pub const BAD_RECEIPT_SIGNATURE: i32 = 2010;
    /// Receipt for an event not awaiting one.
    pub const NOT_AWAITING_RECEIPT: i32 = 2011;
    /// A different receipt is recorded.
    pub const RECEIPT_CONFLICT: i32 = 2012;
    /// Unknown lease.
    pub const UNKNOWN_LEASE: i32 = 2020;
    /// Expired lease.
    pub const LEASE_EXPIRED: i32 = 2021;
    /// Message not in the lease.
    pub const NOT_IN_LEASE: i32 = 2022;
    /// Bad cursor.
    pub const BAD_CURSOR: i32 = 2030;
    /// Illegal move.
    pub const ILLEGAL_MOVE: i32 = 2040;
    /// Internal error.
    pub const INTERNAL: i32 = -32603;

    /// `data` of [`NOT_AWAITING_RECEIPT`]: the event's state, so that a
    /// bridge whose receipt an earlier copy already delivered can tell
    /// without another call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NotAwaitingReceipt {
        /// The event's state.
        pub state: State,
    }

    /// An error object with a code and a message.
    pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
        ErrorObjectOwned::owned(code, message.into(), None::<()>)
    }

    /// An error object with structured `data`.
    pub fn error_with<T: Serialize>(
        code: i32,
        message: impl Into<String>,
        data: T,
    ) -> ErrorObjectOwned {
        ErrorObjectOwned::owned(code, message.into(), Some(data))
    }

    /// The state in a [`NOT_AWAITING_RECEIPT`] refusal's `data`.
    pub fn not_awaiting_state(
        code: i32,
        data: Option<&serde_json::value::RawValue>,
    ) -> Option<State> {
        if code != NOT_AWAITING_RECEIPT {
            return None;
        }
        serde_json::from_str::<NotAwaitingReceipt>(data?.get())
            .ok()
            .map(|d| d.state)
    }
}

/// `event_list`'s parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Only this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Only overdue events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
    /// From a previous page's `nextCursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, at most [`MAX_PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The events.
    pub events: Vec<Event>,
    /// Pass this as `cursor` for the next page; none at the end.
    pub next_cursor: Option<String>,
}

/// `event_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Events per state.
    pub registered: u64,
    /// Events awaiting their payment.
    pub pending_account: u64,
    /// Completed events.
    pub completed: u64,
    /// Cancelled events.
    pub cancelled: u64,
    /// PendingAccount events older than the overdue threshold.
    pub overdue: u64,
    /// Age of the oldest PendingAccount event, in ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// Age of the oldest Registered event, in ms.
    pub oldest_registered_age_ms: Option<u64>,
    /// Messages in the bus not yet acknowledged.
    pub bus_depth: u64,
    /// Last transition's sequence number.
    pub last_seq: u64,
    /// Last finalized height the watcher processed.
    pub last_height: Option<BlockNumber>,
}

impl Stats {
    /// Events in `state`.
    pub fn count(&self, state: State) -> u64 {
        match state {
            State::Registered => self.registered,
            State::PendingAccount => self.pending_account,
            State::Completed => self.completed,
            State::Cancelled => self.cancelled,
        }
    }
}

/// One item's outcome in a batch method's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult<T> {
    /// The result, as the single method would answer it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// The refusal, with the single method's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// A refused item of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemError {
    /// The error code ([`error`]).
    pub code: i32,
    /// For people.
    pub message: String,
    /// Structured detail, as the single method's error carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<serde_json::value::RawValue>>,
}

impl<T> ItemResult<T> {
    /// The item as a `Result`.
    pub fn into_result(self) -> Result<T, ItemError> {
        match (self.result, self.error) {
            (Some(value), _) => Ok(value),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ItemError {
                code: error::INTERNAL,
                message: "an answer with neither result nor error".into(),
                data: None,
            }),
        }
    }
}

impl<T> From<RpcResult<T>> for ItemResult<T> {
    fn from(result: RpcResult<T>) -> Self {
        match result {
            Ok(value) => ItemResult {
                result: Some(value),
                error: None,
            },
            Err(e) => ItemResult {
                result: None,
                error: Some(ItemError {
                    code: e.code(),
                    message: e.message().to_owned(),
                    data: e.data().map(|d| d.to_owned()),
                }),
            },
        }
    }
}

/// `event_*`.
#[rpc(server, client, namespace = "event")]
pub trait EventApi {
    /// Registers an event (idempotent on `id`).
    #[method(name = "register")]
    async fn register(&self, request: RegisterRequest) -> RpcResult<Event>;

    /// An event.
    #[method(name = "get")]
    fn get(&self, id: String) -> RpcResult<Event>;

    /// An event's transitions, oldest first.
    #[method(name = "history")]
    fn history(&self, id: String) -> RpcResult<Vec<Transition>>;

    /// A page of events.
    #[method(name = "list")]
    fn list(&self, params: Option<ListParams>) -> RpcResult<Page>;

    /// Counts and ages.
    #[method(name = "stats")]
    fn stats(&self) -> RpcResult<Stats>;

    /// Streams transitions from `from_seq` on (default: only new ones).
    #[subscription(name = "subscribe" => "transition", unsubscribe = "unsubscribe", item = Transition)]
    async fn subscribe_transitions(&self, from_seq: Option<u64>) -> SubscriptionResult;

    /// The bridge's signed receipt.
    #[method(name = "postReceipt")]
    fn post_receipt(&self, receipt: PaymentReceipt) -> RpcResult<Event>;

    /// Registers many events in one group commit.
    #[method(name = "registerBatch")]
    async fn register_batch(
        &self,
        requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>>;

    /// Many signed receipts in one atomic write.
    #[method(name = "postReceipts")]
    async fn post_receipts(
        &self,
        receipts: Vec<PaymentReceipt>,
    ) -> RpcResult<Vec<ItemResult<Event>>>;
}

/// `bus_*`: the embedded message bus.
#[rpc(server, client, namespace = "bus")]
pub trait BusApi {
    /// Leases up to `max` messages for `lease_ms`.
    #[method(name = "pull")]
    async fn pull(&self, max: Option<usize>, lease_ms: Option<u64>) -> RpcResult<Pulled>;

    /// Acknowledges a lease's messages (all of them without `message_ids`).
    #[method(name = "ack")]
    async fn ack(&self, lease_id: String, message_ids: Option<Vec<String>>)
        -> RpcResult<AckResult>;
}

/// The event-system methods called in JSON-RPC batches (the generated
/// clients make one call per request); a test checks that the event system
/// serves each.
pub mod methods {
    /// `event_history`.
    pub const EVENT_HISTORY: &str = "event_history";
    /// `event_register`.
    pub const EVENT_REGISTER: &str = "event_register";
    /// Every name above.
    pub const BATCHED: [&str; 2] = [EVENT_HISTORY, EVENT_REGISTER];
}

/// Most calls in one JSON-RPC batch to the event system (its limit).
pub const MAX_CALL_BATCH: usize = 100;

/// `event_history` for each id, in one JSON-RPC batch (at most
/// [`MAX_CALL_BATCH`]); each entry is the history or the refusal.
pub async fn histories(
    client: &jsonrpsee::http_client::HttpClient,
    ids: &[&str],
) -> Result<Vec<Result<Vec<Transition>, ErrorObjectOwned>>, jsonrpsee::core::client::Error> {
    crate::client::batch(
        client,
        methods::EVENT_HISTORY,
        ids.iter().map(|id| jsonrpsee::rpc_params![id]).collect(),
    )
    .await
}

/// `event_register` for each request, as one JSON-RPC batch of single
/// calls (at most [`MAX_CALL_BATCH`]; `event_registerBatch` is the one-call
/// form).
pub async fn register_calls(
    client: &jsonrpsee::http_client::HttpClient,
    requests: &[RegisterRequest],
) -> Result<Vec<Result<Event, ErrorObjectOwned>>, jsonrpsee::core::client::Error> {
    crate::client::batch(
        client,
        methods::EVENT_REGISTER,
        requests.iter().map(|r| jsonrpsee::rpc_params![r]).collect(),
    )
    .await
}
