//! The event system's JSON-RPC API: HTTP and WebSocket on one port
//! (jsonrpsee).
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
//! | `event_registerBatch` | `[request, ...]` (at most 1000) | `[{result: event} \| {error: {code, message}}, ...]`, one per request, in order: as `event_register` each, written in one group commit |
//! | `event_postReceipts` | `[receipt, ...]` (at most 1000) | `[{result: event} \| {error: {code, message}}, ...]`, one per receipt, in order: as `event_postReceipt` each, written in one atomic batch |
//! | `bus_pull` | `max?` (≤ 1000, default 100), `leaseMs?` (100 ms to 10 min, default 30 s) | `{leaseId, deadlineMs, messages}` |
//! | `bus_ack` | `leaseId`, `messageIds?` | `{acked}` |
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
//! Error codes are part of the API: a code, once given a meaning, keeps it.
//!
//! | code | meaning |
//! |---|---|
//! | -32700, -32600, -32601, -32602 | JSON-RPC's own: parse error, invalid request, unknown method, invalid params (wrong shape, unknown field) |
//! | -32603 | internal error (the store failed) |
//! | 2000 | a field is invalid (the message names it) |
//! | 2001 | no event with this id |
//! | 2002 | the id is registered with a different payload |
//! | 2003 | the tx hash is registered under another id |
//! | 2010 | receipt signature does not verify against the bridge key |
//! | 2011 | receipt for an event not in PendingAccount |
//! | 2012 | a different receipt is already recorded for the event |
//! | 2020 | unknown lease (never issued, fully acknowledged, or pruned) |
//! | 2021 | the lease expired; its messages are back in the queue |
//! | 2022 | the lease does not hold that message |
//! | 2030 | invalid list cursor |
//! | 2040 | illegal lifecycle move (never expected through the API) |
//!
//! Every refusal happens before anything is written. The batch methods
//! exist because JSON-RPC batches are served one call after another: a
//! batch of single calls would wait for one write (and one fsync) per call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::{async_trait, to_json_raw_value, RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{PendingSubscriptionSink, RpcModule};
use lockstep_runtime::AccountId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::bus::{MessageBus, Pulled};
use crate::event::{
    check_event_id, Event, PaymentReceipt, ReceiptError, RegisterRequest, Registration, Transition,
};
use crate::lifecycle::State;
use crate::now_ms;
use crate::store::{
    EventStore, ListQuery, Page, Stats, StoreError, StoreResult, MAX_PAGE, MAX_PULL,
};

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

/// Most items in one `event_registerBatch` or `event_postReceipts` call.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// One item's outcome in a batch method's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult<T> {
    /// The result, as the single method would answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// The refusal, with the single method's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// A refused item of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemError {
    /// The error code (the tables above).
    pub code: i32,
    /// For people.
    pub message: String,
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
                }),
            },
        }
    }
}

fn check_batch_len(len: usize) -> RpcResult<()> {
    if len > MAX_BATCH_ITEMS {
        return Err(error(
            INVALID_FIELD,
            format!("{len} items in one call, at most {MAX_BATCH_ITEMS}"),
        ));
    }
    Ok(())
}

/// Default lease.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Bounds of a lease.
const MIN_LEASE: Duration = Duration::from_millis(100);
const MAX_LEASE: Duration = Duration::from_secs(600);
/// Most message ids in one ack.
const MAX_ACK_IDS: usize = MAX_PULL;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

impl From<StoreError> for ErrorObjectOwned {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound(_) => NOT_FOUND,
            StoreError::IdConflict(_) => ID_CONFLICT,
            StoreError::TxConflict { .. } => TX_CONFLICT,
            StoreError::Illegal { .. } => ILLEGAL_MOVE,
            StoreError::NotAwaitingReceipt { .. } => NOT_AWAITING_RECEIPT,
            StoreError::ReceiptConflict { .. } => RECEIPT_CONFLICT,
            StoreError::UnknownLease(_) => UNKNOWN_LEASE,
            StoreError::LeaseExpired(_) => LEASE_EXPIRED,
            StoreError::NotInLease { .. } => NOT_IN_LEASE,
            StoreError::BadCursor => BAD_CURSOR,
            StoreError::Db(_) | StoreError::Corrupt(_) => {
                tracing::error!(target: "lockstep::offchain", "store error: {e}");
                return error(INTERNAL, "internal error: the event store failed");
            }
        };
        error(code, e.to_string())
    }
}

