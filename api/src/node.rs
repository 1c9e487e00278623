//! The node's JSON-RPC interface (`lockstep-node`): HTTP and WebSocket on
//! one port, with Substrate's method names. Extrinsics travel as
//! SCALE-encoded `0x`-hex; errors carry the stable codes of [`error`].

use jsonrpsee::core::client::Error as ClientError;
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::rpc_params;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_runtime::primitives::balance_string;
use lockstep_runtime::{
    merkle, AccountId, AssetId, Balance, BlockNumber, Hash, Header, Justification, Nonce, Outcome,
    Receipt,
};
use serde::{Deserialize, Serialize};

use crate::client::batch;

/// The node's error codes. They are part of the API: a code, once given a
/// meaning, keeps it. Messages are for people and may be reworded.
///
/// | code | meaning |
/// |---|---|
/// | -32700, -32600, -32601, -32602 | JSON-RPC's own: parse error, invalid request, unknown method, invalid params |
/// | -32603 | internal error (the database failed) |
/// | 1000 | the extrinsic is not valid hex, does not decode, or is too large |
/// | 1010 | bad signature, or signed for another chain (genesis) or runtime version |
/// | 1011 | stale nonce: the account has used it already |
/// | 1012 | expired: `valid_until` is behind the next block |
/// | 1013 | already known: in the pool or finalized |
/// | 1014 | nonce taken by another transaction in the pool |
/// | 1015 | the pool is full |
/// | 1016 | too many pending transactions for this account |
/// | 1017 | too many watched transactions |
/// | 1018 | `valid_until` is further past the head than the chain spec's `maxValidityBlocks` |
/// | 1019 | this connection sends calls faster than the node's `--rpc-rate-limit` |
/// | 1030 | historical state requested: only the finalized head's state is kept |
pub mod error {
    /// The extrinsic is not valid hex, does not decode, or is too large.
    pub const BAD_EXTRINSIC: i32 = 1000;
    /// Bad signature, or signed for another chain or runtime version.
    pub const BAD_SIGNATURE: i32 = 1010;
    /// The nonce is used.
    pub const STALE_NONCE: i32 = 1011;
    /// `valid_until` has passed.
    pub const EXPIRED: i32 = 1012;
    /// In the pool or finalized already.
    pub const ALREADY_KNOWN: i32 = 1013;
    /// Another pooled transaction has this nonce.
    pub const NONCE_TAKEN: i32 = 1014;
    /// The pool is full.
    pub const POOL_FULL: i32 = 1015;
    /// The account has too many pending transactions.
    pub const ACCOUNT_FULL: i32 = 1016;
    /// Too many watched transactions.
    pub const TOO_MANY_WATCHERS: i32 = 1017;
    /// `valid_until` is beyond the chain's validity window.
    pub const VALIDITY_TOO_LONG: i32 = 1018;
    /// The connection's call rate is over the node's limit.
    pub const RATE_LIMITED: i32 = 1019;
    /// Only the head's state is kept.
    pub const HISTORICAL_STATE: i32 = 1030;
    /// JSON-RPC's internal error.
    pub const INTERNAL: i32 = -32603;
}

/// What happens to a watched transaction (`author_submitAndWatchExtrinsic`'s
/// `extrinsicUpdate` items), in Substrate's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TxEvent {
    /// In the pool, includable in the next block.
    Ready,
    /// In the pool, waiting for lower nonces.
    Future,
    /// In a block.
    InBlock(Hash),
    /// In a finalized block (with instant finality, right after `InBlock`).
    Finalized(Hash),
    /// Can never be included (its nonce was used by another transaction).
    Invalid(String),
    /// Left the pool without inclusion (expired).
    Dropped(String),
}

impl TxEvent {
    /// Whether no further event can follow.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TxEvent::Finalized(_) | TxEvent::Invalid(_) | TxEvent::Dropped(_)
        )
    }
}

/// `system_peers`: one connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    /// Its peer id.
    pub peer_id: String,
    /// The address of the connection.
    pub address: Option<String>,
    /// Its finalized height, from its last status.
    pub finalized_number: BlockNumber,
    /// Its finalized head, from its last status.
    pub finalized_hash: Hash,
    /// Its score (misbehaviour lowers it; at -100 it is dropped).
    pub score: i32,
}

/// `system_health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Connected peers.
    pub peers: u64,
    /// Whether the node is catching up.
    pub is_syncing: bool,
    /// Whether the node is meant to have peers.
    pub should_have_peers: bool,
}

