//! `lockstep`: the user-facing command line.
//!
//! Signs and submits transfers, reads the chain, manages keys. Human output
//! by default, `--json` for scripts. Exit codes: 0 success, 1 error, 2 bad
//! usage (clap), 3 the transaction failed on chain or was dropped.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use lockstep_node::keyfile;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{AccountId, AssetId, Call, Hash, Header, Keypair, SignedTx, SigningContext};
use parity_scale_codec::Encode;
use serde_json::{json, Value};

/// Lockstep: transfer assets on a Lockstep chain and inspect it.
///
/// Accounts and keys can be given as a key file (as written by `lockstep key
/// generate --out`), a `0x` account id (for recipients), or a dev name
/// (`alice`, `bob`, `charlie`, `dave`, ...; public test keys, dev chains only).
#[derive(Debug, Parser)]
#[command(name = "lockstep", version)]
struct Cli {
    /// A node's JSON-RPC URL (http:// or ws://; the same port serves both).
    #[arg(
        long,
        global = true,
        env = "LOCKSTEP_RPC",
        default_value = "http://127.0.0.1:9944"
    )]
    rpc: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign an asset transfer and submit it to the node.
    Transfer {
        /// The sender's key file or dev name.
        #[arg(long)]
        from: String,
        /// The recipient: a 0x account id, key file or dev name.
        #[arg(long)]
        to: String,
        /// The asset id.
        #[arg(long, default_value_t = 1)]
        asset: AssetId,
        /// The amount, in the asset's smallest unit.
        #[arg(long)]
        amount: u128,
        /// Blocks from now during which the transfer may be included.
        #[arg(long, default_value_t = 600)]
        valid_for: u64,
        /// Wait until the transfer is finalized (or dropped), with progress.
        #[arg(long)]
        wait: bool,
    },
    /// Read the chain.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Generate or inspect keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// The finalized head.
    Head,
    /// A block by number or hash (default: the head).
    Block {
        /// A block number or 0x hash.
        at: Option<String>,
    },
    /// An account's balance of an asset.
    Balance {
        /// A 0x account id, key file or dev name.
        account: String,
        /// The asset id.
        #[arg(long, default_value_t = 1)]
        asset: AssetId,
    },
    /// The nonce an account's next transaction must carry.
    Nonce {
        /// A 0x account id, key file or dev name.
        account: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a new random key into a file (mode 0600).
    Generate {
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Show the account id of a key file or dev name.
    Inspect {
        /// A key file or dev name.
        key: String,
    },
}

/// Exit code for a transaction that failed on chain or was dropped.
const EXIT_TX_FAILED: u8 = 3;

fn keypair(spec: &str) -> anyhow::Result<Keypair> {
    let path = Path::new(spec);
    if path.exists() || spec.contains('/') || spec.ends_with(".json") {
        return Ok(keyfile::read(path)?);
    }
    if spec.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !spec.starts_with("0x") {
        return Ok(Keypair::dev(spec));
    }
    bail!("{spec:?} is neither a key file nor a dev name")
}

fn account(spec: &str) -> anyhow::Result<AccountId> {
    if spec.starts_with("0x") {
        return spec.parse().with_context(|| format!("account id {spec}"));
    }
    Ok(keypair(spec)?.public())
}

fn http_url(rpc: &str) -> String {
    rpc.replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1)
}

fn ws_url(rpc: &str) -> String {
    rpc.replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1)
}

async fn client(rpc: &str) -> anyhow::Result<HttpClient> {
    HttpClientBuilder::default()
        .build(http_url(rpc))
        .with_context(|| format!("bad RPC URL {rpc}"))
}

async fn request<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    method: &str,
    params: jsonrpsee::core::params::ArrayParams,
) -> anyhow::Result<T> {
    client
        .request(method, params)
        .await
        .with_context(|| format!("{method} failed"))
}

