//! Load generator: real `lockstep-node` processes (release build) finalizing
//! transfers submitted over JSON-RPC from this process, all on this machine.
//!
//! Run: `cargo bench -p lockstep-node --bench rpc_throughput -- [options]`
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--validators N` | 1 | validators, each its own process, over libp2p on loopback |
//! | `--txs N` | 60000 | transfers to submit |
//! | `--accounts N` | 2000 | sending accounts (each endowed at genesis) |
//! | `--batch N` | 200 | `author_submitExtrinsic` calls per JSON-RPC batch |
//! | `--clients N` | 4 | concurrent HTTP clients, spread over the validators |
//! | `--rate N` | 0 | transfers/s to submit at (0: as fast as accepted) |
//! | `--block-time-ms N` | 1000 | block time |
//!
//! It pre-signs every transfer (each client owns a share of the accounts and
//! sends their transfers in nonce order), submits them in batches, follows
//! finalized blocks on the first validator and reports the finalized
//! transfers per second from the first submission to the block holding the
//! last one, and the latency from each batch's submission to the
//! finalization of the block holding each transfer (p50, p90, p99).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::ws_client::WsClientBuilder;
use lockstep_api::node::{submit_extrinsics, ChainApiClient};
use lockstep_runtime::genesis::{GenesisBalance, DEV_ASSET};
use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::{Call, ChainSpec, Hash, Keypair, SignedTx};
use parity_scale_codec::Encode;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free loopback port (bound and released: another process could take it
/// in between, which on a quiet machine does not happen).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a validator and returns it with its RPC address, read from its log.
fn start_validator(args: &[String], base: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-node"))
        .arg("run")
        .args(args)
        .arg("--base-path")
        .arg(base)
        .env("RUST_LOG", "warn,lockstep::node=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("node exited").unwrap();
        if let Some(rest) = line.split("JSON-RPC on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap();
            let addr = url.split_once("://").map_or(url, |(_, addr)| addr);
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let validators = arg("--validators", 1).max(1);
    let txs = arg("--txs", 60_000);
    let accounts = arg("--accounts", 2_000);
    let batch = arg("--batch", 200).max(1);
    let clients = arg("--clients", 4).max(1);
    let rate = arg("--rate", 0);
    let block_time = arg("--block-time-ms", 1000);

    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Keypair> = (0..validators)
        .map(|i| Keypair::dev(&format!("bench-validator-{i}")))
        .collect();
    let senders: Vec<Keypair> = (0..accounts)
        .map(|i| Keypair::dev(&format!("bench-{i}")))
        .collect();
    let mut spec = ChainSpec::dev(
        "lockstep-bench",
        &keys.iter().map(Keypair::public).collect::<Vec<_>>(),
    );
    spec.balances.extend(senders.iter().map(|k| GenesisBalance {
        account: k.public(),
        asset: DEV_ASSET,
        amount: 1_000_000_000,
    }));
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_json()).unwrap();
    let context = spec.genesis().unwrap().signing_context();
    // Signed before the chain starts (head #0): valid for the whole window.
    let spec_validity = spec.max_validity_blocks;

    // Each client submits for its own accounts, in nonce order, so that what
    // reaches a pool is ready instead of waiting on a lower nonce still
    // queued in another client.
    let started = Instant::now();
    let per_account = txs.div_ceil(accounts);
    let mut parts: Vec<Vec<(String, Hash)>> = vec![Vec::new(); clients];
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
            let tx = SignedTx::sign(key, &context, nonce, spec_validity, call);
            parts[i % clients].push((to_hex(&tx.encode()), tx.hash()));
            signed += 1;
        }
    }
    eprintln!("signed {signed} transfers in {:.1?}", started.elapsed());

    let p2p_ports: Vec<u16> = (0..validators).map(|_| free_port()).collect();
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let key_path = dir.path().join(format!("validator-{i}.json"));
        lockstep_node::keyfile::write(&key_path, key).unwrap();
        let bootnodes: Vec<String> = p2p_ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, port)| format!("/ip4/127.0.0.1/tcp/{port}"))
            .collect();
        let mut args: Vec<String> = vec![
            "--chain".into(),
            spec_path.display().to_string(),
            "--key".into(),
            key_path.display().to_string(),
            "--rpc-port".into(),
            "0".into(),
            "--p2p-host".into(),
            "127.0.0.1".into(),
            "--p2p-port".into(),
            p2p_ports[i].to_string(),
            "--block-time-ms".into(),
            block_time.to_string(),
            "--rpc-max-connections".into(),
            "64".into(),
            "--pool-max-txs".into(),
            (txs + 10).to_string(),
        ];
        if !bootnodes.is_empty() {
            args.push("--bootnodes".into());
            args.push(bootnodes.join(","));
        }
        let (child, addr) = start_validator(&args, &dir.path().join(format!("node-{i}")));
        children.push(child);
        addrs.push(addr);
    }

    let ws = WsClientBuilder::default()
        .build(format!("ws://{}", addrs[0]))
        .await
        .unwrap();
    let mut heads = ws.subscribe_finalized_heads().await.unwrap();
    // Start once the validators finalize together.
    while heads.next().await.unwrap().unwrap().number < 2 {}
    let http = HttpClientBuilder::default()
        .max_response_size(256 * 1024 * 1024)
        .build(format!("http://{}", addrs[0]))
        .unwrap();

    // Submit, each client at its share of the rate (or as fast as it can),
    // recording when each transfer was sent.
    let sent_at: Arc<Mutex<HashMap<Hash, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(signed)));
    let submit_started = Instant::now();
    let mut tasks = Vec::new();
    for (c, part) in parts.into_iter().enumerate() {
        let addr = addrs[c % addrs.len()];
        let client = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let sent_at = sent_at.clone();
        let interval = (rate > 0)
            .then(|| Duration::from_secs_f64(batch as f64 * clients as f64 / rate as f64));
        tasks.push(tokio::spawn(async move {
            let mut refused = 0usize;
            let mut ticker = interval.map(tokio::time::interval);
            for calls in part.chunks(batch) {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let extrinsics: Vec<String> = calls.iter().map(|(tx, _)| tx.clone()).collect();
                let now = Instant::now();
                sent_at
                    .lock()
                    .unwrap()
                    .extend(calls.iter().map(|(_, hash)| (*hash, now)));
                let answers = submit_extrinsics(&client, &extrinsics).await.unwrap();
                refused += answers.iter().filter(|answer| answer.is_err()).count();
            }
            refused
        }));
    }

    // Follow finalized blocks until every accepted transfer is in one.
    let follower = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(signed);
        let mut sizes = Vec::new();
        let mut last_block = Duration::ZERO;
        while latencies.len() < signed {
            let header = heads.next().await.unwrap().unwrap();
            let finalized_at = Instant::now();
            let extrinsics = http
                .block(Some(header.hash()))
                .await
                .unwrap()
                .map(|block| block.block.extrinsics)
                .unwrap_or_default();
            if extrinsics.is_empty() {
                continue;
            }
            let sent_at = sent_at.lock().unwrap();
            for tx in &extrinsics {
                let hash = Hash::digest(&from_hex(tx).unwrap());
                if let Some(at) = sent_at.get(&hash) {
                    latencies.push(finalized_at.duration_since(*at));
                }
            }
            last_block = submit_started.elapsed();
            sizes.push(extrinsics.len());
            eprintln!(
                "#{} finalized {} transfers ({}/{signed})",
                header.number,
                extrinsics.len(),
                latencies.len()
            );
        }
        (latencies, sizes, last_block)
    });
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap();
    }
    let submit_time = submit_started.elapsed();
    eprintln!(
        "submitted {signed} transfers in {submit_time:.2?} ({:.0}/s), {refused} refused",
        signed as f64 / submit_time.as_secs_f64()
    );
    assert_eq!(
        refused, 0,
        "transfers were refused: the figures would not mean much"
    );
    let (mut latencies, sizes, last_block) = follower.await.unwrap();
    latencies.sort();
    let finalized = latencies.len();
    println!(
        "summary: {validators} validator(s), {finalized} transfers finalized in {last_block:.2?} \
         from first submission (offered rate: {})",
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "as fast as accepted".into()
        }
    );
    println!(
        "summary: sustained {:.0} finalized transfers/s (block time {block_time} ms)",
        finalized as f64 / last_block.as_secs_f64()
    );
    println!(
        "summary: submit-to-finalized latency p50 {} ms, p90 {} ms, p99 {} ms",
        percentile(&latencies, 0.50).as_millis(),
        percentile(&latencies, 0.90).as_millis(),
        percentile(&latencies, 0.99).as_millis()
    );
    println!("summary: block sizes {sizes:?}");
    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
