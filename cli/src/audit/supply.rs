//! The chain's supply: per asset, the balances of every account that ever
//! appeared in a block (or at genesis) sum to the genesis supply plus the
//! successful mints, read at one block on one node.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use lockstep_api::client::{describe_refusal, ClientOptions};
use lockstep_api::node::error::HISTORICAL_STATE;
use lockstep_api::node::{self, ChainApiClient, TxState};
use lockstep_api::proof::ChainTrust;
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{
    AccountId, AssetId, Balance, BlockNumber, Call, ChainSpec, Genesis, Hash, Header, Keypair,
    SignedTx,
};
use serde_json::{json, Value};

use super::{Findings, NODE_BATCH};
use crate::args::AuditArgs;
use crate::chain::NodeClient;
use crate::output::Progress;
use crate::rpc::At;
use crate::verify::read_chain_spec;

/// Attempts at reading every balance at one head while blocks keep coming.
const SNAPSHOT_ATTEMPTS: usize = 10;

/// What the blocks say about supply: who ever held what, and what was
/// minted.
#[derive(Debug, Default)]
struct ChainScan {
    scanned_to: BlockNumber,
    accounts: BTreeSet<AccountId>,
    assets: BTreeSet<AssetId>,
    mints: Vec<(Hash, AssetId, Balance)>,
}

/// The chain the audit runs against: a node that answers, and the spec
/// the chain was started from when it is known.
#[derive(Debug)]
pub(super) struct ChainInfo {
    node: NodeClient,
    spec: Option<KnownSpec>,
}

/// A chain spec checked against the chain's genesis hash.
#[derive(Debug)]
pub(super) struct KnownSpec {
    spec: ChainSpec,
    /// Validators in the genesis set.
    pub validators: usize,
    /// Votes that finalize a block: more than two thirds of them.
    pub validator_quorum: usize,
    /// What the events' proofs are checked against: the spec's chain id and
    /// validators (none if its validator set is empty or repeats one, which
    /// no running chain's is).
    pub trust: Option<ChainTrust>,
}

impl ChainInfo {
    pub(super) fn spec(&self) -> Option<&KnownSpec> {
        self.spec.as_ref()
    }
}

/// The first node of `nodes` (connected with `options`) that answers
/// (None: none did) and the chain's spec: `--chain-spec`, which must be
/// this chain's (an error otherwise), or the dev chain's own when the
/// chain is the dev chain.
pub(super) async fn chain_info(
    nodes: &[String],
    options: &ClientOptions,
    args: &AuditArgs,
) -> anyhow::Result<Option<ChainInfo>> {
    // One node that answers: supply is a property of the finalized state,
    // the same on every honest node; the quorum checks compare the nodes
    // transfer by transfer.
    let mut node = None;
    for url in nodes {
        let client = NodeClient::new(url, options)?;
        if let Ok(genesis) = client.genesis_hash().await {
            node = Some((client, genesis));
            break;
        }
    }
    let Some((node, genesis)) = node else {
        return Ok(None);
    };
    let known = |spec: ChainSpec, genesis: Genesis| KnownSpec {
        validators: genesis.validators.len(),
        validator_quorum: genesis.validators.quorum(),
        trust: ChainTrust::from_spec(&spec),
        spec,
    };
    let spec = match &args.chain_spec {
        Some(path) => {
            let spec = read_chain_spec(path)?;
            let built = spec
                .genesis()
                .map_err(|e| anyhow!("chain spec {}: {e}", path.display()))?;
            let hash = built.hash();
            if hash != genesis {
                bail!(
                    "the chain spec {} has genesis {hash}, the chain {genesis}: not this chain's spec",
                    path.display()
                );
            }
            Some(known(spec, built))
        }
        None => {
            let dev = ChainSpec::dev(
                lockstep_runtime::genesis::DEV_CHAIN_ID,
                &[Keypair::dev("alice").public()],
            );
            match dev.genesis() {
                Ok(built) if built.hash() == genesis => Some(known(dev, built)),
                _ => None,
            }
        }
    };
    Ok(Some(ChainInfo { node, spec }))
}

