//! Dev nodes and an in-process event system (the crates' shared
//! `test_utils`, with these tests' settings), and fault-injecting proxies.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use lockstep_api::bus::{BusMessage, Delivery};
use lockstep_api::event::{
    settlement_commitment, Event, Evidence, PaymentInstruction, RegisterRequest,
};
use lockstep_api::node::{methods as node_methods, SignedBlockView, TxState, TxStatusView};
use lockstep_api::offchain::{EventApiClient, Stats};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{AccountId, Call, DispatchError, Hash, Keypair, Outcome, Receipt, SignedTx};
use parity_scale_codec::Encode;
use serde_json::Value;

/// Generous bound on any awaited condition, so a bug fails the test rather
/// than hanging it. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What these tests' transfers are valid until: the chain's whole validity
/// window as seen from genesis, longer than any test runs.
pub const VALID_UNTIL: u64 = lockstep_runtime::DEFAULT_MAX_VALIDITY_BLOCKS;

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

/// The shared dev node ([`lockstep_node::test_utils::DevNode`]) on these
/// tests' chain.
pub struct DevNode(lockstep_node::test_utils::DevNode);

impl DevNode {
    /// A single validator producing a block every 100 ms.
    pub async fn start() -> DevNode {
        let spec = lockstep_node::test_utils::dev_spec("lockstep-offchain-test");
        DevNode(lockstep_node::test_utils::DevNode::start_with(spec, |_| {}).await)
    }

    /// [`Self::start`], serving https:// and wss:// with `ca`'s server
    /// certificate.
    pub async fn start_tls(ca: &lockstep_service::test_utils::TestCa) -> DevNode {
        let spec = lockstep_node::test_utils::dev_spec("lockstep-offchain-test");
        DevNode(
            lockstep_node::test_utils::DevNode::start_tls(
                spec,
                ca.server_tls(),
                ca.trusted_cas(),
                |_| {},
            )
            .await,
        )
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }

    /// A transfer like `transfer` that settles event `id` paying
    /// [`payment`]`(i)`: its reference commits to both, as a settling
    /// transfer's must ([`register_request`] registers it).
    pub fn settling(
        &self,
        from: &str,
        nonce: u64,
        valid_until: u64,
        to: AccountId,
        amount: u128,
        (id, i): (&str, usize),
    ) -> SignedTx {
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to,
            amount,
            reference: Some(settlement_commitment(id, &payment(i))),
        };
        SignedTx::sign(&Keypair::dev(from), &self.context, nonce, valid_until, call)
    }
}

impl std::ops::Deref for DevNode {
    type Target = lockstep_node::test_utils::DevNode;

    fn deref(&self) -> &lockstep_node::test_utils::DevNode {
        &self.0
    }
}

pub fn hex(tx: &SignedTx) -> String {
    to_hex(&tx.encode())
}

/// How a proxy treats what it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Forwards everything unchanged: a second honest endpoint onto the
    /// same chain.
    Honest,
    /// Claims every transaction finalized successfully in a block that does
    /// not exist, and names that block's hash for every height.
    Lying,
    /// Serves receipts with every outcome flipped (success ↔ failure).
    TamperedReceipts,
    /// Serves blocks whose justification is signed by strangers.
    StrangerJustification,
}

/// The hash the [`Behaviour::Lying`] proxy names.
pub fn lie() -> Hash {
    Hash::digest(b"a block that does not exist")
}

