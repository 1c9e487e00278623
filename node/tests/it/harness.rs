//! A dev node in this process, and clients for it.

use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use lockstep_api::node::{ChainApiClient, StateApiClient, TxApiClient, TxState, TxStatusView};
use lockstep_node::service::{self, NodeConfig, RunningNode};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    AccountId, Call, ChainSpec, Hash, Header, Keypair, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;

pub struct DevNode {
    pub node: Option<RunningNode>,
    pub http: HttpClient,
    pub ws: WsClient,
    pub context: SigningContext,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

pub fn spec() -> ChainSpec {
    ChainSpec::dev("lockstep-test", &[Keypair::dev("alice").public()])
}

impl DevNode {
    /// A single validator producing a block every 100 ms.
    pub async fn start() -> DevNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(spec(), dir.path().to_path_buf());
        config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.validator_key = Some(Keypair::dev("alice"));
        config.block_time = Duration::from_millis(100);
        config.rpc.max_batch_len = 10;
        let node = service::start_single(config).await.unwrap();
        let addr = node.rpc_addr;
        let http = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let ws = WsClientBuilder::default()
            .build(format!("ws://{addr}"))
            .await
            .unwrap();
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

    pub fn transfer(&self, from: &str, nonce: u64, to: AccountId, amount: u128) -> SignedTx {
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to,
            amount,
            reference: None,
        };
        SignedTx::sign(&Keypair::dev(from), &self.context, nonce, 1_000_000, call)
    }

    pub async fn balance(&self, who: &str) -> u128 {
        let account = Keypair::dev(who).public();
        self.http.balance(account, DEV_ASSET, None).await.unwrap().0
    }

    pub async fn nonce(&self, who: &str) -> u64 {
        let account = Keypair::dev(who).public();
        self.http.nonce(account).await.unwrap()
    }

    /// Waits, head by head, until `tx` is finalized; returns its status.
    pub async fn await_finalized(&self, tx: &Hash) -> TxStatusView {
        let mut heads = self.ws.subscribe_finalized_heads().await.unwrap();
        loop {
            let status = self.http.status(*tx).await.unwrap();
            if status.status == TxState::Finalized {
                return status;
            }
            heads.next().await.unwrap().unwrap();
        }
    }

    /// Waits for `count` more finalized heads.
    pub async fn await_heads(&self, count: usize) -> Vec<Header> {
        let mut heads = self.ws.subscribe_finalized_heads().await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < count {
            seen.push(heads.next().await.unwrap().unwrap());
        }
        seen
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

/// Sends raw bytes as an HTTP POST body and returns the response (status
/// line, headers and body). A server may answer and close before reading a
/// refused body whole, so write and read errors end the exchange quietly.
pub async fn raw_post(addr: SocketAddr, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}
