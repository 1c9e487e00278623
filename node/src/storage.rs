//! The chain database: RocksDB with one column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `headers` | block hash | SCALE [`Header`] |
//! | `bodies` | block hash | SCALE `Vec<SignedTx>` |
//! | `justifications` | block hash | SCALE [`Justification`] |
//! | `numbers` | block number (u64 BE) | block hash |
//! | `tx_index` | tx hash | SCALE [`TxLocation`] |
//! | `state` | state key | state value (see `lockstep_runtime::state`) |
//! | `meta` | name | genesis hash, finalized head, consensus checkpoint |
//!
//! Every block is imported with one atomic, synced write batch holding the
//! block, its justification, its state changes, its tx index entries and the
//! new head pointer: after a crash the database holds either the old head or
//! the new one, never half of a block. Only finalized blocks are ever written
//! (Tendermint finality is instant), so the best block is the finalized one.
//!
//! ## Cost flat in history
//!
//! Every read the node makes while running is a point read by key (a hash,
//! a number, a state key) or a bounded range: nothing iterates over what
//! earlier blocks wrote. `state` and `tx_index` are tuned for point
//! lookups (bloom filters of 10 bits a key, a hash index in each data
//! block, a filtered memtable), so a lookup of a key that is not there
//! (every new transaction's hash, before it is pooled) is answered from the
//! filters instead of a read at every level, however many levels the
//! history has grown. The candidate blocks kept in `meta` are
//! deleted by key once their height is decided, never found by scanning
//! the deleted ones. The write-ahead log is bounded (`max_total_wal_size`:
//! past it, the column families holding the oldest log are flushed) and so
//! is RocksDB's own info log (`max_log_file_size`, `keep_log_file_num`).

use std::path::Path;
use std::sync::RwLock;

use lockstep_runtime::codec::decode_exact;
use lockstep_runtime::state::{StateError, StateResult, StateStore};
use lockstep_runtime::{
    smt, Block, BlockNumber, Executed, Genesis, Hash, Header, Justification, Outcome, Receipt,
    SignedTx,
};
use parity_scale_codec::{Decode, Encode};
use rocksdb::{ColumnFamilyDescriptor, Options, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::Serialize;

const CF_HEADERS: &str = "headers";
const CF_BODIES: &str = "bodies";
const CF_JUSTIFICATIONS: &str = "justifications";
const CF_NUMBERS: &str = "numbers";
const CF_TX_INDEX: &str = "tx_index";
const CF_STATE: &str = "state";
const CF_META: &str = "meta";
/// The column families tuned for point lookups, with a block cache of
/// this many MiB each.
const POINT_LOOKUP_FAMILIES: [&str; 2] = [CF_STATE, CF_TX_INDEX];
const POINT_LOOKUP_CACHE_MB: u64 = 64;
/// Most bytes of write-ahead log before the column families holding its
/// oldest part are flushed (RocksDB's default is 4 × every memtable: GBs).
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;
/// Largest RocksDB info log (`LOG`) before it is rolled; `keep_log_file_num`
/// of them are kept.
const MAX_INFO_LOG_BYTES: usize = 16 << 20;
const COLUMN_FAMILIES: [&str; 7] = [
    CF_HEADERS,
    CF_BODIES,
    CF_JUSTIFICATIONS,
    CF_NUMBERS,
    CF_TX_INDEX,
    CF_STATE,
    CF_META,
];

const META_GENESIS: &[u8] = b"genesis";
const META_FINALIZED: &[u8] = b"finalized";
const META_CONSENSUS: &[u8] = b"consensus";
/// Prefix of blocks this validator proposed or voted for, kept until they
/// are decided: after a crash it may have to re-propose one, or commit one
/// it precommitted.
const META_CANDIDATE: &[u8] = b"candidate:";
/// The first key past every `candidate:` key (`;` follows `:`).
const META_CANDIDATE_END: &[u8] = b"candidate;";

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error.
    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Stored data is inconsistent or does not decode.
    #[error("database is damaged: {0}")]
    Corrupt(String),
    /// The database holds another chain.
    #[error("the database at this base path belongs to the chain with genesis {found}, not {expected}; use another --base-path or purge-chain")]
    WrongChain {
        /// This spec's genesis hash.
        expected: Hash,
        /// The stored genesis hash.
        found: Hash,
    },
    /// An import that does not extend the head.
    #[error("block {number} ({hash}) does not extend the finalized head {head}")]
    NotOnHead {
        /// Its number.
        number: BlockNumber,
        /// Its hash.
        hash: Hash,
        /// The current head.
        head: Hash,
    },
}

