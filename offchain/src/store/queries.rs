//! Reads for the API and the reconciler: `event_list` pages (by id, or by
//! state from the `by_state` index), `event_stats` (counters, the oldest
//! entry per state, overdue events, the bus depth), and the reconciler's
//! work list from the `due` index. Nothing here writes.
//!
//! Each read is a range of one index between known keys, bounded by
//! [`MAX_SCAN`] where the range could be large; none walks the history:
//! a state's part of `due` and of `by_state` is read from its floor
//! (`floors.rs`), and the reconciler's reads of `due` stop at now.

use lockstep_api::lifecycle::State;
use rocksdb::{Direction, IteratorMode};

use super::floors::{at_or_before, Range};
use super::meta::count_index;
use super::records::StoredEvent;
use super::{decode, split_timed_key, state_tag, EventStore, StoreError, StoreResult};
use super::{Page, Stats, CF_EVENTS, MAX_PAGE, MAX_SCAN};

/// `event_list`'s query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only events in this state.
    pub state: Option<State>,
    /// Only overdue events (PendingAccount for longer than the threshold).
    pub overdue: bool,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size (at most [`MAX_PAGE`]).
    pub limit: usize,
}

impl EventStore {
    /// Ids of events in `state` whose due time is at or before `now_ms`,
    /// earliest first, at most `limit`.
    ///
    /// Read under the writer's mutex from the state's floor to `now_ms`,
    /// which it then raises to the first id returned (or past `now_ms`
    /// when there is none): the entries deleted before it (the moves and
    /// reschedules of earlier passes) are not walked again.
    pub fn due(&self, state: State, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        let range = Range::Due(state);
        let upper = at_or_before(state, now_ms);
        let mut guard = self.lock();
        let mut out = Vec::new();
        let mut first = None;
        for item in self.range_iter(range, guard.floors.get(range), Some(upper.clone()))? {
            let (key, _) = item?;
            if first.is_none() {
                first = Some(key.to_vec());
            }
            if out.len() >= limit {
                break;
            }
            let Some((_, _, id)) = split_timed_key(&key) else {
                return Err(StoreError::Corrupt("due key".into()));
            };
            out.push(id.to_owned());
        }
        guard.floors.raise(range, first.unwrap_or(upper));
        Ok(out)
    }

