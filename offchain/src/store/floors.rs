//! Floors: where a read of an index that is consumed from its start
//! begins, so that no read walks what was deleted before it.
//!
//! RocksDB keeps a deleted key as a tombstone until compaction drops it,
//! and an iterator steps over every tombstone between where it starts and
//! the first live key. Three indexes are read from the start of a range
//! whose oldest keys are deleted as the work they stand for is done: the
//! bus queue (`ready`: the earliest visible message first), the
//! reconciler's work list (`due`, per state: the earliest due first) and
//! the per-state index (`by_state`, per state: the oldest first). Read from
//! the range's start, each would step over every entry the range ever held
//! (issue 14: an empty `bus_pull` took 24–38 ms after 120,000 events).
//!
//! So each such [`Range`] has a **floor**: a key below which every key of
//! the range is deleted. A read starts at the floor
//! (`ReadOptions::set_iterate_lower_bound`) and stops at its own upper
//! bound (`set_iterate_upper_bound`: `now + 1` for the queue and the work
//! list, so deleted entries in the future are never stepped over either),
//! so what it walks is what was deleted since the floor last moved, not
//! the history. The rules that keep a floor true:
//!
//! - every put into a floored range goes through
//!   [`EventStore::stage_index_put`], which lowers the batch's copy of the
//!   floor when the key is below it; the copy becomes the writer's when the
//!   batch is written;
//! - only a read made under the writer's mutex raises a floor: to the
//!   first live key it found, or to its upper bound when it found none
//!   below it. No put can land between that read and the raise;
//! - every batch also writes the floors that differ from the ones on disk
//!   (`meta`: `floor/<range>`), so what is on disk is true of the disk and
//!   a reopened store starts from it. A floor raised by a read that writes
//!   nothing (an empty pull) is written with the next batch; until then the
//!   disk holds a lower floor, which is still true.
//!
//! A range without a floor on disk (a store written before floors existed)
//! starts at the range's first key: its first read walks its tombstones
//! once, and raises the floor.

use lockstep_api::lifecycle::State;
use rocksdb::{DBIterator, Direction, IteratorMode, ReadOptions};

use super::{decode, encode, state_tag, EventStore, Pending, StoreError, StoreResult, Writer};
use super::{CF_BY_STATE, CF_DUE, CF_META, CF_READY};

/// A part of an index read from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Range {
    /// `ready`, the whole column family.
    Ready,
    /// The keys of `due` for one state.
    Due(State),
    /// The keys of `by_state` for one state.
    ByState(State),
}

impl Range {
    /// Every floored range.
    pub(super) const ALL: [Range; 9] = [
        Range::Ready,
        Range::Due(State::Registered),
        Range::Due(State::PendingAccount),
        Range::Due(State::Completed),
        Range::Due(State::Cancelled),
        Range::ByState(State::Registered),
        Range::ByState(State::PendingAccount),
        Range::ByState(State::Completed),
        Range::ByState(State::Cancelled),
    ];

    fn cf(self) -> &'static str {
        match self {
            Range::Ready => CF_READY,
            Range::Due(_) => CF_DUE,
            Range::ByState(_) => CF_BY_STATE,
        }
    }

    /// The range's first possible key: its floor when nothing is known.
    fn start(self) -> Vec<u8> {
        match self {
            Range::Ready => Vec::new(),
            Range::Due(state) | Range::ByState(state) => vec![state_tag(state)],
        }
    }

    /// The first key past the range; none: the end of the column family.
    pub(super) fn end(self) -> Option<Vec<u8>> {
        match self {
            Range::Ready => None,
            Range::Due(state) | Range::ByState(state) => Some(vec![state_tag(state) + 1]),
        }
    }

    /// Where its floor is kept in `meta`. Part of the on-disk format.
    fn meta_key(self) -> Vec<u8> {
        match self {
            Range::Ready => b"floor/ready".to_vec(),
            Range::Due(state) => format!("floor/due/{}", state.name()).into_bytes(),
            Range::ByState(state) => format!("floor/by_state/{}", state.name()).into_bytes(),
        }
    }

    fn slot(self) -> usize {
        match self {
            Range::Ready => 0,
            Range::Due(state) => usize::from(state_tag(state)),
            Range::ByState(state) => 4 + usize::from(state_tag(state)),
        }
    }
}

/// The floor of every [`Range`] (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Floors([Vec<u8>; 9]);

impl Floors {
    /// Every floor at its range's start.
    pub(super) fn starts() -> Floors {
        Floors(Range::ALL.map(Range::start))
    }

