use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::{async_trait, to_json_raw_value, RpcResult, SubscriptionResult};
use jsonrpsee::server::ServerHandle;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink, RpcModule};
use lockstep_api::bus::{
    AckResult, Pulled, DEFAULT_LEASE_MS, DEFAULT_PULL, MAX_ACK_IDS, MAX_LEASE_ID, MAX_LEASE_MS,
    MAX_PULL, MIN_LEASE_MS,
};
use lockstep_api::event::{
    check_event_id, Event, PaymentReceipt, ReceiptError, RegisterError, RegisterRequest, Transition,
};
use lockstep_api::lifecycle::State;
pub use lockstep_api::offchain::error::*;
use lockstep_api::offchain::{
    BusApiServer, EventApiServer, ItemResult, ListParams, Page, Stats, DEFAULT_PAGE,
    MAX_BATCH_ITEMS, MAX_CURSOR, MAX_PAGE,
};
use lockstep_api::proof::EventProof;
use lockstep_runtime::AccountId;
use lockstep_service::auth::{self, Caller, Guard, RateLimiter, Refusal, Refusals};
use lockstep_service::now_ms;
use lockstep_service::rpc_metrics::RpcTimes;
use lockstep_service::rpc_server::RpcLimits;
use tokio::sync::{mpsc, oneshot};

use crate::bus::{BusError, MessageBus};
use crate::metrics::Metrics;
use crate::store::{EventStore, ListQuery, Registrant, StoreError, StoreResult, Submission};

mod subscription;
use subscription::TransitionSource;

fn check_batch_len(len: usize) -> RpcResult<()> {
    if len > MAX_BATCH_ITEMS {
        return Err(error(
            INVALID_FIELD,
            format!("{len} items in one call, at most {MAX_BATCH_ITEMS}"),
        ));
    }
    Ok(())
}

impl From<StoreError> for ErrorObjectOwned {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound(_) => NOT_FOUND,
            StoreError::IdConflict(_) => ID_CONFLICT,
            StoreError::TxConflict { .. } => TX_CONFLICT,
            StoreError::Illegal { .. } => ILLEGAL_MOVE,
            StoreError::NotAwaitingReceipt { state, .. } => {
                let state = *state;
                return error_with(
                    NOT_AWAITING_RECEIPT,
                    e.to_string(),
                    NotAwaitingReceipt { state },
                );
            }
            StoreError::ReceiptConflict { .. } => RECEIPT_CONFLICT,
            StoreError::UnknownLease(_) => UNKNOWN_LEASE,
            StoreError::LeaseExpired(_) => LEASE_EXPIRED,
            StoreError::NotInLease { .. } => NOT_IN_LEASE,
            StoreError::BadCursor => BAD_CURSOR,
            StoreError::TooManyRegistered { held, bound, .. } => {
                let data = TooManyPending {
                    bound: *bound,
                    registered: *held,
                };
                return error_with(TOO_MANY_PENDING, e.to_string(), data);
            }
            StoreError::Db(_) | StoreError::Corrupt(_) | StoreError::Task(_) => {
                tracing::error!(target: "lockstep::offchain", "store error: {e}");
                return error(INTERNAL, "internal error: the event store failed");
            }
        };
        error(code, e.to_string())
    }
}

impl From<BusError> for ErrorObjectOwned {
    fn from(e: BusError) -> Self {
        // The same codes as the embedded bus's refusals always had.
        let message = e.to_string();
        match e {
            BusError::UnknownLease(_) => error(UNKNOWN_LEASE, message),
            BusError::LeaseExpired(_) => error(LEASE_EXPIRED, message),
            BusError::NotInLease { .. } => error(NOT_IN_LEASE, message),
            BusError::NotServed => error(BUS_NOT_SERVED, message),
            BusError::Store(store) => store.into(),
            BusError::Unavailable(_) => {
                tracing::error!(target: "lockstep::offchain", "bus error: {message}");
                error(INTERNAL, "internal error: the message bus failed")
            }
        }
    }
}

