//! The state transition: executing, building and checking blocks.
//!
//! Inclusion and success are different things:
//!
//! - A transaction is **includable** in block `b` when its signature is valid
//!   for this chain, its nonce is exactly the signer's next nonce, and
//!   `valid_until >= b`. A block holding anything else is invalid as a whole.
//! - An included transaction is **dispatched**: it succeeds, or it fails with
//!   a [`DispatchError`] and changes nothing but the signer's nonce, which is
//!   used either way. Its [`Receipt`] records which.
//!
//! Signatures of a block are checked in one batch; when the batch fails, they
//! are checked one by one to name the first bad transaction.
//!
//! Everything here is a pure function of the committed state and the block:
//! executing the same block on the same state gives the same receipts, the
//! same writes and the same roots.

use parity_scale_codec::Encode;

use crate::block::{Block, DispatchError, Header, Outcome, Receipt};
use crate::crypto;
use crate::merkle;
use crate::primitives::{AccountId, BlockNumber, Hash, Nonce};
use crate::state::{AssetInfo, Overlay, StateChanges, StateError, StateStore};
use crate::transaction::{Call, SignedTx, SigningContext};

/// Why a transaction cannot be included (now, or ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The signature is not valid for this chain and spec version.
    #[error("bad signature (or signed for another chain or spec version)")]
    BadSignature,
    /// The nonce was used already.
    #[error("stale nonce {got}: the account's next nonce is {expected}")]
    StaleNonce {
        /// The account's next nonce.
        expected: Nonce,
        /// The transaction's nonce.
        got: Nonce,
    },
    /// The nonce is ahead of the account's next nonce.
    #[error("future nonce {got}: the account's next nonce is {expected}")]
    FutureNonce {
        /// The account's next nonce.
        expected: Nonce,
        /// The transaction's nonce.
        got: Nonce,
    },
    /// Its last valid block is behind.
    #[error("expired: valid until block {valid_until}, block {block} is being built")]
    Expired {
        /// The transaction's last valid block.
        valid_until: BlockNumber,
        /// The block it was tried in.
        block: BlockNumber,
    },
}

/// Why a block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A transaction in it is not includable.
    #[error("transaction {index} ({tx_hash}) is not includable: {error}")]
    NotIncludable {
        /// Position in the block.
        index: usize,
        /// Its hash.
        tx_hash: Hash,
        /// Why.
        error: TxError,
    },
    /// It does not extend the given parent.
    #[error("parent hash {found} is not the parent {expected}")]
    WrongParent {
        /// The parent's hash.
        expected: Hash,
        /// What the header says.
        found: Hash,
    },
    /// Its number is not the parent's plus one.
    #[error("block number {found}, expected {expected}")]
    WrongNumber {
        /// Parent's number plus one.
        expected: BlockNumber,
        /// What the header says.
        found: BlockNumber,
    },
    /// Its timestamp is before its parent's.
    #[error("timestamp {found} is before the parent's {parent}")]
    TimestampBeforeParent {
        /// The parent's timestamp.
        parent: u64,
        /// The block's.
        found: u64,
    },
    /// A root in the header differs from the re-executed one.
    #[error("{which} root mismatch: header has {in_header}, execution gives {computed}")]
    RootMismatch {
        /// Which root.
        which: &'static str,
        /// What the header says.
        in_header: Hash,
        /// What re-execution computed.
        computed: Hash,
    },
    /// More transactions or bytes than a block may hold.
    #[error("block exceeds its limits: {0}")]
    TooLarge(String),
    /// State could not be read.
    #[error(transparent)]
    State(#[from] StateError),
}

/// How much a block may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions in one block.
    pub max_txs: usize,
    /// Most bytes of encoded transactions in one block.
    pub max_tx_bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_txs: 20_000,
            max_tx_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The result of executing a list of transactions on a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// The state writes and the new state root.
    pub changes: StateChanges,
    /// Merkle root of the transaction hashes.
    pub extrinsics_root: Hash,
    /// Merkle root of the receipt hashes.
    pub receipts_root: Hash,
}

impl Executed {
    /// The state root after execution.
    pub fn state_root(&self) -> Hash {
        self.changes.root
    }
}

