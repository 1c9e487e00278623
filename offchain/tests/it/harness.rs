//! Dev nodes, fault-injecting proxies and an in-process event system.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use jsonrpsee::RpcModule;
use lockstep_api::bus::{BusMessage, Delivery};
use lockstep_api::event::{Event, Evidence, PaymentInstruction, RegisterRequest, Transition};
use lockstep_api::node::{
    methods as node_methods, AuthorApiClient, ChainApiClient, TxApiClient, TxState, TxStatusView,
};
use lockstep_api::offchain::{EventApiClient, Stats};
use lockstep_node::service::{self, NodeConfig, RunningNode};
use lockstep_offchain::{Config, RunningService};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    AccountId, Call, ChainSpec, Hash, Keypair, Outcome, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;
use serde_json::Value;

/// Generous bound on any awaited condition, so a bug fails the test rather
/// than hanging it. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn bridge_key() -> Keypair {
    Keypair::dev("bridge")
}

/// A call's answer, or the server's refusal; a transport failure panics.
pub fn answer<T>(result: Result<T, ClientError>) -> Result<T, ErrorObjectOwned> {
    match result {
        Ok(value) => Ok(value),
        Err(ClientError::Call(e)) => Err(e),
        Err(e) => panic!("transport error {e}"),
    }
}

/// The message of a delivery; panics on one that does not decode.
pub fn message(delivery: &Delivery) -> &BusMessage {
    match delivery {
        Delivery::Message(message) => message,
        Delivery::Undecodable(value) => panic!("undecodable bus message {value}"),
    }
}

/// The evidence of an event that has some.
pub fn evidence(event: &Event) -> &Evidence {
    event
        .evidence
        .as_ref()
        .unwrap_or_else(|| panic!("{} has no evidence: {event:?}", event.id))
}

pub struct DevNode {
    pub node: Option<RunningNode>,
    pub http: HttpClient,
    pub context: SigningContext,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl DevNode {
    /// A single validator producing a block every 100 ms.
    pub async fn start() -> DevNode {
        let dir = tempfile::tempdir().unwrap();
        let spec = ChainSpec::dev("lockstep-offchain-test", &[Keypair::dev("alice").public()]);
        let mut config = NodeConfig::new(spec, dir.path().to_path_buf());
        config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.validator_key = Some(Keypair::dev("alice"));
        config.block_time = Duration::from_millis(100);
        let node = service::start_single(config).await.unwrap();
        let addr = node.rpc_addr;
        let http = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let context = *node.chain.signing_context();
        DevNode {
            node: Some(node),
            http,
            context,
            addr,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

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

    pub async fn submit(&self, tx: &SignedTx) -> Hash {
        self.http.submit_extrinsic(hex(tx)).await.unwrap()
    }

    pub async fn status(&self, tx: &Hash) -> TxStatusView {
        self.http.status(*tx).await.unwrap()
    }

    pub async fn head(&self) -> u64 {
        self.http.header(None).await.unwrap().unwrap().number
    }

    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.stop().await.unwrap();
        }
    }
}

pub fn hex(tx: &SignedTx) -> String {
    to_hex(&tx.encode())
}

/// How a proxy treats `tx_getStatus` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Forwards them unchanged: a second honest endpoint onto the same chain.
    Honest,
    /// Claims every transaction finalized successfully in a block that does
    /// not exist.
    Lying,
}

/// A JSON-RPC endpoint that forwards `tx_getStatus` (single and batched) to
/// a real node, honestly or not. Only that method: the watcher never
/// follows a proxy in these tests.
pub async fn proxy(target: SocketAddr, behaviour: Behaviour) -> (ServerHandle, String) {
    let client = HttpClientBuilder::default()
        .build(format!("http://{target}"))
        .unwrap();
    let mut module = RpcModule::new(client);
    module
        .register_async_method(
            node_methods::TX_GET_STATUS,
            move |params, client, _| async move {
                let hash: Hash = params.one()?;
                let mut answer = client
                    .status(hash)
                    .await
                    .map_err(|e| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>))?;
                if behaviour == Behaviour::Lying {
                    answer.status = TxState::Finalized;
                    answer.block_hash = Some(Hash::digest(b"a block that does not exist"));
                    answer.block_number = Some(1);
                    answer.index = Some(0);
                    answer.outcome = Some(Outcome::Success);
                }
                Ok::<TxStatusView, ErrorObjectOwned>(answer)
            },
        )
        .unwrap();
    let server = Server::builder()
        .build(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server.start(module), format!("http://{addr}"))
}

/// An address where nothing listens: a node that is down.
pub async fn down_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

pub fn payment(i: usize) -> PaymentInstruction {
    PaymentInstruction {
        payer: format!("acct:payer-{i}"),
        payee: "acct:merchant".into(),
        amount: format!("{}", 100 + i),
        currency: "EUR".into(),
    }
}