/// Implements the API.
#[derive(Debug, Clone)]
pub struct EventRpc {
    store: Arc<EventStore>,
    bus: Arc<dyn MessageBus>,
    bridge_key: AccountId,
    overdue_after: Duration,
    registrar: mpsc::Sender<RegisterJob>,
    registrar_done: RegistrarDone,
    callers: CallerLimits,
    /// The chain's validity window and where the watcher is; none: no
    /// bound (tests of the RPC alone).
    validity: Option<(u64, Arc<Metrics>)>,
    /// The chain's block time: with the watcher's height, when a
    /// registration's `validUntil` will have passed, so that an event whose
    /// transfer is never included is looked at once it can be cancelled,
    /// not only at the grace period's end. None: at the grace period's end.
    block_time: Option<Duration>,
    /// Where receipts are counted; none: nowhere (tests of the RPC alone).
    metrics: Option<Arc<Metrics>>,
    /// The bus is a broker: `event_stats` reports the depth the reconciler
    /// last read from it (in `metrics`), not the embedded queue's.
    broker_depth: bool,
}

/// What bounds each caller's registrations: its payer scope (on its
/// credential), its rate, and how many of its events may be Registered at
/// once.
#[derive(Debug, Clone, Default)]
struct CallerLimits {
    /// Registrations per credential; none: unlimited.
    rate: Option<Arc<RateLimiter>>,
    /// Events one credential may hold in Registered; none: unlimited.
    max_registered: Option<u64>,
    refusals: Refusals,
}

/// One registration waiting for the group commit.
#[derive(Debug)]
struct RegisterJob {
    /// The event, what the request proved of its commitment, and who
    /// registers it.
    submission: Submission,
    reply: oneshot::Sender<StoreResult<(Event, bool)>>,
}

/// Most registrations queued for the writer; callers wait beyond it.
const REGISTER_QUEUE: usize = 4096;
/// Most registrations in one group commit.
const REGISTER_GROUP: usize = 1024;

