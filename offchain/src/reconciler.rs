//! The reconciler: every scan interval,
//!
//! - Registered events whose re-check is due (first `grace` after
//!   registration, then with capped exponential backoff) are checked with the
//!   quorum again: this catches whatever the watcher missed while it was
//!   down or while the nodes disagreed, and expires unincluded transfers;
//! - PendingAccount events whose resend is due and whose instruction was
//!   acknowledged without a receipt following are put back on the bus, with
//!   capped exponential backoff, for as long as it takes;
//! - expired leases are pruned, and the gauges refreshed (overdue events are
//!   PendingAccount events older than the overdue threshold; they are
//!   counted, listed by `event_list {overdue: true}` and logged).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::confirmer::QuorumConfirmer;
use crate::metrics::Metrics;
use crate::store::{EventStore, StoreResult};
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

/// See the module docs.
#[derive(Debug)]
pub struct Reconciler {
    store: Arc<EventStore>,
    confirmer: Arc<QuorumConfirmer>,
    metrics: Arc<Metrics>,
    settings: ReconcilerSettings,
}

impl Reconciler {
    /// A reconciler.
    pub fn new(
        store: Arc<EventStore>,
        confirmer: Arc<QuorumConfirmer>,
        metrics: Arc<Metrics>,
        settings: ReconcilerSettings,
    ) -> Reconciler {
        Reconciler {
            store,
            confirmer,
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
    pub async fn pass(&self) -> StoreResult<u64> {
        let now = now_ms();
        let registered = self.store.due(State::Registered, now, MAX_PER_PASS)?;
        if !registered.is_empty() {
            self.confirmer.confirm(&registered).await?;
        }
        let settings = self.settings;
        for id in self.store.due(State::PendingAccount, now, MAX_PER_PASS)? {
            let next_due = |resends: u32| {
                now.saturating_add(
                    backoff(settings.resend_base, settings.resend_cap, resends).as_millis() as u64,
                )
            };
            if self.store.resend(&id, now, next_due)? {
                Metrics::inc(&self.metrics.resends);
                tracing::info!(target: "lockstep::offchain", "event {id:?}: no receipt yet; instruction re-sent");
            }
        }
        // Leases expired a minute ago: their messages are long back in the
        // queue; an ack for them is refused as unknown.
        self.store.prune_leases(now.saturating_sub(60_000))?;
        let overdue_ms = self.settings.overdue_after.as_millis() as u64;
        let stats = self.store.stats(now, overdue_ms)?;
        let m = &self.metrics;
        m.registered.store(stats.registered, Ordering::Relaxed);
        m.pending_account
            .store(stats.pending_account, Ordering::Relaxed);
        m.completed.store(stats.completed, Ordering::Relaxed);
        m.cancelled.store(stats.cancelled, Ordering::Relaxed);
        m.bus_depth.store(stats.bus_depth, Ordering::Relaxed);
        m.overdue.store(stats.overdue, Ordering::Relaxed);
        m.transitions.store(stats.last_seq, Ordering::Relaxed);
        m.bump();
        Ok(stats.overdue)
    }
}