    /// A page of events. Without a state, in id order; with one (or with
    /// `overdue`, which implies PendingAccount), oldest in that state first.
    pub fn list(&self, query: &ListQuery, now_ms: u64, overdue_after_ms: u64) -> StoreResult<Page> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let cursor = match &query.cursor {
            Some(text) => Some(hex::decode(text).map_err(|_| StoreError::BadCursor)?),
            None => None,
        };
        let state = if query.overdue {
            Some(State::PendingAccount)
        } else {
            query.state
        };
        let mut events = Vec::new();
        let mut last_key = None;
        let mut more = false;
        match state {
            None => {
                let cf = self.cf(CF_EVENTS)?;
                let mode = match &cursor {
                    Some(key) => IteratorMode::From(key, Direction::Forward),
                    None => IteratorMode::Start,
                };
                for item in self.db.iterator_cf(cf, mode) {
                    let (key, value) = item?;
                    if cursor.as_deref() == Some(&key[..]) {
                        continue;
                    }
                    if events.len() >= limit {
                        more = true;
                        break;
                    }
                    events.push(decode::<StoredEvent>("event", &value)?.into());
                    last_key = Some(key.to_vec());
                }
            }
            Some(state) => {
                if cursor
                    .as_ref()
                    .is_some_and(|key| key.first() != Some(&state_tag(state)))
                {
                    return Err(StoreError::BadCursor);
                }
                let overdue_before = now_ms.saturating_sub(overdue_after_ms);
                let upper = query.overdue.then(|| at_or_before(state, overdue_before));
                let range = Range::ByState(state);
                let Some(iter) = self.read_range(range, cursor.as_deref(), upper)? else {
                    return Ok(Page {
                        events,
                        next_cursor: None,
                    });
                };
                for item in iter.take(MAX_SCAN) {
                    let (key, _) = item?;
                    if cursor.as_deref() == Some(&key[..]) {
                        continue;
                    }
                    let Some((s, since, id)) = split_timed_key(&key) else {
                        return Err(StoreError::Corrupt("by_state key".into()));
                    };
                    if s != state || (query.overdue && since > overdue_before) {
                        break;
                    }
                    if events.len() >= limit {
                        more = true;
                        break;
                    }
                    events.push(self.must_get(id)?);
                    last_key = Some(key.to_vec());
                }
            }
        }
        Ok(Page {
            events,
            next_cursor: if more {
                last_key.map(hex::encode)
            } else {
                None
            },
        })
    }

    /// Counts, ages and the bus depth.
    pub fn stats(&self, now_ms: u64, overdue_after_ms: u64) -> StoreResult<Stats> {
        let (counts, next_seq) = {
            let guard = self.lock();
            (guard.counters.counts, guard.counters.next_seq)
        };
        // The first live entry of the state, from its floor.
        let oldest = |state: State| -> StoreResult<Option<u64>> {
            Ok(self
                .first_live(Range::ByState(state), None)?
                .as_deref()
                .and_then(split_timed_key)
                .map(|(_, since, _)| now_ms.saturating_sub(since)))
        };
        Ok(Stats {
            registered: counts[count_index(State::Registered)],
            pending_account: counts[count_index(State::PendingAccount)],
            completed: counts[count_index(State::Completed)],
            cancelled: counts[count_index(State::Cancelled)],
            overdue: self.overdue_count(now_ms, overdue_after_ms)?,
            oldest_pending_age_ms: oldest(State::PendingAccount)?,
            oldest_registered_age_ms: oldest(State::Registered)?,
            bus_depth: self.bus_depth()?,
            last_seq: next_seq - 1,
            last_height: self.last_height()?,
        })
    }

    /// PendingAccount events older than the threshold (at most
    /// [`MAX_SCAN`]), from the state's floor.
    pub fn overdue_count(&self, now_ms: u64, overdue_after_ms: u64) -> StoreResult<u64> {
        let before = now_ms.saturating_sub(overdue_after_ms);
        let state = State::PendingAccount;
        let upper = Some(at_or_before(state, before));
        let Some(iter) = self.read_range(Range::ByState(state), None, upper)? else {
            return Ok(0);
        };
        let mut count = 0;
        for item in iter.take(MAX_SCAN) {
            item?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::*;
    use lockstep_api::lifecycle::Reason;

    #[test]
    fn list_pages_and_filters() {
        let (_dir, store) = open();
        for i in 0..7u8 {
            store
                .register(&registration(&format!("e{i}"), i), 10 + u64::from(i), 20)
                .expect("register");
        }
        store
            .transition("e3", Reason::Succeeded, Some(evidence()), 50, 1000)
            .expect("succeed");
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list(
                    &ListQuery {
                        cursor: cursor.clone(),
                        limit: 3,
                        ..Default::default()
                    },
                    100,
                    1000,
                )
                .expect("list");
            seen.extend(page.events.iter().map(|e| e.id.clone()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7);
        let registered = store
            .list(
                &ListQuery {
                    state: Some(State::Registered),
                    limit: 100,
                    ..Default::default()
                },
                100,
                1000,
            )
            .expect("list");
        assert_eq!(registered.events.len(), 6);
        let overdue = |now| {
            store
                .list(
                    &ListQuery {
                        overdue: true,
                        limit: 100,
                        ..Default::default()
                    },
                    now,
                    1000,
                )
                .expect("list")
                .events
                .len()
        };
        assert_eq!(overdue(100), 0);
        assert_eq!(overdue(2000), 1);
        assert!(matches!(
            store.list(
                &ListQuery {
                    cursor: Some("zz".into()),
                    limit: 3,
                    ..Default::default()
                },
                1,
                1
            ),
            Err(StoreError::BadCursor)
        ));
    }
}
