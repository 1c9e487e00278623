//! The event store: RocksDB, one column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `events` | event id | [`StoredEvent`] (JSON) |
//! | `by_tx` | tx hash (32 bytes) | event id |
//! | `by_state` | state tag ‖ entered-at ms (BE) ‖ event id | — |
//! | `due` | state tag ‖ due ms (BE) ‖ event id | — (reconciler's work list) |
//! | `transitions` | seq (BE) | [`StoredTransition`] (JSON): the global feed |
//! | `history` | event id ‖ 0x00 ‖ seq (BE) | — (points into `transitions`) |
//! | `outbox` | event id | [`OutboxEntry`] (JSON) |
//! | `ready` | visible-at ms (BE) ‖ event id | — (the embedded bus queue) |
//! | `leases` | lease id | [`Lease`] (JSON) |
//! | `meta` | name | counters, last processed height |
//! | `blocks` | block hash | SCALE `(Header, Justification)`: a verified block's justified header |
//! | `proofs` | event id | SCALE: receipt, its Merkle path, the transfer's bytes (`proofs.rs`) |
//!
//! Invariants this module keeps:
//!
//! - every change is **one** `WriteBatch` (synced when so configured): an
//!   event, its indexes, its history entry, its counters and its outbox entry
//!   change together or not at all, so a crash leaves the old or the new
//!   version, never half;
//! - every state change goes through
//!   [`next_state`](lockstep_api::lifecycle::next_state); an illegal move returns
//!   an error before anything is written;
//! - an event has an outbox entry exactly while it is PendingAccount: the
//!   entry is written in the batch that moves it there and deleted in the
//!   batch that records its receipt;
//! - writers are serialised by one mutex (read-check-write must not
//!   interleave); readers read the database directly;
//! - the writer's in-memory counts of Registered events per registering
//!   credential (`holdings.rs`) change with the batch that changes what they
//!   count, once it is written, and are rebuilt from the `by_state` index
//!   at open;
//! - no read walks the history: the ranges consumed from their start
//!   (`ready`, and each state's part of `due` and `by_state`) are read from
//!   a floor below which everything is deleted (`floors.rs`), the bus depth
//!   is a counter kept by the batches that change the queue (`meta`), and
//!   the live leases are known to the writer (`queue.rs`); every other read
//!   is a point read, a prefix of one event, or a range of keys that are
//!   never deleted (`events`, `transitions`, the final states' `by_state`).
//!
//! Event ids never contain 0x00 ([`lockstep_api::event::check_event_id`]), which
//! keeps the `history` keys unambiguous.
//!
//! The values are the store's own record types ([`records`]), not the API's
//! wire types: the store converts at its boundary, so a change to a wire
//! type cannot change what is on disk without a change here.
//!
//! ## Layout
//!
//! - this file: opening, column families, the writer mutex and its batch,
//!   keys and the JSON encoding every part shares;
//! - [`records`]: the on-disk record types and their conversions;
//! - `events.rs`: registration, moves, receipts, history and the feed;
//! - `queue.rs`: the outbox and the embedded bus queue with its leases;
//! - `queries.rs`: `event_list`, stats, and the reconciler's due list;
//! - `floors.rs`: where the reads of the ranges consumed from their start
//!   begin;
//! - `meta.rs`: the per-state counters, the bus depth and the watcher's
//!   height;
//! - `holdings.rs`: how many events each credential holds in Registered;
//! - `proofs.rs`: what proves each event's outcome.

mod events;
mod floors;
mod holdings;
mod meta;
mod proofs;
mod queries;
mod queue;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use lockstep_runtime::Hash;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use lockstep_api::bus::MAX_PULL;
use lockstep_api::lifecycle::{IllegalMove, State};
pub use lockstep_api::offchain::{Page, Stats, MAX_PAGE};

pub use events::{Move, Registrant, Submission};
pub use proofs::{MoveProof, ProvenBlock};
pub use queries::ListQuery;
pub use queue::{PendingInstruction, Requeue};
pub use records::{Lease, OutboxEntry, Provenance, StoredEvent, StoredTransition};

use floors::Floors;
use holdings::HoldingChanges;
use meta::Counters;
use queue::LeaseChanges;

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
const CF_BLOCKS: &str = "blocks";
const CF_PROOFS: &str = "proofs";
const ALL_CFS: [&str; 12] = [
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
    CF_BLOCKS,
    CF_PROOFS,
];

/// Most index entries one list, stats or prune call scans.
const MAX_SCAN: usize = 100_000;