impl From<StateError> for StorageError {
    fn from(error: StateError) -> Self {
        StorageError::Corrupt(error.to_string())
    }
}

/// Result of a database operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// Where a finalized transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TxLocation {
    /// The block holding it.
    pub block_hash: Hash,
    /// That block's number.
    pub block_number: BlockNumber,
    /// Its position in the block.
    pub index: u32,
    /// What happened.
    pub outcome: Outcome,
}

/// The node's chain database.
pub struct ChainDb {
    db: DB,
    genesis_hash: Hash,
    /// The finalized head, cached: read on every RPC call and pool check.
    /// Replaced only after the import's write, so readers never wait for
    /// a block's write (hundreds of milliseconds for a big block); for a
    /// moment after a write it trails the database by one block, so a
    /// reader that needs "nothing newer than the head" reads the head
    /// first.
    head: RwLock<Header>,
    /// Serializes imports (one block extends the head at a time).
    importing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for ChainDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainDb")
            .field("genesis", &self.genesis_hash)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

fn decode<T: Decode>(bytes: &[u8], what: &str) -> StorageResult<T> {
    decode_exact(bytes, bytes.len()).map_err(|e| corrupt(format!("{what}: {e}")))
}

impl ChainDb {
    /// Opens (or creates) the database at `path` for the chain of `genesis`.
    /// A new database gets the genesis block and state; an existing one must
    /// hold the same genesis, and its head is checked: the head's header,
    /// its number mapping and the state root must agree.
    pub fn open(path: &Path, genesis: &Genesis) -> StorageResult<ChainDb> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_open_files(512);
        options.set_keep_log_file_num(4);
        options.set_max_log_file_size(MAX_INFO_LOG_BYTES);
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf_options = Options::default();
            if POINT_LOOKUP_FAMILIES.contains(name) {
                cf_options.optimize_for_point_lookup(POINT_LOOKUP_CACHE_MB);
            }
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let genesis_hash = genesis.hash();
        let placeholder = genesis.block.header.clone();
        let chain = ChainDb {
            db,
            genesis_hash,
            head: RwLock::new(placeholder),
            importing: std::sync::Mutex::new(()),
        };
        match chain.meta(META_GENESIS)? {
            None => chain.write_genesis(genesis)?,
            Some(bytes) => {
                let found: Hash = decode(&bytes, "genesis hash")?;
                if found != genesis_hash {
                    return Err(StorageError::WrongChain {
                        expected: genesis_hash,
                        found,
                    });
                }
            }
        }
        let head = chain.check_head()?;
        *chain.head.write().unwrap_or_else(|e| e.into_inner()) = head;
        Ok(chain)
    }

