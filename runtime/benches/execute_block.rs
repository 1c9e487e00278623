//! Executing a block of 10,000 signed transfers against a state of 1,000,000
//! accounts, beside the raw ed25519 batch-verification rate of the same
//! machine, which bounds it.
//!
//! Run: `cargo bench -p lockstep-runtime --bench execute_block`
//! (add `-- --quick` for a shorter run). The last lines printed are a
//! summary: transfers/s, signatures/s, and their ratio.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use lockstep_runtime::crypto::verify_batch_parsed;
use lockstep_runtime::execution::execute;
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::state::Overlay;
use lockstep_runtime::{
    AccountId, Call, ChainSpec, Hash, Keypair, MemoryStore, SignedTx, SigningContext,
};

const ACCOUNTS: usize = 1_000_000;
const BLOCK_TXS: usize = 10_000;

struct Fixture {
    store: MemoryStore,
    context: SigningContext,
    txs: Vec<SignedTx>,
}

/// Genesis plus 1,000,000 funded accounts; 10,000 of them (real keys) each
/// sign one transfer to a random other account.
fn fixture() -> Fixture {
    let started = Instant::now();
    let spec = ChainSpec::dev("lockstep-bench", &[Keypair::dev("alice").public()]);
    let genesis = spec.genesis().unwrap();
    let mut store = MemoryStore::default();
    store.apply(&genesis.changes.writes);
    let context = genesis.signing_context();

    let senders: Vec<Keypair> = (0..BLOCK_TXS)
        .map(|i| Keypair::from_seed(&Hash::digest(&(i as u64).to_le_bytes()).0))
        .collect();
    let others =
        (BLOCK_TXS..ACCOUNTS).map(|i| AccountId(Hash::digest(&(i as u64).to_be_bytes()).0));
    let accounts: Vec<AccountId> = senders.iter().map(Keypair::public).chain(others).collect();

    let mut state = Overlay::new(&store);
    for account in &accounts {
        state.set_balance(account, DEV_ASSET, 1_000_000);
    }
    let changes = state.commit().unwrap();
    store.apply(&changes.writes);

    let txs = senders
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let to = accounts[(i * 7919 + 104_729) % ACCOUNTS];
            let call = Call::Transfer {
                asset: DEV_ASSET,
                to,
                amount: 10,
                reference: None,
            };
            SignedTx::sign(key, &context, 0, 100, call)
        })
        .collect();
    eprintln!(
        "fixture: {ACCOUNTS} accounts, {} stored keys, {BLOCK_TXS} signed transfers, built in {:.1?}",
        store.len(),
        started.elapsed()
    );
    Fixture {
        store,
        context,
        txs,
    }
}

struct RawBatch {
    keys: Vec<ed25519_dalek::VerifyingKey>,
    messages: Vec<Vec<u8>>,
    signatures: Vec<ed25519_dalek::Signature>,
}

fn raw_batch(fixture: &Fixture) -> RawBatch {
    let txs = &fixture.txs;
    RawBatch {
        keys: txs
            .iter()
            .map(|tx| ed25519_dalek::VerifyingKey::from_bytes(&tx.signer.0).unwrap())
            .collect(),
        messages: txs
            .iter()
            .map(|tx| tx.signing_payload(&fixture.context))
            .collect(),
        signatures: txs
            .iter()
            .map(|tx| ed25519_dalek::Signature::from_bytes(&tx.signature.0))
            .collect(),
    }
}

fn verify_raw(batch: &RawBatch) -> bool {
    let messages: Vec<&[u8]> = batch.messages.iter().map(Vec::as_slice).collect();
    verify_batch_parsed(&batch.keys, &messages, &batch.signatures)
}

fn execute_block(fixture: &Fixture) {
    let executed = execute(&fixture.store, &fixture.context, 1, &fixture.txs).unwrap();
    assert_eq!(executed.receipts.len(), BLOCK_TXS);
}

fn bench(c: &mut Criterion, fixture: &Fixture, batch: &RawBatch) {
    let mut group = c.benchmark_group("block");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(BLOCK_TXS as u64));
    group.bench_function(BenchmarkId::new("execute_transfers", BLOCK_TXS), |b| {
        b.iter(|| execute_block(fixture))
    });
    group.bench_function(BenchmarkId::new("ed25519_batch_verify", BLOCK_TXS), |b| {
        b.iter(|| assert!(verify_raw(batch)))
    });
    group.finish();
}

/// Median time of `f` over `runs` runs.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let fixture = fixture();
    let batch = raw_batch(&fixture);
    assert!(verify_raw(&batch));

    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &fixture, &batch);

    // A summary in the units the targets are stated in.
    let execute_time = median(7, || execute_block(&fixture));
    let verify_time = median(7, || assert!(verify_raw(&batch)));
    let tx_rate = BLOCK_TXS as f64 / execute_time.as_secs_f64();
    let verify_rate = BLOCK_TXS as f64 / verify_time.as_secs_f64();
    println!("summary: block of {BLOCK_TXS} transfers on {ACCOUNTS} accounts, one core");
    println!(
        "summary: execute            {:>9.0} tx/s  ({:.1?} per block)",
        tx_rate, execute_time
    );
    println!(
        "summary: ed25519 batch raw  {:>9.0} sig/s ({:.1?} per batch)",
        verify_rate, verify_time
    );
    println!(
        "summary: ratio execute / raw batch verify = {:.2}",
        tx_rate / verify_rate
    );
    criterion.final_summary();
}
