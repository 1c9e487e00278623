//! The event store: RocksDB, one column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `events` | event id | [`Event`] (JSON) |
//! | `by_tx` | tx hash (32 bytes) | event id |
//! | `by_state` | state tag ‖ entered-at ms (BE) ‖ event id | — |
//! | `due` | state tag ‖ due ms (BE) ‖ event id | — (reconciler's work list) |
//! | `transitions` | seq (BE) | [`Transition`] (JSON): the global feed |
//! | `history` | event id ‖ 0x00 ‖ seq (BE) | — (points into `transitions`) |
//! | `outbox` | event id | [`OutboxEntry`] (JSON) |
//! | `ready` | visible-at ms (BE) ‖ event id | — (the bus queue) |
//! | `leases` | lease id | [`Lease`] (JSON) |
//! | `meta` | name | counters, last processed height |
//!
//! Invariants this module keeps:
//!
//! - every change is **one** `WriteBatch` (synced when so configured): an
//!   event, its indexes, its history entry, its counters and its outbox entry
//!   change together or not at all, so a crash leaves the old or the new
//!   version, never half;
//! - every state change goes through [`next_state`]; an illegal move returns
//!   an error before anything is written;
//! - writers are serialised by one mutex (read-check-write must not
//!   interleave); readers read the database directly.
//!
//! Event ids never contain 0x00 ([`lockstep_api::event::check_event_id`]), which
//! keeps the `history` keys unambiguous.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use lockstep_runtime::{BlockNumber, Hash};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use lockstep_api::bus::BusMessage;
pub use lockstep_api::bus::MAX_PULL;
use lockstep_api::event::{
    Event, Evidence, PaymentFailure, PaymentReceipt, Registration, Transition,
};
use lockstep_api::lifecycle::{next_state, IllegalMove, Reason, State};
pub use lockstep_api::offchain::{Page, Stats, MAX_PAGE};

const CF_EVENTS: &str = "events";
const CF_BY_TX: &str = "by_tx";
const CF_BY_STATE: &str = "by_state";
const CF_DUE: &str = "due";
const CF_TRANSITIONS: &str = "transitions";
const CF_HISTORY: &str = "history";
const CF_OUTBOX: &str = "outbox";
const CF_READY: &str = "ready";
const CF_LEASES: &str = "leases";
const CF_META: &str = "meta";
const ALL_CFS: [&str; 10] = [
    CF_EVENTS,
    CF_BY_TX,
    CF_BY_STATE,
    CF_DUE,
    CF_TRANSITIONS,
    CF_HISTORY,
    CF_OUTBOX,
    CF_READY,
    CF_LEASES,
    CF_META,
];

const META_LAST_HEIGHT: &[u8] = b"last_height";
const META_LEASE_SEQ: &[u8] = b"lease_seq";

/// Most index entries one list or stats call scans.
const MAX_SCAN: usize = 100_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    /// Stored data does not decode or an index is inconsistent.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// No event has this id.
    #[error("no event with id {0:?}")]
    NotFound(String),
    /// The id is registered with another payload.
    #[error("event {0:?} is already registered with a different payload")]
    IdConflict(String),
    /// The tx hash is registered under another id.
    #[error("tx {tx} is already registered as event {id:?}")]
    TxConflict {
        /// The hash.
        tx: Hash,
        /// The event holding it.
        id: String,
    },
    /// The lifecycle forbids the move.
    #[error("event {id:?}: {source}")]
    Illegal {
        /// The event.
        id: String,
        /// The refused move.
        source: IllegalMove,
    },
    /// A receipt for an event that is not awaiting one.
    #[error("event {id:?} is {state}, not PendingAccount: a receipt is not accepted")]
    NotAwaitingReceipt {
        /// The event.
        id: String,
        /// Its state.
        state: State,
    },
    /// A second receipt with another payment reference.
    #[error("event {id:?} is already completed with payment reference {existing:?}")]
    ReceiptConflict {
        /// The event.
        id: String,
        /// The recorded reference.
        existing: String,
    },
    /// No lease has this id (never issued, fully acked, or pruned).
    #[error("unknown lease {0:?}")]
    UnknownLease(String),
    /// The lease's deadline has passed; its messages are back in the queue.
    #[error("lease {0:?} has expired; its messages were returned to the queue")]
    LeaseExpired(String),
    /// A message id that the lease does not hold.
    #[error("lease {lease:?} does not hold message {message:?}")]
    NotInLease {
        /// The lease.
        lease: String,
        /// The message.
        message: String,
    },
    /// A list cursor that this store did not hand out.
    #[error("invalid cursor")]
    BadCursor,
}