    fn cf(&self, name: &str) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt(format!("column family {name} is missing")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(cf)?, key)?
            .map(|v| v.to_vec()))
    }

    fn meta(&self, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        self.get(CF_META, key)
    }

    fn synced() -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        options
    }

    fn write_genesis(&self, genesis: &Genesis) -> StorageResult<()> {
        let header = &genesis.block.header;
        let hash = genesis.hash();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_HEADERS)?, hash.0, header.encode());
        batch.put_cf(self.cf(CF_BODIES)?, hash.0, Vec::<SignedTx>::new().encode());
        batch.put_cf(self.cf(CF_NUMBERS)?, 0u64.to_be_bytes(), hash.0);
        let state = self.cf(CF_STATE)?;
        for (key, value) in genesis.changes.writes.iter() {
            batch.put_cf(state, key, value);
        }
        let meta = self.cf(CF_META)?;
        batch.put_cf(meta, META_GENESIS, hash.encode());
        batch.put_cf(meta, META_FINALIZED, (0u64, hash).encode());
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Loads the head pointer and checks it against the header, the number
    /// index and the state.
    fn check_head(&self) -> StorageResult<Header> {
        let bytes = self
            .meta(META_FINALIZED)?
            .ok_or_else(|| corrupt("no finalized head"))?;
        let (number, hash): (BlockNumber, Hash) = decode(&bytes, "finalized head")?;
        let header = self
            .header(&hash)?
            .ok_or_else(|| corrupt("head header is missing"))?;
        if header.number != number || self.hash_by_number(number)? != Some(hash) {
            return Err(corrupt(format!(
                "head {number} ({hash}) disagrees with its header or index"
            )));
        }
        let root = smt::root(self)?;
        if root != header.state_root {
            return Err(corrupt(format!(
                "state root {root} is not the head's state root {}",
                header.state_root
            )));
        }
        Ok(header)
    }

    /// The genesis hash.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The finalized (and best) head.
    pub fn head(&self) -> Header {
        self.head.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A header by block hash.
    pub fn header(&self, hash: &Hash) -> StorageResult<Option<Header>> {
        self.get(CF_HEADERS, &hash.0)?
            .map(|b| decode(&b, "header"))
            .transpose()
    }

    /// A whole block by hash.
    pub fn block(&self, hash: &Hash) -> StorageResult<Option<Block>> {
        let Some(header) = self.header(hash)? else {
            return Ok(None);
        };
        let body = self
            .get(CF_BODIES, &hash.0)?
            .ok_or_else(|| corrupt("block body is missing"))?;
        Ok(Some(Block {
            header,
            extrinsics: decode(&body, "block body")?,
        }))
    }

    /// The justification of a finalized block (none for genesis).
    pub fn justification(&self, hash: &Hash) -> StorageResult<Option<Justification>> {
        self.get(CF_JUSTIFICATIONS, &hash.0)?
            .map(|b| decode(&b, "justification"))
            .transpose()
    }

    /// The hash of the finalized block at `number`.
    pub fn hash_by_number(&self, number: BlockNumber) -> StorageResult<Option<Hash>> {
        self.get(CF_NUMBERS, &number.to_be_bytes())?
            .map(|b| decode(&b, "block hash"))
            .transpose()
    }

    /// Where a finalized transaction is, if it is.
    pub fn tx_location(&self, tx_hash: &Hash) -> StorageResult<Option<TxLocation>> {
        self.get(CF_TX_INDEX, &tx_hash.0)?
            .map(|b| decode(&b, "tx location"))
            .transpose()
    }

    /// The receipts of the finalized block `block_hash` whose transactions
    /// have the hashes `tx_hashes`, in block order. Receipts are not stored
    /// as such: each is (tx hash, outcome), and the outcome is in the tx
    /// index, read here for the whole block in one batched lookup. Every
    /// entry must name this block and this position.
    pub fn receipts(&self, block_hash: &Hash, tx_hashes: &[Hash]) -> StorageResult<Vec<Receipt>> {
        let cf = self.cf(CF_TX_INDEX)?;
        let keys: Vec<&[u8]> = tx_hashes.iter().map(|h| h.0.as_slice()).collect();
        let found = self.db.batched_multi_get_cf(cf, keys, false);
        let mut receipts = Vec::with_capacity(tx_hashes.len());
        for (index, (tx_hash, value)) in tx_hashes.iter().zip(found).enumerate() {
            let value = value?.ok_or_else(|| {
                corrupt(format!(
                    "tx index incomplete: transaction {tx_hash} of block {block_hash}"
                ))
            })?;
            let location: TxLocation = decode(&value, "tx location")?;
            if location.block_hash != *block_hash || location.index as usize != index {
                return Err(corrupt(format!(
                    "tx index puts transaction {index} of block {block_hash} at {} in {}",
                    location.index, location.block_hash
                )));
            }
            receipts.push(Receipt {
                tx_hash: *tx_hash,
                outcome: location.outcome,
            });
        }
        Ok(receipts)
    }

    /// Imports a finalized block that extends the head, with its
    /// justification and the result of executing it, in one synced batch.
    /// The caller has checked the block and the justification.
    pub fn import(
        &self,
        block: &Block,
        justification: &Justification,
        executed: &Executed,
    ) -> StorageResult<()> {
        let _importing = self.importing.lock().unwrap_or_else(|e| e.into_inner());
        let head = self.head();
        let hash = block.hash();
        if block.header.parent_hash != head.hash() || block.header.number != head.number + 1 {
            return Err(StorageError::NotOnHead {
                number: block.header.number,
                hash,
                head: head.hash(),
            });
        }
        let number = block.header.number;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_HEADERS)?, hash.0, block.header.encode());
        batch.put_cf(self.cf(CF_BODIES)?, hash.0, block.extrinsics.encode());
        batch.put_cf(self.cf(CF_JUSTIFICATIONS)?, hash.0, justification.encode());
        batch.put_cf(self.cf(CF_NUMBERS)?, number.to_be_bytes(), hash.0);
        let tx_index = self.cf(CF_TX_INDEX)?;
        for (index, receipt) in executed.receipts.iter().enumerate() {
            let location = TxLocation {
                block_hash: hash,
                block_number: number,
                index: u32::try_from(index).map_err(|_| corrupt("block too long"))?,
                outcome: receipt.outcome,
            };
            batch.put_cf(tx_index, receipt.tx_hash.0, location.encode());
        }
        let state = self.cf(CF_STATE)?;
        for (key, value) in executed.changes.writes.iter() {
            batch.put_cf(state, key, value);
        }
        batch.put_cf(self.cf(CF_META)?, META_FINALIZED, (number, hash).encode());
        self.db.write_opt(batch, &Self::synced())?;
        *self.head.write().unwrap_or_else(|e| e.into_inner()) = block.header.clone();
        Ok(())
    }

    /// The last consensus checkpoint this validator persisted.
    pub fn consensus_checkpoint(&self) -> StorageResult<Option<Vec<u8>>> {
        self.meta(META_CONSENSUS)
    }

    /// Durably records a consensus checkpoint: synced before returning, so
    /// that what it records may then be sent.
    pub fn save_consensus_checkpoint(&self, bytes: &[u8]) -> StorageResult<()> {
        self.db
            .put_cf_opt(self.cf(CF_META)?, META_CONSENSUS, bytes, &Self::synced())?;
        Ok(())
    }
}

