//! The reconciler: every scan interval,
//!
//! - Registered events whose re-check is due (first `grace` after
//!   registration, then with capped exponential backoff) are checked with the
//!   quorum again: this catches whatever the watcher missed while it was
//!   down or while the nodes disagreed (and transfers finalized before their
//!   event was registered), and expires unincluded transfers; the confirmer
//!   fetches the block of a transfer registered by hash to check its
//!   commitment;
//! - PendingAccount events whose resend is due have their instruction
//!   handed to the bus again ([`MessageBus::publish`], with the next
//!   generation), with capped exponential backoff, for as long as it takes;
//!   the bus decides whether that is a new delivery (the embedded bus: only
//!   when a consumer acknowledged the message and no receipt followed);
//! - the bus prunes its expired leases, and the gauges are refreshed
//!   (overdue events are PendingAccount events older than the overdue
//!   threshold; they are counted, listed by `event_list {overdue: true}` and
//!   logged).
//!
//! Every store call of a pass runs on tokio's blocking pool
//! ([`EventStore::blocking`]): the writes wait for their fsync, and none of
//! it holds up an async worker. A re-send is counted in the metrics and
//! logged at DEBUG (the log summary, `crate::summary`, counts them).
//!
//! A re-send is two writes: the bus's (the send) and then the store's (the
//! resend count and the next look). A crash between them leaves the send
//! done and the event still due: the next pass sends the same generation
//! again, which the bus drops as a repeat (the embedded bus: the message is
//! queued already) and then records the next look.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::{BusError, MessageBus, Outgoing, Published};
use crate::confirmer::QuorumConfirmer;
use crate::metrics::Metrics;
use crate::store::{EventStore, StoreError};
use lockstep_api::lifecycle::State;
use lockstep_service::{backoff, now_ms};

/// Most events one pass handles per kind (the rest wait for the next pass).
const MAX_PER_PASS: usize = 4096;

/// The reconciler's timing.
#[derive(Debug, Clone, Copy)]
pub struct ReconcilerSettings {
    /// Time between passes.
    pub scan_interval: Duration,
    /// First resend delay of an acknowledged, unreceipted instruction.
    pub resend_base: Duration,
    /// Largest resend delay.
    pub resend_cap: Duration,
    /// PendingAccount for longer than this is overdue.
    pub overdue_after: Duration,
}

/// Why a reconciler pass stopped early (the next pass starts over).
#[derive(Debug, thiserror::Error)]
pub enum ReconcilerError {
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// See the module docs.
#[derive(Debug)]
pub struct Reconciler {
    store: Arc<EventStore>,
    confirmer: Arc<QuorumConfirmer>,
    bus: Arc<dyn MessageBus>,
    metrics: Arc<Metrics>,
    settings: ReconcilerSettings,
}

impl Reconciler {
    /// A reconciler.
    pub fn new(
        store: Arc<EventStore>,
        confirmer: Arc<QuorumConfirmer>,
        bus: Arc<dyn MessageBus>,
        metrics: Arc<Metrics>,
        settings: ReconcilerSettings,
    ) -> Reconciler {
        Reconciler {
            store,
            confirmer,
            bus,
            metrics,
            settings,
        }
    }

    /// Runs passes until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // A zero period would panic in tokio; a millisecond is the floor.
        let period = self.settings.scan_interval.max(Duration::from_millis(1));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_overdue = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {}
            }
            match self.pass().await {
                Ok(overdue) => {
                    if overdue > last_overdue {
                        tracing::warn!(
                            target: "lockstep::offchain",
                            "{overdue} PendingAccount events are overdue (no receipt after {:?})",
                            self.settings.overdue_after
                        );
                    }
                    last_overdue = overdue;
                }
                Err(e) => tracing::error!(target: "lockstep::offchain", "reconciler: {e}"),
            }
        }
    }

    /// One pass; returns the overdue count.
    pub async fn pass(&self) -> Result<u64, ReconcilerError> {
        let now = now_ms();
        let registered = self
            .store
            .blocking(move |store| store.due(State::Registered, now, MAX_PER_PASS))
            .await?;
        if !registered.is_empty() {
            // No block at hand: the confirmer fetches the ones it needs.
            self.confirmer.confirm(&registered).await?;
        }
        let owed = self
            .store
            .blocking(move |store| store.due(State::PendingAccount, now, MAX_PER_PASS))
            .await?;
        for id in owed {
            self.resend(id, now).await?;
        }
        // Leases expired a while ago: their messages are long back in the
        // queue; an ack for them is refused as unknown.
        self.bus.prune_expired_leases().await?;
        let overdue_ms = self.settings.overdue_after.as_millis() as u64;
        let stats = self
            .store
            .blocking(move |store| store.stats(now, overdue_ms))
            .await?;
        let m = &self.metrics;
        m.registered.store(stats.registered, Ordering::Relaxed);
        m.pending_account
            .store(stats.pending_account, Ordering::Relaxed);
        m.completed.store(stats.completed, Ordering::Relaxed);
        m.cancelled.store(stats.cancelled, Ordering::Relaxed);
        // The bus's own count: the embedded queue's counter (as in the
        // stats), or a broker's, which keeps its last value while the
        // broker does not answer.
        match self.bus.depth().await {
            Ok(depth) => m.bus_depth.store(depth, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(target: "lockstep::offchain", "bus depth: {e}")
            }
        }
        m.overdue.store(stats.overdue, Ordering::Relaxed);
        m.transitions.store(stats.last_seq, Ordering::Relaxed);
        m.bump();
        Ok(stats.overdue)
    }

    /// The resend check of one PendingAccount event whose next look is due:
    /// hands its instruction to the bus with the next generation, then
    /// records what the bus did and when to look again.
    async fn resend(&self, id: String, now: u64) -> Result<(), ReconcilerError> {
        // None: the event left PendingAccount since it was listed.
        let read = id.clone();
        let Some(owed) = self
            .store
            .blocking(move |store| store.pending_instruction(&read))
            .await?
        else {
            return Ok(());
        };
        let outgoing = Outgoing {
            message: owed.message,
            generation: owed.resends.saturating_add(1),
        };
        let sent = match self.bus.publish(&outgoing).await? {
            Published::Sent => Some(outgoing.generation),
            Published::StillQueued | Published::Settled => None,
        };
        let settings = self.settings;
        let next_due = move |resends: u32| {
            now.saturating_add(
                backoff(settings.resend_base, settings.resend_cap, resends).as_millis() as u64,
            )
        };
        let recorded = id.clone();
        let counted = self
            .store
            .blocking(move |store| store.record_resend(&recorded, sent, next_due))
            .await?;
        if counted {
            Metrics::inc(&self.metrics.resends);
            tracing::debug!(target: "lockstep::offchain", "event {id:?}: no receipt yet; instruction re-sent");
        }
        Ok(())
    }
}
