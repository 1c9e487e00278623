//! The `meta` column family: the per-state event counters (kept in the
//! batch of every transition, so `event_stats` never counts by scanning),
//! the bus depth (kept in the batch of every change of the queue), the
//! lease numbers, the floors, and the last height the watcher processed.
//!
//! | key | value (JSON) |
//! |---|---|
//! | `count/<State>` | events in that state |
//! | `bus_depth` | messages in the queue (keys of `ready`) |
//! | `lease_seq` | the number of the next lease |
//! | `lease_floor` | every lease numbered below it is deleted |
//! | `floor/<range>` | a range's floor, hex (`floors.rs`) |
//! | `last_height` | last finalized height the watcher processed |
//! | `relay_seq` | a broker's relay (`bus/nats.rs`): every transition numbered below it has been relayed (its instruction, if it entered PendingAccount, published and confirmed by the broker) |
//!
//! A store written before `bus_depth` existed has its queue counted once
//! at open (from the queue's floor), and the count written.
//!
//! The transition sequence is not stored here: it is the last key of
//! `transitions` plus one, read at open.

use lockstep_api::lifecycle::State;
use lockstep_runtime::BlockNumber;
use rocksdb::IteratorMode;

use super::floors::{Floors, Range};
use super::{decode, encode, state_tag, EventStore, Pending, StoreError, StoreResult};
use super::{CF_META, CF_TRANSITIONS};

pub(super) const META_LAST_HEIGHT: &[u8] = b"last_height";
pub(super) const META_LEASE_SEQ: &[u8] = b"lease_seq";
pub(super) const META_LEASE_FLOOR: &[u8] = b"lease_floor";
const META_BUS_DEPTH: &[u8] = b"bus_depth";
const META_RELAY_SEQ: &[u8] = b"relay_seq";

/// What the writer keeps in memory between batches (and commits with them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Counters {
    /// The next transition's sequence number.
    pub(super) next_seq: u64,
    /// The next lease's number.
    pub(super) next_lease: u64,
    /// Events per state, by [`count_index`].
    pub(super) counts: [u64; 4],
    /// Messages in the embedded queue: keys of `ready`, leased or not.
    pub(super) bus_depth: u64,
}

impl Counters {
    /// An empty store's counters.
    pub(super) const EMPTY: Counters = Counters {
        next_seq: 1,
        next_lease: 1,
        counts: [0; 4],
        bus_depth: 0,
    };
}

pub(super) fn count_index(state: State) -> usize {
    usize::from(state_tag(state) - 1)
}

fn count_key(state: State) -> Vec<u8> {
    [b"count/".as_slice(), state.name().as_bytes()].concat()
}

impl Pending {
    /// Counts a message into the queue (`true`: a key of `ready` put) or
    /// out of it (one deleted).
    pub(super) fn count_queued(&mut self, into: bool) {
        let depth = &mut self.counters.bus_depth;
        *depth = if into {
            depth.saturating_add(1)
        } else {
            depth.saturating_sub(1)
        };
    }
}