fn print(json_mode: bool, value: &Value, text: String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(KeyCommand::Generate { out }) => {
            let key = Keypair::generate();
            keyfile::write(&out, &key)?;
            let value = json!({ "file": out, "account": key.public() });
            print(
                cli.json,
                &value,
                format!("wrote {}\naccount: {}", out.display(), key.public()),
            );
        }
        Command::Key(KeyCommand::Inspect { key }) => {
            let public = keypair(&key)?.public();
            print(
                cli.json,
                &json!({ "account": public }),
                format!("account: {public}"),
            );
        }
        Command::Chain(command) => chain(&cli.rpc, cli.json, command).await?,
        Command::Transfer {
            from,
            to,
            asset,
            amount,
            valid_for,
            wait,
        } => {
            let key = keypair(&from)?;
            let to = account(&to)?;
            return transfer(&cli.rpc, cli.json, &key, to, asset, amount, valid_for, wait).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn chain(rpc: &str, json_mode: bool, command: ChainCommand) -> anyhow::Result<()> {
    let client = client(rpc).await?;
    match command {
        ChainCommand::Head => {
            let header: Value = request(&client, "chain_getHeader", rpc_params![]).await?;
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
                        request(&client, "chain_getBlockHash", rpc_params![number]).await?;
                    Some(hash.with_context(|| format!("no finalized block #{number}"))?)
                }
            };
            let block: Value = request(&client, "chain_getBlock", rpc_params![hash]).await?;
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
                request(&client, "state_getBalance", rpc_params![who, asset]).await?;
            print(
                json_mode,
                &json!({ "account": who, "asset": asset, "balance": balance }),
                balance.clone(),
            );
        }
        ChainCommand::Nonce { account: who } => {
            let who = account(&who)?;
            let nonce: u64 = request(&client, "state_getNonce", rpc_params![who]).await?;
            print(
                json_mode,
                &json!({ "account": who, "nonce": nonce }),
                nonce.to_string(),
            );
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn transfer(
    rpc: &str,
    json_mode: bool,
    key: &Keypair,
    to: AccountId,
    asset: AssetId,
    amount: u128,
    valid_for: u64,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let client = client(rpc).await?;
    let genesis: Option<Hash> = request(&client, "chain_getBlockHash", rpc_params![0]).await?;
    let context = SigningContext::new(genesis.context("the node has no genesis block")?);
    let nonce: u64 = request(&client, "state_getNonce", rpc_params![key.public()]).await?;
    let head: Header = request(&client, "chain_getHeader", rpc_params![]).await?;
    let valid_until = head.number.saturating_add(valid_for);
    let call = Call::Transfer {
        asset,
        to,
        amount,
        reference: None,
    };
    let tx = SignedTx::sign(key, &context, nonce, valid_until, call);
    let hex = to_hex(&tx.encode());
    let hash: Hash = request(&client, "author_submitExtrinsic", rpc_params![hex]).await?;
    if !wait {
        let value = json!({ "txHash": hash, "nonce": nonce, "validUntil": valid_until });
        print(
            json_mode,
            &value,
            format!("submitted {hash} (nonce {nonce}, valid until #{valid_until})"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !json_mode {
        eprintln!("submitted {hash}; waiting for finality...");
    }
    let ws = WsClientBuilder::default()
        .build(ws_url(rpc))
        .await
        .context("WebSocket connection")?;
    let mut heads: Subscription<Header> = ws
        .subscribe(
            "chain_subscribeFinalizedHeads",
            rpc_params![],
            "chain_unsubscribeFinalizedHeads",
        )
        .await?;
    loop {
        let status: Value = request(&client, "tx_getStatus", rpc_params![hash]).await?;
        let finalized_number = status["finalizedNumber"].as_u64().unwrap_or(0);
        match status["status"].as_str() {
            Some("finalized") => {
                let success = status["outcome"]["status"] == "success";
                let text = format!(
                    "finalized in block #{} ({}): {}",
                    status["blockNumber"],
                    status["blockHash"].as_str().unwrap_or("?"),
                    if success {
                        "success".to_owned()
                    } else {
                        format!("failed ({})", status["outcome"]["error"])
                    }
                );
                print(
                    json_mode,
                    &json!({ "txHash": hash, "status": status }),
                    text,
                );
                return Ok(if success {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_TX_FAILED)
                });
            }
            Some("unknown") if finalized_number >= valid_until => {
                print(
                    json_mode,
                    &json!({ "txHash": hash, "status": status }),
                    "dropped: expired".into(),
                );
                return Ok(ExitCode::from(EXIT_TX_FAILED));
            }
            _ => {
                if !json_mode {
                    eprintln!(
                        "  waiting: {} at finalized #{finalized_number}",
                        status["status"]
                    );
                }
            }
        }
        heads.next().await.context("head subscription ended")??;
    }
}