    /// The floor of `range`.
    pub(super) fn get(&self, range: Range) -> &[u8] {
        &self.0[range.slot()]
    }

    /// Lowers the floor of `range` to `key` if `key` is below it: a put.
    fn lower(&mut self, range: Range, key: &[u8]) {
        let floor = &mut self.0[range.slot()];
        if key < floor.as_slice() {
            *floor = key.to_vec();
        }
    }

    /// Raises the floor of `range` to `key` if `key` is above it: only for
    /// a reader under the writer's mutex that found no live key below `key`.
    pub(super) fn raise(&mut self, range: Range, key: Vec<u8>) {
        let floor = &mut self.0[range.slot()];
        if key > *floor {
            *floor = key;
        }
    }
}

impl EventStore {
    /// The floors on disk; a range without one starts at its first key.
    pub(super) fn load_floors(&self) -> StoreResult<Floors> {
        let meta = self.cf(CF_META)?;
        let mut floors = Floors::starts();
        for range in Range::ALL {
            if let Some(bytes) = self.db.get_cf(meta, range.meta_key())? {
                let text: String = decode("floor", &bytes)?;
                floors.0[range.slot()] =
                    hex::decode(text).map_err(|_| StoreError::Corrupt("floor".into()))?;
            }
        }
        Ok(floors)
    }

    /// Stages a put of `key` (no value) into `range`, lowering its floor.
    pub(super) fn stage_index_put(
        &self,
        pending: &mut Pending,
        range: Range,
        key: &[u8],
    ) -> StoreResult<()> {
        pending.batch.put_cf(self.cf(range.cf())?, key, []);
        pending.floors.lower(range, key);
        Ok(())
    }

    /// Stages the floors of `pending` that differ from `on_disk`.
    pub(super) fn stage_floors(&self, pending: &mut Pending, on_disk: &Floors) -> StoreResult<()> {
        let meta = self.cf(CF_META)?;
        for range in Range::ALL {
            let floor = pending.floors.get(range);
            if floor != on_disk.get(range) {
                let value = encode(&hex::encode(floor));
                pending.batch.put_cf(meta, range.meta_key(), value);
            }
        }
        Ok(())
    }

    /// An iterator over the keys of `range` from `lower` (at or above its
    /// floor) to `upper` (exclusive; none: the range's end), which never
    /// steps outside those bounds.
    pub(super) fn range_iter(
        &self,
        range: Range,
        lower: &[u8],
        upper: Option<Vec<u8>>,
    ) -> StoreResult<DBIterator<'_>> {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(lower.to_vec());
        if let Some(upper) = upper.or_else(|| range.end()) {
            options.set_iterate_upper_bound(upper);
        }
        Ok(self.db.iterator_cf_opt(
            self.cf(range.cf())?,
            options,
            IteratorMode::From(lower, Direction::Forward),
        ))
    }

    /// The first live key of `range` below `upper` (none: the range's
    /// end), and the floor raised to it (or to `upper` when there is none).
    pub(super) fn first_live(
        &self,
        range: Range,
        upper: Option<Vec<u8>>,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut guard = self.lock();
        self.first_live_locked(&mut guard, range, upper)
    }

    fn first_live_locked(
        &self,
        writer: &mut Writer,
        range: Range,
        upper: Option<Vec<u8>>,
    ) -> StoreResult<Option<Vec<u8>>> {
        let upper = upper.or_else(|| range.end());
        let first = match self
            .range_iter(range, writer.floors.get(range), upper.clone())?
            .next()
        {
            Some(item) => Some(item?.0.to_vec()),
            None => None,
        };
        match (&first, upper) {
            (Some(key), _) => writer.floors.raise(range, key.clone()),
            (None, Some(upper)) => writer.floors.raise(range, upper),
            (None, None) => {}
        }
        Ok(first)
    }

    /// An iterator over the live keys of `range` from `from` (none: its
    /// first live key, raising its floor; a `from` below the floor starts
    /// at the floor) to `upper` (none: the range's end); none when the
    /// range holds no live key there. Made under the writer's mutex, so the
    /// floor it starts from is true of the snapshot it reads; read after
    /// the mutex is released.
    pub(super) fn read_range(
        &self,
        range: Range,
        from: Option<&[u8]>,
        upper: Option<Vec<u8>>,
    ) -> StoreResult<Option<DBIterator<'_>>> {
        let mut guard = self.lock();
        let lower = match from {
            Some(from) => from.max(guard.floors.get(range)).to_vec(),
            None => match self.first_live_locked(&mut guard, range, upper.clone())? {
                Some(first) => first,
                None => return Ok(None),
            },
        };
        Ok(Some(self.range_iter(range, &lower, upper)?))
    }
}

