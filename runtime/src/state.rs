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
}

/// A state store in memory, for tests, benchmarks and genesis building.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: HashMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    /// Writes `changes` into the store.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        self.entries.extend(changes);
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
    /// Entries and tree nodes to write, sorted by key.
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
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
        let mut writes = self.writes;
        let mut nodes = HashMap::with_capacity(updates.len() * 4);
        let root = smt::update(self.store, &updates, &mut nodes)?;
        writes.extend(nodes);
        let mut writes: Vec<(Vec<u8>, Vec<u8>)> = writes.into_iter().collect();
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
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
