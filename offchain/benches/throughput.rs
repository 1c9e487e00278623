//! Events registered and confirmed per second against a running dev chain.
//!
//! ```sh
//! cargo bench -p lockstep-offchain --bench throughput            # fsync on (the default)
//! LOCKSTEP_BENCH_EVENTS=20000 LOCKSTEP_BENCH_FSYNC=0 cargo bench -p lockstep-offchain --bench throughput
//! ```
//!
//! One in-process dev node (100 ms blocks) and one in-process event system
//! asking it (quorum 1/1). Registration: clients send `event_register` in
//! JSON-RPC batches of 100, 16 batches in flight. Confirmation: every
//! transfer is then submitted, and the clock runs until the last event is
//! PendingAccount (watcher → quorum `tx_getStatus` batches → one write per
//! event with its outbox entry).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpsee::http_client::HttpClientBuilder;
use lockstep_api::event::{settlement_commitment, PaymentInstruction, RegisterRequest};
use lockstep_api::node::submit_extrinsics;
use lockstep_api::offchain::register_calls;
use lockstep_node::service::{self, NodeConfig};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, ChainSpec, Keypair, SignedTx};
use parity_scale_codec::Encode;

/// Signed before the chain starts: valid for its whole window from genesis.
const VALID_UNTIL: u64 = lockstep_runtime::DEFAULT_MAX_VALIDITY_BLOCKS;

/// The id of the `i`th event.
fn event_id(i: usize) -> String {
    format!("bench-{i}")
}

/// The payment of the `i`th event.
fn payment(i: usize) -> PaymentInstruction {
    PaymentInstruction {
        payer: format!("acct:{i}"),
        payee: "acct:merchant".into(),
        amount: "100".into(),
        currency: "EUR".into(),
    }
}

const SIGNERS: [&str; 8] = [
    "alice", "bob", "charlie", "dave", "eve", "ferdie", "grace", "heidi",
];

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: usize = std::env::var("LOCKSTEP_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let fsync = std::env::var("LOCKSTEP_BENCH_FSYNC")
        .map(|v| v != "0")
        .unwrap_or(true);
    let dir = tempfile::tempdir().unwrap();

    let spec = ChainSpec::dev("lockstep-bench", &[Keypair::dev("alice").public()]);
    let mut node_config = NodeConfig::new(spec, dir.path().join("node"));
    node_config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    node_config.validator_key = Some(Keypair::dev("alice"));
    node_config.block_time = Duration::from_millis(100);
    let node = service::start_single(node_config).await.unwrap();
    let context = *node.chain.signing_context();
    let node_url = format!("http://{}", node.rpc_addr);

    let mut config = lockstep_offchain::Config::new(
        vec![node_url.clone()],
        dir.path().join("events"),
        Keypair::dev("bridge").public(),
    );
    config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.quorum = "1/1".parse().unwrap();
    config.scan_interval = Duration::from_millis(500);
    config.sync_writes = fsync;
    let service = lockstep_offchain::start(config).await.unwrap();
    let url = format!("http://{}", service.rpc_addr);

    // Sign everything up front: signing is the client's cost, not ours.
    let per_signer = events.div_ceil(SIGNERS.len());
    let bob = Keypair::dev("bob").public();
    let alice = Keypair::dev("alice").public();
    let mut txs = Vec::with_capacity(events);
    for signer in SIGNERS {
        let key = Keypair::dev(signer);
        let to = if signer == "bob" { alice } else { bob };
        for nonce in 0..per_signer as u64 {
            if txs.len() == events {
                break;
            }
            // Each transfer commits to the event it settles.
            let i = txs.len();
            let call = Call::Transfer {
                asset: DEV_ASSET,
                to,
                amount: 1,
                reference: Some(settlement_commitment(&event_id(i), &payment(i))),
            };
            txs.push(SignedTx::sign(&key, &context, nonce, VALID_UNTIL, call));
        }
    }
    let bodies: Vec<RegisterRequest> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| RegisterRequest {
            id: event_id(i),
            tx: Some(to_hex(&tx.encode())),
            tx_hash: None,
            valid_until: None,
            payment: payment(i),
        })
        .collect();
    let bodies = Arc::new(bodies);

    let client = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .max_concurrent_requests(64)
        .build(&url)
        .unwrap();
    let started = Instant::now();
    let chunks: Vec<(usize, usize)> = (0..events)
        .step_by(100)
        .map(|s| (s, (s + 100).min(events)))
        .collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, bodies, chunks, next) =
            (client.clone(), bodies.clone(), chunks.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(start, end)) = chunks.get(i) else {
                    return;
                };
                let answers = register_calls(&client, &bodies[start..end]).await.unwrap();
                assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 0);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let registered_in = started.elapsed();

    // Submit every transfer, then wait for the last confirmation.
    let node_client = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .build(&node_url)
        .unwrap();
    let confirm_started = Instant::now();
    for chunk in txs.chunks(200) {
        let extrinsics: Vec<String> = chunk.iter().map(|tx| to_hex(&tx.encode())).collect();
        let answers = submit_extrinsics(&node_client, &extrinsics).await.unwrap();
        assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 0);
    }
    let submitted_in = confirm_started.elapsed();
    let mut changed = service.metrics.changed();
    loop {
        let stats = service
            .store
            .stats(lockstep_offchain::now_ms(), u64::MAX)
            .unwrap();
        if stats.pending_account as usize == events {
            break;
        }
        changed.changed().await.unwrap();
    }
    let confirmed_in = confirm_started.elapsed();

    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("events: {events}, fsync: {fsync}");
    println!(
        "registered: {:>8.0} events/s ({:.2} s)",
        rate(registered_in),
        registered_in.as_secs_f64()
    );
    println!(
        "submitted to the node in {:.2} s",
        submitted_in.as_secs_f64()
    );
    println!(
        "confirmed (PendingAccount + outbox): {:>8.0} events/s ({:.2} s from first submit)",
        rate(confirmed_in),
        confirmed_in.as_secs_f64()
    );
    let total = registered_in + confirmed_in;
    println!(
        "registered and confirmed, end to end: {:>8.0} events/s",
        rate(total)
    );
    service.stop().await;
    node.stop().await.unwrap();
}
