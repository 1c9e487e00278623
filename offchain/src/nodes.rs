//! Clients for the configured chain nodes: `tx_getStatus` in JSON-RPC
//! batches with a per-call timeout, and the block fetches the watcher needs.
//!
//! The answer types are declared here rather than taken from the node
//! crate: the event system depends on the node's JSON API, not its
//! internals, and reads only the fields it uses.

use std::time::Duration;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use lockstep_runtime::{BlockNumber, Hash, Header, Outcome};
use serde::Deserialize;

/// Most calls in one JSON-RPC batch (a node's default limit is 256).
pub const MAX_BATCH: usize = 64;

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The URL is unusable.
    #[error("bad node URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The call failed, timed out, or the answer did not parse.
    #[error("node {url}: {reason}")]
    Call {
        /// The node.
        url: String,
        /// Why.
        reason: String,
    },
}

/// `tx_getStatus`'s answer, the fields the confirmer reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxStatusAnswer {
    /// `unknown`, `pool` or `finalized`.
    pub status: String,
    /// The block holding it, if finalized.
    #[serde(default)]
    pub block_hash: Option<Hash>,
    /// That block's number.
    #[serde(default)]
    pub block_number: Option<BlockNumber>,
    /// Its outcome.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The node's finalized height.
    pub finalized_number: BlockNumber,
}

#[derive(Debug, Deserialize)]
struct SignedBlockAnswer {
    block: BlockAnswer,
}

/// A finalized block as the watcher reads it.
#[derive(Debug, Deserialize)]
pub struct BlockAnswer {
    /// Its header.
    pub header: Header,
    /// Its extrinsics, SCALE `0x`-hex.
    pub extrinsics: Vec<String>,
}

/// One configured node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The URL as configured (`http://host:port`); names the node in
    /// evidence.
    pub url: String,
    /// The WebSocket URL of the same endpoint.
    pub ws_url: String,
    http: HttpClient,
}

impl Node {
    /// A client for `url` (`http://` or `ws://`; both protocols share the
    /// node's port). Nothing is connected yet.
    pub fn new(url: &str, timeout: Duration) -> Result<Node, NodeError> {
        let bad = |reason: &str| NodeError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (http_url, ws_url) = if let Some(rest) = url.strip_prefix("http://") {
            (url.to_owned(), format!("ws://{rest}"))
        } else if let Some(rest) = url.strip_prefix("https://") {
            (url.to_owned(), format!("wss://{rest}"))
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (format!("http://{rest}"), url.to_owned())
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (format!("https://{rest}"), url.to_owned())
        } else {
            return Err(bad("expected http://, https://, ws:// or wss://"));
        };
        let http = HttpClientBuilder::default()
            .request_timeout(timeout)
            .max_response_size(64 * 1024 * 1024)
            .build(&http_url)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Node {
            url: url.to_owned(),
            ws_url,
            http,
        })
    }

    fn call_error(&self, reason: impl ToString) -> NodeError {
        NodeError::Call {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// `tx_getStatus` for each hash, in batches of [`MAX_BATCH`]. An entry
    /// is `None` when the node answered that call with an error; a failed
    /// batch fails the whole call.
    pub async fn tx_statuses(
        &self,
        hashes: &[Hash],
    ) -> Result<Vec<Option<TxStatusAnswer>>, NodeError> {
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(MAX_BATCH) {
            let mut batch = BatchRequestBuilder::new();
            for hash in chunk {
                batch
                    .insert("tx_getStatus", rpc_params![hash])
                    .map_err(|e| self.call_error(e))?;
            }
            let response = self
                .http
                .batch_request::<TxStatusAnswer>(batch)
                .await
                .map_err(|e| self.call_error(e))?;
            let before = out.len();
            out.extend(response.into_iter().map(Result::ok));
            if out.len() - before != chunk.len() {
                return Err(self.call_error("batch answer has the wrong length"));
            }
        }
        Ok(out)
    }

    /// The finalized block at `number`, if the node has it.
    pub async fn block_at(&self, number: BlockNumber) -> Result<Option<BlockAnswer>, NodeError> {
        let hash: Option<Hash> = self
            .http
            .request("chain_getBlockHash", rpc_params![number])
            .await
            .map_err(|e| self.call_error(e))?;
        let Some(hash) = hash else { return Ok(None) };
        let block: Option<SignedBlockAnswer> = self
            .http
            .request("chain_getBlock", rpc_params![hash])
            .await
            .map_err(|e| self.call_error(e))?;
        match block {
            Some(block) if block.block.header.hash() == hash => Ok(Some(block.block)),
            Some(_) => Err(self.call_error("chain_getBlock returned a block with another hash")),
            None => Ok(None),
        }
    }

    /// The node's finalized head.
    pub async fn head(&self) -> Result<Header, NodeError> {
        let header: Option<Header> = self
            .http
            .request("chain_getHeader", rpc_params![])
            .await
            .map_err(|e| self.call_error(e))?;
        header.ok_or_else(|| self.call_error("no finalized head"))
    }
}
