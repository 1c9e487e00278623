//! kill -9 of a real `lockstep-node` process under load, then restart on
//! the same base path: the same finalized blocks, no corruption, and the
//! node takes transactions again.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::WsClientBuilder;
use lockstep_api::node::{
    self, AuthorApiClient, ChainApiClient, StateApiClient, TxApiClient, TxState, MAX_NODE_BATCH,
};
use lockstep_runtime::crypto::DEV_NAMES;
use lockstep_runtime::genesis::{DEFAULT_MAX_VALIDITY_BLOCKS, DEV_ASSET, DEV_ENDOWMENT};
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    AccountId, BlockNumber, Call, ChainSpec, Hash, Header, Keypair, SignedTx, SigningContext,
};
use lockstep_service::test_utils::TestProcess;
use parity_scale_codec::Encode;

struct NodeProcess {
    process: TestProcess,
    addr: SocketAddr,
}

impl NodeProcess {
    /// Starts `lockstep-node --dev` on `base` with a free RPC port (logging
    /// to `base/node.log`), and returns once the RPC server is listening
    /// (read from its log).
    fn spawn(base: &Path) -> NodeProcess {
        let mut process = TestProcess::new("node", env!("CARGO_BIN_EXE_lockstep-node"), base)
            .args([
                "--dev",
                "--rpc-port",
                "0",
                "--block-time-ms",
                "100",
                "--base-path",
            ])
            .arg(base)
            .env("RUST_LOG", "info");
        process.spawn();
        let addr = rpc_addr(&mut process);
        NodeProcess { process, addr }
    }

    /// kill -9, and reaps it.
    fn kill9(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same base path; the RPC port is new.
    fn restart(&mut self) {
        self.process.spawn();
        self.addr = rpc_addr(&mut self.process);
    }
}

/// The address the current run serves JSON-RPC on, from its log
/// (`JSON-RPC on http://<addr> and ws://<addr>`, or https:// and wss://).
fn rpc_addr(process: &mut TestProcess) -> SocketAddr {
    let rest = process.wait_for_log("JSON-RPC on ");
    let url = rest.split_whitespace().next().unwrap_or_default();
    let addr = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    addr.parse()
        .unwrap_or_else(|e| panic!("not an address in the node's log: {url:?}: {e}"))
}

fn client(addr: SocketAddr) -> HttpClient {
    HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .unwrap()
}

fn context() -> SigningContext {
    ChainSpec::dev("lockstep-dev", &[Keypair::dev("alice").public()])
        .genesis()
        .unwrap()
        .signing_context()
}

fn transfer(from: &str, nonce: u64, to: &str) -> String {
    let call = Call::Transfer {
        asset: DEV_ASSET,
        to: Keypair::dev(to).public(),
        amount: 1,
        reference: None,
    };
    to_hex(
        &SignedTx::sign(
            &Keypair::dev(from),
            &context(),
            nonce,
            DEFAULT_MAX_VALIDITY_BLOCKS,
            call,
        )
        .encode(),
    )
}

async fn head(http: &HttpClient) -> Header {
    http.header(None).await.unwrap().unwrap()
}

async fn nonce_of(http: &HttpClient, name: &str) -> u64 {
    http.nonce(Keypair::dev(name).public()).await.unwrap()
}

/// The finalized block hashes at `numbers`, in batches the node takes.
async fn hashes_at(http: &HttpClient, numbers: impl IntoIterator<Item = BlockNumber>) -> Vec<Hash> {
    let numbers: Vec<BlockNumber> = numbers.into_iter().collect();
    let mut hashes = Vec::with_capacity(numbers.len());
    for chunk in numbers.chunks(MAX_NODE_BATCH) {
        for answer in node::block_hashes(http, chunk).await.unwrap() {
            hashes.push(answer.unwrap().unwrap());
        }
    }
    hashes
}

/// Every dev account sends transfers to the next one as fast as the node
/// takes them, from its current nonce, until `stop` or an error.
async fn start_load(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut load = Vec::new();
    for (i, name) in DEV_NAMES.iter().enumerate() {
        let (http, stop) = (client(addr), stop.clone());
        let to = DEV_NAMES[(i + 1) % DEV_NAMES.len()];
        let mut nonce = nonce_of(&http, name).await;
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http.submit_extrinsic(transfer(name, nonce, to)).await {
                    Ok(_) => nonce += 1,
                    // Pool bounds or a dead node: stop this sender.
                    Err(_) => break,
                }
            }
        }));
    }
    load
}