/// Most bytes of write-ahead log kept: past it, RocksDB flushes the column
/// families that keep the oldest log file alive. Without it, a column
/// family written rarely keeps every log file since its last flush (issue
/// 14: 390 MB of logs for 90,000 events).
const MAX_TOTAL_WAL: u64 = 64 << 20;
/// Memtable size of each column family before it is flushed.
const WRITE_BUFFER: usize = 16 << 20;
/// Most memtable bytes of all column families together (ten of them): past
/// it, the largest is flushed.
const DB_WRITE_BUFFER: usize = 128 << 20;
/// The column families whose keys are deleted as fast as they are written:
/// an SST file of theirs in which deletions dominate is compacted soon, so
/// that the tombstones go (RocksDB's compact-on-deletion collector: at
/// least `DELETIONS_TRIGGER` deletions in any `DELETIONS_WINDOW`
/// consecutive entries, or half of the file).
const CHURN_CFS: [&str; 5] = [CF_READY, CF_LEASES, CF_DUE, CF_BY_STATE, CF_OUTBOX];
const DELETIONS_WINDOW: usize = 1_000;
const DELETIONS_TRIGGER: usize = 500;
const DELETIONS_RATIO: f64 = 0.5;

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
    /// A store call run off the async workers did not finish (it panicked,
    /// or the runtime is shutting down).
    #[error("store task failed: {0}")]
    Task(String),
    /// The registering credential already holds as many events in
    /// Registered as it may.
    #[error(
        "credential {credential:?} holds {held} events in Registered, the most one credential may hold is {bound}: it may register more as its events are confirmed or cancelled"
    )]
    TooManyRegistered {
        /// The credential's name.
        credential: String,
        /// How many it holds.
        held: u64,
        /// How many it may hold.
        bound: u64,
    },
}

/// The store's `Result`.
pub type StoreResult<T> = Result<T, StoreError>;

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

/// The options of one column family.
fn cf_options(name: &str) -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(WRITE_BUFFER);
    options.set_max_write_buffer_number(2);
    if CHURN_CFS.contains(&name) {
        options.add_compact_on_deletion_collector_factory(
            DELETIONS_WINDOW,
            DELETIONS_TRIGGER,
            DELETIONS_RATIO,
        );
    }
    options
}

/// `by_state` and `due` keys: state tag ‖ ms (BE) ‖ event id.
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
    writer: Mutex<Writer>,
    feed: watch::Sender<u64>,
    /// Dropped last, once the database is closed ([`EventStore::on_close`]).
    closed: watch::Sender<()>,
}

/// Resolves once an [`EventStore`] is dropped and its database closed:
/// whoever waits on it may open the store again.
#[derive(Debug)]
pub struct StoreClosed(watch::Receiver<()>);

impl StoreClosed {
    /// Waits for the store's end (its last holder drops it).
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// What the writer keeps in memory between batches, under its mutex.
#[derive(Debug)]
struct Writer {
    /// The counters every batch commits.
    counters: Counters,
    /// Events in Registered per registering credential (`holdings.rs`).
    registered_by: HashMap<String, u64>,
    /// Where reads of the ranges consumed from their start begin
    /// (`floors.rs`).
    floors: Floors,
    /// The floors as the last batch wrote them.
    floors_on_disk: Floors,
    /// The leases not deleted yet: number → deadline (`queue.rs`).
    leases: BTreeMap<u64, u64>,
    /// Every lease numbered below it is deleted, as on disk (none: not
    /// written yet).
    lease_floor_on_disk: Option<u64>,
}

/// A batch under construction, with the counters it will commit.
struct Pending {
    batch: WriteBatch,
    counters: Counters,
    /// Changes of [`Writer::registered_by`], applied once written.
    holdings: HoldingChanges,
    /// The floors once this batch is written.
    floors: Floors,
    /// Changes of [`Writer::leases`], applied once written.
    leases: LeaseChanges,
    transitions: u64,
}

impl EventStore {
    /// Opens (or creates) the store at `path`. With `sync`, every write is
    /// fsynced before it is acknowledged, so it survives power loss, not only
    /// a process crash.
    ///
    /// Opening costs what the store holds now, not its history: the
    /// counters, floors and lease numbers are read from `meta`, the live
    /// leases and the Registered events one by one (a store written before
    /// these were kept is walked once, and what was rebuilt is written).
    pub fn open(path: &Path, sync: bool) -> StoreResult<EventStore> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_total_wal_size(MAX_TOTAL_WAL);
        options.set_db_write_buffer_size(DB_WRITE_BUFFER);
        let descriptors = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let store = EventStore {
            db,
            sync,
            writer: Mutex::new(Writer {
                counters: Counters::EMPTY,
                registered_by: HashMap::new(),
                floors: Floors::starts(),
                floors_on_disk: Floors::starts(),
                leases: BTreeMap::new(),
                lease_floor_on_disk: None,
            }),
            feed: watch::channel(0).0,
            closed: watch::channel(()).0,
        };
        let floors = store.load_floors()?;
        let counters = store.load_counters(&floors)?;
        let (leases, lease_floor_on_disk) = store.load_leases(counters.next_lease)?;
        {
            let mut writer = store.lock();
            writer.counters = counters;
            writer.floors = floors.clone();
            writer.floors_on_disk = floors;
            writer.leases = leases;
            writer.lease_floor_on_disk = lease_floor_on_disk;
        }
        let registered_by = store.load_holdings()?;
        store.lock().registered_by = registered_by;
        store.feed.send_replace(counters.next_seq - 1);
        Ok(store)
    }