/// `event_list`'s parameter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Only this state.
    #[serde(default)]
    pub state: Option<State>,
    /// Only overdue events.
    #[serde(default)]
    pub overdue: bool,
    /// From a previous page's `nextCursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size, at most 500.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `bus_ack`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct AckResult {
    /// Messages taken out of the queue.
    pub acked: usize,
}

/// `event_*`.
#[rpc(server, namespace = "event")]
pub trait EventApi {
    /// Registers an event (idempotent on `id`).
    #[method(name = "register")]
    async fn register(&self, request: RegisterRequest) -> RpcResult<Event>;

    /// An event.
    #[method(name = "get")]
    fn get(&self, id: String) -> RpcResult<Event>;

    /// An event's transitions.
    #[method(name = "history")]
    fn history(&self, id: String) -> RpcResult<Vec<Transition>>;

    /// A page of events.
    #[method(name = "list")]
    fn list(&self, params: Option<ListParams>) -> RpcResult<Page>;

    /// Counts and ages.
    #[method(name = "stats")]
    fn stats(&self) -> RpcResult<Stats>;

    /// Streams transitions from `from_seq` on.
    #[subscription(name = "subscribe" => "transition", unsubscribe = "unsubscribe", item = Transition)]
    async fn subscribe(&self, from_seq: Option<u64>) -> SubscriptionResult;

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

/// `bus_*`.
#[rpc(server, namespace = "bus")]
pub trait BusApi {
    /// Leases messages.
    #[method(name = "pull")]
    async fn pull(&self, max: Option<usize>, lease_ms: Option<u64>) -> RpcResult<Pulled>;

    /// Acknowledges a lease's messages.
    #[method(name = "ack")]
    async fn ack(&self, lease_id: String, message_ids: Option<Vec<String>>)
        -> RpcResult<AckResult>;
}

/// Implements the API.
#[derive(Debug, Clone)]
pub struct EventRpc {
    store: Arc<EventStore>,
    bus: Arc<dyn MessageBus>,
    bridge_key: AccountId,
    overdue_after: Duration,
    registrar: mpsc::Sender<RegisterJob>,
}

/// One registration waiting for the group commit.
#[derive(Debug)]
struct RegisterJob {
    registration: Registration,
    reply: oneshot::Sender<StoreResult<(Event, bool)>>,
}

/// Most registrations queued for the writer; callers wait beyond it.
const REGISTER_QUEUE: usize = 4096;
/// Most registrations in one group commit.
const REGISTER_GROUP: usize = 1024;

/// The registration writer: a thread that takes every registration queued
/// meanwhile and writes them in one batch, so concurrent clients share one
/// fsync instead of queueing for one each. A client is answered only after
/// its registration is durable. Ends when every sender is dropped.
fn spawn_registrar(store: Arc<EventStore>, grace: Duration) -> mpsc::Sender<RegisterJob> {
    let (sender, mut jobs) = mpsc::channel::<RegisterJob>(REGISTER_QUEUE);
    std::thread::spawn(move || {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            while group.len() < REGISTER_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let registrations: Vec<Registration> =
                group.iter().map(|job| job.registration.clone()).collect();
            let now = now_ms();
            let recheck = now.saturating_add(grace.as_millis() as u64);
            match store.register_many(&registrations, now, recheck) {
                Ok(results) => {
                    for (job, result) in group.into_iter().zip(results) {
                        let _ = job.reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(target: "lockstep::offchain", "registration write failed: {e}");
                    for job in group {
                        let _ = job
                            .reply
                            .send(Err(StoreError::Corrupt(format!("write failed: {e}"))));
                    }
                }
            }
        }
    });
    sender
}

impl EventRpc {
    /// The handler.
    pub fn new(
        store: Arc<EventStore>,
        bus: Arc<dyn MessageBus>,
        bridge_key: AccountId,
        grace: Duration,
        overdue_after: Duration,
    ) -> EventRpc {
        EventRpc {
            registrar: spawn_registrar(store.clone(), grace),
            store,
            bus,
            bridge_key,
            overdue_after,
        }
    }
}

impl EventRpc {
    /// Checks a registration and queues it for the writer; the receiver
    /// answers once it is durable.
    async fn enqueue_registration(
        &self,
        request: RegisterRequest,
    ) -> RpcResult<oneshot::Receiver<StoreResult<(Event, bool)>>> {
        let registration = request
            .check()
            .map_err(|e| error(INVALID_FIELD, e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.registrar
            .send(RegisterJob {
                registration,
                reply,
            })
            .await
            .map_err(|_| registrar_stopped())?;
        Ok(answer)
    }

    fn verify_receipt(&self, receipt: &PaymentReceipt) -> RpcResult<()> {
        receipt.verify(&self.bridge_key).map_err(|e| match e {
            ReceiptError::Invalid(e) => error(INVALID_FIELD, e.to_string()),
            ReceiptError::BadSignature => error(BAD_RECEIPT_SIGNATURE, e.to_string()),
        })
    }
}

fn registrar_stopped() -> ErrorObjectOwned {
    error(INTERNAL, "internal error: the registration writer stopped")
}

/// The registration writer's answer.
async fn registered(answer: oneshot::Receiver<StoreResult<(Event, bool)>>) -> RpcResult<Event> {
    let (event, created) = answer.await.map_err(|_| registrar_stopped())??;
    if created {
        tracing::debug!(target: "lockstep::offchain", "registered {:?} for tx {}", event.id, event.tx_hash);
    }
    Ok(event)
}

fn log_receipt(receipt: &PaymentReceipt, event: &Event, written: bool) {
    if receipt.is_failure() {
        tracing::warn!(
            target: "lockstep::offchain",
            "event {:?}: the bridge could not pay: {}",
            event.id,
            receipt.reason.as_deref().unwrap_or_default()
        );
    } else if written {
        tracing::info!(target: "lockstep::offchain", "event {:?} -> Completed ({})", event.id, receipt.payment_reference);
    }
}

fn checked_id(id: &str) -> RpcResult<()> {
    check_event_id(id).map_err(|e| error(INVALID_FIELD, e.to_string()))
}

#[async_trait]
impl EventApiServer for EventRpc {
    async fn register(&self, request: RegisterRequest) -> RpcResult<Event> {
        let answer = self.enqueue_registration(request).await?;
        registered(answer).await
    }

    async fn register_batch(
        &self,
        requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        check_batch_len(requests.len())?;
        // Queue every registration before waiting for any, so that the
        // writer takes them into one group commit.
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.enqueue_registration(request).await);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            let result = match answer {
                Ok(answer) => registered(answer).await,
                Err(e) => Err(e),
            };
            results.push(result.into());
        }
        Ok(results)
    }

