//! What one `event_subscribe` reads, wake after wake: the global feed
//! (unfiltered, or filtered by id prefix or state), or, when it follows
//! `eventIds`, each followed event's own history (the `history` column
//! family, event id ‖ 0x00 ‖ seq), so that a subscriber waiting for its
//! events costs what those events cost, not the whole system's rate.
//!
//! Every read covers a range of seqs `next..=through` completely: `through`
//! is at most the last seq the store published before the read (every
//! transition up to it is written), and less when a read was cut at its
//! bound; the next read starts after it. So the stream keeps seq order
//! across events and misses nothing.

use lockstep_api::event::Transition;
use lockstep_api::offchain::TransitionFilter;

use crate::store::{EventStore, StoreResult};

/// Most transitions one read of a subscription takes from the feed, or
/// from each followed event's history.
const SUBSCRIPTION_READ: usize = 256;

/// Where a subscription reads its transitions: the global feed, or (with
/// `eventIds`) the history of each event it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TransitionSource {
    /// The global feed (the caller applies the filter).
    Feed,
    /// The events followed that may still move, sorted, without
    /// duplicates.
    Histories(Vec<String>),
}

impl TransitionSource {
    /// Where a subscription with `filter` reads.
    pub(super) fn of(filter: &TransitionFilter) -> TransitionSource {
        match &filter.event_ids {
            Some(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                TransitionSource::Histories(ids)
            }
            None => TransitionSource::Feed,
        }
    }

    /// Stops following the events that were final before `next`: nothing
    /// of theirs is left to stream.
    pub(super) fn forget_finished(&mut self, store: &EventStore, next: u64) -> StoreResult<()> {
        if let TransitionSource::Histories(ids) = self {
            let mut following = Vec::with_capacity(ids.len());
            for id in ids.drain(..) {
                let history = store.history_range(&id, 0, u64::MAX, SUBSCRIPTION_READ)?;
                let finished = history
                    .last()
                    .is_some_and(|t| t.to.is_final() && t.seq < next);
                if !finished {
                    following.push(id);
                }
            }
            *ids = following;
        }
        Ok(())
    }

    /// Whether nothing more can come: every event followed is final.
    pub(super) fn is_done(&self) -> bool {
        matches!(self, TransitionSource::Histories(ids) if ids.is_empty())
    }

    /// The transitions with `next <= seq <= through`, in seq order, and
    /// `through`: at most `last` (every transition up to which is written),
    /// less when a read reached its bound. The source holds no other
    /// transition in that range.
    pub(super) fn read(
        &self,
        store: &EventStore,
        next: u64,
        last: u64,
    ) -> StoreResult<(Vec<Transition>, u64)> {
        let mut through = last;
        let mut batch = match self {
            TransitionSource::Feed => {
                let batch = store.transitions_from(next, SUBSCRIPTION_READ)?;
                if batch.len() == SUBSCRIPTION_READ {
                    if let Some(end) = batch.last() {
                        through = through.min(end.seq);
                    }
                }
                batch
            }
            TransitionSource::Histories(ids) => {
                let mut batch = Vec::new();
                for id in ids {
                    let history = store.history_range(id, next, last, SUBSCRIPTION_READ)?;
                    if history.len() == SUBSCRIPTION_READ {
                        if let Some(end) = history.last() {
                            through = through.min(end.seq);
                        }
                    }
                    batch.extend(history);
                }
                batch.sort_unstable_by_key(|t| t.seq);
                batch
            }
        };
        batch.retain(|t| t.seq >= next && t.seq <= through);
        Ok((batch, through))
    }

    /// Takes note of a transition streamed or skipped: a followed event
    /// that reached a final state moves no more and is no longer read.
    pub(super) fn passed(&mut self, transition: &Transition) {
        if let TransitionSource::Histories(ids) = self {
            if transition.to.is_final() {
                ids.retain(|id| *id != transition.event_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_utils::{evidence, open, registration};
    use lockstep_api::lifecycle::Reason;
    use lockstep_runtime::Hash;

    fn register(store: &EventStore, ids: &[String]) {
        let registrations: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut r = registration(id, 0);
                r.tx_hash = Hash::digest(id.as_bytes());
                r
            })
            .collect();
        for result in store.register_many(&registrations, 10, 20).expect("group") {
            assert!(result.expect("registered").1);
        }
    }

    fn seqs(read: &(Vec<Transition>, u64)) -> (Vec<u64>, u64) {
        (read.0.iter().map(|t| t.seq).collect(), read.1)
    }

    #[test]
    fn a_feed_read_is_cut_at_its_bound_and_at_the_last_published_seq() {
        let (_dir, store) = open();
        let ids: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
        register(&store, &ids);
        let feed = TransitionSource::of(&TransitionFilter::default());
        let first = feed.read(&store, 1, 300).expect("read");
        assert_eq!(seqs(&first), ((1..=256).collect(), 256));
        let rest = feed.read(&store, 257, 300).expect("read");
        assert_eq!(seqs(&rest), ((257..=300).collect(), 300));
        // What is written past the last seq published is left for the next
        // wake.
        let early = feed.read(&store, 5, 9).expect("read");
        assert_eq!(seqs(&early), ((5..=9).collect(), 9));
        assert!(!feed.is_done());
    }

    #[test]
    fn followed_histories_merge_in_seq_order_and_final_events_are_dropped() {
        let (_dir, store) = open();
        let ids: Vec<String> = ["e1", "e2", "e10", "x"].map(String::from).to_vec();
        register(&store, &ids); // seqs 1..=4
        store
            .transition("e2", Reason::Succeeded, Some(evidence()), 11, 100)
            .expect("succeed"); // 5
        store
            .transition("x", Reason::Failed, Some(evidence()), 11, 100)
            .expect("cancel"); // 6
        store
            .transition("e1", Reason::Failed, Some(evidence()), 12, 100)
            .expect("cancel"); // 7
        let filter = TransitionFilter::event_ids(["e2", "e1", "e2", "unknown"]);
        let mut source = TransitionSource::of(&filter);
        assert_eq!(
            source,
            TransitionSource::Histories(["e1", "e2", "unknown"].map(String::from).to_vec())
        );
        let read = source.read(&store, 1, 7).expect("read");
        assert_eq!(seqs(&read), (vec![1, 2, 5, 7], 7));
        assert!(read.0.iter().all(|t| filter.matches(t)));
        assert_eq!(
            seqs(&source.read(&store, 3, 6).expect("read")),
            (vec![5], 6)
        );
        // Final before `next`: forgotten; final at or after it: kept until
        // its final transition passes.
        let mut from_seven = source.clone();
        from_seven.forget_finished(&store, 7).expect("forget");
        assert_eq!(from_seven, source);
        source.forget_finished(&store, 8).expect("forget");
        assert_eq!(
            source,
            TransitionSource::Histories(["e2", "unknown"].map(String::from).to_vec())
        );
        for transition in read.0 {
            from_seven.passed(&transition);
        }
        assert_eq!(from_seven, source);
        assert!(!source.is_done());
        let mut one = TransitionSource::of(&TransitionFilter::event_ids(["e1"]));
        one.forget_finished(&store, 8).expect("forget");
        assert!(one.is_done());
    }
}