/// The registration writer: a thread that takes every registration queued
/// meanwhile and writes them in one batch, so concurrent clients share one
/// fsync instead of queueing for one each. A client is answered only after
/// its registration is durable. Ends when every sender is dropped, and lets
/// go of the store then ([`RegistrarDone`]).
fn spawn_registrar(
    store: Arc<EventStore>,
    grace: Duration,
) -> (mpsc::Sender<RegisterJob>, RegistrarDone) {
    let (sender, mut jobs) = mpsc::channel::<RegisterJob>(REGISTER_QUEUE);
    let (done, done_rx) = tokio::sync::watch::channel(());
    std::thread::spawn(move || {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            while group.len() < REGISTER_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let submissions: Vec<Submission> =
                group.iter().map(|job| job.submission.clone()).collect();
            let now = now_ms();
            let recheck = now.saturating_add(grace.as_millis() as u64);
            match store.register_checked(&submissions, now, recheck) {
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
        // The store first: whoever waits on `done` may open it again.
        drop(store);
        drop(done);
    });
    (sender, RegistrarDone(done_rx))
}

/// Resolves once the registration writer has ended and let go of the
/// store: what [`crate::RunningService::stop`] waits for, so that the store
/// can be opened again as soon as `stop` returns.
#[derive(Debug, Clone)]
pub struct RegistrarDone(tokio::sync::watch::Receiver<()>);

impl RegistrarDone {
    /// Waits for the writer's end (its thread drops the sender last).
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
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
        let (registrar, registrar_done) = spawn_registrar(store.clone(), grace);
        EventRpc {
            registrar,
            registrar_done,
            store,
            bus,
            bridge_key,
            overdue_after,
            callers: CallerLimits::default(),
            validity: None,
            block_time: None,
            metrics: None,
            broker_depth: false,
        }
    }

    /// The same handler, for a bus that is a broker: `event_stats`'s
    /// `busDepth` is the broker's, as the reconciler last read it into
    /// `metrics`.
    pub fn with_broker_depth(mut self, metrics: Arc<Metrics>) -> EventRpc {
        self.metrics = Some(metrics);
        self.broker_depth = true;
        self
    }

    /// The same handler, counting what it records in `metrics` (for the
    /// metrics endpoint and the log summary).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> EventRpc {
        self.metrics = Some(metrics);
        self
    }

    /// What resolves once the registration writer has ended (after the
    /// server and every copy of this handler are gone).
    pub fn registrar_done(&self) -> RegistrarDone {
        self.registrar_done.clone()
    }

    /// The same handler, bounding each credential's registrations by
    /// `rate` and counting refusals in `refusals` (the server's guard's).
    pub fn with_caller_limits(
        mut self,
        rate: Option<Arc<RateLimiter>>,
        refusals: Refusals,
    ) -> EventRpc {
        self.callers.rate = rate;
        self.callers.refusals = refusals;
        self
    }

    /// Refuses a registration ([`TOO_MANY_PENDING`]) by a credential that
    /// holds `max` events in Registered already (counted in the refusals as
    /// [`Refusal::TooManyPending`]). The bound is checked after the rate,
    /// in the write that would add the event, so a registration it refuses
    /// has taken its share of the rate. The anonymous caller of a server
    /// without credentials has no bound, as it has no rate.
    pub fn with_registered_bound(mut self, max: u64) -> EventRpc {
        self.callers.max_registered = Some(max);
        self
    }

    /// Looks first at an event whose `validUntil` comes before the grace
    /// period's end once the chain, at `block_time` a block, is past it.
    pub fn with_block_time(mut self, block_time: Duration) -> EventRpc {
        self.block_time = Some(block_time);
        self
    }

    /// Refuses registrations valid for more than twice `max_validity`
    /// blocks past the last height the watcher saw (in `metrics`; 0 before
    /// its first block).
    pub fn with_validity_bound(mut self, max_validity: u64, metrics: Arc<Metrics>) -> EventRpc {
        self.validity = Some((max_validity, metrics));
        self
    }

    /// The caller of a registration, from the call's extensions.
    fn registering_caller(&self, ext: &Extensions) -> RpcResult<Caller> {
        auth::caller(ext).cloned().ok_or_else(|| {
            self.callers.refusals.count(Refusal::Unauthenticated);
            error(UNAUTHENTICATED, "no credential")
        })
    }

    /// Refuses a registration whose payer is outside the caller's scope.
    fn check_payer(&self, caller: &Caller, request: &RegisterRequest) -> RpcResult<()> {
        let payer = &request.payment.payer;
        if caller.may_debit(payer) {
            return Ok(());
        }
        self.callers.refusals.count(Refusal::PayerNotAllowed);
        // The payer is unchecked input: quoted only when short.
        let named = if payer.len() <= 128 {
            format!("payer {payer:?}")
        } else {
            "the payer".to_owned()
        };
        Err(error(
            PAYER_NOT_ALLOWED,
            format!(
                "{named} is outside the scope of credential {:?}",
                caller.name()
            ),
        ))
    }

    /// Who registers for the store: a credential with its bound, or no one
    /// (the anonymous caller, which no limit applies to).
    fn registrant(&self, caller: &Caller) -> Option<Registrant> {
        caller.is_limited().then(|| Registrant {
            name: caller.name().to_owned(),
            max_registered: self.callers.max_registered.unwrap_or(u64::MAX),
        })
    }

    /// How many of `wanted` registrations the caller's rate allows now.
    fn take_registrations(&self, caller: &Caller, wanted: usize) -> usize {
        let granted = match &self.callers.rate {
            Some(rate) => rate.take(caller, wanted),
            None => wanted,
        };
        if granted < wanted {
            self.callers
                .refusals
                .count_many(Refusal::RateLimited, (wanted - granted) as u64);
        }
        granted
    }
}

fn rate_limited(caller: &Caller) -> ErrorObjectOwned {
    error(
        RATE_LIMITED,
        format!(
            "credential {:?} registers faster than its rate allows; retry later",
            caller.name()
        ),
    )
}