pub(super) async fn check_supply(
    chain: Option<&ChainInfo>,
    concurrency: usize,
    findings: &mut Findings,
    progress: &mut Progress,
) -> anyhow::Result<Value> {
    let chain = chain.context("no node answered for the supply check")?;
    let node = &chain.node;
    let Some(KnownSpec { spec, .. }) = &chain.spec else {
        findings.notes.push(
            "chain supply not checked: give --chain-spec (the chain is not the dev chain)".into(),
        );
        return Ok(Value::Null);
    };
    let mut expected: BTreeMap<AssetId, Balance> = spec.assets.iter().map(|a| (a.id, 0)).collect();
    let mut scan = ChainScan::default();
    for b in &spec.balances {
        let e = expected.entry(b.asset).or_default();
        *e = e.saturating_add(b.amount);
        scan.accounts.insert(b.account);
    }
    scan.assets.extend(expected.keys().copied());

    for _ in 0..SNAPSHOT_ATTEMPTS {
        let head = node.head().await?;
        scan_blocks(node, &mut scan, head.number, concurrency, progress).await?;
        match balances_at(node, &scan, &head, concurrency).await {
            Ok(found) => {
                let minted = successful_mints(node, &scan.mints).await?;
                let mut want = expected.clone();
                for (asset, amount) in minted {
                    let e = want.entry(asset).or_default();
                    *e = e.saturating_add(amount);
                }
                let mut assets = BTreeMap::new();
                for asset in &scan.assets {
                    let w = want.get(asset).copied().unwrap_or(0);
                    let f = found.get(asset).copied().unwrap_or(0);
                    if w != f {
                        findings.violation(
                            "supply-not-conserved",
                            None,
                            format!(
                                "asset {asset}: the balances of {} accounts sum to {f} at #{}, genesis plus mints is {w}",
                                scan.accounts.len(),
                                head.number
                            ),
                        );
                    }
                    assets.insert(
                        asset.to_string(),
                        json!({ "expected": w.to_string(), "found": f.to_string() }),
                    );
                }
                return Ok(json!({
                    "node": node.url,
                    "height": head.number,
                    "accounts": scan.accounts.len(),
                    "assets": assets,
                }));
            }
            Err(SnapshotError::Moved) => continue,
            Err(SnapshotError::Failed(e)) => return Err(e),
        }
    }
    findings.notes.push(format!(
        "chain supply not checked: the head moved during each of {SNAPSHOT_ATTEMPTS} attempts to read every balance at one block"
    ));
    Ok(Value::Null)
}

async fn scan_blocks(
    node: &NodeClient,
    scan: &mut ChainScan,
    to: BlockNumber,
    concurrency: usize,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let numbers: Vec<BlockNumber> = (scan.scanned_to + 1..=to).collect();
    let chunks: Vec<&[BlockNumber]> = numbers.chunks(NODE_BATCH).collect();
    let hashes = stream::iter(chunks)
        .map(|chunk| async move {
            let hashes = node::block_hashes(&node.http, chunk)
                .await
                .at("block hashes", &node.url)?;
            hashes
                .into_iter()
                .zip(chunk)
                .map(|(h, n)| match h {
                    Ok(Some(h)) => Ok(h),
                    Ok(None) => Err(anyhow!("{}: no block #{n}", node.url)),
                    Err(e) => Err(anyhow!(
                        "{}: the hash of block #{n}: {}",
                        node.url,
                        describe_refusal(&e)
                    )),
                })
                .collect::<anyhow::Result<Vec<Hash>>>()
        })
        .buffered(concurrency)
        .try_concat()
        .await?;
    // Blocks one per call: a full block is megabytes of JSON, and a batch
    // of them would pass the node's response size limit.
    let mut blocks = stream::iter(hashes)
        .map(|hash| async move {
            let block = node
                .http
                .block(Some(hash))
                .await
                .at("a block", &node.url)?
                .ok_or_else(|| anyhow!("{}: no block {hash}", node.url))?;
            Ok::<_, anyhow::Error>(vec![block])
        })
        .buffered(concurrency);
    let mut done = scan.scanned_to;
    while let Some(chunk) = blocks.try_next().await? {
        for block in chunk {
            for extrinsic in &block.block.extrinsics {
                let bytes = from_hex(extrinsic)
                    .map_err(|e| anyhow!("block #{}: extrinsic: {e}", done + 1))?;
                let tx = SignedTx::decode_bounded(&bytes)
                    .map_err(|e| anyhow!("block #{}: undecodable extrinsic: {e}", done + 1))?;
                scan.accounts.insert(tx.signer);
                match tx.call {
                    Call::Transfer { to, asset, .. } => {
                        scan.accounts.insert(to);
                        scan.assets.insert(asset);
                    }
                    Call::Mint { asset, to, amount } => {
                        scan.accounts.insert(to);
                        scan.assets.insert(asset);
                        scan.mints.push((tx.hash(), asset, amount));
                    }
                    Call::CreateAsset { id, .. } => {
                        scan.assets.insert(id);
                    }
                }
            }
            done += 1;
        }
        progress.update(&format!("supply: scanned blocks to #{done} of #{to}"));
    }
    scan.scanned_to = to;
    Ok(())
}

