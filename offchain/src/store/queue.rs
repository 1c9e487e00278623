//! The outbox and the embedded bus queue.
//!
//! The **outbox** (`outbox`, keyed by event id) holds the payment
//! instruction of every PendingAccount event: written in the batch that
//! moves the event there, deleted in the batch that records its receipt.
//! Every bus sends from it.
//!
//! The **embedded queue** is the [`crate::bus::EmbeddedBus`]'s storage: the
//! `ready` index (visible-at ms ‖ event id, read from its floor up to now:
//! the earliest visible message first, see `floors.rs`) plus the queue
//! fields of each outbox entry (`visibleAtMs`, `lease`, `acked`) and the
//! `leases` column family. Its rules:
//!
//! - a message is in `ready` exactly while it is not acknowledged, under
//!   its entry's `visibleAtMs` (leased messages under their deadline, so an
//!   expired lease needs no sweep: its messages simply become visible);
//! - `pull` leases visible messages (`attempt` one higher each time) and
//!   writes the lease; `ack` releases only what that lease still holds;
//! - the first send is part of the move's own batch ([`EventStore::stage_outbox`]);
//!   a re-send ([`EventStore::requeue`]) puts an acknowledged message back;
//! - the depth (keys of `ready`) is a counter that every batch putting or
//!   deleting a key of `ready` moves (`meta`'s `bus_depth`), never a count;
//! - the writer knows every lease not yet deleted (its number and deadline:
//!   [`LeaseChanges`], applied with the batch that makes or deletes it), so
//!   pruning expired leases reads nothing; at open they are found by number
//!   from `lease_floor` (below which every lease is deleted, written by the
//!   prune) up to the next lease, one point read each.

use std::collections::{BTreeMap, BTreeSet};

use lockstep_api::bus::BusMessage;
use lockstep_api::lifecycle::State;
use rocksdb::IteratorMode;

use super::floors::Range;
use super::meta::META_LEASE_FLOOR;
use super::records::{Lease, OutboxEntry, StoredMessage};
use super::{decode, encode, EventStore, Pending, StoreError, StoreResult, MAX_PULL, MAX_SCAN};
use super::{CF_LEASES, CF_META, CF_OUTBOX, CF_READY};

/// `ready` keys: visible-at ms (BE) ‖ event id.
fn ready_key(ms: u64, id: &str) -> Vec<u8> {
    [ms.to_be_bytes().as_slice(), id.as_bytes()].concat()
}

/// The id of lease number `n`. Part of the wire and the on-disk format.
fn lease_id(n: u64) -> String {
    format!("lease-{n}")
}

/// The number of a lease id this store made.
fn lease_number(id: &str) -> Option<u64> {
    id.strip_prefix("lease-")?.parse().ok()
}

/// Changes of the writer's live leases staged in one batch, applied when
/// it is written.
#[derive(Debug, Default)]
pub(super) struct LeaseChanges {
    /// A lease made: number and deadline.
    added: Option<(u64, u64)>,
    /// Leases deleted.
    removed: BTreeSet<u64>,
}

impl LeaseChanges {
    pub(super) fn apply(self, leases: &mut BTreeMap<u64, u64>) {
        for n in self.removed {
            leases.remove(&n);
        }
        if let Some((n, deadline)) = self.added {
            leases.insert(n, deadline);
        }
    }
}

/// What [`EventStore::requeue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The message was acknowledged (and no receipt followed): it is back
    /// in the queue, visible now.
    Requeued,
    /// The message is still queued or leased: nothing written.
    StillQueued,
    /// No outbox entry (the event is not PendingAccount, e.g. its receipt
    /// arrived meanwhile): nothing written.
    NotInOutbox,
}

/// A PendingAccount event's instruction, as the reconciler re-sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInstruction {
    /// The message, as the outbox holds it.
    pub message: BusMessage,
    /// Re-sends recorded so far (the last send's generation).
    pub resends: u32,
}