impl ChainDb {
    /// Durably keeps a block this validator is about to propose or vote for.
    pub fn save_candidate(&self, block: &Block) -> StorageResult<()> {
        let key = [META_CANDIDATE, &block.hash().0].concat();
        self.db
            .put_cf_opt(self.cf(CF_META)?, key, block.encode(), &Self::synced())?;
        Ok(())
    }

    /// The kept candidate blocks that extend the head; older ones are
    /// deleted. Read once, at start.
    pub fn candidates(&self) -> StorageResult<Vec<Block>> {
        let meta = self.cf(CF_META)?;
        let head = self.head();
        let mut blocks = Vec::new();
        let mut stale = Vec::new();
        let mut bounds = ReadOptions::default();
        bounds.set_iterate_upper_bound(META_CANDIDATE_END);
        let from = rocksdb::IteratorMode::From(META_CANDIDATE, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf_opt(meta, bounds, from) {
            let (key, value) = item?;
            if !key.starts_with(META_CANDIDATE) {
                break;
            }
            let block: Block = decode(&value, "candidate block")?;
            if block.header.parent_hash == head.hash() {
                blocks.push(block);
            } else {
                stale.push(key);
            }
        }
        for key in stale {
            self.db.delete_cf(meta, key)?;
        }
        Ok(blocks)
    }

    /// Deletes the kept candidates with these hashes (once their height is
    /// decided), by key: one write, and no iteration over the candidates
    /// of earlier heights, whose deletions RocksDB keeps until compaction.
    pub fn delete_candidates(&self, hashes: &[Hash]) -> StorageResult<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let meta = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        for hash in hashes {
            batch.delete_cf(meta, [META_CANDIDATE, &hash.0].concat());
        }
        self.db.write(batch)?;
        Ok(())
    }
}