impl EventRpc {
    /// Checks a registration by `caller` and queues it for the writer; the
    /// receiver answers once it is durable (or refused by the store: its
    /// bound on the caller's Registered events is checked there, in the
    /// write that would add one).
    async fn enqueue_registration(
        &self,
        caller: &Caller,
        request: RegisterRequest,
    ) -> RpcResult<oneshot::Receiver<StoreResult<(Event, bool)>>> {
        let (registration, commitment) = request.check().map_err(register_refusal)?;
        if let Some((max, metrics)) = &self.validity {
            let head = metrics
                .watcher_height
                .load(std::sync::atomic::Ordering::Relaxed);
            let slack = max.saturating_mul(2);
            if !lockstep_runtime::within_validity_window(registration.valid_until, head, slack) {
                return Err(error(
                    VALIDITY_TOO_LONG,
                    format!(
                        "validUntil #{} is more than {slack} blocks past the chain's head #{head} \
                         as this event system last saw it (the chain accepts at most {max}): \
                         such a transfer would keep its event open for as long",
                        registration.valid_until
                    ),
                ));
            }
        }
        let check_by_ms = self.expiry_estimate(registration.valid_until);
        let (reply, answer) = oneshot::channel();
        self.registrar
            .send(RegisterJob {
                submission: Submission {
                    registration,
                    commitment,
                    registrant: self.registrant(caller),
                    check_by_ms,
                },
                reply,
            })
            .await
            .map_err(|_| registrar_stopped())?;
        Ok(answer)
    }

    /// When the chain will be past `valid_until`, from the watcher's height
    /// and the block time, with one block to spare for the watcher to see
    /// it: the earliest a transfer never included can be cancelled.
    fn expiry_estimate(&self, valid_until: u64) -> Option<u64> {
        let block_ms = self.block_time?.as_millis() as u64;
        let (_, metrics) = self.validity.as_ref()?;
        let head = metrics
            .watcher_height
            .load(std::sync::atomic::Ordering::Relaxed);
        let blocks = valid_until.saturating_sub(head).saturating_add(2);
        Some(now_ms().saturating_add(blocks.saturating_mul(block_ms)))
    }

    fn verify_receipt(&self, receipt: &PaymentReceipt) -> RpcResult<()> {
        receipt.verify(&self.bridge_key).map_err(receipt_refusal)
    }
}

/// A receipt refused by its own checks.
fn receipt_refusal(e: ReceiptError) -> ErrorObjectOwned {
    match e {
        ReceiptError::Invalid(e) => error(INVALID_FIELD, e.to_string()),
        ReceiptError::BadSignature => error(BAD_RECEIPT_SIGNATURE, e.to_string()),
    }
}

/// A registration refused by its own checks: a malformed field, or a
/// signed transfer that does not commit to the event (its message names
/// the reference it must carry).
fn register_refusal(e: RegisterError) -> ErrorObjectOwned {
    match e {
        RegisterError::Invalid(_) => error(INVALID_FIELD, e.to_string()),
        RegisterError::NotCommitted(_) => error(NOT_COMMITTED, e.to_string()),
    }
}

fn registrar_stopped() -> ErrorObjectOwned {
    error(INTERNAL, "internal error: the registration writer stopped")
}

/// The registration writer's answer; a refusal for the caller's bound is
/// counted in `refusals`.
async fn registered(
    answer: oneshot::Receiver<StoreResult<(Event, bool)>>,
    refusals: &Refusals,
) -> RpcResult<Event> {
    let answer = answer.await.map_err(|_| registrar_stopped())?;
    if let Err(StoreError::TooManyRegistered { .. }) = &answer {
        refusals.count(Refusal::TooManyPending);
    }
    let (event, created) = answer?;
    if created {
        tracing::debug!(target: "lockstep::offchain", "registered {:?} for tx {}", event.id, event.tx_hash);
    }
    Ok(event)
}

/// A recorded receipt: counted, and logged at DEBUG (one line per event;
/// the log summary, `crate::summary`, counts them at INFO).
fn log_receipt(metrics: Option<&Metrics>, receipt: &PaymentReceipt, event: &Event, written: bool) {
    if receipt.is_failure() {
        if let Some(metrics) = metrics {
            Metrics::inc(&metrics.failure_receipts);
        }
        tracing::debug!(
            target: "lockstep::offchain",
            "event {:?}: the bridge could not pay: {}",
            event.id,
            receipt.reason.as_deref().unwrap_or_default()
        );
    } else if written {
        tracing::debug!(target: "lockstep::offchain", "event {:?} -> Completed ({})", event.id, receipt.payment_reference);
    }
}