/// The registration of `tx` as event `id`, paying [`payment`]`(i)`.
pub fn register_request(id: &str, tx: &SignedTx, i: usize) -> RegisterRequest {
    RegisterRequest {
        id: id.to_owned(),
        tx: Some(hex(tx)),
        tx_hash: None,
        valid_until: None,
        payment: payment(i),
    }
}

/// Short intervals so tests run quickly.
pub fn test_config(nodes: Vec<String>, dir: &std::path::Path) -> Config {
    let mut config = Config::new(nodes, dir.to_path_buf(), bridge_key().public());
    config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.prometheus_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.scan_interval = Duration::from_millis(100);
    config.grace = Duration::from_millis(300);
    config.recheck_cap = Duration::from_millis(500);
    config.call_timeout = Duration::from_secs(2);
    config.resend_base = Duration::from_millis(200);
    config.resend_cap = Duration::from_secs(1);
    config.watcher_retry = Duration::from_millis(100);
    config.sync_writes = false;
    config
}

/// The event system in this process, with clients.
pub struct EventSystem {
    pub service: Option<RunningService>,
    pub http: HttpClient,
    pub ws: WsClient,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl EventSystem {
    pub async fn start(nodes: Vec<String>, quorum: &str) -> EventSystem {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(nodes, dir.path());
        config.quorum = quorum.parse().unwrap();
        let service = lockstep_offchain::start(config).await.unwrap();
        let addr = service.rpc_addr;
        let http = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let ws = WsClientBuilder::default()
            .build(format!("ws://{addr}"))
            .await
            .unwrap();
        EventSystem {
            service: Some(service),
            http,
            ws,
            addr,
            _dir: dir,
        }
    }

    pub fn service(&self) -> &RunningService {
        self.service.as_ref().unwrap()
    }

    /// A call by method name with raw JSON parameters, answered as raw JSON:
    /// raw on purpose, for bad_input.rs (hostile and mistaken wire input).
    pub async fn call(
        &self,
        method: &str,
        params: jsonrpsee::core::params::ArrayParams,
    ) -> Result<Value, ErrorObjectOwned> {
        match self.http.request::<Value, _>(method, params).await {
            Ok(value) => Ok(value),
            Err(jsonrpsee::core::client::Error::Call(e)) => Err(e),
            Err(e) => panic!("{method}: transport error {e}"),
        }
    }

    pub async fn register(
        &self,
        id: &str,
        tx: &SignedTx,
        i: usize,
    ) -> Result<Event, ErrorObjectOwned> {
        answer(self.http.register(register_request(id, tx, i)).await)
    }

    pub async fn event(&self, id: &str) -> Event {
        self.http.get(id.to_owned()).await.unwrap()
    }

    pub async fn history(&self, id: &str) -> Vec<Transition> {
        self.http.history(id.to_owned()).await.unwrap()
    }

    pub async fn event_stats(&self) -> Stats {
        self.http.stats().await.unwrap()
    }

    /// [`Self::event`] as JSON, for bad_input.rs, which indexes its fields.
    pub async fn get(&self, id: &str) -> Value {
        serde_json::to_value(self.event(id).await).unwrap()
    }

    /// [`Self::event_stats`] as JSON, for bad_input.rs, which indexes its
    /// fields.
    pub async fn stats(&self) -> Value {
        serde_json::to_value(self.event_stats().await).unwrap()
    }

    /// Waits for `id` to reach `state` (a [`State`] or its name) by
    /// following `event_subscribe` from the start; panics if it reaches
    /// another final state.
    ///
    /// [`State`]: lockstep_api::lifecycle::State
    pub async fn await_state(&self, id: &str, state: impl std::fmt::Display) -> Event {
        let state = state.to_string();
        let mut feed = self.ws.subscribe_transitions(Some(1)).await.unwrap();
        let wait = async {
            loop {
                let transition = feed.next().await.unwrap().unwrap();
                if transition.event_id != id {
                    continue;
                }
                if transition.to.name() == state {
                    return;
                }
                assert!(
                    !transition.to.is_final(),
                    "{id} reached {} instead of {state}",
                    transition.to
                );
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("{id} did not reach {state}"));
        self.event(id).await
    }

    /// Waits until `check` holds, re-testing after every quorum round,
    /// reconciler pass or watcher block.
    pub async fn await_metrics(
        &self,
        check: impl Fn(&lockstep_offchain::metrics::Metrics) -> bool,
    ) {
        let metrics = self.service().metrics.clone();
        let mut changed = metrics.changed();
        let wait = async {
            while !check(&metrics) {
                changed.changed().await.unwrap();
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("metrics condition not reached");
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
    }
}

/// `GET /metrics` from the event system's Prometheus endpoint.
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
