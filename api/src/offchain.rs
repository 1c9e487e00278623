//! The event system's JSON-RPC interface (`lockstep-offchain`): HTTP and
//! WebSocket on one port.
//!
//! | method | params | result |
//! |---|---|---|
//! | `event_register` | `{id, tx?, txHash?, validUntil?, payment: {payer, payee, amount, currency}}` | the event (same request again: the same event) |
//! | `event_get` | `id` | the event |
//! | `event_history` | `id` | its transitions, oldest first |
//! | `event_getProof` | `id` | what proves its transfer's outcome ([`crate::proof::EventProof`]: justified header, receipt and its Merkle path, the transfer's bytes), checkable with the chain spec alone; null for an event without one (Registered, or Cancelled as expired) |
//! | `event_list` | `{state?, overdue?, cursor?, limit?}` | `{events, nextCursor}` (limit ≤ 500, default 100) |
//! | `event_stats` | — | counts per state, overdue, oldest ages, bus depth, last seq and height |
//! | `event_subscribe` | `fromSeq?`, `filter?` `{eventIds?, idPrefix?, states?}` | subscription `event_transition`: transitions with `seq ≥ fromSeq` (default: only new ones), then live, in seq order; with a filter only those it matches ([`TransitionFilter`]); unsubscribe `event_unsubscribe` |
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
//! Each message `bus_pull` hands out carries the event system's signature
//! (its own key, `--key-file`) over [`BusMessage::signing_bytes`](crate::bus::BusMessage::signing_bytes):
//! `"lockstep/instruction/v1" ‖ u32le len ‖ event id ‖ payment canonical bytes ‖ tx hash (32) ‖ block hash (0x00, or 0x01 ‖ 32) ‖ block number (u64le)`
//! (see [`crate::bus`]); the bridge pays nothing else.
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
use crate::event::{
    check_event_id, Event, InvalidField, PaymentReceipt, RegisterRequest, Transition,
};
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
/// | 2004 | the signed transfer does not commit to this event and instruction (its `reference` is not [`settlement_commitment`](crate::event::settlement_commitment)) |
/// | 2005 | the transfer's `validUntil` is further ahead than the chain allows |
/// | 2010 | receipt signature does not verify against the bridge key |
/// | 2011 | receipt for an event not in PendingAccount; `data`: `{"state": ...}` ([`NotAwaitingReceipt`]) |
/// | 2012 | a different receipt is already recorded for the event |
/// | 2020 | unknown lease (never issued, fully acknowledged, or pruned) |
/// | 2021 | the lease expired; its messages are back in the queue |
/// | 2022 | the lease does not hold that message |
/// | 2023 | `bus_pull`/`bus_ack` on an event system whose bus is a broker (`--bus nats://...`): bridges consume from the broker, not from the event system |
/// | 2030 | invalid list cursor |
/// | 2040 | illegal lifecycle move (never expected through the API) |
/// | 2050 | no credential, or one not on record (HTTP 401 before any call is read) |
/// | 2051 | the credential's role may not call this method; `data`: `{"required": [roles]}` |
/// | 2052 | the payer is outside the submitter credential's scope |
/// | 2053 | the credential registers faster than its rate allows; retry later |
/// | 2054 | the credential holds as many Registered events as it may (`--max-registered-per-credential`); `data`: `{"bound", "registered"}` ([`TooManyPending`]) |
/// | 2060 | a message is not signed by the event system's key (bridge side) |
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
    /// The transfer does not commit to the event.
    pub const NOT_COMMITTED: i32 = 2004;
    /// The transfer's validity window is longer than the chain allows.
    pub const VALIDITY_TOO_LONG: i32 = 2005;
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
    /// The bus is a broker: `bus_pull` and `bus_ack` are not served.
    pub const BUS_NOT_SERVED: i32 = 2023;
    /// Bad cursor.
    pub const BAD_CURSOR: i32 = 2030;
    /// Illegal move.
    pub const ILLEGAL_MOVE: i32 = 2040;
    /// No credential, or an unknown or revoked one.
    pub const UNAUTHENTICATED: i32 = 2050;
    /// The credential's role may not call the method.
    pub const FORBIDDEN: i32 = 2051;
    /// The payer is outside the credential's scope.
    pub const PAYER_NOT_ALLOWED: i32 = 2052;
    /// Registering faster than the credential's rate.
    pub const RATE_LIMITED: i32 = 2053;
    /// The credential holds its limit of Registered events.
    pub const TOO_MANY_PENDING: i32 = 2054;
    /// A bus message without a valid event-system signature.
    pub const BAD_INSTRUCTION_SIGNATURE: i32 = 2060;
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

    /// `data` of [`TOO_MANY_PENDING`]: the credential's bound and how many
    /// of its events are Registered now, so that a client can wait for
    /// some of them to be confirmed or cancelled before it registers more.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TooManyPending {
        /// Most events the credential may hold in Registered.
        pub bound: u64,
        /// How many it holds.
        pub registered: u64,
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

