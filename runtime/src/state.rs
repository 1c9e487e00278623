//! The chain state behind a small storage trait.
//!
//! The runtime reads through [`StateStore`] (in memory for tests, RocksDB in
//! the node) and never writes to it: executing a block yields a
//! [`StateChanges`] set that the caller writes in one atomic batch together
//! with the block, or throws away.
//!
//! Entries, SCALE-encoded values under these keys:
//!
//! | key | value |
//! |---|---|
//! | `B` ‖ account ‖ asset (u32 BE) | [`Balance`] |
//! | `N` ‖ account | [`Nonce`], the next one expected |
//! | `A` ‖ asset (u32 BE) | [`AssetInfo`] |
//! | `M:chain_id`, `M:validators` | the chain id and validator set from genesis |
//! | `T` ‖ depth ‖ prefix | nodes of the state tree ([`crate::smt`]) |
//!
//! Every entry except the tree's own nodes is a leaf of the state tree, so the
//! state root commits to all of them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use parity_scale_codec::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::primitives::{balance_string, to_hex, AccountId, AssetId, Balance, Hash, Nonce};
use crate::smt;
use crate::transaction::AssetName;

/// Why state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backing store failed.
    #[error("state storage failed: {0}")]
    Storage(String),
    /// A stored value does not decode: the database is damaged.
    #[error("corrupt state entry {key}: {reason}")]
    Corrupt {
        /// The key, in hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl StateError {
    pub(crate) fn corrupt(key: &[u8], reason: &str) -> StateError {
        StateError::Corrupt {
            key: to_hex(key),
            reason: reason.to_owned(),
        }
    }
}

/// Result of reading state.
pub type StateResult<T> = Result<T, StateError>;

/// Read access to the committed state.
pub trait StateStore {
    /// The value under `key`, `None` if there is none. An `Err` means the
    /// store could not answer; it must never stand for "absent".
    fn get(&self, key: &[u8]) -> StateResult<Option<Vec<u8>>>;

    /// Like [`StateStore::get`], but copies the value into `out` (cleared
    /// first) and returns whether there was one. The state tree reads its
    /// nodes through this, hundreds of thousands per block, so a store
    /// should override it to avoid allocating.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> StateResult<bool> {
        out.clear();
        match self.get(key)? {
            Some(value) => {
                out.extend_from_slice(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A state store in memory, for tests, benchmarks and genesis building.
///
/// Its hash map uses a fast, unkeyed hash (keys here are mostly hashes and
/// account ids): fine for tests and benchmarks, not for a map that hostile
/// input could fill with colliding keys, which is why the node keeps its
/// state in RocksDB instead.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: HashMap<Vec<u8>, Vec<u8>, BuildHasherDefault<FastHasher>>,
}

/// A multiply-rotate hash over 8-byte words (the scheme of rustc's FxHash).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.0 =
            (self.0.rotate_left(26) ^ u64::from_le_bytes(tail) ^ rest.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

impl MemoryStore {
    /// Writes `changes` into the store.
    pub fn apply(&mut self, changes: &WriteSet) {
        self.entries.reserve(changes.len());
        for (key, value) in changes.iter() {
            self.entries.insert(key.to_vec(), value.to_vec());
        }
    }

    /// Number of stored keys (entries and tree nodes).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every stored key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.entries.iter()
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        Ok(self.entries.get(key).cloned())
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> StateResult<bool> {
        out.clear();
        match self.entries.get(key) {
            Some(value) => {
                out.extend_from_slice(value);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A list of key-value writes kept in one buffer: a block writes a few
/// hundred thousand small keys and values, and one allocation per key or
/// value would cost more than computing them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    bytes: Vec<u8>,
    /// Per write: start of the key in `bytes`, key length, value length.
    spans: Vec<(usize, u32, u32)>,
}

impl std::fmt::Debug for WriteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSet")
            .field("writes", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl WriteSet {
    /// An empty set with room for about `writes` writes of `bytes` bytes.
    pub fn with_capacity(writes: usize, bytes: usize) -> WriteSet {
        WriteSet {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(writes),
        }
    }

    /// Appends a write. Keys and values are far below 4 GiB each.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        let len = |part: &[u8]| u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.spans.push((start, len(key), len(value)));
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no writes.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The writes, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&(start, key_len, value_len)| {
            let key_end = start + key_len as usize;
            (
                &self.bytes[start..key_end],
                &self.bytes[key_end..key_end + value_len as usize],
            )
        })
    }
}

/// An asset's record.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AssetInfo {
    /// Display name.
    pub name: AssetName,
    /// Decimal places for display.
    pub decimals: u8,
    /// The only account that may mint.
    pub issuer: AccountId,
    /// Units in existence: the sum of all balances of this asset.
    #[serde(with = "balance_string")]
    pub supply: Balance,
}

/// Storage keys.
pub mod keys {
    use super::*;

    /// Key of an account's balance of an asset.
    pub fn balance(account: &AccountId, asset: AssetId) -> Vec<u8> {
        let mut key = Vec::with_capacity(37);
        key.push(b'B');
        key.extend_from_slice(&account.0);
        key.extend_from_slice(&asset.to_be_bytes());
        key
    }

    /// Key of an account's next nonce.
    pub fn nonce(account: &AccountId) -> Vec<u8> {
        let mut key = Vec::with_capacity(33);
        key.push(b'N');
        key.extend_from_slice(&account.0);
        key
    }

    /// Key of an asset's record.
    pub fn asset(asset: AssetId) -> Vec<u8> {
        let mut key = vec![b'A'];
        key.extend_from_slice(&asset.to_be_bytes());
        key
    }

    /// Key of the chain id.
    pub const CHAIN_ID: &[u8] = b"M:chain_id";
    /// Key of the validator set.
    pub const VALIDATORS: &[u8] = b"M:validators";
}

/// Reads committed state and collects writes on top of it, for one block.
pub struct Overlay<'a> {
    store: &'a dyn StateStore,
    writes: HashMap<Vec<u8>, Vec<u8>>,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

/// The result of committing an [`Overlay`]: every key to write, and the new
/// state root they produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChanges {
    /// Tree nodes (depth first), then entries (by key): each key once, and
    /// always the same list for the same block on the same state.
    pub writes: WriteSet,
    /// The state root after the writes.
    pub root: Hash,
}

impl<'a> Overlay<'a> {
    /// An empty overlay over `store`.
    pub fn new(store: &'a dyn StateStore) -> Overlay<'a> {
        Overlay {
            store,
            writes: HashMap::new(),
        }
    }

    fn get(&self, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(value) => Ok(Some(value.clone())),
            None => self.store.get(key),
        }
    }

    fn get_decoded<T: Decode>(&self, key: &[u8]) -> StateResult<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => crate::codec::decode_exact(&bytes, bytes.len())
                .map(Some)
                .map_err(|e| StateError::corrupt(key, &e.to_string())),
        }
    }

    /// Sets `key` to `value` (an entry, not a tree node).
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, value);
    }

