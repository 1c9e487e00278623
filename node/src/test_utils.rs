//! A dev node in the test's own process: [`DevNode`].
//!
//! One validator (the dev key `alice`) on a loopback port chosen by the
//! kernel, with its database in a temporary directory and a block every
//! 100 ms, so that tests of the node and of its clients (the event system,
//! the bridge, the command line) run against a real chain in seconds. It
//! comes with typed clients from [`lockstep_api::client`]: call the
//! [`lockstep_api::node`] client traits on [`DevNode::http`] and
//! [`DevNode::ws`].
//!
//! Behind the cargo feature `test-utils`; never in a release binary.

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client;
use lockstep_api::node::{
    AuthorApiClient, ChainApiClient, StateApiClient, TxApiClient, TxState, TxStatusView,
};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    AccountId, Call, ChainSpec, Hash, Header, Keypair, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;

use crate::service::{self, NodeConfig, RunningNode};

/// The chain id of [`DevNode::start`]'s chain.
pub const DEV_CHAIN_ID: &str = "lockstep-test";

/// The time between blocks of a dev node.
pub const DEV_BLOCK_TIME: Duration = Duration::from_millis(100);

/// A dev chain spec named `chain_id` with `alice` as its one validator.
pub fn dev_spec(chain_id: &str) -> ChainSpec {
    ChainSpec::dev(chain_id, &[Keypair::dev("alice").public()])
}

/// A single-validator dev chain running in this process; see the
/// [module docs](self).
#[derive(Debug)]
pub struct DevNode {
    node: Option<RunningNode>,
    /// An HTTP client of its JSON-RPC server.
    pub http: HttpClient,
    /// A WebSocket client of the same server, for subscriptions.
    pub ws: WsClient,
    /// What its transactions sign over.
    pub context: SigningContext,
    /// Its JSON-RPC address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl DevNode {
    /// [`DEV_CHAIN_ID`]'s chain with the defaults.
    pub async fn start() -> DevNode {
        DevNode::start_with(dev_spec(DEV_CHAIN_ID), |_| {}).await
    }

    /// `spec`'s chain: `alice` validates on `127.0.0.1:0`, a block every
    /// [`DEV_BLOCK_TIME`], the database in a fresh temporary directory;
    /// then `configure` may change any of that. Panics if it does not
    /// start.
    pub async fn start_with(spec: ChainSpec, configure: impl FnOnce(&mut NodeConfig)) -> DevNode {
        let dir = tempfile::tempdir().expect("a temporary directory for the dev node");
        let mut config = NodeConfig::new(spec, dir.path().to_path_buf());
        config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.validator_key = Some(Keypair::dev("alice"));
        config.block_time = DEV_BLOCK_TIME;
        configure(&mut config);
        let node = service::start_single(config)
            .await
            .unwrap_or_else(|e| panic!("the dev node did not start: {e}"));
        let addr = node.rpc_addr;
        let url = format!("http://{addr}");
        let http = client::http(&url, client::DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("a client of the dev node: {e}"));
        let ws = client::ws(&url, client::DEFAULT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("a WebSocket client of the dev node: {e}"));
        let context = *node.chain.signing_context();
        DevNode {
            node: Some(node),
            http,
            ws,
            context,
            addr,
            _dir: dir,
        }
    }

    /// Its JSON-RPC URL (`http://`; the same port serves `ws://`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node itself (its chain, its bound addresses).
    pub fn running(&self) -> &RunningNode {
        self.node
            .as_ref()
            .unwrap_or_else(|| unreachable!("a DevNode holds its node until stopped"))
    }

    /// A transfer of `amount` units of the dev asset from the dev account
    /// `from` to `to`, signed with `nonce` and valid until block
    /// `valid_until`.
    pub fn transfer(
        &self,
        from: &str,
        nonce: u64,
        valid_until: u64,
        to: AccountId,
        amount: u128,
    ) -> SignedTx {
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to,
            amount,
            reference: None,
        };
        SignedTx::sign(&Keypair::dev(from), &self.context, nonce, valid_until, call)
    }

    /// Submits `tx`; returns its hash. Panics if the node refuses it.
    pub async fn submit(&self, tx: &SignedTx) -> Hash {
        self.http
            .submit_extrinsic(to_hex(&tx.encode()))
            .await
            .unwrap_or_else(|e| panic!("the dev node refused a transaction: {e}"))
    }

    /// `tx_getStatus` of `tx`.
    pub async fn status(&self, tx: &Hash) -> TxStatusView {
        self.http
            .status(*tx)
            .await
            .unwrap_or_else(|e| panic!("tx_getStatus: {e}"))
    }

    /// The finalized head's number.
    pub async fn head(&self) -> u64 {
        self.http
            .header(None)
            .await
            .unwrap_or_else(|e| panic!("chain_getHeader: {e}"))
            .unwrap_or_else(|| panic!("the dev node has no finalized head"))
            .number
    }

    /// The dev account `who`'s balance of the dev asset.
    pub async fn balance(&self, who: &str) -> u128 {
        let account = Keypair::dev(who).public();
        self.http
            .balance(account, DEV_ASSET, None)
            .await
            .unwrap_or_else(|e| panic!("state_getBalance: {e}"))
            .0
    }

    /// The dev account `who`'s next nonce.
    pub async fn nonce(&self, who: &str) -> u64 {
        let account = Keypair::dev(who).public();
        self.http
            .nonce(account)
            .await
            .unwrap_or_else(|e| panic!("state_getNonce: {e}"))
    }

    /// Waits, head by head, until `tx` is finalized; returns its status.
    pub async fn await_finalized(&self, tx: &Hash) -> TxStatusView {
        let mut heads = self
            .ws
            .subscribe_finalized_heads()
            .await
            .unwrap_or_else(|e| panic!("subscribing to finalized heads: {e}"));
        loop {
            let status = self.status(tx).await;
            if status.status == TxState::Finalized {
                return status;
            }
            next_head(&mut heads).await;
        }
    }

    /// Waits for `count` more finalized heads; returns them.
    pub async fn await_heads(&self, count: usize) -> Vec<Header> {
        let mut heads = self
            .ws
            .subscribe_finalized_heads()
            .await
            .unwrap_or_else(|e| panic!("subscribing to finalized heads: {e}"));
        let mut seen = Vec::new();
        while seen.len() < count {
            seen.push(next_head(&mut heads).await);
        }
        seen
    }

    /// Stops the node and waits until it has.
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.stop()
                .await
                .unwrap_or_else(|e| panic!("the dev node did not stop cleanly: {e}"));
        }
    }
}

async fn next_head(heads: &mut client::Subscription<Header>) -> Header {
    heads
        .next()
        .await
        .unwrap_or_else(|| panic!("the finalized-heads subscription ended"))
        .unwrap_or_else(|e| panic!("a finalized head: {e}"))
}
