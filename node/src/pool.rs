//! The transaction pool: valid transactions waiting for a block.
//!
//! Per account, transactions are kept in nonce order. Those whose nonces run
//! on without a gap from the account's next nonce are *ready*; the rest wait
//! in the *future* part until the gap is filled. The pool is bounded in count
//! and bytes, and per account; when full it refuses new transactions rather
//! than evicting (a sender can retry; nothing accepted silently disappears).
//!
//! It is bounded in time too: it refuses a transaction whose `valid_until`
//! is more than the chain spec's `max_validity_blocks` past the head, so
//! whatever it holds expires within that many blocks; and a transaction that
//! has waited in the future part for `future_ttl_blocks` blocks (its gap
//! never filled) is dropped before then, with a `dropped` status for its
//! watchers.
//!
//! The pool itself does no I/O and checks no signatures: the caller verifies
//! the signature (outside any lock) and passes the account's nonce from the
//! finalized state. After each imported block the caller removes the
//! included transactions and prunes what became stale or expired.

use std::collections::{BTreeMap, HashMap};

use lockstep_runtime::{
    AccountId, BlockNumber, Hash, Nonce, SignedTx, DEFAULT_MAX_VALIDITY_BLOCKS,
};

/// Bounds of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes of encoded transactions held.
    pub max_bytes: usize,
    /// Most transactions held for one account (also how far past its next
    /// nonce a transaction may be).
    pub max_per_account: usize,
    /// How far past the head a `valid_until` may be, in blocks: the chain
    /// spec's `max_validity_blocks` (the node sets it from the spec).
    pub max_validity: u64,
    /// Blocks a transaction may wait in the future part before it is
    /// dropped.
    pub future_ttl_blocks: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_txs: 200_000,
            max_bytes: 128 * 1024 * 1024,
            max_per_account: 4096,
            max_validity: DEFAULT_MAX_VALIDITY_BLOCKS,
            future_ttl_blocks: 600,
        }
    }
}

/// Where an accepted transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// It can go into the next block.
    Ready,
    /// It waits for lower nonces.
    Future,
}

/// Why the pool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The same transaction is in the pool already.
    #[error("transaction {0} is already in the pool")]
    AlreadyImported(Hash),
    /// Its nonce is used.
    #[error("stale nonce {got}: the account's next nonce is {expected}")]
    StaleNonce {
        /// The account's next nonce.
        expected: Nonce,
        /// The transaction's.
        got: Nonce,
    },
    /// Its last valid block has passed.
    #[error("expired: valid until block {valid_until}, next block is {next_block}")]
    Expired {
        /// Its last valid block.
        valid_until: BlockNumber,
        /// The next block to be built.
        next_block: BlockNumber,
    },
    /// Its last valid block is further ahead than the chain allows.
    #[error(
        "valid until block {valid_until}, but this chain accepts at most {max_validity} blocks \
         past its head #{head} (at most #{limit})",
        limit = head.saturating_add(*max_validity)
    )]
    ValidityTooLong {
        /// Its last valid block.
        valid_until: BlockNumber,
        /// The head when it was offered.
        head: BlockNumber,
        /// The chain spec's bound.
        max_validity: u64,
    },
    /// Another transaction in the pool has the same signer and nonce.
    #[error("nonce {nonce} is already taken by transaction {existing} in the pool")]
    NonceTaken {
        /// The nonce.
        nonce: Nonce,
        /// The transaction holding it.
        existing: Hash,
    },
    /// Too far ahead of the account's next nonce, or the account holds too many.
    #[error("too many pending transactions for this account (at most {0})")]
    AccountFull(usize),
    /// The pool is at its bound.
    #[error("the transaction pool is full ({txs} transactions, {bytes} bytes)")]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    tx: SignedTx,
    hash: Hash,
    bytes: usize,
    /// Arrival order, for fairness between accounts.
    seq: u64,
    /// The next block's number when it arrived.
    since: BlockNumber,
}

/// Why a transaction left the pool without being included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Another transaction used its nonce.
    Stale,
    /// Its last valid block passed.
    Expired,
    /// It waited in the future part longer than `future_ttl_blocks`.
    Stalled,
}

/// The pool.
#[derive(Debug, Default)]
pub struct TxPool {
    config: PoolConfig,
    accounts: HashMap<AccountId, BTreeMap<Nonce, Entry>>,
    /// The next nonce in the finalized state of each account held, as last
    /// told (on insert and on prune): what tells ready from future.
    next_nonces: HashMap<AccountId, Nonce>,
    by_hash: HashMap<Hash, (AccountId, Nonce)>,
    bytes: usize,
    next_seq: u64,
}

