//! Importing finalized blocks that come from peers (sync responses and
//! block announcements).
//!
//! A block from a peer is trusted only through its justification: it must
//! extend the head, its justification must name it and carry precommits
//! from a quorum of the spec's validators over
//! [`Vote::precommit_signing_bytes`] for its height and round, and it must
//! re-execute to the roots in its header ([`Chain::check`]). Only then is it
//! imported ([`Chain::import`]). A false justification is the peer's fault
//! (it must have verified before serving); a block that does not execute
//! here with a valid justification means this node's state is at fault,
//! and is logged, not blamed on the peer.

use std::time::Instant;

use lockstep_consensus::Vote;
use lockstep_runtime::{Block, BlockNumber, Justification, ValidatorSet};

use crate::chain::Chain;
use crate::storage::StorageError;

/// Why a block from a peer was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not the block after the head (already have it, or a gap).
    #[error("block #{number} does not extend the head #{head}")]
    NotNext {
        /// The block's number.
        number: BlockNumber,
        /// The head's number.
        head: BlockNumber,
    },
    /// The justification does not prove the block final: the peer lied.
    #[error("bad justification for #{number}: {source}")]
    BadJustification {
        /// The block's number.
        number: BlockNumber,
        /// Why.
        source: lockstep_runtime::JustificationError,
    },
    /// The block is justified but does not execute on this node's state.
    #[error("justified block #{number} does not execute here: {source}")]
    DoesNotExecute {
        /// The block's number.
        number: BlockNumber,
        /// Why.
        source: lockstep_runtime::BlockError,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ImportError {
    /// Whether the peer that sent the block is at fault.
    pub fn is_peers_fault(&self) -> bool {
        matches!(self, ImportError::BadJustification { .. })
    }
}

/// Verifies and imports one finalized block on top of the head.
pub fn import_finalized(
    chain: &Chain,
    validators: &ValidatorSet,
    block: &Block,
    justification: &Justification,
) -> Result<(), ImportError> {
    let head = chain.head();
    let number = block.header.number;
    if number != head.number + 1 || block.header.parent_hash != head.hash() {
        return Err(ImportError::NotNext {
            number,
            head: head.number,
        });
    }
    let hash = block.hash();
    let message =
        Vote::precommit_signing_bytes(&chain.spec().chain_id, number, justification.round, &hash.0);
    justification
        .verify(&hash, validators, &message)
        .map_err(|source| ImportError::BadJustification { number, source })?;
    let executed = chain
        .check(block)
        .map_err(|source| ImportError::DoesNotExecute { number, source })?;
    match chain.import(block, justification, &executed) {
        Ok(()) => Ok(()),
        // The consensus engine imported it meanwhile.
        Err(StorageError::NotOnHead { .. }) => Err(ImportError::NotNext {
            number,
            head: chain.head().number,
        }),
        Err(error) => Err(error.into()),
    }
}

/// Logs sync progress at most every few seconds: height, target, rate.
#[derive(Debug)]
pub struct SyncProgress {
    started: Instant,
    start_height: BlockNumber,
    last_log: Instant,
}

impl SyncProgress {
    /// Starts measuring from `height`.
    pub fn new(height: BlockNumber) -> SyncProgress {
        let now = Instant::now();
        SyncProgress {
            started: now,
            start_height: height,
            last_log: now,
        }
    }

    /// Blocks per second since the start.
    pub fn rate(&self, height: BlockNumber) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        height.saturating_sub(self.start_height) as f64 / seconds
    }

    /// Logs if enough time passed since the last line (or `force`).
    pub fn log(&mut self, height: BlockNumber, target: BlockNumber, force: bool) {
        if force || self.last_log.elapsed().as_secs() >= 2 {
            self.last_log = Instant::now();
            tracing::info!(
                target: "lockstep::sync",
                "syncing: #{height} of #{target}, {:.1} blocks/s",
                self.rate(height)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lockstep_runtime::{BlockLimits, ChainSpec, Keypair, Signature};

    use super::*;
    use crate::metrics::Metrics;
    use crate::pool::PoolConfig;

    fn chain(dir: &std::path::Path, keys: &[Keypair]) -> Chain {
        let spec = ChainSpec::dev(
            "lockstep-sync-test",
            &keys.iter().map(Keypair::public).collect::<Vec<_>>(),
        );
        let genesis = spec.genesis().unwrap();
        Chain::open(
            dir,
            spec,
            &genesis,
            PoolConfig::default(),
            BlockLimits::default(),
            Arc::new(Metrics::default()),
        )
        .unwrap()
    }

    fn justify(chain: &Chain, block: &Block, signers: &[Keypair]) -> Justification {
        let hash = block.hash();
        let message =
            Vote::precommit_signing_bytes(&chain.spec().chain_id, block.header.number, 0, &hash.0);
        Justification {
            round: 0,
            block_hash: hash,
            signatures: signers
                .iter()
                .map(|k| (k.public(), k.sign(&message)))
                .collect(),
        }
    }

    #[test]
    fn only_blocks_with_a_quorum_justification_are_imported() {
        let keys: Vec<Keypair> = ["alice", "bob", "charlie", "dave"]
            .iter()
            .map(|n| Keypair::dev(n))
            .collect();
        let source_dir = tempfile::tempdir().unwrap();
        let source = chain(source_dir.path(), &keys);
        let target_dir = tempfile::tempdir().unwrap();
        let target = chain(target_dir.path(), &keys);
        let validators = ValidatorSet::new(source.spec().validators.clone()).unwrap();

        let built = source.build(keys[0].public(), 1_000).unwrap();
        let block = built.block;

        // Two of four signatures: no quorum.
        let weak = justify(&source, &block, &keys[..2]);
        assert!(matches!(
            import_finalized(&target, &validators, &block, &weak),
            Err(ImportError::BadJustification { .. })
        ));
        // A forged signature.
        let mut forged = justify(&source, &block, &keys[..3]);
        forged.signatures[1].1 = Signature([7; 64]);
        let error = import_finalized(&target, &validators, &block, &forged).unwrap_err();
        assert!(error.is_peers_fault(), "{error}");
        // A quorum from outside the validator set.
        let outsiders: Vec<Keypair> = ["eve", "ferdie", "grace"]
            .iter()
            .map(|n| Keypair::dev(n))
            .collect();
        let foreign = justify(&source, &block, &outsiders);
        assert!(import_finalized(&target, &validators, &block, &foreign).is_err());
        assert_eq!(target.head().number, 0);

        let good = justify(&source, &block, &keys[1..]);
        import_finalized(&target, &validators, &block, &good).unwrap();
        assert_eq!(target.head().hash(), block.hash());
        // The same block again is not next any more.
        assert!(matches!(
            import_finalized(&target, &validators, &block, &good),
            Err(ImportError::NotNext { .. })
        ));
    }
}