/// The first key of `state`'s part of `due` or `by_state` at or after
/// `ms`: `state tag ‖ ms (BE)`, the bound of "at or before `ms - 1`".
pub(super) fn timed_bound(state: State, ms: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(state_tag(state));
    key.extend_from_slice(&ms.to_be_bytes());
    key
}

/// The upper bound of `state`'s keys at or before `ms`.
pub(super) fn at_or_before(state: State, ms: u64) -> Vec<u8> {
    match ms.checked_add(1) {
        Some(next) => timed_bound(state, next),
        None => vec![state_tag(state) + 1],
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::super::Move;
    use super::*;
    use lockstep_api::event::{PaymentReceipt, Registration};
    use lockstep_api::lifecycle::Reason;
    use lockstep_runtime::Hash;
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};

    /// What `f` returns, and how many deleted entries RocksDB stepped over
    /// for it (this thread's perf context: a count, not a time).
    fn deletes_skipped<T>(f: impl FnOnce() -> T) -> (T, u64) {
        set_perf_stats(PerfStatsLevel::EnableCount);
        let mut context = PerfContext::default();
        context.reset();
        let out = f();
        let skipped = context.metric(PerfMetric::InternalDeleteSkippedCount);
        set_perf_stats(PerfStatsLevel::Disable);
        (out, skipped)
    }

    /// The `n`th event, with a tx hash of its own.
    fn numbered(n: u32) -> Registration {
        let mut registration = registration(&format!("e{n}"), 0);
        let mut tx = [0u8; 32];
        tx[..4].copy_from_slice(&n.to_be_bytes());
        registration.tx_hash = Hash(tx);
        registration
    }

    fn succeeded(registrations: &[Registration]) -> Vec<Move> {
        registrations
            .iter()
            .map(|r| Move {
                id: r.id.clone(),
                reason: Reason::Succeeded,
                evidence: Some(evidence()),
                proof: None,
            })
            .collect()
    }

    #[test]
    fn after_10000_settled_events_reads_step_over_nothing_and_stay_exact_across_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = lockstep_runtime::Keypair::dev("bridge");
        const GROUPS: u32 = 20;
        const PER_GROUP: u32 = 500;
        // After every time below: leases, due times.
        let end = 1_000 + u64::from(GROUPS) * 10 + 1_000;
        {
            let store = EventStore::open(dir.path(), false).expect("open");
            for group in 0..GROUPS {
                let t = 1_000 + u64::from(group) * 10;
                let registrations: Vec<Registration> = (0..PER_GROUP)
                    .map(|i| numbered(group * PER_GROUP + i))
                    .collect();
                for result in store
                    .register_many(&registrations, t, t + 5)
                    .expect("register")
                {
                    assert!(result.expect("registered").1);
                }
                for result in store
                    .transition_many(&succeeded(&registrations), t + 1, t + 1_001)
                    .expect("move")
                {
                    assert_eq!(result.expect("moved").state, State::PendingAccount);
                }
                assert_eq!(store.bus_depth().expect("depth"), u64::from(PER_GROUP));
                let (lease, messages) = store.pull(1_000, 100, t + 2).expect("pull");
                assert_eq!(messages.len(), PER_GROUP as usize);
                assert_eq!(
                    store.ack(&lease.lease_id, None, t + 3).expect("ack"),
                    PER_GROUP as usize
                );
                let receipts: Vec<PaymentReceipt> = registrations
                    .iter()
                    .map(|r| PaymentReceipt::sign(&key, &r.id, "paid"))
                    .collect();
                for result in store.post_receipts(&receipts, t + 4).expect("receipts") {
                    assert_eq!(result.expect("receipt").0.state, State::Completed);
                }
            }
            let stats = store.stats(end, 1_000_000).expect("stats");
            assert_eq!(
                (stats.completed, stats.registered, stats.pending_account),
                (10_000, 0, 0)
            );
            assert_eq!(stats.bus_depth, 0);
            assert_eq!(store.prune_leases(end).expect("prune"), 0);
            assert!(store.pull(10, 100, end).expect("pull").1.is_empty());
            assert!(store
                .due(State::Registered, end, 10)
                .expect("due")
                .is_empty());
            assert!(store
                .due(State::PendingAccount, end, 10)
                .expect("due")
                .is_empty());

            // Once the floors have moved, the reads of an idle store step
            // over none of the 10,000 events' deleted entries.
            let (pulled, skipped) = deletes_skipped(|| store.pull(10, 100, end + 1));
            assert!(pulled.expect("pull").1.is_empty());
            assert_eq!(skipped, 0, "empty pull");
            for state in [State::Registered, State::PendingAccount] {
                let (due, skipped) = deletes_skipped(|| store.due(state, end + 1, 10));
                assert!(due.expect("due").is_empty());
                assert_eq!(skipped, 0, "due {state}");
            }
            let (stats, skipped) = deletes_skipped(|| store.stats(end + 1, 100));
            assert_eq!(stats.expect("stats").overdue, 0);
            assert_eq!(skipped, 0, "stats");

            // An event moved by a writer whose clock is behind lands below
            // the floors, which come down to it: it is due, listed and
            // pulled like any other.
            let late = numbered(GROUPS * PER_GROUP);
            store
                .register(&late, end - 500, end - 450)
                .expect("register");
            assert_eq!(
                store.due(State::Registered, end, 10).expect("due"),
                ["e10000"]
            );
            store
                .transition(
                    "e10000",
                    Reason::Succeeded,
                    Some(evidence()),
                    end - 400,
                    end + 600,
                )
                .expect("move");
            let stats = store.stats(end + 1, 100).expect("stats");
            assert_eq!((stats.pending_account, stats.overdue), (1, 1));
            assert_eq!(stats.oldest_pending_age_ms, Some(401));
            assert_eq!(stats.bus_depth, 1);
            let (lease, messages) = store.pull(10, 100, end + 2).expect("pull");
            assert_eq!(lease.messages, ["e10000"]);
            assert_eq!(messages[0].attempt, 1);
        }

        // The floors and the depth were written with the batches: a
        // reopened store reads from them, not from the start.
        let store = EventStore::open(dir.path(), false).expect("reopen");
        assert_eq!(store.bus_depth().expect("depth"), 1);
        let (pulled, skipped) = deletes_skipped(|| store.pull(10, 100, end + 3));
        assert!(pulled.expect("pull").1.is_empty(), "still leased");
        assert_eq!(skipped, 0, "empty pull after the reopen");
        let (stats, skipped) = deletes_skipped(|| store.stats(end + 4, 100));
        let stats = stats.expect("stats");
        assert_eq!((stats.completed, stats.pending_account), (10_000, 1));
        assert_eq!(skipped, 0, "stats after the reopen");
        let (due, skipped) = deletes_skipped(|| store.due(State::PendingAccount, end + 700, 10));
        assert_eq!(due.expect("due"), ["e10000"]);
        assert_eq!(skipped, 0, "due after the reopen");
        // The lease lapses and the message comes back, counted once.
        let (_, again) = store.pull(10, 100, end + 200).expect("pull");
        assert_eq!(again[0].attempt, 2);
        assert_eq!(store.bus_depth().expect("depth"), 1);
        // Expired leases are pruned from the writer's list, which the
        // reopen rebuilt: the first lease of the late event goes.
        assert_eq!(store.prune_leases(end + 150).expect("prune"), 1);
        assert_eq!(store.prune_leases(end + 150).expect("prune"), 0);
    }

    #[test]
    fn floors_move_only_the_way_they_are_told() {
        let mut floors = Floors::starts();
        let range = Range::Due(State::Registered);
        assert_eq!(floors.get(range), [1]);
        floors.raise(range, timed_bound(State::Registered, 50));
        floors.raise(range, timed_bound(State::Registered, 40));
        assert_eq!(floors.get(range), timed_bound(State::Registered, 50));
        floors.lower(range, &timed_bound(State::Registered, 60));
        assert_eq!(floors.get(range), timed_bound(State::Registered, 50));
        floors.lower(range, &timed_bound(State::Registered, 45));
        assert_eq!(floors.get(range), timed_bound(State::Registered, 45));
        // Each range has its own floor and its own meta key.
        assert_eq!(floors.get(Range::Due(State::PendingAccount)), [2]);
        let keys: std::collections::HashSet<Vec<u8>> =
            Range::ALL.iter().map(|r| r.meta_key()).collect();
        assert_eq!(keys.len(), Range::ALL.len());
        let slots: std::collections::HashSet<usize> = Range::ALL.iter().map(|r| r.slot()).collect();
        assert_eq!(slots.len(), Range::ALL.len());
        assert_eq!(at_or_before(State::Completed, u64::MAX), [4]);
    }
}
