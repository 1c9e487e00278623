//! Clients for the configured chain nodes, through the node's typed
//! interface (`lockstep_api::node`): `tx_getStatus` in JSON-RPC batches with
//! a per-call timeout, and the block, block hash and receipt fetches of the
//! watcher and the confirmer. Every call is counted in
//! [`Metrics::node_calls`] (each call of a batch on its own).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{self, ClientOptions};
use lockstep_api::node::{self, ChainApiClient, SignedBlockView, TxStatusView};
use lockstep_runtime::{BlockNumber, Hash, Header, Receipt};

use crate::metrics::Metrics;

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The URL is unusable.
    #[error(transparent)]
    BadUrl(#[from] client::BadUrl),
    /// The call failed, timed out, or the answer did not parse.
    #[error("node {url}: {reason}")]
    Call {
        /// The node.
        url: String,
        /// Why.
        reason: String,
    },
}

/// One configured node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The URL as configured (`http://host:port`, or `https://` for a
    /// node that serves TLS); names the node in evidence.
    pub url: String,
    /// The WebSocket URL of the same endpoint (`ws://` or `wss://`).
    pub ws_url: String,
    http: HttpClient,
    options: ClientOptions,
    metrics: Arc<Metrics>,
}

impl Node {
    /// A client for `url` (`http://`, `https://`, `ws://` or `wss://`; both
    /// protocols share the node's port), with `options`' timeout and
    /// trusted CAs, counting its calls in `metrics`. Nothing is connected
    /// yet.
    pub fn new(
        url: &str,
        options: &ClientOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Node, NodeError> {
        let (_, ws_url) = client::endpoint_urls(url)?;
        Ok(Node {
            url: url.to_owned(),
            ws_url,
            http: client::http_with(url, options)?,
            options: options.clone(),
            metrics,
        })
    }

    fn count(&self, calls: usize) {
        self.metrics
            .node_calls
            .fetch_add(calls as u64, Ordering::Relaxed);
    }

    /// A WebSocket client of the node (for subscriptions), trusting the
    /// same CAs as its HTTP client, with `timeout` for the connection and
    /// each call.
    pub async fn ws(&self, timeout: Duration) -> Result<WsClient, client::Error> {
        let options = ClientOptions {
            timeout,
            ..self.options.clone()
        };
        client::ws_with(&self.ws_url, &options).await
    }

    fn call_error(&self, error: client::Error) -> NodeError {
        NodeError::Call {
            url: self.url.clone(),
            reason: client::describe(&error),
        }
    }

    /// `tx_getStatus` for each hash, in batches. An entry is `None` when the
    /// node answered that call with an error; a failed batch fails the
    /// whole call.
    pub async fn tx_statuses(
        &self,
        hashes: &[Hash],
    ) -> Result<Vec<Option<TxStatusView>>, NodeError> {
        self.count(hashes.len());
        let answers = node::tx_statuses(&self.http, hashes)
            .await
            .map_err(|e| self.call_error(e))?;
        Ok(answers.into_iter().map(Result::ok).collect())
    }

    /// The finalized block at `number` with its justification, if the node
    /// has it (its hash checked against the one the node names for the
    /// height).
    pub async fn block_at(
        &self,
        number: BlockNumber,
    ) -> Result<Option<SignedBlockView>, NodeError> {
        self.count(2);
        node::block_at(&self.http, number)
            .await
            .map_err(|e| self.call_error(e))
    }

    /// The block with hash `hash` and its justification, if the node has
    /// it; a block with another hash is an error.
    pub async fn block(&self, hash: Hash) -> Result<Option<SignedBlockView>, NodeError> {
        self.count(1);
        match self.http.block(Some(hash)).await {
            Ok(Some(block)) if block.block.header.hash() == hash => Ok(Some(block)),
            Ok(Some(_)) => Err(NodeError::Call {
                url: self.url.clone(),
                reason: format!("chain_getBlock({hash}) returned a block with another hash"),
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(self.call_error(e)),
        }
    }

    /// The hash of the finalized block at `number`, if the node has one.
    pub async fn block_hash(&self, number: BlockNumber) -> Result<Option<Hash>, NodeError> {
        self.count(1);
        self.http
            .block_hash(Some(number))
            .await
            .map_err(|e| self.call_error(e))
    }

    /// The receipts of the block with hash `hash`, in transaction order,
    /// if the node has it.
    pub async fn receipts(&self, hash: Hash) -> Result<Option<Vec<Receipt>>, NodeError> {
        self.count(1);
        self.http
            .receipts(hash)
            .await
            .map_err(|e| self.call_error(e))
    }

    /// The node's finalized head.
    pub async fn head(&self) -> Result<Header, NodeError> {
        self.count(1);
        self.http
            .header(None)
            .await
            .map_err(|e| self.call_error(e))?
            .ok_or_else(|| NodeError::Call {
                url: self.url.clone(),
                reason: "no finalized head".into(),
            })
    }
}