    async fn post_receipts(
        &self,
        receipts: Vec<PaymentReceipt>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        check_batch_len(receipts.len())?;
        // Signature checks (up to 1,000) and the write run off the async
        // workers.
        let handler = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut results: Vec<Option<RpcResult<Event>>> = Vec::with_capacity(receipts.len());
            let mut verified = Vec::new();
            for receipt in receipts {
                match handler.verify_receipt(&receipt) {
                    Ok(()) => {
                        results.push(None);
                        verified.push(receipt);
                    }
                    Err(e) => results.push(Some(Err(e))),
                }
            }
            let outcomes = handler.store.post_receipts(&verified, now_ms());
            (results, verified, outcomes)
        })
        .await
        .map_err(|_| error(INTERNAL, "internal error: the receipt writer stopped"))?;
        let (results, verified, outcomes) = written;
        let mut outcomes = outcomes?.into_iter();
        let mut verified = verified.iter();
        Ok(results
            .into_iter()
            .map(|slot| match slot {
                Some(refused) => refused.into(),
                None => {
                    let outcome = outcomes
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Corrupt("missing result".into())));
                    if let (Some(receipt), Ok((event, written))) = (verified.next(), &outcome) {
                        log_receipt(receipt, event, *written);
                    }
                    outcome.map(|(event, _)| event).map_err(Into::into).into()
                }
            })
            .collect())
    }

    fn get(&self, id: String) -> RpcResult<Event> {
        checked_id(&id)?;
        self.store
            .get(&id)?
            .ok_or_else(|| StoreError::NotFound(id).into())
    }

    fn history(&self, id: String) -> RpcResult<Vec<Transition>> {
        checked_id(&id)?;
        let history = self.store.history(&id)?;
        if history.is_empty() {
            return Err(StoreError::NotFound(id).into());
        }
        Ok(history)
    }

    fn list(&self, params: Option<ListParams>) -> RpcResult<Page> {
        let params = params.unwrap_or_default();
        let limit = params.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_PAGE {
            return Err(error(
                INVALID_FIELD,
                format!("limit: must be 1 to {MAX_PAGE}"),
            ));
        }
        if params.overdue && params.state.is_some_and(|s| s != State::PendingAccount) {
            return Err(error(
                INVALID_FIELD,
                "overdue: only PendingAccount events can be overdue",
            ));
        }
        if params
            .cursor
            .as_ref()
            .is_some_and(|c| c.len() > 2 * (9 + 128))
        {
            return Err(StoreError::BadCursor.into());
        }
        let query = ListQuery {
            state: params.state,
            overdue: params.overdue,
            cursor: params.cursor,
            limit,
        };
        Ok(self
            .store
            .list(&query, now_ms(), self.overdue_after.as_millis() as u64)?)
    }

    fn stats(&self) -> RpcResult<Stats> {
        Ok(self
            .store
            .stats(now_ms(), self.overdue_after.as_millis() as u64)?)
    }

    async fn subscribe(
        &self,
        pending: PendingSubscriptionSink,
        from_seq: Option<u64>,
    ) -> SubscriptionResult {
        let mut seq = self.store.watch_seq();
        let mut next = from_seq.unwrap_or_else(|| *seq.borrow() + 1).max(1);
        let sink = pending.accept().await?;
        loop {
            // Mark the current value seen *before* reading the store, so a
            // write landing after the read still wakes us.
            seq.borrow_and_update();
            let batch = match self.store.transitions_from(next, 256) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(target: "lockstep::offchain", "subscription: {e}");
                    return Ok(());
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = sink.closed() => return Ok(()),
                    changed = seq.changed() => if changed.is_err() { return Ok(()) },
                }
                continue;
            }
            for transition in batch {
                next = transition.seq + 1;
                sink.send(to_json_raw_value(&transition)?).await?;
            }
        }
    }

    fn post_receipt(&self, receipt: PaymentReceipt) -> RpcResult<Event> {
        self.verify_receipt(&receipt)?;
        let (event, written) = self.store.post_receipt(&receipt, now_ms())?;
        log_receipt(&receipt, &event, written);
        Ok(event)
    }
}