    /// What resolves once this store is dropped (by every holder: the
    /// tasks, the RPC handlers and their calls still running off the async
    /// workers) and its database closed.
    pub fn on_close(&self) -> StoreClosed {
        StoreClosed(self.closed.subscribe())
    }

    /// Runs `f` on the store on tokio's blocking pool: what async code does
    /// with every write (each may wait for an fsync) and every scan, so that
    /// none holds up an async worker.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&EventStore) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn cf(&self, name: &str) -> StoreResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column family {name}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave a half-written batch
        // (batches are written whole), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, writer: &Writer) -> Pending {
        Pending {
            batch: WriteBatch::default(),
            counters: writer.counters,
            holdings: HoldingChanges::default(),
            floors: writer.floors.clone(),
            leases: LeaseChanges::default(),
            transitions: 0,
        }
    }

    fn write_options(&self) -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        options
    }

    /// Writes `pending` with what it changed of the floors and the bus
    /// depth, then makes its in-memory changes the writer's.
    fn commit(&self, writer: &mut Writer, mut pending: Pending) -> StoreResult<()> {
        self.stage_floors(&mut pending, &writer.floors_on_disk)?;
        if pending.counters.bus_depth != writer.counters.bus_depth {
            self.stage_bus_depth(&mut pending)?;
        }
        self.db.write_opt(pending.batch, &self.write_options())?;
        writer.counters = pending.counters;
        writer.floors_on_disk = pending.floors.clone();
        writer.floors = pending.floors;
        pending.holdings.apply(&mut writer.registered_by);
        pending.leases.apply(&mut writer.leases);
        if pending.transitions > 0 {
            self.feed.send_replace(writer.counters.next_seq - 1);
        }
        Ok(())
    }

    /// Receives the last sequence number each time transitions are written.
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }
}

/// Helpers the tests of every part share.
#[cfg(test)]
pub(crate) mod test_utils {
    use super::*;
    use lockstep_api::event::{Evidence, PaymentInstruction, Registration};
    use rocksdb::IteratorMode;

    pub(crate) fn registration(id: &str, tx: u8) -> Registration {
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

    /// A registration whose signed transfer was checked, by no credential.
    pub(crate) fn verified(registration: Registration) -> Submission {
        Submission {
            registration,
            commitment: lockstep_api::event::Commitment::Verified,
            registrant: None,
            check_by_ms: None,
        }
    }

    /// A registration by hash, by credential `name` holding at most `max`.
    pub(crate) fn by(registration: Registration, name: &str, max: u64) -> Submission {
        Submission {
            registration,
            commitment: lockstep_api::event::Commitment::Unverified,
            registrant: Some(Registrant {
                name: name.into(),
                max_registered: max,
            }),
            check_by_ms: None,
        }
    }

    pub(crate) fn evidence() -> Evidence {
        Evidence {
            block_hash: Some(Hash([7; 32])),
            block_number: 5,
            outcome: Some(lockstep_runtime::Outcome::Success),
            confirmed_by: vec!["a".into(), "b".into()],
            nodes_asked: 3,
        }
    }

    pub(crate) fn open() -> (tempfile::TempDir, EventStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EventStore::open(dir.path(), false).expect("open");
        (dir, store)
    }

    /// Every key of every column family, to prove that nothing was written.
    pub(crate) fn snapshot(store: &EventStore) -> Vec<(String, Vec<u8>, Vec<u8>)> {
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

    /// Writes raw bytes, as an older binary would have.
    pub(crate) fn put_raw(store: &EventStore, cf: &str, key: &[u8], value: &[u8]) {
        store
            .db
            .put_cf(store.cf(cf).expect("cf"), key, value)
            .expect("put");
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
}
