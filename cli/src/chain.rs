//! `lockstep chain ...`: reads from one node, and the chain facts other
//! commands need (signing context, nonce, head).

use anyhow::{bail, Context};
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::ClientOptions;
use lockstep_api::node::{ChainApiClient, StateApiClient, TxStatusView};
use lockstep_runtime::{AccountId, BlockNumber, Hash, Header, Nonce, SigningContext};
use serde_json::json;

use crate::args::ChainCommand;
use crate::key::account;
use crate::output::print;
use crate::rpc::{http, ws, At};

/// One node, by URL.
#[derive(Debug, Clone)]
pub struct NodeClient {
    /// Its URL as given.
    pub url: String,
    /// Its HTTP client.
    pub http: HttpClient,
    /// How its clients connect (timeout, trusted CAs; never a token).
    options: ClientOptions,
}

impl NodeClient {
    /// A client with `options` (nothing connected yet).
    pub fn new(url: &str, options: &ClientOptions) -> anyhow::Result<NodeClient> {
        Ok(NodeClient {
            url: url.to_owned(),
            http: http(url, options)?,
            options: options.clone(),
        })
    }

    /// A WebSocket to the node, with the same options (for subscriptions).
    pub async fn ws(&self) -> anyhow::Result<WsClient> {
        ws(&self.url, &self.options).await
    }

    /// Where each transfer is (`None` for a call the node refused), in
    /// JSON-RPC batches.
    pub async fn tx_statuses(&self, hashes: &[Hash]) -> anyhow::Result<Vec<Option<TxStatusView>>> {
        let answers = lockstep_api::node::tx_statuses(&self.http, hashes)
            .await
            .at("transfer statuses", &self.url)?;
        Ok(answers.into_iter().map(Result::ok).collect())
    }

    /// What transactions for this chain must be signed with.
    pub async fn signing_context(&self) -> anyhow::Result<SigningContext> {
        Ok(SigningContext::new(self.genesis_hash().await?))
    }

    /// The genesis hash.
    pub async fn genesis_hash(&self) -> anyhow::Result<Hash> {
        let genesis = self
            .http
            .block_hash(Some(0))
            .await
            .at("the genesis hash", &self.url)?;
        genesis.context("the node has no genesis block")
    }

    /// The next nonce of an account.
    pub async fn nonce(&self, who: &AccountId) -> anyhow::Result<Nonce> {
        self.http.nonce(*who).await.at("the nonce", &self.url)
    }

    /// The finalized head.
    pub async fn head(&self) -> anyhow::Result<Header> {
        let header = self
            .http
            .header(None)
            .await
            .at("the finalized head", &self.url)?;
        header.context("the node has no finalized head")
    }

    /// The finalized height.
    pub async fn height(&self) -> anyhow::Result<BlockNumber> {
        Ok(self.head().await?.number)
    }
}

/// `lockstep chain ...`.
pub async fn run(
    rpc: &str,
    options: &ClientOptions,
    json_mode: bool,
    command: ChainCommand,
) -> anyhow::Result<()> {
    let node = NodeClient::new(rpc, options)?;
    let client = &node.http;
    match command {
        ChainCommand::Head => {
            let header: Header = node.head().await?;
            let text = format!("#{} {}", header.number, header.hash());
            print(
                json_mode,
                &json!({ "hash": header.hash(), "header": header }),
                text,
            );
        }
        ChainCommand::Block { at } => {
            let hash: Option<Hash> = match at {
                None => None,
                Some(at) if at.starts_with("0x") => Some(at.parse().context("block hash")?),
                Some(at) => {
                    let number: u64 = at.parse().context("block number or 0x hash")?;
                    let hash = client
                        .block_hash(Some(number))
                        .await
                        .at("the block hash", rpc)?;
                    Some(hash.with_context(|| format!("no finalized block #{number}"))?)
                }
            };
            let Some(block) = client.block(hash).await.at("the block", rpc)? else {
                bail!("no such block");
            };
            let header = &block.block.header;
            let count = block.block.extrinsics.len();
            let text = format!(
                "#{} parent {}\n  state root {}\n  {count} transactions",
                header.number, header.parent_hash, header.state_root
            );
            print(json_mode, &json!(block), text);
        }
        ChainCommand::Balance {
            account: who,
            asset,
        } => {
            let who = account(&who)?;
            let balance = client
                .balance(who, asset, None)
                .await
                .at("the balance", rpc)?;
            print(
                json_mode,
                &json!({ "account": who, "asset": asset, "balance": balance }),
                balance.0.to_string(),
            );
        }
        ChainCommand::Nonce { account: who } => {
            let who = account(&who)?;
            let nonce = node.nonce(&who).await?;
            print(
                json_mode,
                &json!({ "account": who, "nonce": nonce }),
                nonce.to_string(),
            );
        }
    }
    Ok(())
}
