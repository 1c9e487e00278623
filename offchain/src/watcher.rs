//! The chain watcher: follows finalized heads on one configured node over a
//! WebSocket subscription, and fails over to the next node when that one
//! fails (connection refused, subscription closed, call error).
//!
//! Each finalized block goes, with its justification, to the
//! [`QuorumConfirmer`], which looks its transactions up in the store's tx
//! index (`tx_hash = SHA-256(encoded extrinsic)`) and, when it holds
//! registered transfers, proves the block and moves their events (see its
//! docs). Only then is the block's height persisted: a crash re-processes a block (harmless: moves
//! are refused once made) rather than skipping one. After a restart it
//! resumes from the persisted height, fetching missed blocks by number (at
//! most `max_catch_up` of them; the reconciler re-checks whatever is older).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lockstep_api::client::{self, Subscription};
use lockstep_api::node::{ChainApiClient, SignedBlockView};
use lockstep_runtime::{BlockNumber, Header};
use tokio::sync::watch;

use crate::confirmer::QuorumConfirmer;
use crate::metrics::Metrics;
use crate::nodes::Node;
use crate::store::EventStore;

/// Follows finalized blocks; see the module docs.
#[derive(Debug)]
pub struct ChainWatcher {
    store: Arc<EventStore>,
    confirmer: Arc<QuorumConfirmer>,
    metrics: Arc<Metrics>,
    retry: Duration,
    max_catch_up: u64,
}

impl ChainWatcher {
    /// A watcher over the confirmer's nodes, tried in order.
    pub fn new(
        store: Arc<EventStore>,
        confirmer: Arc<QuorumConfirmer>,
        metrics: Arc<Metrics>,
        retry: Duration,
        max_catch_up: u64,
    ) -> ChainWatcher {
        ChainWatcher {
            store,
            confirmer,
            metrics,
            retry,
            max_catch_up,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let nodes = self.confirmer.nodes().to_vec();
        if nodes.is_empty() {
            return;
        }
        let mut index = 0;
        loop {
            let node = &nodes[index % nodes.len()];
            tracing::info!(target: "lockstep::offchain", "watching finalized heads on {}", node.url);
            match self.follow(node, &mut shutdown).await {
                Ok(()) => return,
                Err(reason) => {
                    tracing::warn!(
                        target: "lockstep::offchain",
                        "watcher: {} failed ({reason}); failing over", node.url
                    );
                    Metrics::inc(&self.metrics.watcher_failovers);
                    index += 1;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.retry) => {}
            }
        }
    }

    /// Follows one node; `Ok` only on shutdown.
    async fn follow(
        &self,
        node: &Node,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let ws = node
            .ws(self.retry.max(Duration::from_secs(5)))
            .await
            .map_err(|e| client::describe(&e))?;
        let mut heads: Subscription<Header> = ws
            .subscribe_finalized_heads()
            .await
            .map_err(|e| client::describe(&e))?;
        // Catch up to the node's head now, not at the next block.
        let head = node.head().await.map_err(|e| e.to_string())?;
        self.catch_up(node, head.number).await?;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                head = heads.next() => match head {
                    Some(Ok(header)) => self.catch_up(node, header.number).await?,
                    Some(Err(e)) => return Err(format!("bad head: {e}")),
                    None => return Err("head subscription closed".into()),
                },
            }
        }
    }

    async fn catch_up(&self, node: &Node, head: BlockNumber) -> Result<(), String> {
        self.metrics.finalized_head.store(head, Ordering::Relaxed);
        let last = self.store.last_height().map_err(|e| e.to_string())?;
        let mut start = match last {
            Some(last) => last + 1,
            // First start: blocks before now hold no registered transfer
            // this store has seen the watcher for; the reconciler covers
            // any that exist.
            None => head,
        };
        if head < start {
            return Ok(());
        }
        if head - start >= self.max_catch_up {
            let skipped_to = head + 1 - self.max_catch_up;
            tracing::warn!(
                target: "lockstep::offchain",
                "watcher: {} blocks behind; skipping to #{skipped_to} (the reconciler re-checks older events)",
                head - start
            );
            start = skipped_to;
        }
        for number in start..=head {
            let block = node
                .block_at(number)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("node has no block #{number}"))?;
            self.process(block).await?;
            self.store
                .blocking(move |store| store.set_last_height(number))
                .await
                .map_err(|e| e.to_string())?;
            self.metrics.watcher_height.store(number, Ordering::Relaxed);
        }
        self.metrics.bump();
        Ok(())
    }

    async fn process(&self, block: SignedBlockView) -> Result<(), String> {
        let summary = self
            .confirmer
            .confirm_block(block)
            .await
            .map_err(|e| e.to_string())?;
        if summary.moved > 0 || summary.undecided > 0 {
            tracing::debug!(
                target: "lockstep::offchain",
                "block: {} events moved, {} undecided", summary.moved, summary.undecided
            );
        }
        Ok(())
    }
}
