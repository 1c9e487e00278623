//! The JSON-RPC server: HTTP and WebSocket on one port (jsonrpsee), with
//! Substrate's method names.
//!
//! The interfaces are the `#[rpc]` traits of `lockstep_api::node`, with
//! their wire types; [`RpcHandler`] implements them over a [`Chain`]. Every parameter is checked before use and every
//! refusal carries a stable code from [`error`]. Request size, response size,
//! connections, subscriptions per connection and batch length are bounded
//! ([`RpcConfig`]). With a [`ServerTls`] (`--tls-cert`/`--tls-key`) the
//! port serves `https://` and `wss://` instead.
//!
//! Every method is public (transactions are signed; nothing else writes):
//! there is no per-method access table, and `--rpc-rate-limit` bounds each
//! connection's calls whatever the method. Methods whose work grows with a
//! block or with the pool (`chain_getBlock`, `chain_getReceipts`,
//! `tx_getProof`, `author_pendingExtrinsics`: a 20,000-transaction block is
//! megabytes to read, decode and encode) are declared `blocking` in
//! `lockstep_api::node` and run on tokio's blocking threads, so they never
//! hold up the async workers that carry every other call and the network;
//! the rest answer from memory or from one or two point reads and run
//! inline.

pub mod error;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jsonrpsee::core::{async_trait, to_json_raw_value, RpcResult, SubscriptionResult};
use jsonrpsee::server::ServerHandle;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{PendingSubscriptionSink, RpcModule};
pub use lockstep_api::node::PeerView;
use lockstep_api::node::{
    AuthorApiServer, BalanceView, BlockView, ChainApiServer, ChainProperties, Health,
    SignedBlockView, StateApiServer, SystemApiServer, TxApiServer, TxProof, TxState, TxStatusView,
};
use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::state::StateReader;
use lockstep_runtime::{
    merkle, AccountId, AssetId, Block, BlockNumber, Hash, Header, Nonce, Receipt, SignedTx,
    MAX_TX_SIZE,
};
use lockstep_service::rpc_metrics::RpcTimes;
use lockstep_service::rpc_server::RpcLimits;
use lockstep_service::tls::ServerTls;
use parity_scale_codec::Encode;
use tokio::sync::broadcast::error::RecvError;

use self::error::{internal, HISTORICAL_STATE};
use crate::chain::{Chain, TxStatus};

/// Limits of the RPC server.
pub type RpcConfig = RpcLimits;

/// The node's defaults: room for full blocks in answers and many watched
/// transactions per connection.
pub const DEFAULT_RPC_LIMITS: RpcLimits = RpcLimits {
    max_request_bytes: 1024 * 1024,
    max_response_bytes: 32 * 1024 * 1024,
    max_connections: 256,
    max_subscriptions_per_connection: 16_384,
    max_batch_len: 256,
    // Off unless `--rpc-rate-limit` is given, as in Substrate.
    rate_limit: None,
};

/// What the network reports to `system_health`, `system_peers` and
/// `system_localPeerId` (filled in by the network service; a dev node has
/// none).
#[derive(Debug, Default)]
pub struct NetworkInfo {
    /// Connected peers.
    pub peers: AtomicU64,
    /// Whether the node is catching up.
    pub syncing: AtomicBool,
    /// Whether the node is meant to have peers.
    pub should_have_peers: AtomicBool,
    /// This node's peer id (empty without a network).
    pub local_peer_id: Mutex<String>,
    /// The addresses the network listens on.
    pub listen_addresses: Mutex<Vec<String>>,
    /// The connected peers (bounded by the network service).
    pub peer_list: Mutex<Vec<PeerView>>,
}

/// Locks a mutex of [`NetworkInfo`], whether or not a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Implements every API over a [`Chain`].
#[derive(Debug, Clone)]
pub struct RpcHandler {
    chain: Arc<Chain>,
    network: Arc<NetworkInfo>,
}

fn parse_extrinsic(hex: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    // Refuse oversize input before decoding the hex.
    if hex.len() > 2 + 2 * MAX_TX_SIZE {
        return Err(error::error(
            error::BAD_EXTRINSIC,
            format!("extrinsic is larger than the limit of {MAX_TX_SIZE} bytes"),
        ));
    }
    from_hex(hex).map_err(|e| error::error(error::BAD_EXTRINSIC, format!("extrinsic: {e}")))
}

