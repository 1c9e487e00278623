//! `lockstep chain ...`: reads from one node, and the chain facts other
//! commands need (signing context, nonce, head).

use anyhow::{bail, Context};
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::rpc_params;
use lockstep_runtime::{AccountId, BlockNumber, Hash, Header, Nonce, SigningContext};
use serde_json::{json, Value};

use crate::args::ChainCommand;
use crate::key::account;
use crate::output::print;
use crate::rpc::{call, http};

/// One node, by URL.
#[derive(Debug, Clone)]
pub struct NodeClient {
    /// Its URL as given.
    pub url: String,
    /// Its HTTP client.
    pub http: HttpClient,
}

impl NodeClient {
    /// A client (nothing connected yet).
    pub fn new(url: &str) -> anyhow::Result<NodeClient> {
        Ok(NodeClient {
            url: url.to_owned(),
            http: http(url)?,
        })
    }

    /// What transactions for this chain must be signed with.
    pub async fn signing_context(&self) -> anyhow::Result<SigningContext> {
        let genesis: Option<Hash> =
            call(&self.http, &self.url, "chain_getBlockHash", rpc_params![0]).await?;
        Ok(SigningContext::new(
            genesis.context("the node has no genesis block")?,
        ))
    }

    /// The genesis hash.
    pub async fn genesis_hash(&self) -> anyhow::Result<Hash> {
        let genesis: Option<Hash> =
            call(&self.http, &self.url, "chain_getBlockHash", rpc_params![0]).await?;
        genesis.context("the node has no genesis block")
    }

    /// The next nonce of an account.
    pub async fn nonce(&self, who: &AccountId) -> anyhow::Result<Nonce> {
        call(&self.http, &self.url, "state_getNonce", rpc_params![who]).await
    }

    /// The finalized head.
    pub async fn head(&self) -> anyhow::Result<Header> {
        let header: Option<Header> =
            call(&self.http, &self.url, "chain_getHeader", rpc_params![]).await?;
        header.context("the node has no finalized head")
    }

    /// The finalized height.
    pub async fn height(&self) -> anyhow::Result<BlockNumber> {
        Ok(self.head().await?.number)
    }
}

/// `lockstep chain ...`.
pub async fn run(rpc: &str, json_mode: bool, command: ChainCommand) -> anyhow::Result<()> {
    let node = NodeClient::new(rpc)?;
    let client = &node.http;
    match command {
        ChainCommand::Head => {
            let header: Value = call(client, rpc, "chain_getHeader", rpc_params![]).await?;
            let parsed: Header = serde_json::from_value(header.clone())?;
            let text = format!("#{} {}", parsed.number, parsed.hash());
            print(
                json_mode,
                &json!({ "hash": parsed.hash(), "header": header }),
                text,
            );
        }
        ChainCommand::Block { at } => {
            let hash: Option<Hash> = match at {
                None => None,
                Some(at) if at.starts_with("0x") => Some(at.parse().context("block hash")?),
                Some(at) => {
                    let number: u64 = at.parse().context("block number or 0x hash")?;
                    let hash: Option<Hash> =
                        call(client, rpc, "chain_getBlockHash", rpc_params![number]).await?;
                    Some(hash.with_context(|| format!("no finalized block #{number}"))?)
                }
            };
            let block: Value = call(client, rpc, "chain_getBlock", rpc_params![hash]).await?;
            if block.is_null() {
                bail!("no such block");
            }
            let header = &block["block"]["header"];
            let count = block["block"]["extrinsics"].as_array().map_or(0, Vec::len);
            let text = format!(
                "#{} parent {}\n  state root {}\n  {count} transactions",
                header["number"], header["parentHash"], header["stateRoot"]
            );
            print(json_mode, &block, text);
        }
        ChainCommand::Balance {
            account: who,
            asset,
        } => {
            let who = account(&who)?;
            let balance: String =
                call(client, rpc, "state_getBalance", rpc_params![who, asset]).await?;
            print(
                json_mode,
                &json!({ "account": who, "asset": asset, "balance": balance }),
                balance.clone(),
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