/// The store's `Result`.
pub type StoreResult<T> = Result<T, StoreError>;

/// A message's place in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The message.
    pub message: BusMessage,
    /// When it is (or becomes again) visible to `pull`.
    pub visible_at_ms: u64,
    /// The lease holding it, if any.
    pub lease: Option<String>,
    /// Acknowledged by a consumer: out of the queue until the reconciler
    /// re-sends it (no receipt in time) or a receipt removes it.
    pub acked: bool,
}

/// A lease: messages handed to one consumer until a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The lease id.
    pub lease_id: String,
    /// After this (ms since the Unix epoch), the messages come back.
    pub deadline_ms: u64,
    /// Ids of the messages not yet acked.
    pub messages: Vec<String>,
}

/// One requested move, for [`EventStore::transition_many`].
#[derive(Debug, Clone)]
pub struct Move {
    /// The event.
    pub id: String,
    /// Why it moves.
    pub reason: Reason,
    /// The quorum's evidence.
    pub evidence: Option<Evidence>,
}

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

#[derive(Debug, Clone, Copy)]
struct Counters {
    next_seq: u64,
    next_lease: u64,
    counts: [u64; 4],
}

/// The byte that starts a state's keys in the indexes. Part of the
/// on-disk format: never renumber.
fn state_tag(state: State) -> u8 {
    match state {
        State::Registered => 1,
        State::PendingAccount => 2,
        State::Completed => 3,
        State::Cancelled => 4,
    }
}

/// The state a tag stands for.
fn state_from_tag(tag: u8) -> Option<State> {
    State::ALL.into_iter().find(|s| state_tag(*s) == tag)
}

fn count_index(state: State) -> usize {
    usize::from(state_tag(state) - 1)
}

fn count_key(state: State) -> Vec<u8> {
    [b"count/".as_slice(), state.name().as_bytes()].concat()
}