enum SnapshotError {
    /// The head moved on: retry at the new one.
    Moved,
    Failed(anyhow::Error),
}

async fn balances_at(
    node: &NodeClient,
    scan: &ChainScan,
    head: &Header,
    concurrency: usize,
) -> Result<BTreeMap<AssetId, Balance>, SnapshotError> {
    let at = head.hash();
    let pairs: Vec<(AccountId, AssetId)> = scan
        .assets
        .iter()
        .flat_map(|asset| scan.accounts.iter().map(move |account| (*account, *asset)))
        .collect();
    let chunks: Vec<&[(AccountId, AssetId)]> = pairs.chunks(256).collect();
    let answers: Vec<Vec<(AssetId, Result<Balance, _>)>> = stream::iter(chunks)
        .map(|chunk| async move {
            let answers = node::balances(&node.http, chunk, Some(at))
                .await
                .at("balances", &node.url)?;
            Ok::<_, anyhow::Error>(
                chunk
                    .iter()
                    .map(|(_, asset)| *asset)
                    .zip(answers.into_iter().map(|a| a.map(|b| b.0)))
                    .collect(),
            )
        })
        .buffered(concurrency)
        .try_collect()
        .await
        .map_err(SnapshotError::Failed)?;
    let mut sums: BTreeMap<AssetId, Balance> = BTreeMap::new();
    for (asset, answer) in answers.into_iter().flatten() {
        match answer {
            Ok(value) => {
                let sum = sums.entry(asset).or_default();
                *sum = sum.saturating_add(value);
            }
            Err(e) if e.code() == HISTORICAL_STATE => return Err(SnapshotError::Moved),
            Err(e) => {
                return Err(SnapshotError::Failed(anyhow!(
                    "{}: a balance: {}",
                    node.url,
                    describe_refusal(&e)
                )))
            }
        }
    }
    Ok(sums)
}

async fn successful_mints(
    node: &NodeClient,
    mints: &[(Hash, AssetId, Balance)],
) -> anyhow::Result<Vec<(AssetId, Balance)>> {
    let mut out = Vec::new();
    for chunk in mints.chunks(NODE_BATCH) {
        let hashes: Vec<Hash> = chunk.iter().map(|(hash, _, _)| *hash).collect();
        let answers = node::tx_statuses(&node.http, &hashes)
            .await
            .at("mint statuses", &node.url)?;
        for ((_, asset, amount), answer) in chunk.iter().zip(answers) {
            let status =
                answer.map_err(|e| anyhow!("a mint's status: {}", describe_refusal(&e)))?;
            if status.status == TxState::Finalized && status.outcome.is_some_and(|o| o.is_success())
            {
                out.push((*asset, *amount));
            }
        }
    }
    Ok(out)
}
