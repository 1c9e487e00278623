//! The running chain: database, pool and notifications, shared by the RPC
//! server, the consensus engine and (later) the network.
//!
//! [`Chain::submit`] is the one way a transaction enters the node: bounded
//! decode, signature check (outside any lock), then the pool. [`Chain::import`]
//! is the one way a block enters: one atomic database write, then the pool is
//! updated and subscribers hear about it. Everything a caller needs to judge
//! a transaction (pool, finalized index, finalized height) is answered here.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lockstep_runtime::execution::{
    build_block, check_block_with, first_bad_signature, BlockTemplate,
};
use lockstep_runtime::state::StateReader;
use lockstep_runtime::{
    AccountId, Block, BlockError, BlockLimits, Built, Candidates, ChainSpec, Executed, Genesis,
    Hash, Header, Justification, SignedTx, SigningContext, StateError,
};
use parity_scale_codec::Encode;
use tokio::sync::{broadcast, mpsc};

use crate::metrics::Metrics;
use crate::pool::{Dropped, PoolConfig, PoolError, Readiness, TxPool};
use crate::storage::{ChainDb, StorageError, StorageResult, TxLocation};

/// Most transaction watchers at once, over all connections.
pub const MAX_WATCHERS: usize = 65_536;
/// Accepted transactions waiting to be gossiped; beyond this the network
/// skips some (peers still get them in blocks).
const ACCEPTED_TX_QUEUE: usize = 16_384;

pub use lockstep_api::node::TxEvent;

/// Why a submitted transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Bytes that are not a transaction.
    #[error("not a valid extrinsic: {0}")]
    Decode(lockstep_runtime::codec::DecodeError),
    /// Bad signature, or signed for another chain or runtime version.
    #[error(
        "bad signature: the transaction is not signed by its signer for this chain (genesis {0})"
    )]
    BadSignature(Hash),
    /// Refused by the pool.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Already finalized.
    #[error("transaction {0} is already finalized")]
    AlreadyFinalized(Hash),
    /// Too many watchers.
    #[error("too many watched transactions")]
    TooManyWatchers,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<StateError> for SubmitError {
    fn from(error: StateError) -> Self {
        SubmitError::Storage(error.into())
    }
}

/// Where a transaction is, as `tx_getStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Neither pooled nor finalized here.
    Unknown,
    /// Waiting in the pool.
    Pool,
    /// Finalized.
    Finalized(TxLocation),
}

/// The chain a node runs.
pub struct Chain {
    db: ChainDb,
    pool: Mutex<TxPool>,
    spec: ChainSpec,
    context: SigningContext,
    limits: BlockLimits,
    heads: broadcast::Sender<Header>,
    /// Transactions accepted from local clients, for the network to gossip.
    accepted: broadcast::Sender<Vec<u8>>,
    watchers: Mutex<HashMap<Hash, Vec<mpsc::Sender<TxEvent>>>>,
    metrics: Arc<Metrics>,
    /// Serializes whole imports (write, prune, notify), so heads reach
    /// subscribers and metrics in order when consensus and block sync both
    /// import; submissions do not take it.
    importing: Mutex<()>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.spec.chain_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these structures half
    // updated in a way that matters more than stopping would.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Chain {
    /// Opens the chain's database under `path` (creating it from genesis).
    pub fn open(
        path: &std::path::Path,
        spec: ChainSpec,
        genesis: &Genesis,
        pool: PoolConfig,
        limits: BlockLimits,
        metrics: Arc<Metrics>,
    ) -> StorageResult<Chain> {
        let db = ChainDb::open(path, genesis)?;
        // The validity window is the chain's, not the operator's.
        let pool = PoolConfig {
            max_validity: spec.max_validity_blocks,
            ..pool
        };
        let (heads, _) = broadcast::channel(256);
        let (accepted, _) = broadcast::channel(ACCEPTED_TX_QUEUE);
        let head = db.head();
        metrics.best_height.store(head.number, Ordering::Relaxed);
        metrics
            .finalized_height
            .store(head.number, Ordering::Relaxed);
        Ok(Chain {
            db,
            pool: Mutex::new(TxPool::new(pool)),
            spec,
            context: genesis.signing_context(),
            limits,
            heads,
            accepted,
            watchers: Mutex::new(HashMap::new()),
            metrics,
            importing: Mutex::new(()),
        })
    }

    /// The database.
    pub fn db(&self) -> &ChainDb {
        &self.db
    }

