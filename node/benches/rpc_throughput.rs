//! Load generator: a single-validator node (a real `lockstep-node` process,
//! release build) finalizing transfers submitted over JSON-RPC from this
//! process on the same machine.
//!
//! Run: `cargo bench -p lockstep-node --bench rpc_throughput`
//! Options after `--`: `--txs N` (default 60000), `--accounts N` (2000),
//! `--batch N` (calls per HTTP batch, 200), `--clients N` (4),
//! `--block-time-ms N` (1000).
//!
//! It pre-signs every transfer, submits them in JSON-RPC batches from a few
//! concurrent HTTP clients, follows finalized heads over WebSocket and
//! reports finalized transfers per second from the first submission to the
//! block that finalized the last one.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use lockstep_runtime::genesis::{GenesisBalance, DEV_ASSET};
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, ChainSpec, Hash, Header, Keypair, SignedTx};
use parity_scale_codec::Encode;
use serde_json::Value;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txs = arg("--txs", 60_000);
    let accounts = arg("--accounts", 2_000);
    let batch = arg("--batch", 200);
    let clients = arg("--clients", 4);
    let block_time = arg("--block-time-ms", 1000);

    let dir = tempfile::tempdir().unwrap();
    let alice = Keypair::dev("alice");
    let senders: Vec<Keypair> = (0..accounts)
        .map(|i| Keypair::dev(&format!("bench-{i}")))
        .collect();
    let mut spec = ChainSpec::dev("lockstep-bench", &[alice.public()]);
    spec.balances.extend(senders.iter().map(|k| GenesisBalance {
        account: k.public(),
        asset: DEV_ASSET,
        amount: 1_000_000_000,
    }));
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_json()).unwrap();
    let key_path = dir.path().join("alice.json");
    lockstep_node::keyfile::write(&key_path, &alice).unwrap();
    let context = spec.genesis().unwrap().signing_context();

    let started = Instant::now();
    // Each client submits for its own accounts, in nonce order, so that
    // what reaches the pool is ready instead of waiting on a lower nonce
    // still queued in another client.
    let per_account = txs.div_ceil(accounts);
    let mut parts: Vec<Vec<String>> = vec![Vec::new(); clients];
    let mut signed = 0;
    'outer: for nonce in 0..per_account as u64 {
        for (i, key) in senders.iter().enumerate() {
            if signed == txs {
                break 'outer;
            }
            let to = senders[(i + 1) % senders.len()].public();
            let call = Call::Transfer {
                asset: DEV_ASSET,
                to,
                amount: 1,
                reference: None,
            };
            let tx = SignedTx::sign(key, &context, nonce, 1_000_000, call);
            parts[i % clients].push(to_hex(&tx.encode()));
            signed += 1;
        }
    }
    eprintln!("signed {signed} transfers in {:.1?}", started.elapsed());

    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-node"))
        .arg("run")
        .arg("--chain")
        .arg(&spec_path)
        .arg("--key")
        .arg(&key_path)
        .arg("--base-path")
        .arg(dir.path().join("node"))
        .args([
            "--rpc-port",
            "0",
            "--block-time-ms",
            &block_time.to_string(),
        ])
        .args([
            "--rpc-max-connections",
            "64",
            "--pool-max-txs",
            &(txs + 10).to_string(),
        ])
        .env("RUST_LOG", "warn,lockstep::node=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("node exited").unwrap();
        if let Some(rest) = line.split("JSON-RPC on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let ws = WsClientBuilder::default()
        .build(format!("ws://{addr}"))
        .await
        .unwrap();
    let mut heads: Subscription<Header> = ws
        .subscribe(
            "chain_subscribeFinalizedHeads",
            rpc_params![],
            "chain_unsubscribeFinalizedHeads",
        )
        .await
        .unwrap();
    let http = HttpClientBuilder::default()
        .max_request_size(64 * 1024 * 1024)
        .build(format!("http://{addr}"))
        .unwrap();

    // Submit: the list is split among the clients, each sending batches.
    let submit_started = Instant::now();
    let mut tasks = Vec::new();
    for part in parts {
        let client = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0usize;
            for calls in part.chunks(batch) {
                let mut request = BatchRequestBuilder::new();
                for tx in calls {
                    request
                        .insert("author_submitExtrinsic", rpc_params![tx])
                        .unwrap();
                }
                let response = client.batch_request::<Hash>(request).await.unwrap();
                refused += response.num_failed_calls() as usize;
            }
            refused
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap();
    }
    let submit_time = submit_started.elapsed();
    eprintln!(
        "submitted {signed} transfers in {:.2?} ({:.0}/s), {refused} refused",
        submit_time,
        signed as f64 / submit_time.as_secs_f64()
    );

    // Follow finalized blocks until every accepted transfer is in one.
    let expected = signed - refused;
    let mut finalized = 0usize;
    let mut last_block = submit_started.elapsed();
    let mut sizes = Vec::new();
    while finalized < expected {
        let header = heads.next().await.unwrap().unwrap();
        let block: Value = http
            .request("chain_getBlock", rpc_params![header.hash()])
            .await
            .unwrap();
        let count = block["block"]["extrinsics"].as_array().map_or(0, Vec::len);
        if count > 0 {
            finalized += count;
            last_block = submit_started.elapsed();
            sizes.push(count);
            eprintln!(
                "#{} finalized {count} transfers ({finalized}/{expected})",
                header.number
            );
        }
    }
    let rate = finalized as f64 / last_block.as_secs_f64();
    println!("summary: {finalized} transfers finalized in {last_block:.2?} from first submission");
    println!("summary: sustained {rate:.0} finalized transfers/s (block time {block_time} ms)");
    println!("summary: block sizes {sizes:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}