async fn pipe_heads(chain: &Chain, pending: PendingSubscriptionSink) -> SubscriptionResult {
    let mut heads = chain.subscribe_heads();
    let sink = pending.accept().await?;
    loop {
        tokio::select! {
            _ = sink.closed() => return Ok(()),
            head = heads.recv() => match head {
                Ok(header) => sink.send(to_json_raw_value(&header)?).await?,
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(target: "lockstep::rpc", "a head subscriber lagged; {skipped} heads skipped");
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

impl RpcHandler {
    fn header_at(&self, hash: Option<Hash>) -> RpcResult<Option<Header>> {
        match hash {
            None => Ok(Some(self.chain.head())),
            Some(hash) => self.chain.db().header(&hash).map_err(internal),
        }
    }

    /// A finalized block's transaction hashes and receipts, in block order
    /// (what `tx_getProof` and `chain_getReceipts` prove against the
    /// header's roots).
    fn block_receipts(&self, hash: &Hash, block: &Block) -> RpcResult<(Vec<Hash>, Vec<Receipt>)> {
        let tx_hashes: Vec<Hash> = block.extrinsics.iter().map(SignedTx::hash).collect();
        let receipts = self
            .chain
            .db()
            .receipts(hash, &tx_hashes)
            .map_err(internal)?;
        Ok((tx_hashes, receipts))
    }
}

#[async_trait]
impl AuthorApiServer for RpcHandler {
    fn submit_extrinsic(&self, extrinsic: String) -> RpcResult<Hash> {
        let bytes = parse_extrinsic(&extrinsic)?;
        let (hash, _, _) = self.chain.submit(&bytes, false)?;
        Ok(hash)
    }

    async fn submit_and_watch_extrinsic(
        &self,
        pending: PendingSubscriptionSink,
        extrinsic: String,
    ) -> SubscriptionResult {
        let bytes = match parse_extrinsic(&extrinsic) {
            Ok(bytes) => bytes,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        let mut events = match self.chain.submit(&bytes, true) {
            Ok((_, _, Some(events))) => events,
            Ok((_, _, None)) => return Ok(()),
            Err(e) => {
                pending.reject(ErrorObjectOwned::from(e)).await;
                return Ok(());
            }
        };
        let sink = pending.accept().await?;
        loop {
            tokio::select! {
                _ = sink.closed() => return Ok(()),
                event = events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    sink.send(to_json_raw_value(&event)?).await?;
                    if event.is_final() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn pending_extrinsics(&self) -> RpcResult<Vec<String>> {
        Ok(self
            .chain
            .pending()
            .iter()
            .map(|tx| to_hex(&tx.encode()))
            .collect())
    }
}

#[async_trait]
impl ChainApiServer for RpcHandler {
    fn header(&self, hash: Option<Hash>) -> RpcResult<Option<Header>> {
        self.header_at(hash)
    }

    fn block(&self, hash: Option<Hash>) -> RpcResult<Option<SignedBlockView>> {
        let hash = hash.unwrap_or_else(|| self.chain.head().hash());
        let db = self.chain.db();
        let Some(block) = db.block(&hash).map_err(internal)? else {
            return Ok(None);
        };
        let justification = db.justification(&hash).map_err(internal)?;
        let extrinsics = block
            .extrinsics
            .iter()
            .map(|tx| to_hex(&tx.encode()))
            .collect();
        Ok(Some(SignedBlockView {
            block: BlockView {
                header: block.header,
                extrinsics,
            },
            justification,
        }))
    }

    fn receipts(&self, hash: Hash) -> RpcResult<Option<Vec<Receipt>>> {
        let Some(block) = self.chain.db().block(&hash).map_err(internal)? else {
            return Ok(None);
        };
        let (_, receipts) = self.block_receipts(&hash, &block)?;
        Ok(Some(receipts))
    }

    fn block_hash(&self, number: Option<BlockNumber>) -> RpcResult<Option<Hash>> {
        match number {
            None => Ok(Some(self.chain.head().hash())),
            Some(number) => self.chain.db().hash_by_number(number).map_err(internal),
        }
    }

    fn finalized_head(&self) -> RpcResult<Hash> {
        Ok(self.chain.head().hash())
    }

    async fn subscribe_new_heads(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        pipe_heads(&self.chain, pending).await
    }

    async fn subscribe_finalized_heads(
        &self,
        pending: PendingSubscriptionSink,
    ) -> SubscriptionResult {
        pipe_heads(&self.chain, pending).await
    }
}

impl StateApiServer for RpcHandler {
    fn balance(
        &self,
        account: AccountId,
        asset: AssetId,
        at: Option<Hash>,
    ) -> RpcResult<BalanceView> {
        if let Some(at) = at {
            if at != self.chain.head().hash() {
                return Err(error::error(
                    HISTORICAL_STATE,
                    "only the finalized head's state is kept; omit `at` or pass the head's hash",
                ));
            }
        }
        let state = StateReader::new(self.chain.db());
        state
            .balance(&account, asset)
            .map(BalanceView)
            .map_err(|e| internal(e.into()))
    }

    fn nonce(&self, account: AccountId) -> RpcResult<Nonce> {
        StateReader::new(self.chain.db())
            .nonce(&account)
            .map_err(|e| internal(e.into()))
    }
}

impl TxApiServer for RpcHandler {
    fn status(&self, hash: Hash) -> RpcResult<TxStatusView> {
        let finalized_number = self.chain.head().number;
        let status = self.chain.tx_status(&hash).map_err(internal)?;
        let view = |status: TxState| TxStatusView {
            status,
            block_hash: None,
            block_number: None,
            index: None,
            outcome: None,
            finalized_number,
        };
        Ok(match status {
            TxStatus::Unknown => view(TxState::Unknown),
            TxStatus::Pool => view(TxState::Pool),
            // The cached head may trail a block import by a moment.
            TxStatus::Finalized(location) => TxStatusView {
                block_hash: Some(location.block_hash),
                block_number: Some(location.block_number),
                index: Some(location.index),
                outcome: Some(location.outcome),
                finalized_number: finalized_number.max(location.block_number),
                ..view(TxState::Finalized)
            },
        })
    }

    fn proof(&self, hash: Hash) -> RpcResult<Option<TxProof>> {
        let db = self.chain.db();
        let Some(location) = db.tx_location(&hash).map_err(internal)? else {
            return Ok(None);
        };
        let Some(block) = db.block(&location.block_hash).map_err(internal)? else {
            return Ok(None);
        };
        let justification = db.justification(&location.block_hash).map_err(internal)?;
        let index = location.index as usize;
        let (tx_hashes, receipts) = self.block_receipts(&location.block_hash, &block)?;
        let receipt_hashes: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
        let (Some(tx), Some(inclusion_proof), Some(receipt_proof)) = (
            block.extrinsics.get(index),
            merkle::prove(&tx_hashes, index),
            merkle::prove(&receipt_hashes, index),
        ) else {
            return Err(error::error(
                error::INTERNAL,
                "tx index points outside its block",
            ));
        };
        Ok(Some(TxProof {
            header: block.header,
            justification,
            extrinsic: to_hex(&tx.encode()),
            inclusion_proof,
            receipt: Receipt {
                tx_hash: hash,
                outcome: location.outcome,
            },
            receipt_proof,
        }))
    }
}

/// A stored block's receipts, in transaction order. Receipts are not
/// stored as such: each is (tx hash, outcome), and the outcomes are in the
/// tx index.
impl SystemApiServer for RpcHandler {
    fn health(&self) -> RpcResult<Health> {
        Ok(Health {
            peers: self.network.peers.load(Ordering::Relaxed),
            is_syncing: self.network.syncing.load(Ordering::Relaxed),
            should_have_peers: self.network.should_have_peers.load(Ordering::Relaxed),
        })
    }

    fn name(&self) -> RpcResult<String> {
        Ok("lockstep-node".into())
    }

    fn version(&self) -> RpcResult<String> {
        Ok(env!("CARGO_PKG_VERSION").into())
    }

    fn chain(&self) -> RpcResult<String> {
        Ok(self.chain.spec().name.clone())
    }

    fn properties(&self) -> RpcResult<ChainProperties> {
        let spec = self.chain.spec();
        Ok(ChainProperties {
            chain_id: spec.chain_id.clone(),
            block_time_ms: spec.block_time_ms,
            max_validity_blocks: spec.max_validity_blocks,
        })
    }

    fn peers(&self) -> RpcResult<Vec<PeerView>> {
        Ok(lock(&self.network.peer_list).clone())
    }

    fn local_peer_id(&self) -> RpcResult<String> {
        Ok(lock(&self.network.local_peer_id).clone())
    }

    fn local_listen_addresses(&self) -> RpcResult<Vec<String>> {
        let peer_id = lock(&self.network.local_peer_id).clone();
        Ok(lock(&self.network.listen_addresses)
            .iter()
            .map(|a| format!("{a}/p2p/{peer_id}"))
            .collect())
    }
}

/// All methods, plus `rpc_methods` listing them.
pub fn module(chain: Arc<Chain>, network: Arc<NetworkInfo>) -> RpcModule<()> {
    let handler = RpcHandler { chain, network };
    let parts = [
        AuthorApiServer::into_rpc(handler.clone()).remove_context(),
        ChainApiServer::into_rpc(handler.clone()).remove_context(),
        StateApiServer::into_rpc(handler.clone()).remove_context(),
        TxApiServer::into_rpc(handler.clone()).remove_context(),
        SystemApiServer::into_rpc(handler).remove_context(),
    ];
    lockstep_api::merge_with_listing(parts).unwrap_or_else(|e| {
        // Names are distinct across namespaces: a clash is a programming
        // error that the node's RPC tests catch.
        tracing::error!("duplicate RPC method: {e}");
        RpcModule::new(())
    })
}

/// Starts the server on `addr`, timing every call into `times`, over TLS
/// when `tls` is given; returns its handle and the bound address.
pub async fn start(
    addr: SocketAddr,
    config: RpcConfig,
    module: RpcModule<()>,
    times: RpcTimes,
    tls: Option<ServerTls>,
) -> std::io::Result<(ServerHandle, SocketAddr)> {
    lockstep_service::rpc_server::start(addr, config, module, times, tls).await
}