impl TxPool {
    /// An empty pool with these bounds.
    pub fn new(config: PoolConfig) -> TxPool {
        TxPool {
            config,
            ..TxPool::default()
        }
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a transaction is held.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Admits a transaction whose signature the caller has verified.
    /// `next_nonce` is the signer's next nonce in the finalized state and
    /// `next_block` the number of the next block.
    pub fn insert(
        &mut self,
        tx: SignedTx,
        hash: Hash,
        encoded_len: usize,
        next_nonce: Nonce,
        next_block: BlockNumber,
    ) -> Result<Readiness, PoolError> {
        if self.by_hash.contains_key(&hash) {
            return Err(PoolError::AlreadyImported(hash));
        }
        if tx.nonce < next_nonce {
            return Err(PoolError::StaleNonce {
                expected: next_nonce,
                got: tx.nonce,
            });
        }
        if !lockstep_runtime::includable_at(tx.valid_until, next_block) {
            return Err(PoolError::Expired {
                valid_until: tx.valid_until,
                next_block,
            });
        }
        let head = next_block.saturating_sub(1);
        if !lockstep_runtime::within_validity_window(tx.valid_until, head, self.config.max_validity)
        {
            return Err(PoolError::ValidityTooLong {
                valid_until: tx.valid_until,
                head,
                max_validity: self.config.max_validity,
            });
        }
        let per_account = self.config.max_per_account;
        if tx.nonce - next_nonce >= per_account as u64 {
            return Err(PoolError::AccountFull(per_account));
        }
        if let Some(queue) = self.accounts.get(&tx.signer) {
            if let Some(existing) = queue.get(&tx.nonce) {
                return Err(PoolError::NonceTaken {
                    nonce: tx.nonce,
                    existing: existing.hash,
                });
            }
            if queue.len() >= per_account {
                return Err(PoolError::AccountFull(per_account));
            }
        }
        if self.len() >= self.config.max_txs || self.bytes + encoded_len > self.config.max_bytes {
            return Err(PoolError::Full {
                txs: self.len(),
                bytes: self.bytes,
            });
        }

        let (signer, nonce) = (tx.signer, tx.nonce);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += encoded_len;
        self.by_hash.insert(hash, (signer, nonce));
        let known = self.next_nonces.entry(signer).or_insert(next_nonce);
        *known = (*known).max(next_nonce);
        let queue = self.accounts.entry(signer).or_default();
        queue.insert(
            nonce,
            Entry {
                tx,
                hash,
                bytes: encoded_len,
                seq,
                since: next_block,
            },
        );
        let gapless = queue.range(next_nonce..=nonce).count() as u64 == nonce - next_nonce + 1;
        Ok(if gapless {
            Readiness::Ready
        } else {
            Readiness::Future
        })
    }

    /// Ready transactions in block order: per account in nonce order from its
    /// next nonce, across accounts by arrival, at most `max`.
    pub fn ready(
        &self,
        mut next_nonce: impl FnMut(&AccountId) -> Nonce,
        max: usize,
    ) -> Vec<SignedTx> {
        let mut ready: Vec<(u64, &Entry)> = Vec::new();
        for (account, queue) in &self.accounts {
            let first = next_nonce(account);
            // A transaction may not jump ahead of a lower nonce that arrived
            // later: its place is the latest arrival among its prefix.
            let mut place = 0;
            for (expected, (nonce, entry)) in (first..).zip(queue.range(first..)) {
                if *nonce != expected {
                    break;
                }
                place = place.max(entry.seq);
                ready.push((place, entry));
            }
        }
        ready.sort_unstable_by_key(|(place, entry)| (*place, entry.tx.nonce));
        ready
            .into_iter()
            .take(max)
            .map(|(_, entry)| entry.tx.clone())
            .collect()
    }

    /// Every transaction held, ready or not.
    pub fn all(&self) -> Vec<SignedTx> {
        let mut entries: Vec<&Entry> = self.accounts.values().flat_map(|q| q.values()).collect();
        entries.sort_unstable_by_key(|e| e.seq);
        entries.into_iter().map(|e| e.tx.clone()).collect()
    }

    fn remove(&mut self, hash: &Hash) -> Option<Entry> {
        let (account, nonce) = self.by_hash.remove(hash)?;
        let queue = self.accounts.get_mut(&account)?;
        let entry = queue.remove(&nonce)?;
        if queue.is_empty() {
            self.accounts.remove(&account);
            self.next_nonces.remove(&account);
        }
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Removes transactions that were included in a block; returns those that
    /// were held.
    pub fn remove_included<'a>(&mut self, hashes: impl IntoIterator<Item = &'a Hash>) -> Vec<Hash> {
        hashes
            .into_iter()
            .filter_map(|h| self.remove(h).map(|e| e.hash))
            .collect()
    }

    /// Drops what can never be included any more, for the accounts given
    /// with their new next nonces (those a block touched), every account's
    /// expired transactions, and those that waited in the future part past
    /// `future_ttl_blocks`. Returns what was dropped and why.
    pub fn prune(
        &mut self,
        touched: &[(AccountId, Nonce)],
        next_block: BlockNumber,
    ) -> Vec<(Hash, Dropped)> {
        let mut dropped = Vec::new();
        for (account, next_nonce) in touched {
            if let Some(known) = self.next_nonces.get_mut(account) {
                *known = (*known).max(*next_nonce);
            }
            if let Some(queue) = self.accounts.get(account) {
                dropped.extend(
                    queue
                        .range(..next_nonce)
                        .map(|(_, e)| (e.hash, Dropped::Stale)),
                );
            }
        }
        let ttl = self.config.future_ttl_blocks;
        for (account, queue) in &self.accounts {
            dropped.extend(
                queue
                    .values()
                    .filter(|e| !lockstep_runtime::includable_at(e.tx.valid_until, next_block))
                    .map(|e| (e.hash, Dropped::Expired)),
            );
            // Past the first gap from the next nonce, everything is future.
            let Some(&next_nonce) = self.next_nonces.get(account) else {
                continue;
            };
            let ready = (next_nonce..)
                .zip(queue.range(next_nonce..))
                .take_while(|(expected, (nonce, _))| expected == *nonce)
                .count() as u64;
            dropped.extend(
                queue
                    .range(next_nonce.saturating_add(ready)..)
                    .filter(|(_, e)| next_block.saturating_sub(e.since) > ttl)
                    .map(|(_, e)| (e.hash, Dropped::Stalled)),
            );
        }
        dropped.sort_unstable_by_key(|(h, _)| *h);
        dropped.dedup_by_key(|(h, _)| *h);
        for (hash, _) in &dropped {
            self.remove(hash);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::{Call, Keypair, SigningContext};
    use parity_scale_codec::Encode;

    fn tx(who: &str, nonce: Nonce, valid_until: BlockNumber) -> SignedTx {
        let call = Call::Transfer {
            asset: 1,
            to: Keypair::dev("zed").public(),
            amount: 1,
            reference: None,
        };
        SignedTx::sign(
            &Keypair::dev(who),
            &SigningContext::new(Hash::ZERO),
            nonce,
            valid_until,
            call,
        )
    }

    fn insert(pool: &mut TxPool, tx: &SignedTx, next_nonce: Nonce) -> Result<Readiness, PoolError> {
        pool.insert(tx.clone(), tx.hash(), tx.encoded_size(), next_nonce, 1)
    }

    #[test]
    fn ready_and_future_queues() {
        let mut pool = TxPool::new(PoolConfig::default());
        assert_eq!(insert(&mut pool, &tx("a", 2, 10), 0), Ok(Readiness::Future));
        assert_eq!(insert(&mut pool, &tx("a", 0, 10), 0), Ok(Readiness::Ready));
        assert!(pool.ready(|_| 0, 10).iter().map(|t| t.nonce).eq([0]));
        assert_eq!(insert(&mut pool, &tx("a", 1, 10), 0), Ok(Readiness::Ready));
        assert!(pool.ready(|_| 0, 10).iter().map(|t| t.nonce).eq([0, 1, 2]));
        assert_eq!(pool.ready(|_| 0, 2).len(), 2);
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn fifo_across_accounts_without_breaking_nonce_order() {
        let mut pool = TxPool::new(PoolConfig::default());
        let order = [("b", 1), ("a", 0), ("b", 0), ("c", 0)];
        for (who, nonce) in order {
            insert(&mut pool, &tx(who, nonce, 10), 0).unwrap();
        }
        let ready: Vec<(AccountId, Nonce)> = pool
            .ready(|_| 0, 10)
            .iter()
            .map(|t| (t.signer, t.nonce))
            .collect();
        let id = |n: &str| Keypair::dev(n).public();
        assert_eq!(
            ready,
            vec![(id("a"), 0), (id("b"), 0), (id("b"), 1), (id("c"), 0)]
        );
    }

    #[test]
    fn refusals() {
        let mut pool = TxPool::new(PoolConfig {
            max_txs: 3,
            max_bytes: 1 << 20,
            max_per_account: 2,
            ..PoolConfig::default()
        });
        let first = tx("a", 5, 10);
        insert(&mut pool, &first, 5).unwrap();
        assert_eq!(
            insert(&mut pool, &first, 5),
            Err(PoolError::AlreadyImported(first.hash()))
        );
        assert_eq!(
            insert(&mut pool, &tx("a", 4, 10), 5),
            Err(PoolError::StaleNonce {
                expected: 5,
                got: 4
            })
        );
        let expired = tx("b", 0, 3);
        assert_eq!(
            pool.insert(expired.clone(), expired.hash(), 100, 0, 4),
            Err(PoolError::Expired {
                valid_until: 3,
                next_block: 4
            })
        );
        assert_eq!(
            insert(&mut pool, &tx("a", 5, 11), 5),
            Err(PoolError::NonceTaken {
                nonce: 5,
                existing: first.hash()
            })
        );
        assert_eq!(
            insert(&mut pool, &tx("a", 7, 10), 5),
            Err(PoolError::AccountFull(2))
        );
        insert(&mut pool, &tx("a", 6, 10), 5).unwrap();
        assert_eq!(
            insert(&mut pool, &tx("a", 6, 12), 5).unwrap_err(),
            PoolError::NonceTaken {
                nonce: 6,
                existing: tx("a", 6, 10).hash()
            }
        );
        insert(&mut pool, &tx("b", 0, 10), 0).unwrap();
        assert!(matches!(
            insert(&mut pool, &tx("c", 0, 10), 0),
            Err(PoolError::Full { .. })
        ));
        assert_eq!(pool.len(), 3);

        let mut small = TxPool::new(PoolConfig {
            max_txs: 10,
            max_bytes: 200,
            max_per_account: 8,
            ..PoolConfig::default()
        });
        insert(&mut small, &tx("a", 0, 10), 0).unwrap();
        assert!(matches!(
            insert(&mut small, &tx("b", 0, 10), 0),
            Err(PoolError::Full { .. })
        ));
    }

    #[test]
    fn inclusion_and_pruning() {
        let mut pool = TxPool::new(PoolConfig::default());
        let txs = [
            tx("a", 0, 10),
            tx("a", 1, 10),
            tx("a", 2, 3),
            tx("b", 0, 10),
        ];
        for t in &txs {
            insert(&mut pool, t, 0).unwrap();
        }
        let bytes_before = pool.bytes();
        assert_eq!(
            pool.remove_included([&txs[0].hash(), &Hash::ZERO]),
            vec![txs[0].hash()]
        );
        assert!(pool.bytes() < bytes_before);
        // A block elsewhere used a's nonce 1 (another tx), and block 4 is next.
        let a = Keypair::dev("a").public();
        let mut dropped = pool.prune(&[(a, 2)], 4);
        dropped.sort_by_key(|(h, _)| *h);
        let mut expected = vec![
            (txs[1].hash(), Dropped::Stale),
            (txs[2].hash(), Dropped::Expired),
        ];
        expected.sort_by_key(|(h, _)| *h);
        assert_eq!(dropped, expected);
        assert_eq!(pool.all(), vec![txs[3].clone()]);
        assert_eq!(pool.remove_included([&txs[3].hash()]).len(), 1);
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn a_validity_window_past_the_chains_bound_is_refused() {
        let config = PoolConfig {
            max_validity: 100,
            ..PoolConfig::default()
        };
        let mut pool = TxPool::new(config);
        // Head #0 (next block 1): valid_until 100 is the last allowed.
        assert_eq!(insert(&mut pool, &tx("a", 0, 100), 0), Ok(Readiness::Ready));
        let far = tx("a", 1, 101);
        let refused = insert(&mut pool, &far, 0).unwrap_err();
        assert_eq!(
            refused,
            PoolError::ValidityTooLong {
                valid_until: 101,
                head: 0,
                max_validity: 100
            }
        );
        assert!(refused.to_string().contains("at most #100"), "{refused}");
        let decades = tx("a", 1, 1_000_000_000);
        assert!(matches!(
            insert(&mut pool, &decades, 0),
            Err(PoolError::ValidityTooLong { .. })
        ));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_future_transaction_whose_gap_never_fills_is_dropped_after_its_ttl() {
        let config = PoolConfig {
            future_ttl_blocks: 5,
            ..PoolConfig::default()
        };
        let mut pool = TxPool::new(config);
        let ready = tx("a", 0, 1000);
        let gap = tx("a", 2, 1000);
        let other = tx("b", 0, 1000);
        for t in [&ready, &gap, &other] {
            insert(&mut pool, t, 0).unwrap();
        }
        // Arrived for block 1; five blocks later it may still wait.
        assert!(pool.prune(&[], 6).is_empty());
        assert_eq!(pool.prune(&[], 7), vec![(gap.hash(), Dropped::Stalled)]);
        // Ready transactions are never dropped for their age: a block takes
        // them.
        assert_eq!(pool.len(), 2);
        assert!(pool.prune(&[], 500).is_empty());
        // Once the gap fills (nonce 0 and 1 used elsewhere), what was
        // future is ready and stays.
        let mut pool = TxPool::new(config);
        insert(&mut pool, &gap, 0).unwrap();
        assert!(pool.prune(&[(Keypair::dev("a").public(), 2)], 3).is_empty());
        assert!(pool.prune(&[], 100).is_empty());
        assert_eq!(pool.len(), 1);
    }
}