impl EventStore {
    /// Stages a new instruction: its outbox entry and, the embedded bus's
    /// first send, its place in the queue, visible at `now_ms`.
    pub(super) fn stage_outbox(
        &self,
        pending: &mut Pending,
        message: &BusMessage,
        now_ms: u64,
    ) -> StoreResult<()> {
        let id = message.event_id.as_str();
        let entry = OutboxEntry {
            message: StoredMessage::from(message),
            visible_at_ms: now_ms,
            lease: None,
            acked: false,
        };
        pending
            .batch
            .put_cf(self.cf(CF_OUTBOX)?, id, encode(&entry));
        self.stage_index_put(pending, Range::Ready, &ready_key(now_ms, id))?;
        pending.count_queued(true);
        Ok(())
    }

    /// Stages the removal of a paid instruction: its outbox entry and its
    /// place in the queue, if any.
    pub(super) fn stage_settle(&self, pending: &mut Pending, id: &str) -> StoreResult<()> {
        if let Some(entry) = self.outbox_entry(id)? {
            if !entry.acked {
                pending
                    .batch
                    .delete_cf(self.cf(CF_READY)?, ready_key(entry.visible_at_ms, id));
                pending.count_queued(false);
            }
            pending.batch.delete_cf(self.cf(CF_OUTBOX)?, id);
        }
        Ok(())
    }

