//! A dev node in this process ([`lockstep_node::test_utils::DevNode`]),
//! and clients for it.

use std::net::SocketAddr;
use std::ops::Deref;

use lockstep_node::test_utils;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{AccountId, ChainSpec, SignedTx};
use parity_scale_codec::Encode;

/// The shared dev node, with these tests' chain and batch limit.
pub struct DevNode(test_utils::DevNode);

pub fn spec() -> ChainSpec {
    test_utils::dev_spec("lockstep-test")
}

impl DevNode {
    /// A single validator producing a block every 100 ms.
    pub async fn start() -> DevNode {
        DevNode(
            test_utils::DevNode::start_with(spec(), |config| config.rpc.max_batch_len = 10).await,
        )
    }

    /// A transfer valid for the chain's whole window as seen from genesis
    /// (until block #3,600 of the dev spec): longer than any test runs.
    pub fn transfer(&self, from: &str, nonce: u64, to: AccountId, amount: u128) -> SignedTx {
        self.0
            .transfer(from, nonce, spec().max_validity_blocks, to, amount)
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl Deref for DevNode {
    type Target = test_utils::DevNode;

    fn deref(&self) -> &test_utils::DevNode {
        &self.0
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