/// `chain_getBlock`: a block with its justification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedBlockView {
    /// The block, extrinsics as SCALE hex.
    pub block: BlockView,
    /// Its justification (none for genesis).
    pub justification: Option<Justification>,
}

/// A block, extrinsics as SCALE hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    /// The header.
    pub header: Header,
    /// The extrinsics, SCALE-encoded, `0x`-hex.
    pub extrinsics: Vec<String>,
}

/// Where a transaction is, as `tx_getStatus` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TxState {
    /// Neither in the pool nor finalized.
    Unknown,
    /// In the pool.
    Pool,
    /// In a finalized block.
    Finalized,
}

impl TxState {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Unknown => "unknown",
            TxState::Pool => "pool",
            TxState::Finalized => "finalized",
        }
    }
}

impl std::fmt::Display for TxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `tx_getStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxStatusView {
    /// Unknown, in the pool or finalized.
    pub status: TxState,
    /// The block holding it, if finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<Hash>,
    /// That block's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<BlockNumber>,
    /// Its position in the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The node's finalized height, so a caller can judge expiry.
    pub finalized_number: BlockNumber,
}

/// `tx_getProof`: all a light client needs to check, from the justified
/// header alone, that the transaction is in the block and what its outcome
/// was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxProof {
    /// The block's header.
    pub header: Header,
    /// Its justification.
    pub justification: Option<Justification>,
    /// The transaction, SCALE hex; its hash is the inclusion leaf.
    pub extrinsic: String,
    /// Merkle proof of the tx hash under `header.extrinsicsRoot`.
    pub inclusion_proof: merkle::MerkleProof,
    /// The receipt; its hash is the outcome leaf.
    pub receipt: Receipt,
    /// Merkle proof of the receipt hash under `header.receiptsRoot`.
    pub receipt_proof: merkle::MerkleProof,
}

/// A balance as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BalanceView(#[serde(with = "balance_string")] pub Balance);

/// `author_*`.
#[rpc(server, client, namespace = "author")]
pub trait AuthorApi {
    /// Submits a SCALE-encoded, `0x`-hex signed transaction; returns its hash.
    #[method(name = "submitExtrinsic")]
    fn submit_extrinsic(&self, extrinsic: String) -> RpcResult<Hash>;

    /// Submits a transaction and streams its status: `ready` or `future`,
    /// then `inBlock` and `finalized`, or `invalid` / `dropped`.
    #[subscription(name = "submitAndWatchExtrinsic" => "extrinsicUpdate", unsubscribe = "unwatchExtrinsic", item = TxEvent)]
    async fn submit_and_watch_extrinsic(&self, extrinsic: String) -> SubscriptionResult;

    /// The pool's transactions, SCALE hex, in arrival order.
    #[method(name = "pendingExtrinsics")]
    fn pending_extrinsics(&self) -> RpcResult<Vec<String>>;
}

/// `chain_*`.
#[rpc(server, client, namespace = "chain")]
pub trait ChainApi {
    /// A header by hash; the finalized head without one.
    #[method(name = "getHeader")]
    fn header(&self, hash: Option<Hash>) -> RpcResult<Option<Header>>;

    /// A block with its justification by hash; the head without one.
    #[method(name = "getBlock")]
    fn block(&self, hash: Option<Hash>) -> RpcResult<Option<SignedBlockView>>;

    /// The hash of the finalized block at a number; the head's without one.
    #[method(name = "getBlockHash")]
    fn block_hash(&self, number: Option<BlockNumber>) -> RpcResult<Option<Hash>>;

    /// The finalized head's hash.
    #[method(name = "getFinalizedHead")]
    fn finalized_head(&self) -> RpcResult<Hash>;

    /// The receipts of the finalized block with this hash, in transaction
    /// order (leaf i of the header's `receiptsRoot` is the hash of
    /// receipt i); null if the node has no such block.
    #[method(name = "getReceipts")]
    fn receipts(&self, hash: Hash) -> RpcResult<Option<Vec<Receipt>>>;

    /// New best heads. Finality is instant, so these are the finalized heads.
    #[subscription(name = "subscribeNewHeads" => "newHead", unsubscribe = "unsubscribeNewHeads", item = Header)]
    async fn subscribe_new_heads(&self) -> SubscriptionResult;

    /// New finalized heads.
    #[subscription(name = "subscribeFinalizedHeads" => "finalizedHead", unsubscribe = "unsubscribeFinalizedHeads", item = Header)]
    async fn subscribe_finalized_heads(&self) -> SubscriptionResult;
}

/// `state_*`.
#[rpc(server, client, namespace = "state")]
pub trait StateApi {
    /// An account's balance of an asset at the finalized head, as a decimal
    /// string. `at`, if given, must be the head's hash.
    #[method(name = "getBalance")]
    fn balance(
        &self,
        account: AccountId,
        asset: AssetId,
        at: Option<Hash>,
    ) -> RpcResult<BalanceView>;

    /// The nonce the account's next transaction must carry.
    #[method(name = "getNonce")]
    fn nonce(&self, account: AccountId) -> RpcResult<Nonce>;
}

/// `tx_*`.
#[rpc(server, client, namespace = "tx")]
pub trait TxApi {
    /// Where a transaction is: unknown, in the pool, or finalized with its
    /// block, position and outcome; with the finalized height.
    #[method(name = "getStatus")]
    fn status(&self, hash: Hash) -> RpcResult<TxStatusView>;

    /// Proof of a finalized transaction's inclusion and outcome; null if it
    /// is not finalized here.
    #[method(name = "getProof")]
    fn proof(&self, hash: Hash) -> RpcResult<Option<TxProof>>;
}

/// `system_properties`: the chain spec's parameters a client needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainProperties {
    /// The chain id (part of every consensus signature).
    pub chain_id: String,
    /// Target time between blocks, in milliseconds.
    pub block_time_ms: u64,
    /// How far past the head a transaction's `valid_until` may be.
    pub max_validity_blocks: u64,
}

/// `system_*`.
#[rpc(server, client, namespace = "system")]
pub trait SystemApi {
    /// Peers and sync state.
    #[method(name = "health")]
    fn health(&self) -> RpcResult<Health>;

    /// The implementation's name.
    #[method(name = "name")]
    fn name(&self) -> RpcResult<String>;

    /// The implementation's version.
    #[method(name = "version")]
    fn version(&self) -> RpcResult<String>;

    /// The chain's name.
    #[method(name = "chain")]
    fn chain(&self) -> RpcResult<String>;

    /// The chain spec's parameters a client needs (Substrate's method
    /// name): its id and the validity window, among others.
    #[method(name = "properties")]
    fn properties(&self) -> RpcResult<ChainProperties>;

    /// The connected peers.
    #[method(name = "peers")]
    fn peers(&self) -> RpcResult<Vec<PeerView>>;

    /// This node's libp2p peer id (empty for a node without a network).
    #[method(name = "localPeerId")]
    fn local_peer_id(&self) -> RpcResult<String>;

    /// The multiaddrs this node listens on (with `/p2p/<peer id>` appended,
    /// ready for `--bootnodes`).
    #[method(name = "localListenAddresses")]
    fn local_listen_addresses(&self) -> RpcResult<Vec<String>>;
}

/// The methods called in JSON-RPC batches (the generated clients make one
/// call per request); a node test checks that the node serves each.
pub mod methods {
    /// `tx_getStatus`.
    pub const TX_GET_STATUS: &str = "tx_getStatus";
    /// `state_getBalance`.
    pub const STATE_GET_BALANCE: &str = "state_getBalance";
    /// `author_submitExtrinsic`.
    pub const AUTHOR_SUBMIT_EXTRINSIC: &str = "author_submitExtrinsic";
    /// `chain_getBlockHash`.
    pub const CHAIN_GET_BLOCK_HASH: &str = "chain_getBlockHash";
    /// `state_getNonce`.
    pub const STATE_GET_NONCE: &str = "state_getNonce";
    /// Every name above.
    pub const BATCHED: [&str; 5] = [
        TX_GET_STATUS,
        STATE_GET_BALANCE,
        AUTHOR_SUBMIT_EXTRINSIC,
        CHAIN_GET_BLOCK_HASH,
        STATE_GET_NONCE,
    ];
}

/// Most calls in one JSON-RPC batch to a node (its default limit is 256).
pub const MAX_NODE_BATCH: usize = 64;

/// `tx_getStatus` for each hash, in JSON-RPC batches of at most
/// [`MAX_NODE_BATCH`] calls; each entry is the node's answer or its refusal.
/// A transport failure fails the whole call.
pub async fn tx_statuses(
    client: &HttpClient,
    hashes: &[Hash],
) -> Result<Vec<Result<TxStatusView, ErrorObjectOwned>>, ClientError> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(MAX_NODE_BATCH) {
        out.extend(
            batch(
                client,
                methods::TX_GET_STATUS,
                chunk.iter().map(|hash| rpc_params![hash]).collect(),
            )
            .await?,
        );
    }
    Ok(out)
}

/// `state_getBalance` for each (account, asset), at `at` (the head's hash,
/// or the head without it), in one JSON-RPC batch (at most the node's
/// batch limit).
pub async fn balances(
    client: &HttpClient,
    pairs: &[(AccountId, AssetId)],
    at: Option<Hash>,
) -> Result<Vec<Result<BalanceView, ErrorObjectOwned>>, ClientError> {
    batch(
        client,
        methods::STATE_GET_BALANCE,
        pairs
            .iter()
            .map(|(account, asset)| rpc_params![account, asset, at])
            .collect(),
    )
    .await
}

/// `state_getNonce` for each account, in one JSON-RPC batch (at most the
/// node's batch limit).
pub async fn nonces(
    client: &HttpClient,
    accounts: &[AccountId],
) -> Result<Vec<Result<Nonce, ErrorObjectOwned>>, ClientError> {
    batch(
        client,
        methods::STATE_GET_NONCE,
        accounts
            .iter()
            .map(|account| rpc_params![account])
            .collect(),
    )
    .await
}

/// `chain_getBlockHash` for each number, in one JSON-RPC batch (at most the
/// node's batch limit).
pub async fn block_hashes(
    client: &HttpClient,
    numbers: &[BlockNumber],
) -> Result<Vec<Result<Option<Hash>, ErrorObjectOwned>>, ClientError> {
    batch(
        client,
        methods::CHAIN_GET_BLOCK_HASH,
        numbers.iter().map(|n| rpc_params![n]).collect(),
    )
    .await
}

/// `author_submitExtrinsic` for each `0x`-hex transaction, in one JSON-RPC
/// batch (at most the node's batch limit).
pub async fn submit_extrinsics(
    client: &HttpClient,
    extrinsics: &[String],
) -> Result<Vec<Result<Hash, ErrorObjectOwned>>, ClientError> {
    batch(
        client,
        methods::AUTHOR_SUBMIT_EXTRINSIC,
        extrinsics.iter().map(|tx| rpc_params![tx]).collect(),
    )
    .await
}

/// The finalized block at `number`, checked to be the block the node names
/// for that height; none if the node does not have it.
pub async fn block_at(
    client: &HttpClient,
    number: BlockNumber,
) -> Result<Option<SignedBlockView>, ClientError> {
    let Some(hash) = client.block_hash(Some(number)).await? else {
        return Ok(None);
    };
    match client.block(Some(hash)).await? {
        Some(block) if block.block.header.hash() == hash => Ok(Some(block)),
        Some(_) => Err(ClientError::Custom(format!(
            "chain_getBlock({hash}) returned a block with another hash"
        ))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_updates_and_statuses_keep_their_wire_names() {
        let hash = Hash([7; 32]);
        assert_eq!(serde_json::to_string(&TxEvent::Ready).unwrap(), "\"ready\"");
        assert_eq!(
            serde_json::to_value(TxEvent::InBlock(hash)).unwrap(),
            serde_json::json!({ "inBlock": hash })
        );
        assert_eq!(
            serde_json::to_value(TxEvent::Dropped("expired".into())).unwrap(),
            serde_json::json!({ "dropped": "expired" })
        );
        let status: TxStatusView = serde_json::from_value(serde_json::json!({
            "status": "finalized",
            "blockHash": hash,
            "blockNumber": 3,
            "index": 0,
            "outcome": { "status": "success" },
            "finalizedNumber": 4,
        }))
        .unwrap();
        assert_eq!(status.status, TxState::Finalized);
        assert_eq!(status.outcome, Some(Outcome::Success));
        let unknown: TxStatusView = serde_json::from_value(
            serde_json::json!({ "status": "unknown", "finalizedNumber": 9 }),
        )
        .unwrap();
        assert_eq!(unknown.status, TxState::Unknown);
        assert!(serde_json::from_value::<TxStatusView>(
            serde_json::json!({ "status": "lost", "finalizedNumber": 9 })
        )
        .is_err());
        assert_eq!(
            serde_json::to_string(&BalanceView(u128::MAX)).unwrap(),
            format!("\"{}\"", u128::MAX)
        );
    }
}