impl StateStore for ChainDb {
    fn get(&self, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        let cf = self
            .cf(CF_STATE)
            .map_err(|e| StateError::Storage(e.to_string()))?;
        self.db
            .get_pinned_cf(cf, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StateError::Storage(e.to_string()))
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> StateResult<bool> {
        out.clear();
        let cf = self
            .cf(CF_STATE)
            .map_err(|e| StateError::Storage(e.to_string()))?;
        match self.db.get_pinned_cf(cf, key) {
            Ok(Some(value)) => {
                out.extend_from_slice(&value);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(StateError::Storage(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::execution::{build_block, BlockTemplate};
    use lockstep_runtime::genesis::DEV_ASSET;
    use lockstep_runtime::{BlockLimits, Call, Candidates, ChainSpec, Keypair, StateReader};

    fn genesis(chain_id: &str) -> Genesis {
        ChainSpec::dev(chain_id, &[Keypair::dev("alice").public()])
            .genesis()
            .unwrap()
    }

    fn next_block(db: &ChainDb, genesis: &Genesis, nonce: u64) -> (Block, Executed) {
        let head = db.head();
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to: Keypair::dev("bob").public(),
            amount: 5,
            reference: None,
        };
        let tx = SignedTx::sign(
            &Keypair::dev("alice"),
            &genesis.signing_context(),
            nonce,
            100,
            call,
        );
        let template = BlockTemplate {
            parent: &head,
            timestamp: 1,
            proposer: Keypair::dev("alice").public(),
        };
        let built = build_block(
            db,
            &genesis.signing_context(),
            template,
            (vec![tx], Candidates::Verified),
            &BlockLimits::default(),
        )
        .unwrap();
        (built.block, built.executed)
    }

    fn justification(block: &Block) -> Justification {
        Justification {
            round: 0,
            block_hash: block.hash(),
            signatures: vec![],
        }
    }

    #[test]
    fn genesis_then_blocks_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = genesis("lockstep-storage");
        let (hash, tx_hash) = {
            let db = ChainDb::open(dir.path(), &genesis).unwrap();
            assert_eq!(db.head().number, 0);
            let (block, executed) = next_block(&db, &genesis, 0);
            db.import(&block, &justification(&block), &executed)
                .unwrap();
            (block.hash(), block.extrinsics[0].hash())
        };
        let db = ChainDb::open(dir.path(), &genesis).unwrap();
        assert_eq!(db.head().number, 1);
        assert_eq!(db.head().hash(), hash);
        assert_eq!(db.hash_by_number(1).unwrap(), Some(hash));
        assert_eq!(db.block(&hash).unwrap().unwrap().extrinsics.len(), 1);
        assert_eq!(db.justification(&hash).unwrap().unwrap().block_hash, hash);
        let location = db.tx_location(&tx_hash).unwrap().unwrap();
        assert_eq!((location.block_number, location.index), (1, 0));
        assert!(location.outcome.is_success());
        let state = StateReader::new(&db);
        assert_eq!(state.nonce(&Keypair::dev("alice").public()).unwrap(), 1);
        assert_eq!(state.root().unwrap(), db.head().state_root);
    }

    #[test]
    fn another_chain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(ChainDb::open(dir.path(), &genesis("lockstep-a")).unwrap());
        let error = ChainDb::open(dir.path(), &genesis("lockstep-b")).unwrap_err();
        assert!(matches!(error, StorageError::WrongChain { .. }), "{error}");
    }

    #[test]
    fn a_block_off_the_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = genesis("lockstep-storage");
        let db = ChainDb::open(dir.path(), &genesis).unwrap();
        let (block, executed) = next_block(&db, &genesis, 0);
        db.import(&block, &justification(&block), &executed)
            .unwrap();
        let error = db
            .import(&block, &justification(&block), &executed)
            .unwrap_err();
        assert!(matches!(error, StorageError::NotOnHead { .. }));
        assert_eq!(db.head().number, 1);
    }

    #[test]
    fn a_blocks_receipts_come_from_the_tx_index_in_block_order() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = genesis("lockstep-storage");
        let db = ChainDb::open(dir.path(), &genesis).unwrap();
        let (block, executed) = next_block(&db, &genesis, 0);
        db.import(&block, &justification(&block), &executed)
            .unwrap();
        let hash = block.hash();
        let tx_hashes: Vec<Hash> = block.extrinsics.iter().map(SignedTx::hash).collect();
        let receipts = db.receipts(&hash, &tx_hashes).unwrap();
        assert_eq!(receipts, executed.receipts);
        let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
        assert_eq!(
            lockstep_runtime::merkle::root(&leaves),
            block.header.receipts_root
        );
        // A transaction the index does not hold, or one of another block,
        // is damage, not an empty answer.
        let missing = db.receipts(&hash, &[Hash::digest(b"not a tx")]);
        assert!(
            matches!(missing, Err(StorageError::Corrupt(_))),
            "{missing:?}"
        );
        let elsewhere = db.receipts(&Hash::digest(b"other block"), &tx_hashes);
        assert!(
            matches!(elsewhere, Err(StorageError::Corrupt(_))),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn candidates_are_kept_until_deleted_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = genesis("lockstep-storage");
        let db = ChainDb::open(dir.path(), &genesis).unwrap();
        let (first, executed) = next_block(&db, &genesis, 0);
        let (second, _) = next_block(&db, &genesis, 1);
        assert_ne!(first.hash(), second.hash());
        db.save_candidate(&first).unwrap();
        db.save_candidate(&second).unwrap();
        let mut kept: Vec<Hash> = db.candidates().unwrap().iter().map(Block::hash).collect();
        kept.sort();
        let mut both = vec![first.hash(), second.hash()];
        both.sort();
        assert_eq!(kept, both);
        db.delete_candidates(&[first.hash()]).unwrap();
        let kept: Vec<Hash> = db.candidates().unwrap().iter().map(Block::hash).collect();
        assert_eq!(kept, vec![second.hash()]);
        // Once the head moves past it, it is stale and goes at start.
        db.import(&first, &justification(&first), &executed)
            .unwrap();
        assert!(db.candidates().unwrap().is_empty());
        drop(db);
        let db = ChainDb::open(dir.path(), &genesis).unwrap();
        assert!(db.candidates().unwrap().is_empty());
    }

    #[test]
    fn consensus_checkpoint_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let db = ChainDb::open(dir.path(), &genesis("lockstep-storage")).unwrap();
        assert_eq!(db.consensus_checkpoint().unwrap(), None);
        db.save_consensus_checkpoint(b"state").unwrap();
        assert_eq!(db.consensus_checkpoint().unwrap(), Some(b"state".to_vec()));
    }
}