    fn outbox_entry(&self, id: &str) -> StoreResult<Option<OutboxEntry>> {
        match self.db.get_cf(self.cf(CF_OUTBOX)?, id)? {
            Some(bytes) => Ok(Some(decode("outbox entry", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The instruction of an event still awaiting its payment, with its
    /// resends so far; none once the event has left PendingAccount (or was
    /// never there). A PendingAccount event without an outbox entry is
    /// reported as corrupt.
    pub fn pending_instruction(&self, id: &str) -> StoreResult<Option<PendingInstruction>> {
        // The outbox first: it is deleted in the batch that moves the event
        // out of PendingAccount, so a missing entry and a PendingAccount
        // event read after it mean a broken store, not a race.
        let entry = self.outbox_entry(id)?;
        let Some(event) = self.get(id)? else {
            return Ok(None);
        };
        if event.state != State::PendingAccount {
            return Ok(None);
        }
        let Some(entry) = entry else {
            return Err(StoreError::Corrupt(format!(
                "PendingAccount event {id:?} has no outbox entry"
            )));
        };
        Ok(Some(PendingInstruction {
            message: entry.message.into(),
            resends: event.resends,
        }))
    }

    /// The embedded bus's re-send: if a consumer acknowledged the
    /// instruction (and no receipt came), it goes back in the queue, visible
    /// at `now_ms`, keeping its `attempt` count; if it is still queued or
    /// leased, it is left alone (the queue holds one copy per event).
    pub fn requeue(&self, id: &str, now_ms: u64) -> StoreResult<Requeue> {
        let mut guard = self.lock();
        let Some(mut entry) = self.outbox_entry(id)? else {
            return Ok(Requeue::NotInOutbox);
        };
        if !entry.acked {
            return Ok(Requeue::StillQueued);
        }
        let mut pending = self.begin(&guard);
        entry.acked = false;
        entry.lease = None;
        entry.visible_at_ms = now_ms;
        self.stage_index_put(&mut pending, Range::Ready, &ready_key(now_ms, id))?;
        pending.count_queued(true);
        pending
            .batch
            .put_cf(self.cf(CF_OUTBOX)?, id, encode(&entry));
        self.commit(&mut guard, pending)?;
        Ok(Requeue::Requeued)
    }

    /// Leases up to `max` visible messages until `now_ms + lease_ms`. Each
    /// leased message becomes visible again at the deadline unless acked.
    ///
    /// Reads `ready` from its floor to `now_ms` only: neither the entries
    /// deleted before the floor nor those deleted in the future (acked
    /// leases' deadlines) are walked; the floor then moves to the first
    /// visible message left, or past `now_ms` when none is (kept in memory
    /// when nothing is written: an empty pull writes nothing).
    pub fn pull(
        &self,
        max: usize,
        lease_ms: u64,
        now_ms: u64,
    ) -> StoreResult<(Lease, Vec<BusMessage>)> {
        let max = max.min(MAX_PULL);
        let mut guard = self.lock();
        let deadline = now_ms.saturating_add(lease_ms);
        let number = guard.counters.next_lease;
        let lease_id = lease_id(number);
        let ready = self.cf(CF_READY)?;
        let outbox = self.cf(CF_OUTBOX)?;
        let visible_until = now_ms.checked_add(1).map(|ms| ms.to_be_bytes().to_vec());
        let mut taken = Vec::new();
        let mut stale = Vec::new();
        // The first visible key this pull leaves in place.
        let mut left = None;
        for item in self.range_iter(
            Range::Ready,
            guard.floors.get(Range::Ready),
            visible_until.clone(),
        )? {
            let (key, _) = item?;
            if taken.len() >= max {
                left = Some(key.to_vec());
                break;
            }
            let id = key
                .get(8..)
                .and_then(|id| std::str::from_utf8(id).ok())
                .ok_or_else(|| StoreError::Corrupt("ready key".into()))?;
            match self.outbox_entry(id)? {
                Some(entry) => taken.push((key.to_vec(), id.to_owned(), entry)),
                // A stale index entry: drop it.
                None => stale.push(key.to_vec()),
            }
        }
        // Below it, every key is deleted once this pull's batch is written.
        let raised = left.or(visible_until);
        let lease = Lease {
            lease_id: lease_id.clone(),
            deadline_ms: deadline,
            messages: taken.iter().map(|(_, id, _)| id.clone()).collect(),
        };
        if taken.is_empty() && stale.is_empty() {
            if let Some(raised) = raised {
                guard.floors.raise(Range::Ready, raised);
            }
            return Ok((lease, Vec::new()));
        }
        let mut pending = self.begin(&guard);
        if let Some(raised) = raised {
            pending.floors.raise(Range::Ready, raised);
        }
        for key in &stale {
            pending.batch.delete_cf(ready, key);
            pending.count_queued(false);
        }
        let mut messages = Vec::with_capacity(taken.len());
        for (key, id, mut entry) in taken {
            pending.batch.delete_cf(ready, &key);
            self.stage_index_put(&mut pending, Range::Ready, &ready_key(deadline, &id))?;
            entry.visible_at_ms = deadline;
            entry.lease = Some(lease_id.clone());
            entry.message.attempt = entry.message.attempt.saturating_add(1);
            pending.batch.put_cf(outbox, id.as_str(), encode(&entry));
            messages.push(BusMessage::from(entry.message));
        }
        if !messages.is_empty() {
            self.stage_next_lease(&mut pending)?;
            pending
                .batch
                .put_cf(self.cf(CF_LEASES)?, &lease.lease_id, encode(&lease));
            pending.leases.added = Some((number, deadline));
        }
        self.commit(&mut guard, pending)?;
        Ok((lease, messages))
    }

    /// Acknowledges messages of a lease (all of them when `messages` is
    /// none): they leave the queue. Unknown or expired leases and message
    /// ids the lease does not hold are refused, nothing written.
    pub fn ack(
        &self,
        lease_id: &str,
        messages: Option<&[String]>,
        now_ms: u64,
    ) -> StoreResult<usize> {
        let mut guard = self.lock();
        let leases = self.cf(CF_LEASES)?;
        let Some(bytes) = self.db.get_cf(leases, lease_id)? else {
            return Err(StoreError::UnknownLease(lease_id.to_owned()));
        };
        let mut lease: Lease = decode("lease", &bytes)?;
        // Expired exactly when `pull` sees its messages as visible again
        // (`visible_at <= now`), so an ack can never race a re-delivery.
        if lease.deadline_ms <= now_ms {
            return Err(StoreError::LeaseExpired(lease_id.to_owned()));
        }
        let chosen: Vec<String> = match messages {
            None => lease.messages.clone(),
            Some(ids) => {
                for id in ids {
                    if !lease.messages.contains(id) {
                        return Err(StoreError::NotInLease {
                            lease: lease_id.to_owned(),
                            message: id.clone(),
                        });
                    }
                }
                ids.to_vec()
            }
        };
        let mut pending = self.begin(&guard);
        let mut acked = 0;
        for id in &chosen {
            // The entry may be gone (receipt already recorded) or held by a
            // newer lease; only this lease's hold is released.
            if let Some(mut entry) = self.outbox_entry(id)? {
                if entry.lease.as_deref() == Some(lease_id) && !entry.acked {
                    pending
                        .batch
                        .delete_cf(self.cf(CF_READY)?, ready_key(entry.visible_at_ms, id));
                    pending.count_queued(false);
                    entry.acked = true;
                    entry.lease = None;
                    pending
                        .batch
                        .put_cf(self.cf(CF_OUTBOX)?, id.as_str(), encode(&entry));
                    acked += 1;
                }
            }
        }
        lease.messages.retain(|m| !chosen.contains(m));
        if lease.messages.is_empty() {
            pending.batch.delete_cf(leases, lease_id);
            if let Some(n) = lease_number(lease_id) {
                pending.leases.removed.insert(n);
            }
        } else {
            pending.batch.put_cf(leases, lease_id, encode(&lease));
        }
        self.commit(&mut guard, pending)?;
        Ok(acked)
    }

    /// Deletes leases whose deadline passed before `before_ms` (their
    /// messages are back in the queue already), at most [`MAX_SCAN`] at a
    /// time, from the writer's list of live leases: nothing is read. Also
    /// writes the lease floor when it moved. Returns how many were deleted.
    pub fn prune_leases(&self, before_ms: u64) -> StoreResult<usize> {
        let mut guard = self.lock();
        let leases = self.cf(CF_LEASES)?;
        let mut pending = self.begin(&guard);
        for (&n, _) in guard
            .leases
            .iter()
            .filter(|(_, &deadline)| deadline < before_ms)
            .take(MAX_SCAN)
        {
            pending.batch.delete_cf(leases, lease_id(n));
            pending.leases.removed.insert(n);
        }
        let pruned = pending.leases.removed.len();
        let floor = guard
            .leases
            .keys()
            .find(|n| !pending.leases.removed.contains(n))
            .copied()
            .unwrap_or(guard.counters.next_lease);
        if pruned == 0 && guard.lease_floor_on_disk == Some(floor) {
            return Ok(0);
        }
        pending
            .batch
            .put_cf(self.cf(CF_META)?, META_LEASE_FLOOR, encode(&floor));
        self.commit(&mut guard, pending)?;
        guard.lease_floor_on_disk = Some(floor);
        Ok(pruned)
    }

    /// Messages in the queue (not acknowledged), leased or not: a counter,
    /// nothing is read.
    pub fn bus_depth(&self) -> StoreResult<u64> {
        Ok(self.lock().counters.bus_depth)
    }

    /// The leases on disk, by number, with their deadlines, and the lease
    /// floor as written: read one by one from the floor to `next_lease`,
    /// or (a store written before the floor existed) by walking `leases`
    /// once.
    pub(super) fn load_leases(
        &self,
        next_lease: u64,
    ) -> StoreResult<(BTreeMap<u64, u64>, Option<u64>)> {
        let cf = self.cf(CF_LEASES)?;
        let mut live = BTreeMap::new();
        let floor = match self.db.get_cf(self.cf(CF_META)?, META_LEASE_FLOOR)? {
            Some(bytes) => Some(decode::<u64>("lease floor", &bytes)?),
            None => None,
        };
        match floor {
            Some(floor) => {
                for n in floor..next_lease {
                    if let Some(bytes) = self.db.get_cf(cf, lease_id(n))? {
                        live.insert(n, decode::<Lease>("lease", &bytes)?.deadline_ms);
                    }
                }
            }
            None => {
                for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                    let (key, value) = item?;
                    // Every lease this store made is numbered.
                    let Some(n) = std::str::from_utf8(&key).ok().and_then(lease_number) else {
                        continue;
                    };
                    live.insert(n, decode::<Lease>("lease", &value)?.deadline_ms);
                }
            }
        }
        Ok((live, floor))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::*;
    use lockstep_api::event::PaymentReceipt;
    use lockstep_api::lifecycle::Reason;

    #[test]
    fn success_writes_outbox_with_the_transition_and_receipt_completes() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        let event = store
            .transition("e1", Reason::Succeeded, Some(evidence()), 12, 1000)
            .expect("succeed");
        assert_eq!(event.state, State::PendingAccount);
        assert_eq!(store.bus_depth().expect("depth"), 1);
        let (lease, messages) = store.pull(10, 100, 13).expect("pull");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].event_id, "e1");
        // Not visible while leased; back after the deadline.
        assert!(store.pull(10, 100, 50).expect("pull").1.is_empty());
        let (_, again) = store.pull(10, 100, 114).expect("pull after expiry");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempt, 2);
        assert!(matches!(
            store.ack(&lease.lease_id, None, 120),
            Err(StoreError::LeaseExpired(_))
        ));
        assert!(matches!(
            store.ack("lease-999", None, 120),
            Err(StoreError::UnknownLease(_))
        ));

        let receipt = PaymentReceipt::sign(&lockstep_runtime::Keypair::dev("bridge"), "e1", "p1");
        let (done, written) = store.post_receipt(&receipt, 130).expect("receipt");
        assert!(written);
        assert_eq!(done.state, State::Completed);
        let before = snapshot(&store);
        let (_, written) = store.post_receipt(&receipt, 131).expect("repeat");
        assert!(!written);
        let other = PaymentReceipt::sign(&lockstep_runtime::Keypair::dev("bridge"), "e1", "p2");
        assert!(matches!(
            store.post_receipt(&other, 132),
            Err(StoreError::ReceiptConflict { .. })
        ));
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.bus_depth().expect("depth"), 0);
        let history = store.history("e1").expect("history");
        let states: Vec<State> = history.iter().map(|t| t.to).collect();
        assert_eq!(
            states,
            [State::Registered, State::PendingAccount, State::Completed]
        );
        let stats = store.stats(200, 1_000).expect("stats");
        assert_eq!(
            (stats.registered, stats.pending_account, stats.completed),
            (0, 0, 1)
        );
    }