#[async_trait]
impl BusApiServer for EventRpc {
    async fn pull(&self, max: Option<usize>, lease_ms: Option<u64>) -> RpcResult<Pulled> {
        let max = max.unwrap_or(100);
        if max == 0 || max > MAX_PULL {
            return Err(error(
                INVALID_FIELD,
                format!("max: must be 1 to {MAX_PULL}"),
            ));
        }
        let lease = lease_ms.map(Duration::from_millis).unwrap_or(DEFAULT_LEASE);
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(error(
                INVALID_FIELD,
                format!(
                    "leaseMs: must be {} to {}",
                    MIN_LEASE.as_millis(),
                    MAX_LEASE.as_millis()
                ),
            ));
        }
        Ok(self.bus.pull(max, lease).await?)
    }

    async fn ack(
        &self,
        lease_id: String,
        message_ids: Option<Vec<String>>,
    ) -> RpcResult<AckResult> {
        if lease_id.is_empty() || lease_id.len() > 64 {
            return Err(error(INVALID_FIELD, "leaseId: must be 1 to 64 bytes"));
        }
        if let Some(ids) = &message_ids {
            if ids.is_empty() || ids.len() > MAX_ACK_IDS {
                return Err(error(
                    INVALID_FIELD,
                    format!("messageIds: must hold 1 to {MAX_ACK_IDS} ids"),
                ));
            }
            for id in ids {
                check_event_id(id).map_err(|e| error(INVALID_FIELD, format!("messageIds: {e}")))?;
            }
        }
        let acked = self.bus.ack(&lease_id, message_ids).await?;
        Ok(AckResult { acked })
    }
}

/// All methods, plus `rpc_methods`.
pub fn module(handler: EventRpc) -> RpcModule<()> {
    let mut module = RpcModule::new(());
    for part in [
        EventApiServer::into_rpc(handler.clone()).remove_context(),
        BusApiServer::into_rpc(handler).remove_context(),
    ] {
        if let Err(e) = module.merge(part) {
            tracing::error!("duplicate RPC method: {e}");
        }
    }
    let mut methods: Vec<String> = module.method_names().map(str::to_owned).collect();
    methods.push("rpc_methods".into());
    methods.sort();
    let listing = serde_json::json!({ "version": 1, "methods": methods });
    if let Err(e) = module.register_method("rpc_methods", move |_, _, _| listing.clone()) {
        tracing::error!("duplicate RPC method: {e}");
    }
    module
}

/// Largest request body: a registration is under 4 KiB; batches of them
/// fit comfortably.
pub const MAX_REQUEST_BYTES: u32 = 1024 * 1024;

/// Starts the server on `addr`; returns its handle and the bound address.
pub async fn start(
    addr: SocketAddr,
    module: RpcModule<()>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(16 * 1024 * 1024)
        .max_connections(512)
        .max_subscriptions_per_connection(64)
        .set_batch_request_config(BatchRequestConfig::Limit(100))
        .build();
    let server = Server::builder().set_config(config).build(addr).await?;
    let bound = server.local_addr()?;
    Ok((server.start(module), bound))
}
