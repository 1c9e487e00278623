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
//! [`DevNode::start_tls`] serves `https://` and `wss://` instead, with a
//! certificate of the test's own CA
//! (`lockstep_service::test_utils::TestCa`), and its clients trust that CA.
//!
//! Behind the cargo feature `test-utils`; never in a release binary.

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{self, ClientOptions, TrustedCas};
use lockstep_api::node::{
    AuthorApiClient, ChainApiClient, StateApiClient, TxApiClient, TxState, TxStatusView,
};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    AccountId, Call, ChainSpec, Hash, Header, Keypair, SignedTx, SigningContext,
};
use lockstep_service::tls::{server_urls, ServerTls};
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
    /// What its clients were built with: the CAs they trust when it
    /// serves TLS.
    pub client_options: ClientOptions,
    tls: bool,
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
    ///
    /// A `configure` that sets [`NodeConfig::rpc_tls`] needs
    /// [`DevNode::start_tls`] instead, whose clients trust the server's CA.
    pub async fn start_with(spec: ChainSpec, configure: impl FnOnce(&mut NodeConfig)) -> DevNode {
        DevNode::launch(spec, None, configure).await
    }

    /// [`DevNode::start_with`], serving `https://` and `wss://` with `tls`;
    /// [`DevNode::http`] and [`DevNode::ws`] trust `cas` alone. With
    /// `lockstep_service::test_utils::TestCa`:
    /// `DevNode::start_tls(spec, ca.server_tls(), ca.trusted_cas(), |_| {})`.
    pub async fn start_tls(
        spec: ChainSpec,
        tls: ServerTls,
        cas: TrustedCas,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> DevNode {
        DevNode::launch(spec, Some((tls, cas)), |config| {
            configure(config);
            assert!(
                config.rpc_tls.is_some(),
                "DevNode::start_tls: `configure` removed the TLS set-up"
            );
        })
        .await
    }

    async fn launch(
        spec: ChainSpec,
        tls: Option<(ServerTls, TrustedCas)>,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> DevNode {
        let dir = tempfile::tempdir().expect("a temporary directory for the dev node");
        let mut config = NodeConfig::new(spec, dir.path().to_path_buf());
        config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.validator_key = Some(Keypair::dev("alice"));
        config.block_time = DEV_BLOCK_TIME;
        let (server_tls, cas) = tls.unzip();
        config.rpc_tls = server_tls;
        configure(&mut config);
        let tls = config.rpc_tls.is_some();
        assert!(
            !tls || cas.is_some(),
            "a dev node with NodeConfig::rpc_tls is started with DevNode::start_tls, \
             whose clients trust its CA"
        );
        let node = service::start_single(config)
            .await
            .unwrap_or_else(|e| panic!("the dev node did not start: {e}"));
        let addr = node.rpc_addr;
        let client_options = ClientOptions::new(client::DEFAULT_TIMEOUT).with_cas(cas);
        let (url, _) = server_urls(addr, tls);
        let http = client::http_with(&url, &client_options)
            .unwrap_or_else(|e| panic!("a client of the dev node: {e}"));
        let ws = client::ws_with(&url, &client_options)
            .await
            .unwrap_or_else(|e| panic!("a WebSocket client of the dev node: {e}"));
        let context = *node.chain.signing_context();
        DevNode {
            node: Some(node),
            http,
            ws,
            context,
            addr,
            client_options,
            tls,
            _dir: dir,
        }
    }

    /// Its JSON-RPC URL: `http://127.0.0.1:<port>` (the same port serves
    /// `ws://`), or `https://` (and `wss://`) when it serves TLS.
    pub fn url(&self) -> String {
        server_urls(self.addr, self.tls).0
    }

    /// Its WebSocket URL: `ws://127.0.0.1:<port>`, or `wss://` with TLS.
    pub fn ws_url(&self) -> String {
        server_urls(self.addr, self.tls).1
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