    #[test]
    fn acked_message_is_resent_by_the_reconciler() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        store
            .transition("e1", Reason::Succeeded, Some(evidence()), 12, 1000)
            .expect("succeed");
        let (lease, _) = store.pull(10, 100, 13).expect("pull");
        assert_eq!(store.ack(&lease.lease_id, None, 14).expect("ack"), 1);
        assert_eq!(store.bus_depth().expect("depth"), 0);
        assert!(matches!(
            store.ack(&lease.lease_id, None, 15),
            Err(StoreError::UnknownLease(_))
        ));
        assert_eq!(
            store.due(State::PendingAccount, 1000, 10).expect("due"),
            ["e1"]
        );
        // The reconciler's re-send: the instruction from the outbox, the
        // bus puts it back, the store records the send and the next look.
        let owed = store
            .pending_instruction("e1")
            .expect("instruction")
            .expect("owed");
        assert_eq!((owed.message.event_id.as_str(), owed.resends), ("e1", 0));
        assert_eq!(
            store.requeue("e1", 1000).expect("requeue"),
            Requeue::Requeued
        );
        assert!(store
            .record_resend("e1", Some(owed.resends + 1), |n| 1000 + u64::from(n) * 10)
            .expect("resend"));
        assert_eq!(store.pull(10, 100, 1001).expect("pull").1.len(), 1);
        assert!(store
            .due(State::PendingAccount, 1000, 10)
            .expect("due")
            .is_empty());
        assert_eq!(store.get("e1").expect("get").expect("e1").resends, 1);
    }

    #[test]
    fn requeue_leaves_queued_and_settled_instructions_alone() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        assert_eq!(
            store.requeue("e1", 11).expect("requeue"),
            Requeue::NotInOutbox
        );
        assert_eq!(store.pending_instruction("e1").expect("instruction"), None);
        store
            .transition("e1", Reason::Succeeded, Some(evidence()), 12, 1000)
            .expect("succeed");
        // Queued, then leased: nothing written, one copy stays.
        let before = snapshot(&store);
        assert_eq!(
            store.requeue("e1", 13).expect("requeue"),
            Requeue::StillQueued
        );
        assert_eq!(snapshot(&store), before);
        store.pull(10, 100, 14).expect("pull");
        assert_eq!(
            store.requeue("e1", 15).expect("requeue"),
            Requeue::StillQueued
        );
        assert_eq!(store.bus_depth().expect("depth"), 1);
        // Not sent: the next look moves, the resend count does not.
        assert!(!store
            .record_resend("e1", None, |n| 2000 + u64::from(n))
            .expect("record"));
        let event = store.get("e1").expect("get").expect("e1");
        assert_eq!((event.resends, event.due_at_ms), (0, Some(2000)));
        // The same send recorded twice counts once.
        assert!(store
            .record_resend("e1", Some(1), |_| 3000)
            .expect("record"));
        assert!(!store
            .record_resend("e1", Some(1), |_| 3000)
            .expect("record"));
        assert_eq!(store.get("e1").expect("get").expect("e1").resends, 1);
    }
}