    /// An account's balance of an asset (zero if it never had any).
    pub fn balance(&self, account: &AccountId, asset: AssetId) -> StateResult<Balance> {
        Ok(self
            .get_decoded(&keys::balance(account, asset))?
            .unwrap_or(0))
    }

    /// Sets an account's balance of an asset.
    pub fn set_balance(&mut self, account: &AccountId, asset: AssetId, amount: Balance) {
        self.put(keys::balance(account, asset), amount.encode());
    }

    /// The nonce the account's next transaction must carry.
    pub fn nonce(&self, account: &AccountId) -> StateResult<Nonce> {
        Ok(self.get_decoded(&keys::nonce(account))?.unwrap_or(0))
    }

    /// Sets the account's next nonce.
    pub fn set_nonce(&mut self, account: &AccountId, nonce: Nonce) {
        self.put(keys::nonce(account), nonce.encode());
    }

    /// An asset's record.
    pub fn asset(&self, asset: AssetId) -> StateResult<Option<AssetInfo>> {
        self.get_decoded(&keys::asset(asset))
    }

    /// Sets an asset's record.
    pub fn set_asset(&mut self, asset: AssetId, info: &AssetInfo) {
        self.put(keys::asset(asset), info.encode());
    }

    /// Computes the new state root and the full write set (entries plus the
    /// tree nodes they change).
    pub fn commit(self) -> StateResult<StateChanges> {
        let mut updates: Vec<(smt::Path, Hash)> = self
            .writes
            .iter()
            .map(|(key, value)| (smt::path_of(key), Hash::digest(value)))
            .collect();
        updates.sort_unstable_by_key(|u| u.0);
        let mut writes = WriteSet::with_capacity(updates.len() * 9, updates.len() * 9 * 100);
        let root = smt::update(self.store, &updates, &mut writes)?;
        // Tree nodes come out in a fixed (depth-first) order; sort the entries
        // too, so that the same block always yields the same write list.
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = self.writes.into_iter().collect();
        entries.sort_unstable();
        for (key, value) in &entries {
            writes.push(key, value);
        }
        Ok(StateChanges { writes, root })
    }
}

/// Typed reads of committed state, for RPC and tests.
#[derive(Debug)]
pub struct StateReader<'a>(Overlay<'a>);

impl<'a> StateReader<'a> {
    /// A reader over `store`.
    pub fn new(store: &'a dyn StateStore) -> StateReader<'a> {
        StateReader(Overlay::new(store))
    }

    /// An account's balance of an asset.
    pub fn balance(&self, account: &AccountId, asset: AssetId) -> StateResult<Balance> {
        self.0.balance(account, asset)
    }

    /// The nonce the account's next transaction must carry.
    pub fn nonce(&self, account: &AccountId) -> StateResult<Nonce> {
        self.0.nonce(account)
    }

    /// An asset's record.
    pub fn asset(&self, asset: AssetId) -> StateResult<Option<AssetInfo>> {
        self.0.asset(asset)
    }

    /// The chain id recorded at genesis.
    pub fn chain_id(&self) -> StateResult<Option<String>> {
        self.0.get_decoded(keys::CHAIN_ID)
    }

    /// The validator set recorded at genesis.
    pub fn validators(&self) -> StateResult<Option<Vec<AccountId>>> {
        self.0.get_decoded(keys::VALIDATORS)
    }

    /// The state root.
    pub fn root(&self) -> StateResult<Hash> {
        smt::root(self.0.store)
    }
}