    /// The chain spec.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// What transaction signatures bind to.
    pub fn signing_context(&self) -> &SigningContext {
        &self.context
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The finalized head.
    pub fn head(&self) -> Header {
        self.db.head()
    }

    /// Finalized heads as they are imported.
    pub fn subscribe_heads(&self) -> broadcast::Receiver<Header> {
        self.heads.subscribe()
    }

    /// Decodes, checks and pools a transaction from a local client; returns
    /// its hash and whether it is ready. With `watch`, also returns a
    /// channel of its events. Accepted transactions are offered to the
    /// network for gossip ([`Chain::subscribe_accepted`]).
    pub fn submit(
        &self,
        bytes: &[u8],
        watch: bool,
    ) -> Result<(Hash, Readiness, Option<mpsc::Receiver<TxEvent>>), SubmitError> {
        let tx = SignedTx::decode_bounded(bytes).map_err(SubmitError::Decode)?;
        let result = self.submit_decoded(tx, bytes.len(), watch);
        match &result {
            Ok(_) => {
                let _ = self.accepted.send(bytes.to_vec());
            }
            Err(_) => {
                self.metrics.rejected_txs.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Pools a batch of transactions gossiped by a peer; returns how many
    /// were new to the pool. Transactions the pool holds are skipped
    /// without a signature check. The rest are checked in one batch (which
    /// agrees
    /// with the single check used for local clients, signature by
    /// signature: see `lockstep_runtime::crypto`), and one bad signature
    /// refuses the whole message: an honest peer forwards only what its
    /// pool accepted. Not offered for gossip again: gossipsub forwards what
    /// the network task accepts.
    pub fn submit_batch_from_peer(&self, txs: Vec<SignedTx>) -> Result<usize, SubmitError> {
        let fresh: Vec<(SignedTx, Hash)> = {
            let pool = lock(&self.pool);
            txs.into_iter()
                .map(|tx| {
                    let hash = tx.hash();
                    (tx, hash)
                })
                .filter(|(_, hash)| !pool.contains(hash))
                .collect()
        };
        let (candidates, hashes): (Vec<SignedTx>, Vec<Hash>) = fresh.into_iter().unzip();
        if first_bad_signature(&candidates, &self.context).is_some() {
            return Err(SubmitError::BadSignature(self.context.genesis_hash));
        }
        let candidates = candidates.into_iter().zip(hashes);
        let mut pooled = 0;
        for (tx, hash) in candidates {
            let size = tx.encoded_size();
            // Finalized, stale, expired, nonce taken or a full pool: not the
            // sender's fault (and a message that pools nothing is not
            // forwarded).
            if self.pool_verified(tx, hash, size, false).is_ok() {
                pooled += 1;
            }
        }
        Ok(pooled)
    }

    /// Transactions accepted from local clients, SCALE-encoded.
    pub fn subscribe_accepted(&self) -> broadcast::Receiver<Vec<u8>> {
        self.accepted.subscribe()
    }

    fn submit_decoded(
        &self,
        tx: SignedTx,
        encoded_len: usize,
        watch: bool,
    ) -> Result<(Hash, Readiness, Option<mpsc::Receiver<TxEvent>>), SubmitError> {
        if !tx.verify_signature(&self.context) {
            return Err(SubmitError::BadSignature(self.context.genesis_hash));
        }
        let hash = tx.hash();
        self.pool_verified(tx, hash, encoded_len, watch)
    }

    /// Pools a transaction whose signature has been verified.
    fn pool_verified(
        &self,
        tx: SignedTx,
        hash: Hash,
        encoded_len: usize,
        watch: bool,
    ) -> Result<(Hash, Readiness, Option<mpsc::Receiver<TxEvent>>), SubmitError> {
        // Not finalized yet, and the signer's next nonce.
        let read_next_nonce = || -> Result<u64, SubmitError> {
            if self.db.tx_location(&hash)?.is_some() {
                return Err(SubmitError::AlreadyFinalized(hash));
            }
            Ok(StateReader::new(&self.db).nonce(&tx.signer)?)
        };
        let read_at = self.db.head().number;
        let mut next_nonce = read_next_nonce()?;
        let mut pool = lock(&self.pool);
        // An import writes its block, then prunes the pool under this lock.
        // If the head has not moved since the reads above, that prune is
        // still to come and removes anything they made stale. If it has
        // moved, the prune may be over: read again, under the lock.
        let head = self.db.head().number;
        if head != read_at {
            next_nonce = read_next_nonce()?;
        }
        let next_block = head + 1;
        let readiness = pool.insert(tx, hash, encoded_len, next_nonce, next_block)?;
        let receiver = if watch {
            let mut watchers = lock(&self.watchers);
            if watchers.len() >= MAX_WATCHERS {
                drop(watchers);
                pool.remove_included([&hash]);
                return Err(SubmitError::TooManyWatchers);
            }
            let (sender, receiver) = mpsc::channel(8);
            let first = match readiness {
                Readiness::Ready => TxEvent::Ready,
                Readiness::Future => TxEvent::Future,
            };
            let _ = sender.try_send(first);
            watchers.entry(hash).or_default().push(sender);
            Some(receiver)
        } else {
            None
        };
        self.metrics
            .pool_size
            .store(pool.len() as u64, Ordering::Relaxed);
        self.metrics
            .pool_bytes
            .store(pool.bytes() as u64, Ordering::Relaxed);
        Ok((hash, readiness, receiver))
    }

    /// Every pooled transaction, in arrival order.
    pub fn pending(&self) -> Vec<SignedTx> {
        lock(&self.pool).all()
    }

    /// Where a transaction is.
    pub fn tx_status(&self, hash: &Hash) -> StorageResult<TxStatus> {
        if let Some(location) = self.db.tx_location(hash)? {
            return Ok(TxStatus::Finalized(location));
        }
        Ok(if lock(&self.pool).contains(hash) {
            TxStatus::Pool
        } else {
            TxStatus::Unknown
        })
    }

    /// Builds the next block from the pool's ready transactions.
    pub fn build(&self, proposer: AccountId, timestamp: u64) -> Result<Built, StateError> {
        let head = self.db.head();
        let candidates = {
            let pool = lock(&self.pool);
            let state = StateReader::new(&self.db);
            let mut nonces: HashMap<AccountId, u64> = HashMap::new();
            pool.ready(
                |account| {
                    *nonces
                        .entry(*account)
                        .or_insert_with(|| state.nonce(account).unwrap_or(u64::MAX))
                },
                self.limits.max_txs,
            )
        };
        let template = BlockTemplate {
            parent: &head,
            timestamp,
            proposer,
        };
        build_block(
            &self.db,
            &self.context,
            template,
            (candidates, Candidates::Verified),
            &self.limits,
        )
    }

    /// Checks a block proposed on top of the head: linkage, limits,
    /// re-execution and roots. Signatures of transactions the pool holds
    /// were checked on arrival and are not checked again (see
    /// [`lockstep_runtime::execution::execute_with`]).
    pub fn check(&self, block: &Block) -> Result<Executed, BlockError> {
        // Hashed before taking the pool's lock, which RPC and gossip share.
        let hashes: Vec<Hash> = block.extrinsics.iter().map(SignedTx::hash).collect();
        let verified: Vec<bool> = {
            let pool = lock(&self.pool);
            hashes.iter().map(|hash| pool.contains(hash)).collect()
        };
        let head = self.db.head();
        check_block_with(
            &self.db,
            &self.context,
            &head,
            block,
            &self.limits,
            &verified,
        )
    }

    /// Writes a finalized block, then updates the pool and tells subscribers.
    /// The caller has checked the block (or built it) and its justification.
    pub fn import(
        &self,
        block: &Block,
        justification: &Justification,
        executed: &Executed,
    ) -> StorageResult<()> {
        let _importing = lock(&self.importing);
        let started = Instant::now();
        let hash = block.hash();
        let number = block.header.number;
        // Written before the pool is locked, so clients and peers keep
        // submitting during the write: `pool_verified` re-reads a nonce
        // read before the head moved.
        self.db.import(block, justification, executed)?;
        let mut pool = lock(&self.pool);

        let tx_hashes: Vec<Hash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
        pool.remove_included(&tx_hashes);
        let state = StateReader::new(&self.db);
        let mut touched: Vec<(AccountId, u64)> = Vec::new();
        for tx in &block.extrinsics {
            touched.push((tx.signer, state.nonce(&tx.signer)?));
        }
        touched.sort_unstable();
        touched.dedup();
        let dropped = pool.prune(&touched, number + 1);
        self.metrics
            .pool_size
            .store(pool.len() as u64, Ordering::Relaxed);
        self.metrics
            .pool_bytes
            .store(pool.bytes() as u64, Ordering::Relaxed);
        drop(pool);

        self.notify_watchers(&tx_hashes, hash, &dropped);
        let metrics = &self.metrics;
        metrics.best_height.store(number, Ordering::Relaxed);
        metrics.finalized_height.store(number, Ordering::Relaxed);
        metrics
            .block_txs
            .store(tx_hashes.len() as u64, Ordering::Relaxed);
        metrics
            .finalized_txs
            .fetch_add(tx_hashes.len() as u64, Ordering::Relaxed);
        metrics
            .import_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        lockstep_service::metrics::observe_since(&metrics.import_seconds, started);
        let _ = self.heads.send(block.header.clone());
        tracing::info!(
            target: "lockstep::chain",
            "finalized #{number} ({hash}) with {} txs, {} dropped from the pool",
            tx_hashes.len(),
            dropped.len()
        );
        Ok(())
    }

    fn notify_watchers(&self, included: &[Hash], block: Hash, dropped: &[(Hash, Dropped)]) {
        let mut watchers = lock(&self.watchers);
        if watchers.is_empty() {
            return;
        }
        let mut send = |hash: &Hash, events: &[TxEvent]| {
            if let Some(senders) = watchers.remove(hash) {
                for sender in senders {
                    for event in events {
                        let _ = sender.try_send(event.clone());
                    }
                }
            }
        };
        for hash in included {
            send(hash, &[TxEvent::InBlock(block), TxEvent::Finalized(block)]);
        }
        for (hash, why) in dropped {
            let event = match why {
                Dropped::Stale => TxEvent::Invalid("nonce used by another transaction".into()),
                Dropped::Expired => TxEvent::Dropped("expired before inclusion".into()),
                Dropped::Stalled => {
                    TxEvent::Dropped("waited too long for a lower nonce that never came".into())
                }
            };
            send(hash, &[event]);
        }
        // Watchers whose subscriber went away are removed lazily.
        watchers.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
    }
}
