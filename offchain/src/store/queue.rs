//! The outbox and the embedded bus queue.
//!
//! The **outbox** (`outbox`, keyed by event id) holds the payment
//! instruction of every PendingAccount event: written in the batch that
//! moves the event there, deleted in the batch that records its receipt.
//! Every bus sends from it.
//!
//! The **embedded queue** is the [`crate::bus::EmbeddedBus`]'s storage: the
//! `ready` index (visible-at ms ‖ event id, read from its start: the
//! earliest visible message first) plus the queue fields of each outbox
//! entry (`visibleAtMs`, `lease`, `acked`) and the `leases` column family.
//! Its rules:
//!
//! - a message is in `ready` exactly while it is not acknowledged, under
//!   its entry's `visibleAtMs` (leased messages under their deadline, so an
//!   expired lease needs no sweep: its messages simply become visible);
//! - `pull` leases visible messages (`attempt` one higher each time) and
//!   writes the lease; `ack` releases only what that lease still holds;
//! - the first send is part of the move's own batch ([`EventStore::stage_outbox`]);
//!   a re-send ([`EventStore::requeue`]) puts an acknowledged message back.

use lockstep_api::bus::BusMessage;
use lockstep_api::lifecycle::State;
use rocksdb::IteratorMode;

use super::records::{Lease, OutboxEntry, StoredMessage};
use super::{decode, encode, EventStore, Pending, StoreError, StoreResult, MAX_PULL, MAX_SCAN};
use super::{CF_LEASES, CF_OUTBOX, CF_READY};

/// `ready` keys: visible-at ms (BE) ‖ event id.
fn ready_key(ms: u64, id: &str) -> Vec<u8> {
    [ms.to_be_bytes().as_slice(), id.as_bytes()].concat()
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
        pending
            .batch
            .put_cf(self.cf(CF_READY)?, ready_key(now_ms, id), []);
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
        pending
            .batch
            .put_cf(self.cf(CF_READY)?, ready_key(now_ms, id), []);
        pending
            .batch
            .put_cf(self.cf(CF_OUTBOX)?, id, encode(&entry));
        self.commit(&mut guard, pending)?;
        Ok(Requeue::Requeued)
    }

    /// Leases up to `max` visible messages until `now_ms + lease_ms`. Each
    /// leased message becomes visible again at the deadline unless acked.
    pub fn pull(
        &self,
        max: usize,
        lease_ms: u64,
        now_ms: u64,
    ) -> StoreResult<(Lease, Vec<BusMessage>)> {
        let max = max.min(MAX_PULL);
        let mut guard = self.lock();
        let deadline = now_ms.saturating_add(lease_ms);
        let lease_id = format!("lease-{}", guard.counters.next_lease);
        let mut pending = self.begin(&guard);
        let ready = self.cf(CF_READY)?;
        let outbox = self.cf(CF_OUTBOX)?;
        let mut messages = Vec::new();
        for item in self.db.iterator_cf(ready, IteratorMode::Start) {
            if messages.len() >= max {
                break;
            }
            let (key, _) = item?;
            let visible = u64::from_be_bytes(
                key.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| StoreError::Corrupt("ready key".into()))?,
            );
            if visible > now_ms {
                break;
            }
            let id = std::str::from_utf8(&key[8..])
                .map_err(|_| StoreError::Corrupt("ready key".into()))?;
            let Some(mut entry) = self.outbox_entry(id)? else {
                // A stale index entry: drop it.
                pending.batch.delete_cf(ready, &key);
                continue;
            };
            pending.batch.delete_cf(ready, &key);
            pending.batch.put_cf(ready, ready_key(deadline, id), []);
            entry.visible_at_ms = deadline;
            entry.lease = Some(lease_id.clone());
            entry.message.attempt = entry.message.attempt.saturating_add(1);
            pending.batch.put_cf(outbox, id, encode(&entry));
            messages.push(BusMessage::from(entry.message));
        }
        let lease = Lease {
            lease_id,
            deadline_ms: deadline,
            messages: messages.iter().map(|m| m.message_id.clone()).collect(),
        };
        if messages.is_empty() {
            return Ok((lease, messages));
        }
        self.stage_next_lease(&mut pending)?;
        pending
            .batch
            .put_cf(self.cf(CF_LEASES)?, &lease.lease_id, encode(&lease));
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
        } else {
            pending.batch.put_cf(leases, lease_id, encode(&lease));
        }
        self.commit(&mut guard, pending)?;
        Ok(acked)
    }

    /// Deletes leases whose deadline passed before `before_ms` (their
    /// messages are back in the queue already). Returns how many.
    pub fn prune_leases(&self, before_ms: u64) -> StoreResult<usize> {
        let mut guard = self.lock();
        let leases = self.cf(CF_LEASES)?;
        let mut pending = self.begin(&guard);
        let mut pruned = 0;
        for item in self
            .db
            .iterator_cf(leases, IteratorMode::Start)
            .take(MAX_SCAN)
        {
            let (key, value) = item?;
            let lease: Lease = decode("lease", &value)?;
            if lease.deadline_ms < before_ms {
                pending.batch.delete_cf(leases, &key);
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.commit(&mut guard, pending)?;
        }
        Ok(pruned)
    }

    /// Messages in the queue (not acknowledged), leased or not.
    pub fn bus_depth(&self) -> StoreResult<u64> {
        let mut depth = 0;
        for item in self.db.iterator_cf(self.cf(CF_READY)?, IteratorMode::Start) {
            item?;
            depth += 1;
        }
        Ok(depth)
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
