//! Events and their lifecycle: registration (one group commit for many),
//! moves through [`next_state`] (one batch for a block's worth), receipts,
//! the reconciler's schedule, and the append-only history and feed.
//!
//! Every write here stages the event record, its `by_state` and `due` index
//! entries, its transition (feed and history), the per-state counters and
//! its registrant's count of Registered events (`holdings.rs`) into
//! one batch; entering PendingAccount also stages the outbox entry
//! ([`EventStore::stage_outbox`]) and a receipt removes it, so an
//! instruction exists exactly while its event awaits payment.

use std::collections::{HashMap, HashSet};

use lockstep_api::bus::BusMessage;
use lockstep_api::event::{
    Commitment, Event, Evidence, PaymentFailure, PaymentReceipt, Registration, Transition,
};
use lockstep_api::lifecycle::{next_state, IllegalMove, Reason, State};
use lockstep_runtime::Hash;
use rocksdb::{Direction, IteratorMode};

use super::floors::Range;
use super::records::{Provenance, StoredEvent, StoredTransition};
use super::{decode, encode, timed_key, EventStore, MoveProof, Pending, StoreError, StoreResult};
use super::{CF_BY_STATE, CF_BY_TX, CF_DUE, CF_EVENTS, CF_HISTORY, CF_TRANSITIONS};

/// One requested move, for [`EventStore::transition_many`].
#[derive(Debug, Clone)]
pub struct Move {
    /// The event.
    pub id: String,
    /// Why it moves.
    pub reason: Reason,
    /// The quorum's evidence.
    pub evidence: Option<Evidence>,
    /// What proves the outcome (a move decided from a verified block),
    /// written with the move.
    pub proof: Option<MoveProof>,
}

/// One registration for [`EventStore::register_checked`].
#[derive(Debug, Clone)]
pub struct Submission {
    /// The event to register.
    pub registration: Registration,
    /// What its request proved of the transfer's commitment to the event.
    pub commitment: Commitment,
    /// The credential registering it, with its bound; none: the event is
    /// no one's (registered without credentials, or by the store's own
    /// callers) and no bound applies.
    pub registrant: Option<Registrant>,
    /// When the event can first be decided without its block: once the
    /// chain is past its `validUntil` (an expiry the watcher cannot see).
    /// The reconciler's first look is at this time when it comes before
    /// the grace period's end; none: at the grace period's end.
    pub check_by_ms: Option<u64>,
}

/// The credential that registers an event, and how many events it may hold
/// in Registered at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrant {
    /// The credential's name, recorded with the event.
    pub name: String,
    /// Most events it may hold in Registered: a registration beyond it is
    /// refused ([`StoreError::TooManyRegistered`]).
    pub max_registered: u64,
}