/// Waits head by head until alice's finalized nonce reaches `target`.
async fn await_alice_nonce(addr: SocketAddr, target: u64) {
    let http = client(addr);
    let ws = WsClientBuilder::default()
        .build(format!("ws://{addr}"))
        .await
        .unwrap();
    let mut heads = ws.subscribe_finalized_heads().await.unwrap();
    while nonce_of(&http, "alice").await < target {
        heads.next().await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_keeps_every_finalized_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::spawn(dir.path());
    let mut hashes: Vec<Hash> = Vec::new();

    for cycle in 0..3 {
        let http = client(node.addr);
        let stop = Arc::new(AtomicBool::new(false));
        let load = start_load(node.addr, stop.clone()).await;
        let target = nonce_of(&http, "alice").await + 150;
        await_alice_nonce(node.addr, target).await;

        let before = head(&http).await;
        hashes.extend(hashes_at(&http, hashes.len() as u64..=before.number).await);

        // kill -9 while the load is still running.
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }

        node.restart();
        let http = client(node.addr);
        let after = head(&http).await;
        assert!(
            after.number >= before.number,
            "cycle {cycle}: finalized head went back: {} < {}",
            after.number,
            before.number
        );
        let now = hashes_at(&http, 0..hashes.len() as u64).await;
        for (number, (now, hash)) in now.iter().zip(&hashes).enumerate() {
            assert_eq!(
                now, hash,
                "cycle {cycle}: block {number} changed across the crash"
            );
        }
        assert_money_in_place(&http).await;
    }

    // The pool takes transactions again and they are finalized.
    let http = client(node.addr);
    let next = transfer("alice", nonce_of(&http, "alice").await, "bob");
    let hash = http.submit_extrinsic(next).await.unwrap();
    let ws = WsClientBuilder::default()
        .build(format!("ws://{}", node.addr))
        .await
        .unwrap();
    let mut heads = ws.subscribe_finalized_heads().await.unwrap();
    loop {
        let status = http.status(hash).await.unwrap();
        if status.status == TxState::Finalized {
            break;
        }
        heads.next().await.unwrap().unwrap();
    }
    node.kill9();
}

/// The supply is all held, and each account's balance matches its
/// finalized nonces: one unit out per own nonce, one in per nonce of the
/// account before it in the ring.
async fn assert_money_in_place(http: &HttpClient) {
    let accounts: Vec<AccountId> = DEV_NAMES
        .iter()
        .map(|name| Keypair::dev(name).public())
        .collect();
    let pairs: Vec<_> = accounts
        .iter()
        .map(|account| (*account, DEV_ASSET))
        .collect();
    let balances: Vec<u128> = node::balances(http, &pairs, None)
        .await
        .unwrap()
        .into_iter()
        .map(|balance| balance.unwrap().0)
        .collect();
    let nonces: Vec<u64> = node::nonces(http, &accounts)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let total: u128 = balances.iter().sum();
    assert_eq!(total, DEV_ENDOWMENT * DEV_NAMES.len() as u128);
    for (i, name) in DEV_NAMES.iter().enumerate() {
        let received = nonces[(i + DEV_NAMES.len() - 1) % DEV_NAMES.len()];
        let expected = DEV_ENDOWMENT - u128::from(nonces[i]) + u128::from(received);
        assert_eq!(balances[i], expected, "{name}");
    }
}
