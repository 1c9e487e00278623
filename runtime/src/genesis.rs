//! Genesis from a JSON chain spec.
//!
//! The genesis block and its hash are a pure function of the spec: the same
//! spec always gives the same genesis, on every machine. The chain id and the
//! validator set are written into the genesis state, so they are committed to
//! by the genesis state root and hence by the genesis hash, which every
//! transaction signature includes.
//!
//! ```json
//! {
//!   "name": "Lockstep Local Testnet",
//!   "chainId": "lockstep-local",
//!   "blockTimeMs": 1000,
//!   "genesisTimestamp": 0,
//!   "validators": ["0x…"],
//!   "assets": [{ "id": 1, "name": "LOCK", "decimals": 2, "issuer": "0x…" }],
//!   "balances": [{ "account": "0x…", "asset": 1, "amount": "1000000" }]
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use parity_scale_codec::Encode;
use serde::{Deserialize, Serialize};

use crate::block::{Block, Header, ValidatorSet};
use crate::crypto::{Keypair, DEV_NAMES};
use crate::primitives::{balance_string, AccountId, AssetId, Balance, Hash};
use crate::state::{keys, AssetInfo, MemoryStore, Overlay, StateChanges, StateError};
use crate::transaction::{AssetName, SigningContext};

/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID: usize = 64;

/// An asset that exists from genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenesisAsset {
    /// Asset id.
    pub id: AssetId,
    /// Display name.
    pub name: AssetName,
    /// Decimal places for display.
    pub decimals: u8,
    /// The account allowed to mint it.
    pub issuer: AccountId,
}

/// A balance that exists from genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenesisBalance {
    /// The holder.
    pub account: AccountId,
    /// The asset, which must be among the spec's assets.
    pub asset: AssetId,
    /// How much, as a decimal string.
    #[serde(with = "balance_string")]
    pub amount: Balance,
}

/// A chain spec: everything that defines a chain at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainSpec {
    /// Human-readable name.
    pub name: String,
    /// Machine identifier; part of every consensus signature.
    pub chain_id: String,
    /// Target time between blocks, in milliseconds.
    pub block_time_ms: u64,
    /// Timestamp of the genesis block (ms since the Unix epoch).
    #[serde(default)]
    pub genesis_timestamp: u64,
    /// The validator set, in proposer order.
    pub validators: Vec<AccountId>,
    /// Assets that exist from genesis.
    #[serde(default)]
    pub assets: Vec<GenesisAsset>,
    /// Balances that exist from genesis.
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// How far ahead of the chain's head a transaction's `valid_until` may
    /// be when it is submitted, in blocks. Pools refuse a longer window and
    /// the event system refuses to register one, so every transfer is
    /// included or expired within this many blocks of its submission, and
    /// every event is final within a known time.
    #[serde(default = "default_max_validity_blocks")]
    pub max_validity_blocks: u64,
}

/// The default of [`ChainSpec::max_validity_blocks`]: an hour at the dev
/// chains' one block a second.
pub const DEFAULT_MAX_VALIDITY_BLOCKS: u64 = 3_600;

fn default_max_validity_blocks() -> u64 {
    DEFAULT_MAX_VALIDITY_BLOCKS
}

/// Why a chain spec is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not valid JSON for a chain spec.
    #[error("chain spec is not valid: {0}")]
    Json(String),
    /// The chain id is empty, too long, or not printable ASCII.
    #[error("chain id must be 1 to {MAX_CHAIN_ID} printable ASCII characters without spaces")]
    ChainId,
    /// Block time zero.
    #[error("block time must be at least 1 ms")]
    BlockTime,
    /// A validity window of zero blocks, or one past [`MAX_MAX_VALIDITY_BLOCKS`].
    #[error("maxValidityBlocks must be 1 to {MAX_MAX_VALIDITY_BLOCKS}")]
    MaxValidity,
    /// No validators, or one listed twice.
    #[error("validators must be non-empty and distinct")]
    Validators,
    /// An asset id listed twice.
    #[error("asset {0} is listed twice")]
    DuplicateAsset(AssetId),
    /// A balance of an asset not in the spec.
    #[error("balance of unknown asset {0}")]
    UnknownAsset(AssetId),
    /// The same account and asset listed twice.
    #[error("balance of {0} in asset {1} is listed twice")]
    DuplicateBalance(AccountId, AssetId),
    /// An asset's supply would not fit in a u128.
    #[error("supply of asset {0} overflows")]
    SupplyOverflow(AssetId),
    /// State could not be built.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The genesis of a chain: its block, its state, and what signatures bind to.
#[derive(Debug, Clone)]
pub struct Genesis {
    /// Block 0.
    pub block: Block,
    /// The state to write before anything else.
    pub changes: StateChanges,
    /// The validator set.
    pub validators: ValidatorSet,
}