/// `history` keys: event id ‖ 0x00 ‖ seq (BE).
fn history_key(id: &str, seq: u64) -> Vec<u8> {
    [id.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

impl EventStore {
    /// Stages the event record, with its provenance.
    fn stage_event(
        &self,
        pending: &mut Pending,
        event: &Event,
        provenance: &Provenance,
    ) -> StoreResult<()> {
        pending.batch.put_cf(
            self.cf(CF_EVENTS)?,
            event.id.as_str(),
            encode(&StoredEvent::new(event, provenance)),
        );
        Ok(())
    }

    /// Appends a transition to the feed and the event's history, and moves
    /// the per-state counters and the count of the credential that
    /// registered the event (`registered_by`).
    fn append_transition(
        &self,
        pending: &mut Pending,
        registered_by: Option<&str>,
        mut transition: Transition,
    ) -> StoreResult<Transition> {
        transition.seq = pending.counters.next_seq;
        pending.counters.next_seq += 1;
        pending.transitions += 1;
        self.stage_counts(pending, transition.from, transition.to)?;
        pending.move_holding(registered_by, transition.from, transition.to);
        pending.batch.put_cf(
            self.cf(CF_TRANSITIONS)?,
            transition.seq.to_be_bytes(),
            encode(&StoredTransition::from(&transition)),
        );
        pending.batch.put_cf(
            self.cf(CF_HISTORY)?,
            history_key(&transition.event_id, transition.seq),
            [],
        );
        Ok(transition)
    }

    /// Registers an event whose commitment is [`Commitment::Unverified`],
    /// or returns the one registered under this id with the same payload
    /// (`false`: nothing was written). `recheck_at_ms` is when the
    /// reconciler should first look at it.
    pub fn register(
        &self,
        registration: &Registration,
        now_ms: u64,
        recheck_at_ms: u64,
    ) -> StoreResult<(Event, bool)> {
        self.register_many(std::slice::from_ref(registration), now_ms, recheck_at_ms)?
            .pop()
            .unwrap_or_else(|| Err(StoreError::NotFound(registration.id.clone())))
    }

    /// [`EventStore::register_checked`] with every commitment
    /// [`Commitment::Unverified`]: the confirmer checks each transfer's
    /// commitment in its finalized block before anything is paid.
    pub fn register_many(
        &self,
        registrations: &[Registration],
        now_ms: u64,
        recheck_at_ms: u64,
    ) -> StoreResult<Vec<StoreResult<(Event, bool)>>> {
        let unverified: Vec<Submission> = registrations
            .iter()
            .map(|r| Submission {
                registration: r.clone(),
                commitment: Commitment::Unverified,
                registrant: None,
                check_by_ms: None,
            })
            .collect();
        self.register_checked(&unverified, now_ms, recheck_at_ms)
    }

    /// Registers many events in **one** write batch (group commit: one
    /// fsync for all), each with what its registration proved of its
    /// commitment and the credential registering it. Each is checked on its
    /// own, against the store and against the others of the group; a
    /// refused one is reported in its slot and contributes nothing. The
    /// outer error is a store failure, in which case nothing was written.
    /// The reconciler first looks at each new event at `recheck_at_ms`, or
    /// at its [`Submission::check_by_ms`] if that is earlier.
    /// Idempotency compares the payload only: the same event registered
    /// again by hash, or with its signed transfer, is the same event (and
    /// keeps what was first recorded of its commitment and registrant), and
    /// is answered even when its registrant is at its bound, which it does
    /// not count against twice. A new event whose registrant already holds
    /// `max_registered` Registered events (this group's included) is
    /// refused with [`StoreError::TooManyRegistered`].
    pub fn register_checked(
        &self,
        submissions: &[Submission],
        now_ms: u64,
        recheck_at_ms: u64,
    ) -> StoreResult<Vec<StoreResult<(Event, bool)>>> {
        let mut guard = self.lock();
        let mut pending = self.begin(&guard);
        let mut staged: HashMap<String, Event> = HashMap::new();
        let mut staged_tx: HashMap<Hash, String> = HashMap::new();
        let mut results = Vec::with_capacity(submissions.len());
        for Submission {
            registration,
            commitment,
            registrant,
            check_by_ms,
        } in submissions
        {
            let existing = match staged.get(&registration.id) {
                Some(event) => Some(event.clone()),
                None => self.get(&registration.id)?,
            };
            if let Some(existing) = existing {
                results.push(if existing.registration() == *registration {
                    Ok((existing, false))
                } else {
                    Err(StoreError::IdConflict(registration.id.clone()))
                });
                continue;
            }
            let holder = match staged_tx.get(&registration.tx_hash) {
                Some(id) => Some(id.clone()),
                None => self.id_by_tx(&registration.tx_hash)?,
            };
            if let Some(id) = holder {
                results.push(Err(StoreError::TxConflict {
                    tx: registration.tx_hash,
                    id,
                }));
                continue;
            }
            if let Some(registrant) = registrant {
                let held = pending.held(&guard, &registrant.name);
                if held >= registrant.max_registered {
                    results.push(Err(StoreError::TooManyRegistered {
                        credential: registrant.name.clone(),
                        held,
                        bound: registrant.max_registered,
                    }));
                    continue;
                }
            }
            let due = check_by_ms.map_or(recheck_at_ms, |at| at.min(recheck_at_ms));
            let event = Event {
                id: registration.id.clone(),
                tx_hash: registration.tx_hash,
                valid_until: registration.valid_until,
                payment: registration.payment.clone(),
                state: State::Registered,
                created_at_ms: now_ms,
                state_since_ms: now_ms,
                due_at_ms: Some(due),
                checks: 0,
                resends: 0,
                evidence: None,
                receipt: None,
                payment_failure: None,
            };
            let id = event.id.as_str();
            let provenance = Provenance {
                commitment: *commitment,
                registered_by: registrant.as_ref().map(|r| r.name.clone()),
            };
            self.stage_event(&mut pending, &event, &provenance)?;
            pending
                .batch
                .put_cf(self.cf(CF_BY_TX)?, event.tx_hash.as_bytes(), id);
            self.stage_index_put(
                &mut pending,
                Range::ByState(State::Registered),
                &timed_key(State::Registered, now_ms, id),
            )?;
            self.stage_index_put(
                &mut pending,
                Range::Due(State::Registered),
                &timed_key(State::Registered, due, id),
            )?;
            self.append_transition(
                &mut pending,
                provenance.registered_by.as_deref(),
                Transition {
                    seq: 0,
                    event_id: event.id.clone(),
                    at_ms: now_ms,
                    from: None,
                    to: State::Registered,
                    reason: None,
                    evidence: None,
                    payment_reference: None,
                },
            )?;
            staged_tx.insert(event.tx_hash, event.id.clone());
            staged.insert(event.id.clone(), event.clone());
            results.push(Ok((event, true)));
        }
        if pending.transitions > 0 {
            self.commit(&mut guard, pending)?;
        }
        Ok(results)
    }

    /// An event by id.
    pub fn get(&self, id: &str) -> StoreResult<Option<Event>> {
        Ok(self.get_with_commitment(id)?.map(|(event, _)| event))
    }

    /// An event by id, with what is known of its transfer's commitment to
    /// it (the confirmer's question before it lets a payment out).
    pub fn get_with_commitment(&self, id: &str) -> StoreResult<Option<(Event, Commitment)>> {
        Ok(self
            .get_with_provenance(id)?
            .map(|(event, provenance)| (event, provenance.commitment)))
    }

    /// An event by id, with its provenance: what is known of its
    /// commitment, and the credential that registered it.
    pub fn get_with_provenance(&self, id: &str) -> StoreResult<Option<(Event, Provenance)>> {
        match self.db.get_cf(self.cf(CF_EVENTS)?, id)? {
            Some(bytes) => Ok(Some(decode::<StoredEvent>("event", &bytes)?.into())),
            None => Ok(None),
        }
    }

    pub(super) fn must_get(&self, id: &str) -> StoreResult<Event> {
        self.get(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// [`EventStore::get_with_provenance`] of an event that must exist: what
    /// a writer re-stages, so that a rewrite keeps the provenance as it was.
    fn must_get_with_provenance(&self, id: &str) -> StoreResult<(Event, Provenance)> {
        self.get_with_provenance(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// The id of the event registered for a tx hash.
    pub fn id_by_tx(&self, tx: &Hash) -> StoreResult<Option<String>> {
        match self.db.get_cf(self.cf(CF_BY_TX)?, tx.as_bytes())? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| StoreError::Corrupt("by_tx value".into())),
            None => Ok(None),
        }
    }

    /// An event's transitions, oldest first.
    pub fn history(&self, id: &str) -> StoreResult<Vec<Transition>> {
        self.history_range(id, 0, u64::MAX, usize::MAX)
    }

    /// Event `id`'s transitions with `from <= seq <= to`, oldest first, at
    /// most `limit`: read from its own `history` keys (the iterator is
    /// bounded to them), so the cost follows this event's history, never
    /// the global feed's length or rate.
    pub fn history_range(
        &self,
        id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreResult<Vec<Transition>> {
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok(out);
        }
        let prefix_len = id.len() + 1;
        let start = history_key(id, from);
        // Past the last key wanted: the next seq's key, or (for the last
        // seq there is) the first key after every one of this id's.
        let end = match to.checked_add(1) {
            Some(after) => history_key(id, after),
            None => [id.as_bytes(), &[1]].concat(),
        };
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound(end);
        let transitions = self.cf(CF_TRANSITIONS)?;
        for item in self.db.iterator_cf_opt(
            self.cf(CF_HISTORY)?,
            options,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let seq = key
                .get(prefix_len..)
                .filter(|seq| seq.len() == 8)
                .ok_or_else(|| StoreError::Corrupt(format!("history key of {id:?}")))?;
            let bytes = self
                .db
                .get_cf(transitions, seq)?
                .ok_or_else(|| StoreError::Corrupt(format!("history of {id:?} points nowhere")))?;
            out.push(decode::<StoredTransition>("transition", &bytes)?.into());
        }
        Ok(out)
    }

    /// Transitions with `seq >= from`, at most `limit`.
    pub fn transitions_from(&self, from: u64, limit: usize) -> StoreResult<Vec<Transition>> {
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_TRANSITIONS)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (_, value) = item?;
            out.push(decode::<StoredTransition>("transition", &value)?.into());
        }
        Ok(out)
    }

    /// Moves an event on `reason`; refused (nothing written) when the
    /// lifecycle forbids it. Entering PendingAccount writes the payment
    /// instruction to the outbox, visible at once, in the same batch;
    /// `next_due_ms` is when the reconciler next looks at the event.
    pub fn transition(
        &self,
        id: &str,
        reason: Reason,
        evidence: Option<Evidence>,
        now_ms: u64,
        next_due_ms: u64,
    ) -> StoreResult<Event> {
        let moves = [Move {
            id: id.to_owned(),
            reason,
            evidence,
            proof: None,
        }];
        self.transition_many(&moves, now_ms, next_due_ms)?
            .pop()
            .unwrap_or_else(|| Err(StoreError::NotFound(id.to_owned())))
    }

    /// Applies many moves in **one** write batch (one fsync for a whole
    /// block's confirmations). Each move is checked on its own: a refused
    /// move is reported in its slot and contributes nothing to the batch;
    /// the others are written together, atomically. The outer error is a
    /// store failure, in which case nothing was written.
    pub fn transition_many(
        &self,
        moves: &[Move],
        now_ms: u64,
        next_due_ms: u64,
    ) -> StoreResult<Vec<StoreResult<Event>>> {
        let mut guard = self.lock();
        let mut pending = self.begin(&guard);
        let mut staged = HashSet::new();
        let mut blocks_staged = HashSet::new();
        let mut results = Vec::with_capacity(moves.len());
        for one in moves {
            let Some((event, provenance)) = self.get_with_provenance(&one.id)? else {
                results.push(Err(StoreError::NotFound(one.id.clone())));
                continue;
            };
            // Receipts carry their own checks (`post_receipt`), and an event
            // moves at most once per batch.
            if one.reason == Reason::Receipt || !staged.insert(one.id.clone()) {
                results.push(Err(StoreError::Illegal {
                    id: one.id.clone(),
                    source: IllegalMove {
                        from: event.state,
                        reason: one.reason,
                    },
                }));
                continue;
            }
            let result = self.stage_transition(
                &mut pending,
                (event, provenance),
                one.reason,
                one.evidence.clone(),
                now_ms,
                next_due_ms,
            )?;
            if let (Ok(_), Some(proof)) = (&result, &one.proof) {
                self.stage_proof(&mut pending, &mut blocks_staged, &one.id, proof)?;
            }
            results.push(result);
        }
        if pending.transitions > 0 {
            self.commit(&mut guard, pending)?;
        }
        Ok(results)
    }

    /// Stages one move into `pending`; the inner error is a refused move
    /// (nothing staged), the outer a store failure.
    ///
    /// A move on [`Reason::Succeeded`] is the confirmer's word that the
    /// finalized transfer succeeded *and* commits to the event (it checks an
    /// unverified commitment before it asks for this move), so the record
    /// leaves Registered with its commitment verified.
    fn stage_transition(
        &self,
        pending: &mut Pending,
        (mut event, mut provenance): (Event, Provenance),
        reason: Reason,
        evidence: Option<Evidence>,
        now_ms: u64,
        next_due_ms: u64,
    ) -> StoreResult<StoreResult<Event>> {
        let from = event.state;
        let to = match next_state(from, reason) {
            Ok(to) => to,
            Err(source) => {
                return Ok(Err(StoreError::Illegal {
                    id: event.id,
                    source,
                }))
            }
        };
        let id = event.id.clone();
        let due = Some(next_due_ms).filter(|_| !to.is_final());
        self.move_indexes(pending, &event, to, now_ms, due)?;
        event.state = to;
        event.state_since_ms = now_ms;
        event.due_at_ms = due;
        event.evidence = evidence.clone();
        if to == State::PendingAccount {
            let message = BusMessage {
                message_id: id.clone(),
                event_id: id.clone(),
                tx_hash: event.tx_hash,
                block_hash: evidence.as_ref().and_then(|e| e.block_hash),
                block_number: evidence.as_ref().map(|e| e.block_number).unwrap_or(0),
                payment: event.payment.clone(),
                attempt: 0,
                // The bus signs each delivery (see `crate::bus`).
                signature: None,
            };
            self.stage_outbox(pending, &message, now_ms)?;
        }
        if reason == Reason::Succeeded {
            provenance.commitment = Commitment::Verified;
        }
        self.stage_event(pending, &event, &provenance)?;
        self.append_transition(
            pending,
            provenance.registered_by.as_deref(),
            Transition {
                seq: 0,
                event_id: id,
                at_ms: now_ms,
                from: Some(from),
                to,
                reason: Some(reason),
                evidence,
                payment_reference: None,
            },
        )?;
        Ok(Ok(event))
    }

    /// Moves the `by_state` and `due` entries of `event` to `to`.
    fn move_indexes(
        &self,
        pending: &mut Pending,
        event: &Event,
        to: State,
        now_ms: u64,
        due_ms: Option<u64>,
    ) -> StoreResult<()> {
        let by_state = self.cf(CF_BY_STATE)?;
        let due = self.cf(CF_DUE)?;
        pending.batch.delete_cf(
            by_state,
            timed_key(event.state, event.state_since_ms, &event.id),
        );
        self.stage_index_put(
            pending,
            Range::ByState(to),
            &timed_key(to, now_ms, &event.id),
        )?;
        if let Some(old) = event.due_at_ms {
            pending
                .batch
                .delete_cf(due, timed_key(event.state, old, &event.id));
        }
        if let Some(new) = due_ms {
            self.stage_index_put(pending, Range::Due(to), &timed_key(to, new, &event.id))?;
        }
        Ok(())
    }

    /// Moves the `due` entry of `event`, still in its state, to `due_ms`.
    fn stage_due(&self, pending: &mut Pending, event: &mut Event, due_ms: u64) -> StoreResult<()> {
        let due = self.cf(CF_DUE)?;
        if let Some(old) = event.due_at_ms {
            pending
                .batch
                .delete_cf(due, timed_key(event.state, old, &event.id));
        }
        self.stage_index_put(
            pending,
            Range::Due(event.state),
            &timed_key(event.state, due_ms, &event.id),
        )?;
        event.due_at_ms = Some(due_ms);
        Ok(())
    }

    /// Records the bridge's (already verified) receipt: PendingAccount →
    /// Completed, the outbox entry removed, in one batch. A receipt equal to
    /// the recorded one returns the event with `false` (nothing written).
    ///
    /// A `"failed"` receipt moves nothing: it is recorded on the PendingAccount
    /// event as its [`PaymentFailure`] (no transition; the outbox entry and
    /// the reconciler's resend schedule stay as they are, so the instruction
    /// keeps coming back until it is paid). For an event in any other state
    /// it is refused like any receipt.
    pub fn post_receipt(
        &self,
        receipt: &PaymentReceipt,
        now_ms: u64,
    ) -> StoreResult<(Event, bool)> {
        let mut results = self.post_receipts(std::slice::from_ref(receipt), now_ms)?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("no result for a receipt".into())))
    }

    /// [`EventStore::post_receipt`] for many receipts in one atomic write:
    /// one result per receipt, in order. A receipt refused for its event's
    /// sake (unknown id, wrong state, conflicting reference) is refused
    /// alone; a database failure fails the whole call and writes nothing.
    pub fn post_receipts(
        &self,
        receipts: &[PaymentReceipt],
        now_ms: u64,
    ) -> StoreResult<Vec<StoreResult<(Event, bool)>>> {
        let mut guard = self.lock();
        let mut pending = self.begin(&guard);
        let mut staged: HashMap<String, (Event, Provenance)> = HashMap::new();
        let mut results = Vec::with_capacity(receipts.len());
        let mut wrote = false;
        for receipt in receipts {
            match self.stage_receipt(&mut pending, &mut staged, receipt, now_ms) {
                Ok((event, written)) => {
                    wrote |= written;
                    results.push(Ok((event, written)));
                }
                Err(
                    e @ (StoreError::NotFound(_)
                    | StoreError::NotAwaitingReceipt { .. }
                    | StoreError::ReceiptConflict { .. }
                    | StoreError::Illegal { .. }),
                ) => results.push(Err(e)),
                Err(fatal) => return Err(fatal),
            }
        }
        if wrote {
            self.commit(&mut guard, pending)?;
        }
        Ok(results)
    }

    /// Stages one receipt into `pending`; `staged` holds the events this
    /// batch changed already. Refusals are decided before anything is
    /// staged.
    fn stage_receipt(
        &self,
        pending: &mut Pending,
        staged: &mut HashMap<String, (Event, Provenance)>,
        receipt: &PaymentReceipt,
        now_ms: u64,
    ) -> StoreResult<(Event, bool)> {
        let id = receipt.event_id.as_str();
        let (mut event, provenance) = match staged.get(id) {
            Some(record) => record.clone(),
            None => self.must_get_with_provenance(id)?,
        };
        if receipt.is_failure() {
            if event.state != State::PendingAccount {
                return Err(StoreError::NotAwaitingReceipt {
                    id: id.to_owned(),
                    state: event.state,
                });
            }
            let reports = event
                .payment_failure
                .as_ref()
                .map_or(0, |f| f.reports)
                .saturating_add(1);
            event.payment_failure = Some(PaymentFailure {
                reason: receipt.reason.clone().unwrap_or_default(),
                payment_reference: receipt.payment_reference.clone(),
                at_ms: now_ms,
                reports,
            });
            self.stage_event(pending, &event, &provenance)?;
            staged.insert(id.to_owned(), (event.clone(), provenance));
            return Ok((event, true));
        }
        if let Some(existing) = &event.receipt {
            return if existing.payment_reference == receipt.payment_reference
                && existing.outcome == receipt.outcome
            {
                Ok((event, false))
            } else {
                Err(StoreError::ReceiptConflict {
                    id: id.to_owned(),
                    existing: existing.payment_reference.clone(),
                })
            };
        }
        if event.state != State::PendingAccount {
            return Err(StoreError::NotAwaitingReceipt {
                id: id.to_owned(),
                state: event.state,
            });
        }
        let from = event.state;
        let to = next_state(from, Reason::Receipt).map_err(|source| StoreError::Illegal {
            id: id.to_owned(),
            source,
        })?;
        self.move_indexes(pending, &event, to, now_ms, None)?;
        self.stage_settle(pending, id)?;
        event.state = to;
        event.state_since_ms = now_ms;
        event.due_at_ms = None;
        event.receipt = Some(receipt.clone());
        event.payment_failure = None;
        self.stage_event(pending, &event, &provenance)?;
        self.append_transition(
            pending,
            provenance.registered_by.as_deref(),
            Transition {
                seq: 0,
                event_id: id.to_owned(),
                at_ms: now_ms,
                from: Some(from),
                to,
                reason: Some(Reason::Receipt),
                evidence: None,
                payment_reference: Some(receipt.payment_reference.clone()),
            },
        )?;
        staged.insert(id.to_owned(), (event.clone(), provenance));
        Ok((event, true))
    }

    /// Sets when the reconciler next looks at events still in `state`, in
    /// one write: each `(id, due_ms)` gets its next check at `due_ms` and
    /// one more undecided check (Registered). Unknown or moved-on events are skipped; an
    /// id given twice is rescheduled once, at its first `due_ms`.
    pub fn reschedule_many(&self, due: &[(String, u64)], state: State) -> StoreResult<()> {
        if due.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        let mut pending = self.begin(&guard);
        let mut seen = std::collections::HashSet::with_capacity(due.len());
        for (id, due_ms) in due {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let Some((mut event, provenance)) = self.get_with_provenance(id)? else {
                continue;
            };
            if event.state != state {
                continue;
            }
            self.stage_due(&mut pending, &mut event, *due_ms)?;
            event.checks = event.checks.saturating_add(1);
            self.stage_event(&mut pending, &event, &provenance)?;
        }
        self.commit(&mut guard, pending)
    }

    /// The reconciler's record of a resend check of a PendingAccount event,
    /// after it handed the instruction to the bus: `sent` is the generation
    /// the bus accepted as a new send (none when the bus still held the
    /// message, or nothing was owed any more). A send counts as one more
    /// resend (`resends` becomes the generation: recording the same send
    /// twice counts it once); either way the next look is at
    /// `next_due(resends)`. Does nothing if the event has left
    /// PendingAccount meanwhile. Returns whether a resend was counted.
    pub fn record_resend(
        &self,
        id: &str,
        sent: Option<u32>,
        next_due: impl Fn(u32) -> u64,
    ) -> StoreResult<bool> {
        let mut guard = self.lock();
        let (mut event, provenance) = self.must_get_with_provenance(id)?;
        if event.state != State::PendingAccount {
            return Ok(false);
        }
        let counted = match sent {
            Some(generation) if generation > event.resends => {
                event.resends = generation;
                true
            }
            _ => false,
        };
        let mut pending = self.begin(&guard);
        let due_ms = next_due(event.resends);
        self.stage_due(&mut pending, &mut event, due_ms)?;
        self.stage_event(&mut pending, &event, &provenance)?;
        self.commit(&mut guard, pending)?;
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::*;

    #[test]
    fn register_is_idempotent_and_conflicts_are_refused() {
        let (_dir, store) = open();
        let (event, created) = store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        assert!(created);
        assert_eq!(event.state, State::Registered);
        let before = snapshot(&store);
        let (again, created) = store
            .register(&registration("e1", 1), 11, 21)
            .expect("again");
        assert!(!created);
        assert_eq!(again, event);
        let mut other = registration("e1", 1);
        other.payment.amount = "101".into();
        assert!(matches!(
            store.register(&other, 12, 22),
            Err(StoreError::IdConflict(_))
        ));
        assert!(matches!(
            store.register(&registration("e2", 1), 12, 22),
            Err(StoreError::TxConflict { .. })
        ));
        assert_eq!(snapshot(&store), before);
    }

    #[test]
    fn illegal_moves_write_nothing() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        // Registered cannot take a receipt.
        let before = snapshot(&store);
        assert!(store
            .transition("e1", Reason::Receipt, None, 11, 30)
            .is_err());
        let receipt = PaymentReceipt::sign(&lockstep_runtime::Keypair::dev("bridge"), "e1", "p1");
        assert!(matches!(
            store.post_receipt(&receipt, 11),
            Err(StoreError::NotAwaitingReceipt { .. })
        ));
        assert_eq!(snapshot(&store), before);

        store
            .transition("e1", Reason::Failed, Some(evidence()), 12, 30)
            .expect("cancel");
        let before = snapshot(&store);
        for reason in Reason::ALL {
            assert!(matches!(
                store.transition("e1", reason, Some(evidence()), 13, 30),
                Err(StoreError::Illegal { .. })
            ));
        }
        assert!(store.post_receipt(&receipt, 13).is_err());
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.history("e1").expect("history").len(), 2);
    }

    #[test]
    fn failure_receipt_is_recorded_without_a_move_and_cleared_by_payment() {
        let (_dir, store) = open();
        let key = lockstep_runtime::Keypair::dev("bridge");
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        // Not PendingAccount yet: refused, nothing written.
        let early = PaymentReceipt::sign_failure(&key, "e1", "p1", "insufficient funds");
        let before = snapshot(&store);
        assert!(matches!(
            store.post_receipt(&early, 11),
            Err(StoreError::NotAwaitingReceipt { .. })
        ));
        assert_eq!(snapshot(&store), before);
        store
            .transition("e1", Reason::Succeeded, Some(evidence()), 12, 1000)
            .expect("succeed");
        let seq = *store.watch_seq().borrow();
        for (n, at) in [(1, 20), (2, 30)] {
            let (event, written) = store.post_receipt(&early, at).expect("failure");
            assert!(written);
            assert_eq!(event.state, State::PendingAccount);
            let failure = event.payment_failure.expect("failure recorded");
            assert_eq!(failure.reason, "insufficient funds");
            assert_eq!((failure.at_ms, failure.reports), (at, n));
        }
        // No transition, and the instruction stays in the bus.
        assert_eq!(*store.watch_seq().borrow(), seq);
        assert_eq!(store.bus_depth().expect("depth"), 1);
        let stored = store.get("e1").expect("get").expect("event");
        assert_eq!(stored.state, State::PendingAccount);
        assert!(stored.payment_failure.is_some());

        let paid = PaymentReceipt::sign(&key, "e1", "p1");
        let (done, written) = store.post_receipt(&paid, 40).expect("paid");
        assert!(written);
        assert_eq!(done.state, State::Completed);
        assert_eq!(done.payment_failure, None);
        // A failure after completion is refused and changes nothing.
        let before = snapshot(&store);
        assert!(matches!(
            store.post_receipt(&early, 50),
            Err(StoreError::NotAwaitingReceipt { .. })
        ));
        assert_eq!(snapshot(&store), before);
    }

    #[test]
    fn many_moves_in_one_batch_refuse_only_the_illegal_ones() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        store
            .register(&registration("e2", 2), 10, 20)
            .expect("register");
        let move_of = |id: &str, reason| Move {
            id: id.into(),
            reason,
            evidence: Some(evidence()),
            proof: None,
        };
        let results = store
            .transition_many(
                &[
                    move_of("e1", Reason::Succeeded),
                    move_of("e1", Reason::Failed),
                    move_of("e2", Reason::Receipt),
                    move_of("nope", Reason::Failed),
                    move_of("e2", Reason::Expired),
                ],
                30,
                1000,
            )
            .expect("batch");
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, false, true]);
        assert_eq!(
            store.get("e1").expect("get").expect("e1").state,
            State::PendingAccount
        );
        assert_eq!(
            store.get("e2").expect("get").expect("e2").state,
            State::Cancelled
        );
        let seqs: Vec<u64> = store
            .transitions_from(1, 10)
            .expect("feed")
            .iter()
            .map(|t| t.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(store.bus_depth().expect("depth"), 1);
    }

    #[test]
    fn a_history_range_reads_one_event_between_two_seqs() {
        let (_dir, store) = open();
        // "e1" and "e10": one id a prefix of the other, interleaved seqs.
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        store
            .register(&registration("e10", 2), 10, 20)
            .expect("register");
        store
            .transition("e10", Reason::Succeeded, Some(evidence()), 11, 1000)
            .expect("succeed");
        store
            .transition("e1", Reason::Failed, Some(evidence()), 12, 1000)
            .expect("cancel");
        let seqs = |id: &str, from, to, limit| -> Vec<u64> {
            store
                .history_range(id, from, to, limit)
                .expect("range")
                .iter()
                .map(|t| t.seq)
                .collect()
        };
        assert_eq!(seqs("e1", 0, u64::MAX, usize::MAX), [1, 4]);
        assert_eq!(seqs("e10", 0, u64::MAX, usize::MAX), [2, 3]);
        assert_eq!(seqs("e1", 2, u64::MAX, 10), [4]);
        assert_eq!(seqs("e1", 1, 3, 10), [1]);
        assert_eq!(seqs("e1", 1, 4, 1), [1]);
        assert_eq!(seqs("e1", 5, 9, 10), Vec::<u64>::new());
        assert_eq!(seqs("e1", 4, 1, 10), Vec::<u64>::new());
        assert_eq!(seqs("nope", 0, u64::MAX, 10), Vec::<u64>::new());
        let history = store.history_range("e1", 4, 4, 10).expect("range");
        assert_eq!(history, store.history("e1").expect("history")[1..]);
    }

    #[test]
    fn group_registration_checks_each_against_the_others() {
        let (_dir, store) = open();
        store
            .register(&registration("old", 9), 5, 20)
            .expect("register");
        let mut changed = registration("a", 1);
        changed.payment.amount = "5".into();
        let results = store
            .register_many(
                &[
                    registration("a", 1),
                    registration("a", 1),
                    changed,
                    registration("b", 1),
                    registration("old", 9),
                    registration("c", 9),
                    registration("d", 4),
                ],
                10,
                20,
            )
            .expect("group");
        let summary: Vec<Option<bool>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|(_, new)| *new))
            .collect();
        assert_eq!(
            summary,
            [
                Some(true),
                Some(false),
                None,
                None,
                Some(false),
                None,
                Some(true)
            ]
        );
        assert!(matches!(results[2], Err(StoreError::IdConflict(_))));
        assert!(matches!(results[3], Err(StoreError::TxConflict { .. })));
        let stats = store.stats(10, 1000).expect("stats");
        assert_eq!((stats.registered, stats.last_seq), (3, 3));
    }

    #[test]
    fn an_event_is_first_looked_at_by_its_expiry_when_that_comes_before_the_grace_period() {
        let (_dir, store) = open();
        let soon = Submission {
            check_by_ms: Some(15),
            ..verified(registration("soon", 1))
        };
        let late = Submission {
            check_by_ms: Some(500),
            ..verified(registration("late", 2))
        };
        let plain = verified(registration("plain", 3));
        for result in store
            .register_checked(&[soon, late, plain], 10, 40)
            .expect("register")
        {
            result.expect("registered");
        }
        let due_at = |id: &str| store.get(id).expect("get").expect(id).due_at_ms;
        assert_eq!(
            (due_at("soon"), due_at("late"), due_at("plain")),
            (Some(15), Some(40), Some(40))
        );
        // The reconciler's list holds the early one alone until the grace
        // period ends.
        assert_eq!(store.due(State::Registered, 20, 10).expect("due"), ["soon"]);
        let mut all = store.due(State::Registered, 40, 10).expect("due");
        all.sort();
        assert_eq!(all, ["late", "plain", "soon"]);
    }

    #[test]
    fn an_unverified_commitment_survives_rewrites_until_the_confirmer_decides() {
        let (_dir, store) = open();
        store
            .register(&registration("e1", 1), 10, 20)
            .expect("register");
        store
            .register_checked(&[verified(registration("e2", 2))], 10, 20)
            .expect("register")
            .pop()
            .expect("one result")
            .expect("registered");
        let commitment = |id: &str| store.get_with_commitment(id).expect("get").expect(id).1;
        assert_eq!(commitment("e1"), Commitment::Unverified);
        assert_eq!(commitment("e2"), Commitment::Verified);
        // The same event again, now with its (verified) transfer: the same
        // event, and what was recorded first stays.
        let again = store
            .register_checked(&[verified(registration("e1", 1))], 11, 21)
            .expect("register")
            .pop()
            .expect("one result")
            .expect("idempotent");
        assert!(!again.1);
        assert_eq!(commitment("e1"), Commitment::Unverified);
        // An undecided check rewrites the record: the flag stays.
        store
            .reschedule_many(&[("e1".into(), 30)], State::Registered)
            .expect("reschedule");
        assert_eq!(commitment("e1"), Commitment::Unverified);
        assert_eq!(store.get("e1").expect("get").expect("e1").checks, 1);

        // Not committed: Cancelled, and nothing in the outbox.
        store
            .register(&registration("e3", 3), 10, 20)
            .expect("register");
        let cancelled = store
            .transition("e3", Reason::NotCommitted, Some(evidence()), 40, 1000)
            .expect("cancel");
        assert_eq!(cancelled.state, State::Cancelled);
        assert_eq!(store.bus_depth().expect("depth"), 0);
        let history = store.history("e3").expect("history");
        assert_eq!(history[1].reason, Some(Reason::NotCommitted));

        // The confirmer moves on Succeeded only once it has checked.
        store
            .transition("e1", Reason::Succeeded, Some(evidence()), 50, 1000)
            .expect("succeed");
        assert_eq!(commitment("e1"), Commitment::Verified);
        assert_eq!(store.bus_depth().expect("depth"), 1);
    }

    #[test]
    fn records_written_in_the_old_format_are_read() {
        let (_dir, store) = open();
        // Byte for byte what the store wrote before it had its own record
        // types (see `records` for every field).
        let tx = format!("0x{}", "01".repeat(32));
        let event = format!(
            concat!(
                r#"{{"id":"e1","txHash":"{tx}","validUntil":100,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"100","currency":"EUR"}},"#,
                r#""state":"Registered","createdAtMs":10,"stateSinceMs":10,"dueAtMs":20,"#,
                r#""checks":0,"resends":0}}"#
            ),
            tx = tx
        );
        put_raw(&store, CF_EVENTS, b"e1", event.as_bytes());
        let expected = Event {
            id: "e1".into(),
            tx_hash: Hash([1; 32]),
            valid_until: 100,
            payment: registration("e1", 1).payment,
            state: State::Registered,
            created_at_ms: 10,
            state_since_ms: 10,
            due_at_ms: Some(20),
            checks: 0,
            resends: 0,
            evidence: None,
            receipt: None,
            payment_failure: None,
        };
        assert_eq!(store.get("e1").expect("get"), Some(expected));

        // And what it writes today for a registration with its signed
        // transfer is the same bytes.
        let (_dir, fresh) = open();
        fresh
            .register_checked(&[verified(registration("e1", 1))], 10, 20)
            .expect("register")
            .pop()
            .expect("one result")
            .expect("registered");
        let written = fresh
            .db
            .get_cf(fresh.cf(CF_EVENTS).expect("cf"), b"e1")
            .expect("get");
        assert_eq!(written.as_deref(), Some(event.as_bytes()));
        let transition = fresh
            .db
            .get_cf(fresh.cf(CF_TRANSITIONS).expect("cf"), 1u64.to_be_bytes())
            .expect("get");
        assert_eq!(
            transition.as_deref(),
            Some(
                br#"{"seq":1,"eventId":"e1","atMs":10,"from":null,"to":"Registered","reason":null}"#
                    .as_slice()
            )
        );
    }
}