fn checked_id(id: &str) -> RpcResult<()> {
    check_event_id(id).map_err(|e| error(INVALID_FIELD, e.to_string()))
}

#[async_trait]
impl EventApiServer for EventRpc {
    async fn register(&self, ext: &Extensions, request: RegisterRequest) -> RpcResult<Event> {
        let caller = self.registering_caller(ext)?;
        self.check_payer(&caller, &request)?;
        if self.take_registrations(&caller, 1) == 0 {
            return Err(rate_limited(&caller));
        }
        let answer = self.enqueue_registration(&caller, request).await?;
        registered(answer, &self.callers.refusals).await
    }

    async fn register_batch(
        &self,
        ext: &Extensions,
        requests: Vec<RegisterRequest>,
    ) -> RpcResult<Vec<ItemResult<Event>>> {
        check_batch_len(requests.len())?;
        let caller = self.registering_caller(ext)?;
        // Item by item as `event_register`: payers outside the scope are
        // refused and take no share of the rate; beyond the rate, the rest
        // of the batch is refused.
        let admitted: Vec<RpcResult<()>> = requests
            .iter()
            .map(|request| self.check_payer(&caller, request))
            .collect();
        let mut granted =
            self.take_registrations(&caller, admitted.iter().filter(|a| a.is_ok()).count());
        // Queue every registration before waiting for any, so that the
        // writer takes them into one group commit.
        let mut answers = Vec::with_capacity(requests.len());
        for (request, admitted) in requests.into_iter().zip(admitted) {
            let answer = match admitted {
                Err(refused) => Err(refused),
                Ok(()) if granted == 0 => Err(rate_limited(&caller)),
                Ok(()) => {
                    granted -= 1;
                    self.enqueue_registration(&caller, request).await
                }
            };
            answers.push(answer);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            let result = match answer {
                Ok(answer) => registered(answer, &self.callers.refusals).await,
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
            let checks = PaymentReceipt::verify_all(&receipts, &handler.bridge_key);
            for (receipt, check) in receipts.into_iter().zip(checks) {
                match check.map_err(receipt_refusal) {
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
                        log_receipt(self.metrics.as_deref(), receipt, event, *written);
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

    fn proof(&self, id: String) -> RpcResult<Option<EventProof>> {
        checked_id(&id)?;
        if let Some(proof) = self.store.proof(&id)? {
            return Ok(Some(proof));
        }
        // None for an event without one; an unknown id is refused.
        match self.store.get(&id)? {
            Some(_) => Ok(None),
            None => Err(StoreError::NotFound(id).into()),
        }
    }

    fn list(&self, params: Option<ListParams>) -> RpcResult<Page> {
        let params = params.unwrap_or_default();
        let limit = params.limit.unwrap_or(DEFAULT_PAGE);
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
        if params.cursor.as_ref().is_some_and(|c| c.len() > MAX_CURSOR) {
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
        let mut stats = self
            .store
            .stats(now_ms(), self.overdue_after.as_millis() as u64)?;
        if let (true, Some(metrics)) = (self.broker_depth, &self.metrics) {
            stats.bus_depth = metrics.bus_depth.load(std::sync::atomic::Ordering::Relaxed);
        }
        Ok(stats)
    }

    async fn subscribe_transitions(
        &self,
        pending: PendingSubscriptionSink,
        from_seq: Option<u64>,
        filter: Option<lockstep_api::offchain::TransitionFilter>,
    ) -> SubscriptionResult {
        let filter = filter.unwrap_or_default();
        if let Err(e) = filter.check() {
            pending
                .reject(error(INVALID_FIELD, format!("filter: {e}")))
                .await;
            return Ok(());
        }
        let mut seq = self.store.watch_seq();
        let mut next = from_seq.unwrap_or_else(|| *seq.borrow() + 1).max(1);
        let mut source = TransitionSource::of(&filter);
        if let Err(e) = source.forget_finished(&self.store, next) {
            tracing::error!(target: "lockstep::offchain", "subscription: {e}");
            pending
                .reject(error(INTERNAL, "internal error: the event store failed"))
                .await;
            return Ok(());
        }
        let sink = pending.accept().await?;
        loop {
            // Mark the current value seen *before* reading the store, so a
            // write landing after the read still wakes us. Every transition
            // up to it is written (the store publishes a seq once its batch
            // is), so a read up to it misses none and keeps seq order.
            let last = *seq.borrow_and_update();
            if next <= last && !source.is_done() {
                let (batch, through) = match source.read(&self.store, next, last) {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::error!(target: "lockstep::offchain", "subscription: {e}");
                        return Ok(());
                    }
                };
                for transition in batch {
                    if filter.matches(&transition) {
                        sink.send(to_json_raw_value(&transition)?).await?;
                    }
                    source.passed(&transition);
                }
                next = through + 1;
                if through < last {
                    continue;
                }
            }
            if source.is_done() {
                // Every event followed is final: nothing more will come.
                sink.closed().await;
                return Ok(());
            }
            tokio::select! {
                _ = sink.closed() => return Ok(()),
                changed = seq.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }

    fn post_receipt(&self, receipt: PaymentReceipt) -> RpcResult<Event> {
        self.verify_receipt(&receipt)?;
        let (event, written) = self.store.post_receipt(&receipt, now_ms())?;
        log_receipt(self.metrics.as_deref(), &receipt, &event, written);
        Ok(event)
    }
}

#[async_trait]
impl BusApiServer for EventRpc {
    async fn pull(&self, max: Option<usize>, lease_ms: Option<u64>) -> RpcResult<Pulled> {
        let max = max.unwrap_or(DEFAULT_PULL);
        if max == 0 || max > MAX_PULL {
            return Err(error(
                INVALID_FIELD,
                format!("max: must be 1 to {MAX_PULL}"),
            ));
        }
        let lease_ms = lease_ms.unwrap_or(DEFAULT_LEASE_MS);
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
            return Err(error(
                INVALID_FIELD,
                format!("leaseMs: must be {MIN_LEASE_MS} to {MAX_LEASE_MS}"),
            ));
        }
        Ok(self.bus.pull(max, Duration::from_millis(lease_ms)).await?)
    }

    async fn ack(
        &self,
        lease_id: String,
        message_ids: Option<Vec<String>>,
    ) -> RpcResult<AckResult> {
        if lease_id.is_empty() || lease_id.len() > MAX_LEASE_ID {
            return Err(error(
                INVALID_FIELD,
                format!("leaseId: must be 1 to {MAX_LEASE_ID} bytes"),
            ));
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
    let parts = [
        EventApiServer::into_rpc(handler.clone()).remove_context(),
        BusApiServer::into_rpc(handler).remove_context(),
    ];
    lockstep_api::merge_with_listing(parts).unwrap_or_else(|e| {
        tracing::error!("duplicate RPC method: {e}");
        RpcModule::new(())
    })
}

/// Largest request body: a registration is under 4 KiB; batches of them
/// fit comfortably.
pub const MAX_REQUEST_BYTES: u32 = 1024 * 1024;

/// The event system's server limits.
pub const RPC_LIMITS: RpcLimits = RpcLimits {
    max_request_bytes: MAX_REQUEST_BYTES,
    max_response_bytes: 16 * 1024 * 1024,
    max_connections: 512,
    max_subscriptions_per_connection: 64,
    max_batch_len: 100,
    // Bounded per credential instead (registration rate and pending cap).
    rate_limit: None,
};

/// Starts the server on `addr`, admitting callers and checking each call's
/// role with `guard` (the API's [`ACCESS`](lockstep_api::offchain::ACCESS)
/// table), timing every call into `times`, over TLS when `tls` is given;
/// returns its handle and the bound address.
pub async fn start(
    addr: SocketAddr,
    module: RpcModule<()>,
    times: RpcTimes,
    guard: Guard,
    tls: Option<lockstep_service::tls::ServerTls>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    lockstep_service::rpc_server::start_guarded(addr, RPC_LIMITS, module, times, guard, tls).await
}
