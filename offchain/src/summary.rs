//! The log summary: what the event system did, as one INFO line per
//! interval, and only for an interval in which something happened.
//!
//! Event transitions and receipts are logged at DEBUG, one line each: at
//! thousands of events a second, a line per event at INFO would cost more
//! than the events and bury everything else. This task reads the store's
//! per-state counters and the [`Metrics`] counters every interval
//! ([`SUMMARY_INTERVAL`] by default) and logs what changed: events
//! registered, confirmed (to PendingAccount), completed (paid receipts) and
//! cancelled, failure receipts, re-sends, and how far the watcher is behind
//! the finalized head a node last reported. An idle system (blocks coming,
//! nothing registered) logs nothing, unless the watcher lags.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::lifecycle::State;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::EventStore;

/// How often the summary is considered.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Blocks behind the finalized head from which an interval is worth a line
/// even when nothing else happened.
pub const LAG_WORTH_A_LINE: u64 = 10;

/// What the summary compares from one interval to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Events per state, in [`State::ALL`] order (the store's counters).
    pub counts: [u64; 4],
    /// Failure receipts recorded.
    pub failure_receipts: u64,
    /// Instructions re-sent by the reconciler.
    pub resends: u64,
    /// Events cancelled as not committed.
    pub not_committed: u64,
    /// Last height the watcher processed.
    pub watcher_height: u64,
    /// Last finalized height a node reported to the watcher.
    pub finalized_head: u64,
}

fn count(counts: &[u64; 4], state: State) -> u64 {
    State::ALL
        .iter()
        .position(|s| *s == state)
        .map_or(0, |i| counts[i])
}

impl Activity {
    /// The counters now.
    pub fn now(store: &EventStore, metrics: &Metrics) -> Activity {
        let get = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
        Activity {
            counts: store.counts(),
            failure_receipts: get(&metrics.failure_receipts),
            resends: get(&metrics.resends),
            not_committed: get(&metrics.not_committed),
            watcher_height: get(&metrics.watcher_height),
            finalized_head: get(&metrics.finalized_head),
        }
    }

    /// Blocks the watcher is behind the finalized head.
    pub fn lag(&self) -> u64 {
        self.finalized_head.saturating_sub(self.watcher_height)
    }

    /// The line for what happened since `before`; none when nothing did
    /// and the watcher keeps up.
    pub fn summary_since(&self, before: &Activity, period: Duration) -> Option<String> {
        let delta = |now: u64, then: u64| now.saturating_sub(then);
        let (now, then) = (&self.counts, &before.counts);
        let total = |c: &[u64; 4]| c.iter().sum::<u64>();
        // Every event enters Registered once, and Completed only from
        // PendingAccount: the differences of these sums are the moves.
        let confirmed = |c: &[u64; 4]| {
            count(c, State::PendingAccount).saturating_add(count(c, State::Completed))
        };
        let registered = delta(total(now), total(then));
        let to_pending = delta(confirmed(now), confirmed(then));
        let completed = delta(count(now, State::Completed), count(then, State::Completed));
        let cancelled = delta(count(now, State::Cancelled), count(then, State::Cancelled));
        let not_committed = delta(self.not_committed, before.not_committed);
        let failures = delta(self.failure_receipts, before.failure_receipts);
        let resends = delta(self.resends, before.resends);
        let happened = registered + to_pending + completed + cancelled + failures + resends > 0;
        if !happened && self.lag() < LAG_WORTH_A_LINE {
            return None;
        }
        Some(format!(
            "last {period:?}: {registered} registered, {to_pending} to PendingAccount, \
             {completed} completed, {cancelled} cancelled ({not_committed} not committed), \
             {failures} failure receipts, {resends} re-sent; now {} Registered, {} PendingAccount; \
             watcher at #{}, finalized head #{} ({} behind)",
            count(now, State::Registered),
            count(now, State::PendingAccount),
            self.watcher_height,
            self.finalized_head,
            self.lag(),
        ))
    }
}

/// Logs a summary every `period` until `shutdown` turns true.
pub async fn run(
    store: Arc<EventStore>,
    metrics: Arc<Metrics>,
    period: Duration,
    shutdown: watch::Receiver<bool>,
) {
    lockstep_service::logging::summarise_every(
        period,
        shutdown,
        || Activity::now(&store, &metrics),
        |now, last, period| now.summary_since(last, period),
        |line| tracing::info!(target: "lockstep::offchain", "{line}"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_interval_has_no_line_and_a_busy_one_counts_each_move() {
        let period = Duration::from_secs(10);
        let before = Activity {
            counts: [5, 2, 100, 3],
            watcher_height: 40,
            finalized_head: 41,
            ..Activity::default()
        };
        // Blocks went by, nothing else: no line.
        let idle = Activity {
            watcher_height: 50,
            finalized_head: 50,
            ..before
        };
        assert_eq!(idle.summary_since(&before, period), None);
        // 10 registered; 8 confirmed, of which 6 completed; 1 cancelled
        // as not committed; 2 failure receipts, 1 re-send.
        let busy = Activity {
            counts: [5 + 10 - 8 - 1, 2 + 8 - 6, 106, 4],
            failure_receipts: 2,
            resends: 1,
            not_committed: 1,
            watcher_height: 52,
            finalized_head: 53,
        };
        let line = busy.summary_since(&before, period).expect("a line");
        for part in [
            "10 registered",
            "8 to PendingAccount",
            "6 completed",
            "1 cancelled (1 not committed)",
            "2 failure receipts",
            "1 re-sent",
            "now 6 Registered, 4 PendingAccount",
            "watcher at #52, finalized head #53 (1 behind)",
        ] {
            assert!(line.contains(part), "{part:?} not in {line:?}");
        }
        // A lagging watcher is worth a line on its own.
        let lagging = Activity {
            finalized_head: before.watcher_height + LAG_WORTH_A_LINE,
            ..before
        };
        assert!(lagging
            .summary_since(&before, period)
            .expect("a line")
            .contains("(10 behind)"));
    }
}