/// A JSON-RPC endpoint (HTTP only: no subscriptions, so the watcher never
/// follows a proxy) that forwards the calls the event system makes of its
/// nodes — `tx_getStatus` (single and batched), `chain_getBlockHash`,
/// `chain_getBlock`, `chain_getReceipts`, `system_properties` — to a real
/// node, honestly or not.
pub async fn proxy(target: SocketAddr, behaviour: Behaviour) -> (ServerHandle, String) {
    let client = HttpClientBuilder::default()
        .build(format!("http://{target}"))
        .unwrap();
    let mut module = RpcModule::new(client);
    for method in [
        node_methods::TX_GET_STATUS,
        node_methods::CHAIN_GET_BLOCK_HASH,
        "chain_getBlock",
        "chain_getReceipts",
        "system_properties",
    ] {
        module
            .register_async_method(method, move |params, client, _| async move {
                let mut forwarded = ArrayParams::new();
                let mut sequence = params.sequence();
                while let Some(value) = sequence.optional_next::<Value>()? {
                    forwarded.insert(value).unwrap();
                }
                let answer: Value = client
                    .request(method, forwarded)
                    .await
                    .map_err(|e| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>))?;
                Ok::<Value, ErrorObjectOwned>(distort(behaviour, method, answer))
            })
            .unwrap();
    }
    let server = Server::builder()
        .build(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server.start(module), format!("http://{addr}"))
}

/// What a proxy of `behaviour` answers instead of the node's `answer`.
fn distort(behaviour: Behaviour, method: &str, answer: Value) -> Value {
    match (behaviour, method) {
        (Behaviour::Lying, node_methods::TX_GET_STATUS) => {
            let mut status: TxStatusView = serde_json::from_value(answer).unwrap();
            status.status = TxState::Finalized;
            status.block_hash = Some(lie());
            status.block_number = Some(1);
            status.index = Some(0);
            status.outcome = Some(Outcome::Success);
            serde_json::to_value(status).unwrap()
        }
        (Behaviour::Lying, node_methods::CHAIN_GET_BLOCK_HASH) => {
            serde_json::to_value(lie()).unwrap()
        }
        (Behaviour::TamperedReceipts, "chain_getReceipts") => {
            let receipts: Option<Vec<Receipt>> = serde_json::from_value(answer).unwrap();
            let flipped = receipts.map(|receipts| {
                receipts
                    .into_iter()
                    .map(|mut r| {
                        r.outcome = match r.outcome {
                            Outcome::Success => Outcome::Failed(DispatchError::InsufficientBalance),
                            Outcome::Failed(_) => Outcome::Success,
                        };
                        r
                    })
                    .collect::<Vec<_>>()
            });
            serde_json::to_value(flipped).unwrap()
        }
        (Behaviour::StrangerJustification, "chain_getBlock") => {
            let mut block: Option<SignedBlockView> = serde_json::from_value(answer).unwrap();
            if let Some(justification) = block.as_mut().and_then(|b| b.justification.as_mut()) {
                let stranger = Keypair::dev("mallory");
                for (signer, signature) in &mut justification.signatures {
                    *signer = stranger.public();
                    *signature = stranger.sign(b"not a precommit");
                }
            }
            serde_json::to_value(block).unwrap()
        }
        _ => answer,
    }
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

/// The shared event system ([`lockstep_offchain::test_utils::EventSystem`])
/// with these tests' settings, and calls the tests make raw or as JSON.
pub struct EventSystem(lockstep_offchain::test_utils::EventSystem);

impl EventSystem {
    /// Watching `nodes` with `quorum`, a Prometheus endpoint on port 0 and
    /// 2 s node calls.
    pub async fn start(nodes: Vec<String>, quorum: &str) -> EventSystem {
        let quorum = quorum.parse().unwrap();
        let events = lockstep_offchain::test_utils::EventSystem::start_with(
            nodes,
            bridge_key().public(),
            move |config| {
                config.prometheus_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
                config.call_timeout = Duration::from_secs(2);
                config.quorum = quorum;
            },
        )
        .await;
        EventSystem(events)
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

    pub async fn event_stats(&self) -> Stats {
        self.0.stats().await
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
        self.0.await_state(id, &state.to_string()).await
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl std::ops::Deref for EventSystem {
    type Target = lockstep_offchain::test_utils::EventSystem;

    fn deref(&self) -> &lockstep_offchain::test_utils::EventSystem {
        &self.0
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