/// Checks whether `tx` may be included in block `number` given the signer's
/// next nonce. The signature is checked separately (in batches).
pub fn check_includable(
    tx: &SignedTx,
    next_nonce: Nonce,
    number: BlockNumber,
) -> Result<(), TxError> {
    if !crate::includable_at(tx.valid_until, number) {
        return Err(TxError::Expired {
            valid_until: tx.valid_until,
            block: number,
        });
    }
    match tx.nonce.cmp(&next_nonce) {
        std::cmp::Ordering::Less => Err(TxError::StaleNonce {
            expected: next_nonce,
            got: tx.nonce,
        }),
        std::cmp::Ordering::Greater => Err(TxError::FutureNonce {
            expected: next_nonce,
            got: tx.nonce,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Index of the first transaction whose signature is bad, if any: one batch
/// check, then one by one only if the batch fails.
pub fn first_bad_signature(txs: &[SignedTx], context: &SigningContext) -> Option<usize> {
    let txs: Vec<&SignedTx> = txs.iter().collect();
    first_bad_signature_of(&txs, context)
}

fn first_bad_signature_of(txs: &[&SignedTx], context: &SigningContext) -> Option<usize> {
    let payloads: Vec<Vec<u8>> = txs.iter().map(|tx| tx.signing_payload(context)).collect();
    let messages: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let signers: Vec<AccountId> = txs.iter().map(|tx| tx.signer).collect();
    let signatures: Vec<crypto::Signature> = txs.iter().map(|tx| tx.signature).collect();
    if crypto::verify_batch(&signers, &messages, &signatures) {
        return None;
    }
    (0..txs.len()).find(|&i| !crypto::verify(&signers[i], messages[i], &signatures[i]))
}

/// Dispatches one call for `signer`. On failure nothing was written.
fn dispatch(
    state: &mut Overlay<'_>,
    signer: &AccountId,
    call: &Call,
) -> Result<Outcome, StateError> {
    let result = match call {
        Call::Transfer {
            asset, to, amount, ..
        } => transfer(state, signer, *asset, to, *amount)?,
        Call::CreateAsset { id, name, decimals } => {
            if state.asset(*id)?.is_some() {
                Err(DispatchError::AssetExists)
            } else {
                let info = AssetInfo {
                    name: name.clone(),
                    decimals: *decimals,
                    issuer: *signer,
                    supply: 0,
                };
                state.set_asset(*id, &info);
                Ok(())
            }
        }
        Call::Mint { asset, to, amount } => mint(state, signer, *asset, to, *amount)?,
    };
    Ok(match result {
        Ok(()) => Outcome::Success,
        Err(error) => Outcome::Failed(error),
    })
}

type DispatchResult = Result<Result<(), DispatchError>, StateError>;

fn transfer(
    state: &mut Overlay<'_>,
    from: &AccountId,
    asset: u32,
    to: &AccountId,
    amount: u128,
) -> DispatchResult {
    if amount == 0 {
        return Ok(Err(DispatchError::ZeroAmount));
    }
    let from_balance = state.balance(from, asset)?;
    if from_balance < amount {
        // A positive balance implies the asset exists, so the asset record is
        // read only on this (rare) path: the error says which check failed.
        if state.asset(asset)?.is_none() {
            return Ok(Err(DispatchError::UnknownAsset));
        }
        return Ok(Err(DispatchError::InsufficientBalance));
    }
    if from == to {
        return Ok(Ok(()));
    }
    let Some(to_balance) = state.balance(to, asset)?.checked_add(amount) else {
        return Ok(Err(DispatchError::Overflow));
    };
    state.set_balance(from, asset, from_balance - amount);
    state.set_balance(to, asset, to_balance);
    Ok(Ok(()))
}

fn mint(
    state: &mut Overlay<'_>,
    signer: &AccountId,
    asset: u32,
    to: &AccountId,
    amount: u128,
) -> DispatchResult {
    if amount == 0 {
        return Ok(Err(DispatchError::ZeroAmount));
    }
    let Some(mut info) = state.asset(asset)? else {
        return Ok(Err(DispatchError::UnknownAsset));
    };
    if info.issuer != *signer {
        return Ok(Err(DispatchError::NotIssuer));
    }
    let (Some(supply), Some(balance)) = (
        info.supply.checked_add(amount),
        state.balance(to, asset)?.checked_add(amount),
    ) else {
        return Ok(Err(DispatchError::Overflow));
    };
    info.supply = supply;
    state.set_asset(asset, &info);
    state.set_balance(to, asset, balance);
    Ok(Ok(()))
}

/// Applies one includable transaction: dispatch, then use the nonce.
fn apply(state: &mut Overlay<'_>, tx: &SignedTx, tx_hash: Hash) -> Result<Receipt, StateError> {
    let outcome = dispatch(state, &tx.signer, &tx.call)?;
    state.set_nonce(&tx.signer, tx.nonce.saturating_add(1));
    Ok(Receipt { tx_hash, outcome })
}

fn finish(
    state: Overlay<'_>,
    tx_hashes: &[Hash],
    receipts: Vec<Receipt>,
) -> Result<Executed, StateError> {
    let receipt_hashes: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
    Ok(Executed {
        extrinsics_root: merkle::root(tx_hashes),
        receipts_root: merkle::root(&receipt_hashes),
        changes: state.commit()?,
        receipts,
    })
}

/// Executes `txs` as block `number` on `store`. Fails if any transaction is
/// not includable; otherwise every transaction gets a receipt.
pub fn execute(
    store: &dyn StateStore,
    context: &SigningContext,
    number: BlockNumber,
    txs: &[SignedTx],
) -> Result<Executed, BlockError> {
    execute_with(store, context, number, txs, &[])
}

/// [`execute`], skipping the signature check of every transaction whose
/// flag in `verified` is set (index by index; missing flags count as
/// unset). A node sets the flag for transactions its pool holds: the pool
/// checked their signatures on arrival, and a transaction's hash covers its
/// signature, so the bytes are the ones that were checked. This is sound
/// because signature validity is a property of each signature alone, the
/// same in a batch of any grouping (ZIP-215, see [`crate::crypto`]): nodes
/// whose pools hold different transactions reach the same verdict.
pub fn execute_with(
    store: &dyn StateStore,
    context: &SigningContext,
    number: BlockNumber,
    txs: &[SignedTx],
    verified: &[bool],
) -> Result<Executed, BlockError> {
    let tx_hashes: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
    let unverified: Vec<usize> = (0..txs.len())
        .filter(|&i| !verified.get(i).copied().unwrap_or(false))
        .collect();
    let to_check: Vec<&SignedTx> = unverified.iter().map(|&i| &txs[i]).collect();
    if let Some(bad) = first_bad_signature_of(&to_check, context) {
        let index = unverified[bad];
        return Err(BlockError::NotIncludable {
            index,
            tx_hash: tx_hashes[index],
            error: TxError::BadSignature,
        });
    }
    let mut state = Overlay::new(store);
    let mut receipts = Vec::with_capacity(txs.len());
    for (index, (tx, tx_hash)) in txs.iter().zip(&tx_hashes).enumerate() {
        check_includable(tx, state.nonce(&tx.signer)?, number).map_err(|error| {
            BlockError::NotIncludable {
                index,
                tx_hash: *tx_hash,
                error,
            }
        })?;
        receipts.push(apply(&mut state, tx, *tx_hash)?);
    }
    Ok(finish(state, &tx_hashes, receipts)?)
}

/// Checks a block received for import on top of `parent`: linkage, limits,
/// re-execution, and every root in the header.
pub fn check_block(
    store: &dyn StateStore,
    context: &SigningContext,
    parent: &Header,
    block: &Block,
    limits: &BlockLimits,
) -> Result<Executed, BlockError> {
    check_block_with(store, context, parent, block, limits, &[])
}

/// [`check_block`], skipping the signature check of the transactions
/// flagged in `verified` (see [`execute_with`]).
pub fn check_block_with(
    store: &dyn StateStore,
    context: &SigningContext,
    parent: &Header,
    block: &Block,
    limits: &BlockLimits,
    verified: &[bool],
) -> Result<Executed, BlockError> {
    let header = &block.header;
    let parent_hash = parent.hash();
    if header.parent_hash != parent_hash {
        return Err(BlockError::WrongParent {
            expected: parent_hash,
            found: header.parent_hash,
        });
    }
    if header.number != parent.number + 1 {
        return Err(BlockError::WrongNumber {
            expected: parent.number + 1,
            found: header.number,
        });
    }
    if header.timestamp < parent.timestamp {
        return Err(BlockError::TimestampBeforeParent {
            parent: parent.timestamp,
            found: header.timestamp,
        });
    }
    if block.extrinsics.len() > limits.max_txs {
        return Err(BlockError::TooLarge(format!(
            "{} transactions, at most {}",
            block.extrinsics.len(),
            limits.max_txs
        )));
    }
    let bytes: usize = block.extrinsics.iter().map(Encode::encoded_size).sum();
    if bytes > limits.max_tx_bytes {
        return Err(BlockError::TooLarge(format!(
            "{bytes} bytes of transactions, at most {}",
            limits.max_tx_bytes
        )));
    }
    let executed = execute_with(store, context, header.number, &block.extrinsics, verified)?;
    for (which, in_header, computed) in [
        (
            "extrinsics",
            header.extrinsics_root,
            executed.extrinsics_root,
        ),
        ("receipts", header.receipts_root, executed.receipts_root),
        ("state", header.state_root, executed.state_root()),
    ] {
        if in_header != computed {
            return Err(BlockError::RootMismatch {
                which,
                in_header,
                computed,
            });
        }
    }
    Ok(executed)
}

/// A block built by [`build_block`], with its execution result.
#[derive(Debug, Clone)]
pub struct Built {
    /// The new block.
    pub block: Block,
    /// Receipts and state changes of the block.
    pub executed: Executed,
    /// Candidates left out for good (bad signature, stale nonce, expired),
    /// by hash. Candidates left out for lack of room or for a future nonce
    /// are not listed: they may fit a later block.
    pub rejected: Vec<(Hash, TxError)>,
}

/// What a new block is built on and by whom.
#[derive(Debug, Clone, Copy)]
pub struct BlockTemplate<'a> {
    /// The block to build on.
    pub parent: &'a Header,
    /// Milliseconds since the Unix epoch; raised to the parent's if earlier.
    pub timestamp: u64,
    /// The validator building it.
    pub proposer: AccountId,
}

/// Whether the candidates given to [`build_block`] still need their
/// signatures checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates {
    /// Every signature was verified already (the node's pool verifies each
    /// transaction on arrival); checking them again would only cost time.
    Verified,
    /// Unknown provenance: verify them (in one batch) and drop bad ones.
    Unverified,
}

/// Builds the next block on top of `template.parent` from `candidates`, in
/// their order, skipping any that are not includable, up to `limits`.
pub fn build_block(
    store: &dyn StateStore,
    context: &SigningContext,
    template: BlockTemplate<'_>,
    candidates: (Vec<SignedTx>, Candidates),
    limits: &BlockLimits,
) -> Result<Built, StateError> {
    let number = template.parent.number + 1;
    let mut rejected = Vec::new();
    let candidates = match candidates {
        (txs, Candidates::Verified) => txs,
        (txs, Candidates::Unverified) => drop_bad_signatures(txs, context, &mut rejected),
    };

    let mut state = Overlay::new(store);
    let mut extrinsics = Vec::new();
    let mut tx_hashes = Vec::new();
    let mut receipts = Vec::new();
    let mut bytes = 0;
    for tx in candidates {
        if extrinsics.len() == limits.max_txs {
            break;
        }
        let size = tx.encoded_size();
        if bytes + size > limits.max_tx_bytes {
            continue;
        }
        let tx_hash = tx.hash();
        match check_includable(&tx, state.nonce(&tx.signer)?, number) {
            Ok(()) => {}
            Err(TxError::FutureNonce { .. }) => continue,
            Err(error) => {
                rejected.push((tx_hash, error));
                continue;
            }
        }
        receipts.push(apply(&mut state, &tx, tx_hash)?);
        bytes += size;
        tx_hashes.push(tx_hash);
        extrinsics.push(tx);
    }
    let executed = finish(state, &tx_hashes, receipts)?;
    let header = Header {
        parent_hash: template.parent.hash(),
        number,
        timestamp: template.timestamp.max(template.parent.timestamp),
        proposer: template.proposer,
        extrinsics_root: executed.extrinsics_root,
        receipts_root: executed.receipts_root,
        state_root: executed.state_root(),
    };
    Ok(Built {
        block: Block { header, extrinsics },
        executed,
        rejected,
    })
}

fn drop_bad_signatures(
    candidates: Vec<SignedTx>,
    context: &SigningContext,
    rejected: &mut Vec<(Hash, TxError)>,
) -> Vec<SignedTx> {
    if first_bad_signature(&candidates, context).is_none() {
        return candidates;
    }
    candidates
        .into_iter()
        .filter(|tx| {
            let good = tx.verify_signature(context);
            if !good {
                rejected.push((tx.hash(), TxError::BadSignature));
            }
            good
        })
        .collect()
}
