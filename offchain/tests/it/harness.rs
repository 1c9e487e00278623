//! Dev nodes, fault-injecting proxies and an in-process event system.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use jsonrpsee::RpcModule;
use lockstep_node::service::{self, NodeConfig, RunningNode};
use lockstep_offchain::{Config, RunningService};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{AccountId, Call, ChainSpec, Hash, Keypair, SignedTx, SigningContext};
use parity_scale_codec::Encode;
use serde_json::{json, Value};

/// Generous bound on any awaited condition, so a bug fails the test rather
/// than hanging it. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn bridge_key() -> Keypair {
    Keypair::dev("bridge")
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
        self.http
            .request("author_submitExtrinsic", rpc_params![hex(tx)])
            .await
            .unwrap()
    }

    pub async fn status(&self, tx: &Hash) -> Value {
        self.http
            .request("tx_getStatus", rpc_params![tx])
            .await
            .unwrap()
    }

    pub async fn head(&self) -> u64 {
        let header: Value = self
            .http
            .request("chain_getHeader", rpc_params![])
            .await
            .unwrap();
        header["number"].as_u64().unwrap()
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
        .register_async_method("tx_getStatus", move |params, client, _| async move {
            let hash: Hash = params.one()?;
            let mut answer: Value = client
                .request("tx_getStatus", rpc_params![hash])
                .await
                .map_err(|e| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>))?;
            if behaviour == Behaviour::Lying {
                answer["status"] = json!("finalized");
                answer["blockHash"] = json!(Hash::digest(b"a block that does not exist"));
                answer["blockNumber"] = json!(1);
                answer["index"] = json!(0);
                answer["outcome"] = json!({"status": "success"});
            }
            Ok::<Value, ErrorObjectOwned>(answer)
        })
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

pub fn payment(i: usize) -> Value {
    json!({
        "payer": format!("acct:payer-{i}"),
        "payee": "acct:merchant",
        "amount": format!("{}", 100 + i),
        "currency": "EUR",
    })
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
    ) -> Result<Value, ErrorObjectOwned> {
        self.call(
            "event_register",
            rpc_params![json!({"id": id, "tx": hex(tx), "payment": payment(i)})],
        )
        .await
    }

    pub async fn get(&self, id: &str) -> Value {
        self.call("event_get", rpc_params![id]).await.unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.call("event_stats", rpc_params![]).await.unwrap()
    }

    /// Waits for `id` to reach `state` by following `event_subscribe` from
    /// the start; panics if it reaches another final state.
    pub async fn await_state(&self, id: &str, state: &str) -> Value {
        let mut feed: Subscription<Value> = self
            .ws
            .subscribe("event_subscribe", rpc_params![1], "event_unsubscribe")
            .await
            .unwrap();
        let wait = async {
            loop {
                let transition = feed.next().await.unwrap().unwrap();
                if transition["eventId"] != id {
                    continue;
                }
                if transition["to"] == state {
                    return;
                }
                assert!(
                    transition["to"] != "Cancelled" && transition["to"] != "Completed",
                    "{id} reached {} instead of {state}",
                    transition["to"]
                );
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("{id} did not reach {state}"));
        self.get(id).await
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