/// Most event ids one [`TransitionFilter`] follows.
pub const MAX_FILTER_IDS: usize = 64;

/// `event_subscribe`'s second parameter: which transitions to stream. A
/// transition is streamed when it matches every condition given (none
/// given: every transition).
///
/// - `eventIds` (1 to [`MAX_FILTER_IDS`] event ids): only these events'
///   transitions. The server reads each event's own history instead of the
///   global feed, so what a subscriber costs follows the events it follows,
///   not the whole system's rate; an id not registered (yet) is followed
///   all the same, and an event that reached a final state is no longer
///   looked at;
/// - `idPrefix` (1 to [`MAX_EVENT_ID`](crate::event::MAX_EVENT_ID) bytes
///   of the characters of an id): only events whose id starts with it
///   (filtered from the global feed on the server);
/// - `states` (1 to 4 states): only transitions into one of these.
///
/// Streamed transitions keep their global `seq`, so a subscriber resumes
/// with `fromSeq` = the last one's `seq` + 1 and the same filter. A filter
/// that fails [`TransitionFilter::check`] is refused at subscribe time with
/// [`error::INVALID_FIELD`]; an unknown field or state with -32602.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionFilter {
    /// Only these events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    /// Only events whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Only transitions into one of these states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<State>>,
}

impl TransitionFilter {
    /// Only these events' transitions.
    pub fn event_ids<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> TransitionFilter {
        TransitionFilter {
            event_ids: Some(ids.into_iter().map(Into::into).collect()),
            ..TransitionFilter::default()
        }
    }

    /// Only the transitions of events whose id starts with `prefix`.
    pub fn id_prefix(prefix: impl Into<String>) -> TransitionFilter {
        TransitionFilter {
            id_prefix: Some(prefix.into()),
            ..TransitionFilter::default()
        }
    }