impl Genesis {
    /// The genesis hash.
    pub fn hash(&self) -> Hash {
        self.block.hash()
    }

    /// What transaction signatures on this chain bind to.
    pub fn signing_context(&self) -> SigningContext {
        SigningContext::new(self.hash())
    }
}

/// The largest [`ChainSpec::max_validity_blocks`] a spec may set: about a
/// year at one block a second. Anything longer is no bound at all.
pub const MAX_MAX_VALIDITY_BLOCKS: u64 = 32_000_000;

/// The balance every dev account gets in a dev spec.
pub const DEV_ENDOWMENT: Balance = 1_000_000_000_000;
/// The asset of dev specs.
pub const DEV_ASSET: AssetId = 1;

/// The chain id of the single-validator development chain
/// (`lockstep-node --dev`, alice validating).
pub const DEV_CHAIN_ID: &str = "lockstep-dev";

impl ChainSpec {
    /// Parses and validates a spec.
    pub fn from_json(text: &str) -> Result<ChainSpec, SpecError> {
        let spec: ChainSpec =
            serde_json::from_str(text).map_err(|e| SpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The spec as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A development spec: the first `validators` dev names are validators,
    /// asset [`DEV_ASSET`] "LOCK" is issued by `alice`, and every dev name is
    /// endowed with [`DEV_ENDOWMENT`]. Dev keys are public: never for value.
    pub fn dev(chain_id: &str, validators: &[AccountId]) -> ChainSpec {
        let alice = Keypair::dev("alice").public();
        ChainSpec {
            name: format!("Lockstep {chain_id}"),
            chain_id: chain_id.to_owned(),
            block_time_ms: 1000,
            genesis_timestamp: 0,
            validators: validators.to_vec(),
            assets: vec![GenesisAsset {
                id: DEV_ASSET,
                name: AssetName::new("LOCK").unwrap_or_else(|_| unreachable!("valid name")),
                decimals: 2,
                issuer: alice,
            }],
            balances: DEV_NAMES
                .iter()
                .map(|name| GenesisBalance {
                    account: Keypair::dev(name).public(),
                    asset: DEV_ASSET,
                    amount: DEV_ENDOWMENT,
                })
                .collect(),
            max_validity_blocks: DEFAULT_MAX_VALIDITY_BLOCKS,
        }
    }

    /// Checks everything [`ChainSpec::genesis`] relies on.
    pub fn validate(&self) -> Result<(), SpecError> {
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= MAX_CHAIN_ID
            && self.chain_id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            return Err(SpecError::ChainId);
        }
        if self.block_time_ms == 0 {
            return Err(SpecError::BlockTime);
        }
        if !(1..=MAX_MAX_VALIDITY_BLOCKS).contains(&self.max_validity_blocks) {
            return Err(SpecError::MaxValidity);
        }
        ValidatorSet::new(self.validators.clone()).ok_or(SpecError::Validators)?;
        let mut supplies: BTreeMap<AssetId, Balance> = BTreeMap::new();
        for asset in &self.assets {
            if supplies.insert(asset.id, 0).is_some() {
                return Err(SpecError::DuplicateAsset(asset.id));
            }
        }
        let mut holders = BTreeSet::new();
        for balance in &self.balances {
            let supply = supplies
                .get_mut(&balance.asset)
                .ok_or(SpecError::UnknownAsset(balance.asset))?;
            *supply = supply
                .checked_add(balance.amount)
                .ok_or(SpecError::SupplyOverflow(balance.asset))?;
            if !holders.insert((balance.account, balance.asset)) {
                return Err(SpecError::DuplicateBalance(balance.account, balance.asset));
            }
        }
        Ok(())
    }

    /// Builds the genesis block and state.
    pub fn genesis(&self) -> Result<Genesis, SpecError> {
        self.validate()?;
        let validators = ValidatorSet::new(self.validators.clone()).ok_or(SpecError::Validators)?;
        let empty = MemoryStore::default();
        let mut state = Overlay::new(&empty);
        state.put(keys::CHAIN_ID.to_vec(), self.chain_id.encode());
        state.put(keys::VALIDATORS.to_vec(), self.validators.encode());
        let mut supplies: BTreeMap<AssetId, Balance> = BTreeMap::new();
        for balance in &self.balances {
            state.set_balance(&balance.account, balance.asset, balance.amount);
            *supplies.entry(balance.asset).or_default() += balance.amount;
        }
        for asset in &self.assets {
            let info = AssetInfo {
                name: asset.name.clone(),
                decimals: asset.decimals,
                issuer: asset.issuer,
                supply: supplies.get(&asset.id).copied().unwrap_or(0),
            };
            state.set_asset(asset.id, &info);
        }
        let changes = state.commit()?;
        let header = Header {
            parent_hash: Hash::ZERO,
            number: 0,
            timestamp: self.genesis_timestamp,
            proposer: AccountId([0; 32]),
            extrinsics_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: changes.root,
        };
        Ok(Genesis {
            block: Block {
                header,
                extrinsics: Vec::new(),
            },
            changes,
            validators,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateReader;

    fn dev_spec() -> ChainSpec {
        ChainSpec::dev("lockstep-dev", &[Keypair::dev("alice").public()])
    }

    #[test]
    fn genesis_is_a_pure_function_of_the_spec() {
        let spec = dev_spec();
        let a = spec.genesis().unwrap();
        let parsed = ChainSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(parsed, spec);
        let b = parsed.genesis().unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.changes, b.changes);

        let mut other = spec.clone();
        other.chain_id = "lockstep-other".into();
        assert_ne!(other.genesis().unwrap().hash(), a.hash());
        let mut more = spec;
        more.validators.push(Keypair::dev("bob").public());
        assert_ne!(more.genesis().unwrap().hash(), a.hash());
    }

    #[test]
    fn genesis_state_holds_the_spec() {
        let genesis = dev_spec().genesis().unwrap();
        let mut store = MemoryStore::default();
        store.apply(&genesis.changes.writes);
        let state = StateReader::new(&store);
        assert_eq!(state.root().unwrap(), genesis.block.header.state_root);
        assert_eq!(state.chain_id().unwrap().as_deref(), Some("lockstep-dev"));
        let bob = Keypair::dev("bob").public();
        assert_eq!(state.balance(&bob, DEV_ASSET).unwrap(), DEV_ENDOWMENT);
        let info = state.asset(DEV_ASSET).unwrap().unwrap();
        assert_eq!(info.supply, DEV_ENDOWMENT * DEV_NAMES.len() as u128);
        assert_eq!(info.issuer, Keypair::dev("alice").public());
    }

    #[test]
    fn a_spec_written_before_the_validity_bound_gets_the_default() {
        let mut json: serde_json::Value = serde_json::from_str(&dev_spec().to_json()).unwrap();
        json.as_object_mut().unwrap().remove("maxValidityBlocks");
        let spec = ChainSpec::from_json(&json.to_string()).unwrap();
        assert_eq!(spec.max_validity_blocks, DEFAULT_MAX_VALIDITY_BLOCKS);
        // The bound is not part of genesis: an existing chain keeps its hash.
        assert_eq!(
            spec.genesis().unwrap().hash(),
            dev_spec().genesis().unwrap().hash()
        );
    }

    #[test]
    fn invalid_specs_are_refused() {
        let good = dev_spec();
        let alice = Keypair::dev("alice").public();
        type Mutation = Box<dyn Fn(&mut ChainSpec)>;
        let cases: Vec<(Mutation, SpecError)> = vec![
            (Box::new(|s| s.chain_id = String::new()), SpecError::ChainId),
            (
                Box::new(|s| s.chain_id = "has space".into()),
                SpecError::ChainId,
            ),
            (Box::new(|s| s.block_time_ms = 0), SpecError::BlockTime),
            (
                Box::new(|s| s.max_validity_blocks = 0),
                SpecError::MaxValidity,
            ),
            (
                Box::new(|s| s.max_validity_blocks = MAX_MAX_VALIDITY_BLOCKS + 1),
                SpecError::MaxValidity,
            ),
            (Box::new(|s| s.validators.clear()), SpecError::Validators),
            (
                Box::new(move |s| s.validators.push(alice)),
                SpecError::Validators,
            ),
            (
                Box::new(|s| s.assets.push(s.assets[0].clone())),
                SpecError::DuplicateAsset(1),
            ),
            (
                Box::new(|s| s.balances[0].asset = 9),
                SpecError::UnknownAsset(9),
            ),
            (
                Box::new(|s| s.balances.push(s.balances[0].clone())),
                SpecError::DuplicateBalance(alice, 1),
            ),
            (
                Box::new(|s| {
                    s.balances[0].amount = u128::MAX;
                }),
                SpecError::SupplyOverflow(1),
            ),
        ];
        for (mutate, expected) in cases {
            let mut spec = good.clone();
            mutate(&mut spec);
            assert_eq!(spec.validate(), Err(expected.clone()));
            assert!(spec.genesis().is_err());
            assert_eq!(ChainSpec::from_json(&spec.to_json()), Err(expected));
        }
        assert!(matches!(ChainSpec::from_json("{"), Err(SpecError::Json(_))));
        assert!(matches!(
            ChainSpec::from_json(&good.to_json().replacen("\"name\"", "\"nmae\"", 1)),
            Err(SpecError::Json(_))
        ));
    }
}