impl EventStore {
    /// The counters on disk (the queue counted from its floor in `floors`
    /// if its depth was never written, and the count written).
    pub(super) fn load_counters(&self, floors: &Floors) -> StoreResult<Counters> {
        let mut counters = Counters::EMPTY;
        if let Some(item) = self
            .db
            .iterator_cf(self.cf(CF_TRANSITIONS)?, IteratorMode::End)
            .next()
        {
            let (key, _) = item?;
            let seq: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("transition key".into()))?;
            counters.next_seq = u64::from_be_bytes(seq) + 1;
        }
        let meta = self.cf(CF_META)?;
        if let Some(bytes) = self.db.get_cf(meta, META_LEASE_SEQ)? {
            counters.next_lease = decode("lease seq", &bytes)?;
        }
        for state in State::ALL {
            if let Some(bytes) = self.db.get_cf(meta, count_key(state))? {
                counters.counts[count_index(state)] = decode("count", &bytes)?;
            }
        }
        counters.bus_depth = match self.db.get_cf(meta, META_BUS_DEPTH)? {
            Some(bytes) => decode("bus depth", &bytes)?,
            None => {
                let mut depth = 0u64;
                for item in self.range_iter(Range::Ready, floors.get(Range::Ready), None)? {
                    item?;
                    depth += 1;
                }
                self.db
                    .put_cf_opt(meta, META_BUS_DEPTH, encode(&depth), &self.write_options())?;
                depth
            }
        };
        Ok(counters)
    }

    /// Stages the batch's bus depth.
    pub(super) fn stage_bus_depth(&self, pending: &mut Pending) -> StoreResult<()> {
        pending.batch.put_cf(
            self.cf(CF_META)?,
            META_BUS_DEPTH,
            encode(&pending.counters.bus_depth),
        );
        Ok(())
    }

    /// Moves one event from `from`'s count (none for a registration) to
    /// `to`'s, in `pending`.
    pub(super) fn stage_counts(
        &self,
        pending: &mut Pending,
        from: Option<State>,
        to: State,
    ) -> StoreResult<()> {
        let meta = self.cf(CF_META)?;
        let counts = &mut pending.counters.counts;
        if let Some(from) = from {
            counts[count_index(from)] = counts[count_index(from)].saturating_sub(1);
            pending
                .batch
                .put_cf(meta, count_key(from), encode(&counts[count_index(from)]));
        }
        counts[count_index(to)] += 1;
        pending
            .batch
            .put_cf(meta, count_key(to), encode(&counts[count_index(to)]));
        Ok(())
    }

    /// Takes the next lease number, in `pending`.
    pub(super) fn stage_next_lease(&self, pending: &mut Pending) -> StoreResult<()> {
        pending.counters.next_lease += 1;
        pending.batch.put_cf(
            self.cf(CF_META)?,
            META_LEASE_SEQ,
            encode(&pending.counters.next_lease),
        );
        Ok(())
    }

    /// Events per state, in [`State::ALL`] order: the writer's counters,
    /// nothing is read.
    pub fn counts(&self) -> [u64; 4] {
        let counts = self.lock().counters.counts;
        State::ALL.map(|state| counts[count_index(state)])
    }

    /// The last finalized height the watcher processed.
    pub fn last_height(&self) -> StoreResult<Option<BlockNumber>> {
        match self.db.get_cf(self.cf(CF_META)?, META_LAST_HEIGHT)? {
            Some(bytes) => Ok(Some(decode("last height", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records the last processed height (after the block's matches were
    /// handled, so a crash re-processes rather than skips).
    pub fn set_last_height(&self, height: BlockNumber) -> StoreResult<()> {
        self.db.put_cf_opt(
            self.cf(CF_META)?,
            META_LAST_HEIGHT,
            encode(&height),
            &self.write_options(),
        )?;
        Ok(())
    }
}

impl EventStore {
    /// The broker relay's cursor: the first transition it has not relayed;
    /// none before a relay first ran on this store.
    pub fn relay_cursor(&self) -> StoreResult<Option<u64>> {
        match self.db.get_cf(self.cf(CF_META)?, META_RELAY_SEQ)? {
            Some(bytes) => Ok(Some(decode("relay cursor", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records the relay's cursor (after the broker confirmed every
    /// publish below it, so that a crash re-publishes rather than skips).
    pub fn set_relay_cursor(&self, next_seq: u64) -> StoreResult<()> {
        self.db.put_cf_opt(
            self.cf(CF_META)?,
            META_RELAY_SEQ,
            encode(&next_seq),
            &self.write_options(),
        )?;
        Ok(())
    }

    /// The number the next transition will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().counters.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::*;
    use lockstep_api::lifecycle::Reason;

    #[test]
    fn counters_and_seq_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EventStore::open(dir.path(), false).expect("open");
            store
                .register(&registration("e1", 1), 10, 20)
                .expect("register");
            store
                .register(&registration("e2", 2), 10, 20)
                .expect("register");
            store
                .transition("e2", Reason::Expired, Some(evidence()), 12, 30)
                .expect("expire");
        }
        let store = EventStore::open(dir.path(), false).expect("reopen");
        let stats = store.stats(100, 1000).expect("stats");
        assert_eq!(
            (stats.registered, stats.cancelled, stats.last_seq),
            (1, 1, 3)
        );
        let (event, _) = store
            .register(&registration("e3", 3), 10, 20)
            .expect("register");
        assert_eq!(event.state, State::Registered);
        assert_eq!(
            store.transitions_from(4, 10).expect("feed")[0].event_id,
            "e3"
        );
    }

    #[test]
    fn meta_values_keep_their_encoding() {
        let (_dir, store) = open();
        // As written before the store was split: plain JSON numbers.
        put_raw(&store, CF_META, META_LAST_HEIGHT, b"42");
        assert_eq!(store.last_height().expect("height"), Some(42));
        store.set_last_height(43).expect("set");
        let raw = store
            .db
            .get_cf(store.cf(CF_META).expect("cf"), META_LAST_HEIGHT)
            .expect("get");
        assert_eq!(raw.as_deref(), Some(b"43".as_slice()));
        assert_eq!(count_key(State::PendingAccount), b"count/PendingAccount");
    }
}