    /// Checks every bound: 1 to [`MAX_FILTER_IDS`] ids, each a valid event
    /// id; a prefix that is a valid event id; 1 to 4 states.
    pub fn check(&self) -> Result<(), InvalidField> {
        let invalid = |field: &'static str, reason: String| InvalidField { field, reason };
        if let Some(ids) = &self.event_ids {
            if ids.is_empty() || ids.len() > MAX_FILTER_IDS {
                return Err(invalid(
                    "eventIds",
                    format!("must hold 1 to {MAX_FILTER_IDS} ids, got {}", ids.len()),
                ));
            }
            for (i, id) in ids.iter().enumerate() {
                check_event_id(id)
                    .map_err(|e| invalid("eventIds", format!("item {i}: {}", e.reason)))?;
            }
        }
        if let Some(prefix) = &self.id_prefix {
            check_event_id(prefix).map_err(|e| invalid("idPrefix", e.reason))?;
        }
        if let Some(states) = &self.states {
            if states.is_empty() || states.len() > State::ALL.len() {
                return Err(invalid(
                    "states",
                    format!(
                        "must hold 1 to {} states, got {}",
                        State::ALL.len(),
                        states.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether `transition` is one to stream.
    pub fn matches(&self, transition: &Transition) -> bool {
        self.event_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&transition.event_id))
            && self
                .id_prefix
                .as_ref()
                .is_none_or(|prefix| transition.event_id.starts_with(prefix.as_str()))
            && self
                .states
                .as_ref()
                .is_none_or(|states| states.contains(&transition.to))
    }
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

/// `event_*`. Who may call each method: [`ACCESS`].
#[rpc(server, client, namespace = "event")]
pub trait EventApi {
    /// Registers an event (idempotent on `id`). Role: submitter, whose
    /// scope must hold the payer ([`error::PAYER_NOT_ALLOWED`]), whose
    /// rate must allow it ([`error::RATE_LIMITED`]) and which may not hold
    /// more events in Registered than its bound
    /// ([`error::TOO_MANY_PENDING`]; registering an event it registered
    /// already is answered as before); the server reads the caller from
    /// `ext`.
    #[method(name = "register", with_extensions)]
    async fn register(&self, request: RegisterRequest) -> RpcResult<Event>;

    /// An event. Roles: submitter, reader, bridge.
    #[method(name = "get", blocking)]
    fn get(&self, id: String) -> RpcResult<Event>;

    /// An event's transitions, oldest first. Roles: submitter, reader.
    #[method(name = "history", blocking)]
    fn history(&self, id: String) -> RpcResult<Vec<Transition>>;

    /// What proves the event's on-chain outcome, checkable with the chain
    /// spec alone ([`crate::proof::EventProof::verify`]); null while there
    /// is none (Registered, or Cancelled as expired). Roles: submitter,
    /// reader.
    #[method(name = "getProof")]
    fn proof(&self, id: String) -> RpcResult<Option<crate::proof::EventProof>>;

    /// A page of events. Roles: submitter, reader.
    #[method(name = "list", blocking)]
    fn list(&self, params: Option<ListParams>) -> RpcResult<Page>;

    /// Counts and ages. Roles: submitter, reader.
    #[method(name = "stats", blocking)]
    fn stats(&self) -> RpcResult<Stats>;

    /// Streams transitions from `from_seq` on (default: only new ones), in
    /// seq order; with `filter`, only those it matches
    /// ([`TransitionFilter`]; refused with [`error::INVALID_FIELD`] when it
    /// fails its check). Roles: submitter, reader.
    #[subscription(name = "subscribe" => "transition", unsubscribe = "unsubscribe", item = Transition)]
    async fn subscribe_transitions(
        &self,
        from_seq: Option<u64>,
        filter: Option<TransitionFilter>,
    ) -> SubscriptionResult;

    /// The bridge's signed receipt. Role: bridge.
    #[method(name = "postReceipt", blocking)]
    fn post_receipt(&self, receipt: PaymentReceipt) -> RpcResult<Event>;

    /// Registers many events in one group commit. Role: submitter, item by
    /// item as [`register`](EventApiServer::register).
    #[method(name = "registerBatch", with_extensions)]
    async fn register_batch(
        &self,
        requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>>;

    /// Many signed receipts in one atomic write. Role: bridge.
    #[method(name = "postReceipts")]
    async fn post_receipts(
        &self,
        receipts: Vec<PaymentReceipt>,
    ) -> RpcResult<Vec<ItemResult<Event>>>;
}

/// `bus_*`: the embedded message bus. Role: bridge ([`ACCESS`]).
#[rpc(server, client, namespace = "bus")]
pub trait BusApi {
    /// Leases up to `max` messages for `lease_ms`. Role: bridge.
    #[method(name = "pull")]
    async fn pull(&self, max: Option<usize>, lease_ms: Option<u64>) -> RpcResult<Pulled>;

    /// Acknowledges a lease's messages (all of them without `message_ids`).
    /// Role: bridge.
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

/// A credential's role: what its holder may call ([`ACCESS`]). A
/// credential has one or more.
///
/// - `submitter`: a transaction system; registers events (for the payers
///   its scope holds) and reads them;
/// - `reader`: monitoring and audits; reads events, histories, pages,
///   stats and the transition feed;
/// - `bridge`: the account bridge; pulls and acknowledges instructions,
///   posts receipts, reads an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Registers events, and reads.
    Submitter,
    /// Reads.
    Reader,
    /// Takes instructions and posts receipts.
    Bridge,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Submitter, Role::Reader, Role::Bridge];

    /// Its name, as the credentials file and error `data` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Reader => "reader",
            Role::Bridge => "bridge",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role: expected submitter, reader or bridge")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any caller with a valid credential.
    AnyCredential,
    /// A caller whose credential has one of these roles.
    Roles(&'static [Role]),
}

const READERS: &[Role] = &[Role::Submitter, Role::Reader];

/// Every method the event system serves and who may call it: the servers
/// enforce it, clients and docs read it. A served method missing here is
/// refused to everyone ([`error::FORBIDDEN`]), so a new method is closed
/// until it is listed; a test checks the list against the server.
///
/// | method | roles |
/// |---|---|
/// | `event_register`, `event_registerBatch` | submitter |
/// | `event_get` | submitter, reader, bridge |
/// | `event_history`, `event_getProof`, `event_list`, `event_stats`, `event_subscribe`, `event_unsubscribe` | submitter, reader |
/// | `event_postReceipt`, `event_postReceipts`, `bus_pull`, `bus_ack` | bridge |
/// | `rpc_methods` | any credential |
pub const ACCESS: [(&str, Access); 14] = [
    ("event_register", Access::Roles(&[Role::Submitter])),
    ("event_registerBatch", Access::Roles(&[Role::Submitter])),
    (
        "event_get",
        Access::Roles(&[Role::Submitter, Role::Reader, Role::Bridge]),
    ),
    ("event_history", Access::Roles(READERS)),
    ("event_getProof", Access::Roles(READERS)),
    ("event_list", Access::Roles(READERS)),
    ("event_stats", Access::Roles(READERS)),
    ("event_subscribe", Access::Roles(READERS)),
    ("event_unsubscribe", Access::Roles(READERS)),
    ("event_postReceipt", Access::Roles(&[Role::Bridge])),
    ("event_postReceipts", Access::Roles(&[Role::Bridge])),
    ("bus_pull", Access::Roles(&[Role::Bridge])),
    ("bus_ack", Access::Roles(&[Role::Bridge])),
    ("rpc_methods", Access::AnyCredential),
];

/// Who may call `method`; `None` for a method not in [`ACCESS`].
pub fn access(method: &str) -> Option<Access> {
    ACCESS
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, access)| *access)
}

/// `data` of a [`error::FORBIDDEN`] refusal: the roles that may call the
/// method (empty for a method no role may call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredRoles {
    /// Any one of these.
    pub required: Vec<Role>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_from_their_names_and_every_method_is_listed_once() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_string(&role).ok(),
                Some(format!("\"{role}\""))
            );
        }
        assert!("Submitter".parse::<Role>().is_err());
        let mut names: Vec<&str> = ACCESS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ACCESS.len());
        assert_eq!(access("bus_pull"), Some(Access::Roles(&[Role::Bridge][..])));
        assert_eq!(access("event_made_up"), None);
    }

    fn transition(id: &str, to: State) -> Transition {
        Transition {
            seq: 1,
            event_id: id.into(),
            at_ms: 0,
            from: None,
            to,
            reason: None,
            evidence: None,
            payment_reference: None,
        }
    }

    #[test]
    fn a_filter_matches_every_condition_it_gives_and_checks_its_bounds() {
        let a = transition("run-1-a", State::Registered);
        let b = transition("run-2-b", State::Completed);
        assert!(TransitionFilter::default().matches(&a));
        let ids = TransitionFilter::event_ids(["run-1-a"]);
        assert!(ids.matches(&a) && !ids.matches(&b));
        let prefix = TransitionFilter::id_prefix("run-2-");
        assert!(!prefix.matches(&a) && prefix.matches(&b));
        let both = TransitionFilter {
            states: Some(vec![State::Completed, State::Cancelled]),
            ..TransitionFilter::id_prefix("run-")
        };
        assert!(!both.matches(&a) && both.matches(&b));
        for good in [&ids, &prefix, &both, &TransitionFilter::default()] {
            assert_eq!(good.check(), Ok(()));
        }
        let refused = |filter: TransitionFilter| filter.check().expect_err("refused").field;
        assert_eq!(
            refused(TransitionFilter::event_ids(Vec::<String>::new())),
            "eventIds"
        );
        let many: Vec<String> = (0..=MAX_FILTER_IDS).map(|i| format!("e{i}")).collect();
        assert_eq!(refused(TransitionFilter::event_ids(many)), "eventIds");
        assert_eq!(
            refused(TransitionFilter::event_ids(["ok", "a\0b"])),
            "eventIds"
        );
        assert_eq!(
            refused(TransitionFilter::event_ids(["x".repeat(129)])),
            "eventIds"
        );
        assert_eq!(refused(TransitionFilter::id_prefix("")), "idPrefix");
        assert_eq!(refused(TransitionFilter::id_prefix("a b")), "idPrefix");
        let no_states = TransitionFilter {
            states: Some(Vec::new()),
            ..TransitionFilter::default()
        };
        assert_eq!(refused(no_states), "states");
        // The wire form: camelCase, and an unknown field does not parse.
        let parsed: TransitionFilter =
            serde_json::from_str(r#"{"eventIds":["a"],"idPrefix":"a","states":["Completed"]}"#)
                .expect("parses");
        assert_eq!(parsed.event_ids, Some(vec!["a".to_owned()]));
        assert!(serde_json::from_str::<TransitionFilter>(r#"{"eventId":["a"]}"#).is_err());
    }
}