fn timed_key(state: State, ms: u64, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + id.len());
    key.push(state_tag(state));
    key.extend_from_slice(&ms.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

fn split_timed_key(key: &[u8]) -> Option<(State, u64, &str)> {
    let state = state_from_tag(*key.first()?)?;
    let ms = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let id = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((state, ms, id))
}

fn ready_key(ms: u64, id: &str) -> Vec<u8> {
    [ms.to_be_bytes().as_slice(), id.as_bytes()].concat()
}

fn history_key(id: &str, seq: u64) -> Vec<u8> {
    [id.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain structs always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The event store. See the module docs for the layout.
#[derive(Debug)]
pub struct EventStore {
    db: DB,
    sync: bool,
    writer: Mutex<Counters>,
    feed: watch::Sender<u64>,
}

/// A batch under construction, with the counters it will commit.
struct Pending {
    batch: WriteBatch,
    counters: Counters,
    transitions: u64,
}

impl EventStore {
    /// Opens (or creates) the store at `path`. With `sync`, every write is
    /// fsynced before it is acknowledged, so it survives power loss, not only
    /// a process crash.
    pub fn open(path: &Path, sync: bool) -> StoreResult<EventStore> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let descriptors = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let mut store = EventStore {
            db,
            sync,
            writer: Mutex::new(Counters {
                next_seq: 1,
                next_lease: 1,
                counts: [0; 4],
            }),
            feed: watch::channel(0).0,
        };
        let counters = store.load_counters()?;
        store.feed = watch::channel(counters.next_seq - 1).0;
        store.writer = Mutex::new(counters);
        Ok(store)
    }

    fn load_counters(&self) -> StoreResult<Counters> {
        let mut counters = Counters {
            next_seq: 1,
            next_lease: 1,
            counts: [0; 4],
        };
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
        Ok(counters)
    }

    fn cf(&self, name: &str) -> StoreResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column family {name}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave a half-written batch
        // (batches are written whole), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, counters: &Counters) -> Pending {
        Pending {
            batch: WriteBatch::default(),
            counters: *counters,
            transitions: 0,
        }
    }

    fn commit(&self, guard: &mut Counters, pending: Pending) -> StoreResult<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        self.db.write_opt(pending.batch, &options)?;
        *guard = pending.counters;
        if pending.transitions > 0 {
            self.feed.send_replace(guard.next_seq - 1);
        }
        Ok(())
    }

    /// Appends a transition to the feed and the event's history, and moves
    /// the per-state counters.
    fn append_transition(
        &self,
        pending: &mut Pending,
        mut transition: Transition,
    ) -> StoreResult<Transition> {
        transition.seq = pending.counters.next_seq;
        pending.counters.next_seq += 1;
        pending.transitions += 1;
        if let Some(from) = transition.from {
            pending.counters.counts[count_index(from)] =
                pending.counters.counts[count_index(from)].saturating_sub(1);
            pending.batch.put_cf(
                self.cf(CF_META)?,
                count_key(from),
                encode(&pending.counters.counts[count_index(from)]),
            );
        }
        let to = transition.to;
        pending.counters.counts[count_index(to)] += 1;
        pending.batch.put_cf(
            self.cf(CF_META)?,
            count_key(to),
            encode(&pending.counters.counts[count_index(to)]),
        );
        pending.batch.put_cf(
            self.cf(CF_TRANSITIONS)?,
            transition.seq.to_be_bytes(),
            encode(&transition),
        );
        pending.batch.put_cf(
            self.cf(CF_HISTORY)?,
            history_key(&transition.event_id, transition.seq),
            [],
        );
        Ok(transition)
    }

    /// Receives the last sequence number each time transitions are written.
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// Registers an event, or returns the one registered under this id with
    /// the same payload (`false`: nothing was written). `recheck_at_ms` is
    /// when the reconciler should first look at it.
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

    /// Registers many events in **one** write batch (group commit: one
    /// fsync for all). Each is checked on its own, against the store and
    /// against the others of the group; a refused one is reported in its
    /// slot and contributes nothing. The outer error is a store failure, in
    /// which case nothing was written.
    pub fn register_many(
        &self,
        registrations: &[Registration],
        now_ms: u64,
        recheck_at_ms: u64,
    ) -> StoreResult<Vec<StoreResult<(Event, bool)>>> {
        let mut guard = self.lock();
        let mut pending = self.begin(&guard);
        let mut staged: HashMap<String, Event> = HashMap::new();
        let mut staged_tx: HashMap<Hash, String> = HashMap::new();
        let mut results = Vec::with_capacity(registrations.len());
        for registration in registrations {
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
            let event = Event {
                id: registration.id.clone(),
                tx_hash: registration.tx_hash,
                valid_until: registration.valid_until,
                payment: registration.payment.clone(),
                state: State::Registered,
                created_at_ms: now_ms,
                state_since_ms: now_ms,
                due_at_ms: Some(recheck_at_ms),
                checks: 0,
                resends: 0,
                evidence: None,
                receipt: None,
                payment_failure: None,
            };
            let id = event.id.as_str();
            pending
                .batch
                .put_cf(self.cf(CF_EVENTS)?, id, encode(&event));
            pending
                .batch
                .put_cf(self.cf(CF_BY_TX)?, event.tx_hash.as_bytes(), id);
            pending.batch.put_cf(
                self.cf(CF_BY_STATE)?,
                timed_key(State::Registered, now_ms, id),
                [],
            );
            pending.batch.put_cf(
                self.cf(CF_DUE)?,
                timed_key(State::Registered, recheck_at_ms, id),
                [],
            );
            self.append_transition(
                &mut pending,
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
        match self.db.get_cf(self.cf(CF_EVENTS)?, id)? {
            Some(bytes) => Ok(Some(decode("event", &bytes)?)),
            None => Ok(None),
        }
    }

    fn must_get(&self, id: &str) -> StoreResult<Event> {
        self.get(id)?
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
        let prefix = [id.as_bytes(), &[0]].concat();
        let mut out = Vec::new();
        let transitions = self.cf(CF_TRANSITIONS)?;
        for item in self.db.iterator_cf(
            self.cf(CF_HISTORY)?,
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (key, _) = item?;
            let Some(seq) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let bytes = self
                .db
                .get_cf(transitions, seq)?
                .ok_or_else(|| StoreError::Corrupt(format!("history of {id:?} points nowhere")))?;
            out.push(decode("transition", &bytes)?);
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
            out.push(decode("transition", &value)?);
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
        let mut staged = std::collections::HashSet::new();
        let mut results = Vec::with_capacity(moves.len());
        for one in moves {
            let Some(event) = self.get(&one.id)? else {
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
            results.push(self.stage_transition(
                &mut pending,
                event,
                one.reason,
                one.evidence.clone(),
                now_ms,
                next_due_ms,
            )?);
        }
        if pending.transitions > 0 {
            self.commit(&mut guard, pending)?;
        }
        Ok(results)
    }

    /// Stages one move into `pending`; the inner error is a refused move
    /// (nothing staged), the outer a store failure.
    fn stage_transition(
        &self,
        pending: &mut Pending,
        mut event: Event,
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
            let entry = OutboxEntry {
                message: BusMessage {
                    message_id: id.clone(),
                    event_id: id.clone(),
                    tx_hash: event.tx_hash,
                    block_hash: evidence.as_ref().and_then(|e| e.block_hash),
                    block_number: evidence.as_ref().map(|e| e.block_number).unwrap_or(0),
                    payment: event.payment.clone(),
                    attempt: 0,
                },
                visible_at_ms: now_ms,
                lease: None,
                acked: false,
            };
            pending
                .batch
                .put_cf(self.cf(CF_OUTBOX)?, &id, encode(&entry));
            pending
                .batch
                .put_cf(self.cf(CF_READY)?, ready_key(now_ms, &id), []);
        }
        pending
            .batch
            .put_cf(self.cf(CF_EVENTS)?, &id, encode(&event));
        self.append_transition(
            pending,
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
        pending
            .batch
            .put_cf(by_state, timed_key(to, now_ms, &event.id), []);
        if let Some(old) = event.due_at_ms {
            pending
                .batch
                .delete_cf(due, timed_key(event.state, old, &event.id));
        }
        if let Some(new) = due_ms {
            pending.batch.put_cf(due, timed_key(to, new, &event.id), []);
        }
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
        let mut staged: HashMap<String, Event> = HashMap::new();
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
        staged: &mut HashMap<String, Event>,
        receipt: &PaymentReceipt,
        now_ms: u64,
    ) -> StoreResult<(Event, bool)> {
        let id = receipt.event_id.as_str();
        let mut event = match staged.get(id) {
            Some(event) => event.clone(),
            None => self.must_get(id)?,
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
            pending
                .batch
                .put_cf(self.cf(CF_EVENTS)?, id, encode(&event));
            staged.insert(id.to_owned(), event.clone());
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
        if let Some(entry) = self.outbox_entry(id)? {
            if !entry.acked {
                pending
                    .batch
                    .delete_cf(self.cf(CF_READY)?, ready_key(entry.visible_at_ms, id));
            }
            pending.batch.delete_cf(self.cf(CF_OUTBOX)?, id);
        }
        event.state = to;
        event.state_since_ms = now_ms;
        event.due_at_ms = None;
        event.receipt = Some(receipt.clone());
        event.payment_failure = None;
        pending
            .batch
            .put_cf(self.cf(CF_EVENTS)?, id, encode(&event));
        self.append_transition(
            pending,
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
        staged.insert(id.to_owned(), event.clone());
        Ok((event, true))
    }

    /// Ids of events in `state` whose due time is at or before `now_ms`,
    /// earliest first, at most `limit`.
    pub fn due(&self, state: State, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        let start = [state_tag(state)];
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_DUE)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (key, _) = item?;
            let Some((s, due, id)) = split_timed_key(&key) else {
                return Err(StoreError::Corrupt("due key".into()));
            };
            if s != state || due > now_ms || out.len() >= limit {
                break;
            }
            out.push(id.to_owned());
        }
        Ok(out)
    }

    /// Sets when the reconciler next looks at an event still in `state`,
    /// counting one more undecided check (Registered). Does nothing if the
    /// event has moved on meanwhile.
    pub fn reschedule(&self, id: &str, state: State, due_ms: u64) -> StoreResult<()> {
        let mut guard = self.lock();
        let mut event = self.must_get(id)?;
        if event.state != state {
            return Ok(());
        }
        let mut pending = self.begin(&guard);
        let due = self.cf(CF_DUE)?;
        if let Some(old) = event.due_at_ms {
            pending.batch.delete_cf(due, timed_key(state, old, id));
        }
        pending.batch.put_cf(due, timed_key(state, due_ms, id), []);
        event.due_at_ms = Some(due_ms);
        event.checks = event.checks.saturating_add(1);
        pending
            .batch
            .put_cf(self.cf(CF_EVENTS)?, id, encode(&event));
        self.commit(&mut guard, pending)
    }

    /// The reconciler's re-send of a PendingAccount event's instruction. If
    /// a consumer acknowledged it but no receipt came, it goes back in the
    /// queue now; if it is still queued or leased, it is left alone. Either
    /// way the next look is at `next_due(resends)`. Returns whether it was
    /// re-queued.
    pub fn resend(
        &self,
        id: &str,
        now_ms: u64,
        next_due: impl Fn(u32) -> u64,
    ) -> StoreResult<bool> {
        let mut guard = self.lock();
        let mut event = self.must_get(id)?;
        if event.state != State::PendingAccount {
            return Ok(false);
        }
        let Some(mut entry) = self.outbox_entry(id)? else {
            return Err(StoreError::Corrupt(format!(
                "PendingAccount event {id:?} has no outbox entry"
            )));
        };
        let mut pending = self.begin(&guard);
        let requeue = entry.acked;
        if requeue {
            entry.acked = false;
            entry.lease = None;
            entry.visible_at_ms = now_ms;
            pending
                .batch
                .put_cf(self.cf(CF_READY)?, ready_key(now_ms, id), []);
            pending
                .batch
                .put_cf(self.cf(CF_OUTBOX)?, id, encode(&entry));
            event.resends = event.resends.saturating_add(1);
        }
        let due_ms = next_due(event.resends);
        let due = self.cf(CF_DUE)?;
        if let Some(old) = event.due_at_ms {
            pending
                .batch
                .delete_cf(due, timed_key(State::PendingAccount, old, id));
        }
        pending
            .batch
            .put_cf(due, timed_key(State::PendingAccount, due_ms, id), []);
        event.due_at_ms = Some(due_ms);
        pending
            .batch
            .put_cf(self.cf(CF_EVENTS)?, id, encode(&event));
        self.commit(&mut guard, pending)?;
        Ok(requeue)
    }

    fn outbox_entry(&self, id: &str) -> StoreResult<Option<OutboxEntry>> {
        match self.db.get_cf(self.cf(CF_OUTBOX)?, id)? {
            Some(bytes) => Ok(Some(decode("outbox entry", &bytes)?)),
            None => Ok(None),
        }
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
        let lease_id = format!("lease-{}", guard.next_lease);
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
            messages.push(entry.message);
        }
        let lease = Lease {
            lease_id,
            deadline_ms: deadline,
            messages: messages.iter().map(|m| m.message_id.clone()).collect(),
        };
        if messages.is_empty() {
            return Ok((lease, messages));
        }
        pending.counters.next_lease += 1;
        pending.batch.put_cf(
            self.cf(CF_META)?,
            META_LEASE_SEQ,
            encode(&pending.counters.next_lease),
        );
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
                    events.push(decode("event", &value)?);
                    last_key = Some(key.to_vec());
                }
            }
            Some(state) => {
                let start = match &cursor {
                    Some(key) if key.first() == Some(&state_tag(state)) => key.clone(),
                    Some(_) => return Err(StoreError::BadCursor),
                    None => vec![state_tag(state)],
                };
                let overdue_before = now_ms.saturating_sub(overdue_after_ms);
                for item in self
                    .db
                    .iterator_cf(
                        self.cf(CF_BY_STATE)?,
                        IteratorMode::From(&start, Direction::Forward),
                    )
                    .take(MAX_SCAN)
                {
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
            (guard.counts, guard.next_seq)
        };
        let by_state = self.cf(CF_BY_STATE)?;
        let oldest = |state: State| -> StoreResult<Option<u64>> {
            let start = [state_tag(state)];
            match self
                .db
                .iterator_cf(by_state, IteratorMode::From(&start, Direction::Forward))
                .next()
            {
                Some(item) => {
                    let (key, _) = item?;
                    Ok(split_timed_key(&key)
                        .filter(|(s, _, _)| *s == state)
                        .map(|(_, since, _)| now_ms.saturating_sub(since)))
                }
                None => Ok(None),
            }
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

    /// PendingAccount events older than the threshold.
    pub fn overdue_count(&self, now_ms: u64, overdue_after_ms: u64) -> StoreResult<u64> {
        let before = now_ms.saturating_sub(overdue_after_ms);
        let start = [state_tag(State::PendingAccount)];
        let mut count = 0;
        for item in self
            .db
            .iterator_cf(
                self.cf(CF_BY_STATE)?,
                IteratorMode::From(&start, Direction::Forward),
            )
            .take(MAX_SCAN)
        {
            let (key, _) = item?;
            match split_timed_key(&key) {
                Some((State::PendingAccount, since, _)) if since <= before => count += 1,
                _ => break,
            }
        }
        Ok(count)
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
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        self.db.put_cf_opt(
            self.cf(CF_META)?,
            META_LAST_HEIGHT,
            encode(&height),
            &options,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_tags_round_trip_and_are_distinct() {
        for state in State::ALL {
            assert_eq!(state_from_tag(state_tag(state)), Some(state));
        }
        assert_eq!(state_from_tag(0), None);
        assert_eq!(state_from_tag(5), None);
    }
    use lockstep_api::event::PaymentInstruction;

    fn registration(id: &str, tx: u8) -> Registration {
        Registration {
            id: id.into(),
            tx_hash: Hash([tx; 32]),
            valid_until: 100,
            payment: PaymentInstruction {
                payer: "bob".into(),
                payee: "alice".into(),
                amount: "100".into(),
                currency: "EUR".into(),
            },
        }
    }

    fn evidence() -> Evidence {
        Evidence {
            block_hash: Some(Hash([7; 32])),
            block_number: 5,
            outcome: Some(lockstep_runtime::Outcome::Success),
            confirmed_by: vec!["a".into(), "b".into()],
            nodes_asked: 3,
        }
    }

    fn open() -> (tempfile::TempDir, EventStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EventStore::open(dir.path(), false).expect("open");
        (dir, store)
    }

    /// Every key of every column family, to prove that nothing was written.
    fn snapshot(store: &EventStore) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for name in ALL_CFS {
            for item in store
                .db
                .iterator_cf(store.cf(name).expect("cf"), IteratorMode::Start)
            {
                let (k, v) = item.expect("read");
                out.push((name.to_owned(), k.to_vec(), v.to_vec()));
            }
        }
        out
    }

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
        assert!(store
            .resend("e1", 1000, |n| 1000 + u64::from(n) * 10)
            .expect("resend"));
        assert_eq!(store.pull(10, 100, 1001).expect("pull").1.len(), 1);
        assert!(store
            .due(State::PendingAccount, 1000, 10)
            .expect("due")
            .is_empty());
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
