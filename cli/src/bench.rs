//! `lockstep bench`: a load generator for the whole system, following the
//! approach of the chain-only `node/benches/rpc_throughput.rs`.
//!
//! 1. Funds `--accounts` fresh sending accounts from `--funder` and waits
//!    until the funding is finalized.
//! 2. Pre-signs every transfer (each sender's in nonce order, its reference
//!    committing to its event) and its event registration by hash (payer and
//!    payee round-robin over `--ledger-accounts`; the event system checks
//!    the commitment in the finalized block).
//! 3. Subscribes to the event system's transitions and to the chain's
//!    finalized heads, then starts `--clients` clients, each owning a share
//!    of the senders: per batch, one `event_registerBatch` call (one group
//!    commit), then one JSON-RPC batch of `author_submitExtrinsic` for the
//!    transfers whose
//!    registration succeeded (never before), at `--rate` or as fast as
//!    accepted.
//! 4. Counts our transfers in finalized blocks (chain tx/s) and our events
//!    reaching Completed (settled events/s, and latency from the
//!    registration request to the Completed transition), with a progress
//!    line every second, until every submitted event is final or
//!    `--drain-timeout` passes.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use lockstep_api::client::{describe_refusal, ClientOptions, Subscription};
use lockstep_api::event::{settlement_commitment, PaymentInstruction, RegisterRequest};
use lockstep_api::lifecycle::State;
use lockstep_api::node::{self, ChainApiClient, TxApiClient, TxState};
use lockstep_api::offchain::{EventApiClient, TransitionFilter};
use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::{
    expired_after, BlockNumber, Call, Hash, Header, Keypair, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;
use serde_json::json;

use crate::args::BenchArgs;
use crate::chain::NodeClient;
use crate::event::{EventsClient, EventsEndpoint};
use crate::key::keypair;
use crate::output::Progress;
use crate::rpc::At;

/// Funding transfers per JSON-RPC batch.
const FUNDING_BATCH: usize = 200;

/// One pre-signed transfer and its registration.
struct Item {
    tx: String,
    request: RegisterRequest,
}

/// Counters shared by the clients, the followers and the progress line.
#[derive(Debug, Default)]
struct Counters {
    registered: AtomicU64,
    register_refused: AtomicU64,
    submitted: AtomicU64,
    submit_refused: AtomicU64,
    finalized: AtomicU64,
    pending: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    /// Completions (when after the start, latency) and PendingAccount
    /// latencies, as the event follower sees them.
    latencies: Mutex<Latencies>,
    /// From the start to the last finalized block holding one of ours.
    chain_window: Mutex<Duration>,
}

/// (completions: when after start, latency), PendingAccount latencies.
type Latencies = (Vec<(Duration, Duration)>, Vec<Duration>);

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// `lockstep bench`.
pub async fn run(
    nodes: &[String],
    node_options: &ClientOptions,
    endpoint: &EventsEndpoint,
    json_mode: bool,
    args: BenchArgs,
) -> anyhow::Result<ExitCode> {
    if args.ledger_accounts.len() < 2 {
        bail!("--ledger-accounts needs at least two accounts (payer and payee differ)");
    }
    // Every payer/payee pair the run will use, checked as the event system
    // will check it.
    let n = args.ledger_accounts.len();
    for i in 0..n {
        PaymentInstruction {
            payer: args.ledger_accounts[i].clone(),
            payee: args.ledger_accounts[(i + 1) % n].clone(),
            amount: args.pay_amount.to_string(),
            currency: args.currency.clone(),
        }
        .check()
        .map_err(|e| anyhow!("bad payment flags: {e}"))?;
    }
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        // Eight hex digits of a fresh random key: randomness enough.
        Keypair::generate().public().to_string()[2..10].to_owned()
    });
    // The event follower subscribes to this run's ids by their prefix.
    TransitionFilter::id_prefix(format!("bench-{run_id}-"))
        .check()
        .map_err(|e| anyhow!("--run-id {run_id:?} makes event ids too long: {e}"))?;
    let count = args.count as usize;
    let accounts = args.accounts.min(args.count) as usize;
    let clients = args.clients as usize;
    let batch_size = args.batch as usize;

    let node_clients = nodes
        .iter()
        .map(|url| NodeClient::new(url, node_options))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &node_clients[0];
    let events = EventsClient::new(endpoint)?;
    let context = first.signing_context().await?;
    let stats = events.stats().await.context("the event system")?;
    let funder = keypair(&args.funder)?;
    let senders: Vec<Keypair> = (0..accounts)
        .map(|i| Keypair::dev(&format!("bench-{run_id}-{i}")))
        .collect();
    let per_account = count.div_ceil(accounts) as u128;
    eprintln!(
        "bench {run_id}: {count} transfers from {accounts} accounts, {clients} clients, batches of {batch_size}, {}",
        if args.rate > 0 {
            format!("{} per second", args.rate)
        } else {
            "open loop".to_owned()
        }
    );

    fund(first, &context, &funder, &senders, per_account + 1, &args).await?;

    // Pre-sign: round by round, every sender's next nonce, so that each
    // client (owning whole senders) sends every sender's transfers in order.
    let head = first.height().await?;
    let valid_until = head + args.valid_for;
    let nonces = fetch_nonces(first, &senders).await?;
    let signing = Instant::now();
    let mut parts: Vec<Vec<Item>> = (0..clients).map(|_| Vec::new()).collect();
    let mut hashes = HashSet::with_capacity(count);
    for i in 0..count {
        let s = i % accounts;
        let round = (i / accounts) as u64;
        let id = format!("bench-{run_id}-{i}");
        let payment = PaymentInstruction {
            payer: args.ledger_accounts[i % n].clone(),
            payee: args.ledger_accounts[(i + 1) % n].clone(),
            amount: args.pay_amount.to_string(),
            currency: args.currency.clone(),
        };
        // Each transfer commits to its event and payment, as any settling
        // transfer must.
        let call = Call::Transfer {
            asset: args.asset,
            to: senders[(s + 1) % accounts].public(),
            amount: 1,
            reference: Some(settlement_commitment(&id, &payment)),
        };
        let tx = SignedTx::sign(&senders[s], &context, nonces[s] + round, valid_until, call);
        let hash = tx.hash();
        hashes.insert(hash);
        parts[s % clients].push(Item {
            tx: to_hex(&tx.encode()),
            request: RegisterRequest {
                id,
                tx: None,
                tx_hash: Some(hash),
                valid_until: Some(valid_until),
                payment,
            },
        });
    }
    eprintln!("signed {count} transfers in {:.1?}", signing.elapsed());

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    // Registration time of event i, in µs after `started` (+1, so 0 is
    // "not yet").
    let registered_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());

    // Followers first, so that nothing they should see can happen before.
    let from_seq = stats.last_seq + 1;
    let event_follower = tokio::spawn(follow_events(
        events.clone(),
        from_seq,
        format!("bench-{run_id}-"),
        registered_at.clone(),
        counters.clone(),
        started,
    ));
    let chain_follower = tokio::spawn(follow_chain(
        first.clone(),
        first.height().await?,
        Arc::new(hashes),
        counters.clone(),
        started,
    ));

    let mut tasks = Vec::new();
    for (c, part) in parts.into_iter().enumerate() {
        let node = node_clients[c % node_clients.len()].clone();
        let events = EventsClient::new(endpoint)?;
        let counters = counters.clone();
        let registered_at = registered_at.clone();
        let interval = (args.rate > 0).then(|| {
            Duration::from_secs_f64(batch_size as f64 * clients as f64 / args.rate as f64)
        });
        let prefix_len = format!("bench-{run_id}-").len();
        tasks.push(tokio::spawn(async move {
            let mut ticker = interval.map(tokio::time::interval);
            for chunk in part.chunks(batch_size) {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let now = started.elapsed().as_micros() as u64 + 1;
                for item in chunk {
                    if let Ok(i) = item.request.id[prefix_len..].parse::<usize>() {
                        registered_at[i].store(now, Ordering::Relaxed);
                    }
                }
                // One call, one group commit in the event system.
                let requests: Vec<RegisterRequest> =
                    chunk.iter().map(|item| item.request.clone()).collect();
                let answers = events.http.register_batch(requests).await;
                let registered: Vec<&Item> = match answers {
                    Ok(answers) if answers.len() == chunk.len() => chunk
                        .iter()
                        .zip(answers)
                        .filter(|(_, a)| a.result.is_some())
                        .map(|(item, _)| item)
                        .collect(),
                    _ => Vec::new(),
                };
                add(&counters.registered, registered.len() as u64);
                add(
                    &counters.register_refused,
                    (chunk.len() - registered.len()) as u64,
                );
                if registered.is_empty() {
                    continue;
                }
                let txs: Vec<String> = registered.iter().map(|item| item.tx.clone()).collect();
                match node::submit_extrinsics(&node.http, &txs).await {
                    Ok(answers) => {
                        let refused = answers.iter().filter(|a| a.is_err()).count() as u64;
                        add(&counters.submit_refused, refused);
                        add(&counters.submitted, registered.len() as u64 - refused);
                    }
                    Err(_) => add(&counters.submit_refused, registered.len() as u64),
                }
            }
        }));
    }

    let mut progress = Progress::always();
    let show = |counters: &Counters, progress: &mut Progress, last: &mut u64| {
        let completed = load(&counters.completed);
        progress.update(&format!(
            "{:>5.0}s registered {}/{count} submitted {} finalized {} pending {} completed {} cancelled {} refused {} | {} completed/s",
            started.elapsed().as_secs_f64(),
            load(&counters.registered),
            load(&counters.submitted),
            load(&counters.finalized),
            load(&counters.pending),
            completed,
            load(&counters.cancelled),
            load(&counters.register_refused) + load(&counters.submit_refused),
            completed - *last
        ));
        *last = completed;
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_completed = 0;
    let mut sending = futures::future::join_all(tasks);
    loop {
        tokio::select! {
            results = &mut sending => {
                for result in results {
                    result.map_err(|e| anyhow!("a client failed: {e}"))?;
                }
                break;
            }
            _ = ticker.tick() => show(&counters, &mut progress, &mut last_completed),
        }
    }
    let submit_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    let submitted = load(&counters.submitted);
    while load(&counters.completed) + load(&counters.cancelled) < submitted
        && Instant::now() < deadline
    {
        ticker.tick().await;
        show(&counters, &mut progress, &mut last_completed);
    }
    show(&counters, &mut progress, &mut last_completed);
    progress.finish();
    event_follower.abort();
    chain_follower.abort();
    let (completions, pendings) = {
        let latencies = counters.latencies.lock().unwrap_or_else(|e| e.into_inner());
        (latencies.0.clone(), latencies.1.clone())
    };
    let chain_window = *counters
        .chain_window
        .lock()
        .unwrap_or_else(|e| e.into_inner());

    let completed = load(&counters.completed);
    let finalized = load(&counters.finalized);
    let settle_window = completions
        .iter()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or_default();
    let mut latencies: Vec<Duration> = completions.iter().map(|(_, l)| *l).collect();
    latencies.sort();
    let mut pending_latencies: Vec<Duration> = pendings;
    pending_latencies.sort();
    let chain_tps = per_second(finalized, chain_window);
    let settle_eps = per_second(completed, settle_window);
    let report = json!({
        "runId": run_id,
        "offered": { "count": count, "rate": args.rate, "accounts": accounts, "clients": clients, "batch": batch_size },
        "registered": load(&counters.registered),
        "registrationRefused": load(&counters.register_refused),
        "submitted": submitted,
        "submissionRefused": load(&counters.submit_refused),
        "submitSeconds": submit_time.as_secs_f64(),
        "chain": { "finalized": finalized, "seconds": chain_window.as_secs_f64(), "txPerSecond": chain_tps },
        "settlement": {
            "completed": completed,
            "cancelled": load(&counters.cancelled),
            "seconds": settle_window.as_secs_f64(),
            "eventsPerSecond": settle_eps,
            "latencyMs": {
                "p50": percentile(&latencies, 0.50).as_millis() as u64,
                "p90": percentile(&latencies, 0.90).as_millis() as u64,
                "p99": percentile(&latencies, 0.99).as_millis() as u64,
                "max": latencies.last().copied().unwrap_or_default().as_millis() as u64,
            },
            "pendingAccountLatencyMs": {
                "p50": percentile(&pending_latencies, 0.50).as_millis() as u64,
                "p90": percentile(&pending_latencies, 0.90).as_millis() as u64,
                "p99": percentile(&pending_latencies, 0.99).as_millis() as u64,
            },
        },
    });
    if json_mode {
        out!("{report}");
    } else {
        let l = &report["settlement"]["latencyMs"];
        let p = &report["settlement"]["pendingAccountLatencyMs"];
        out!(
            "bench {run_id}: {count} transfers offered ({}), {} registered, {} submitted, {} refused",
            if args.rate > 0 {
                format!("{}/s", args.rate)
            } else {
                "open loop".into()
            },
            load(&counters.registered),
            submitted,
            load(&counters.register_refused) + load(&counters.submit_refused)
        );
        out!(
            "chain: {finalized} transfers finalized in {:.2} s: {chain_tps:.0} tx/s",
            chain_window.as_secs_f64()
        );
        out!(
            "settlement: {completed} events completed in {:.2} s: {settle_eps:.0} events/s; {} cancelled",
            settle_window.as_secs_f64(),
            load(&counters.cancelled)
        );
        out!(
            "latency registration -> Completed: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            l["p50"],
            l["p90"],
            l["p99"],
            l["max"]
        );
        out!(
            "latency registration -> PendingAccount: p50 {} ms, p90 {} ms, p99 {} ms",
            p["p50"],
            p["p90"],
            p["p99"]
        );
    }
    if completed < count as u64 {
        eprintln!(
            "error: {} of {count} events did not complete (is the account bridge running?)",
            count as u64 - completed
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn per_second(n: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        n as f64 / window.as_secs_f64()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Follows the event system's transitions from `from_seq`, counting ours.
/// The stream is gap-free and replayable, so when it breaks (the client
/// drops a subscription that falls behind) it resumes after the last one
/// seen, and nothing is counted twice or missed.
async fn follow_events(
    events: EventsClient,
    mut from_seq: u64,
    prefix: String,
    registered_at: Arc<Vec<AtomicU64>>,
    counters: Arc<Counters>,
    started: Instant,
) {
    loop {
        // Only this run's events, filtered by the event system.
        let filter = TransitionFilter::id_prefix(prefix.clone());
        let Ok((_client, mut transitions)) = events.subscribe(Some(from_seq), Some(filter)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(t)) = transitions.next().await {
            from_seq = t.seq + 1;
            let Some(i) = t
                .event_id
                .strip_prefix(&prefix)
                .and_then(|rest| rest.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(at) = registered_at.get(i).map(|a| a.load(Ordering::Relaxed)) else {
                continue;
            };
            let now = started.elapsed();
            let latency = now.saturating_sub(Duration::from_micros(at.saturating_sub(1)));
            match t.to {
                State::Completed => {
                    add(&counters.completed, 1);
                    let mut latencies =
                        counters.latencies.lock().unwrap_or_else(|e| e.into_inner());
                    latencies.0.push((now, latency));
                }
                State::PendingAccount => {
                    add(&counters.pending, 1);
                    let mut latencies =
                        counters.latencies.lock().unwrap_or_else(|e| e.into_inner());
                    latencies.1.push(latency);
                }
                State::Cancelled => add(&counters.cancelled, 1),
                State::Registered => {}
            }
        }
    }
}

/// Counts our transfers in every finalized block after `from`. Blocks are
/// read by number, so a head the subscription skipped, or a break in the
/// subscription (it is re-opened), loses nothing.
async fn follow_chain(
    node: NodeClient,
    from: BlockNumber,
    ours: Arc<HashSet<Hash>>,
    counters: Arc<Counters>,
    started: Instant,
) {
    let mut next = from + 1;
    loop {
        let heads = async {
            let client = node.ws().await?;
            let heads: Subscription<Header> = client
                .subscribe_finalized_heads()
                .await
                .at("subscribing to finalized heads", &node.url)?;
            Ok::<_, anyhow::Error>((client, heads))
        };
        let Ok((_client, mut heads)) = heads.await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(header)) = heads.next().await {
            while next <= header.number {
                let Ok(found) = count_ours(&node, next, &ours).await else {
                    break;
                };
                next += 1;
                if found > 0 {
                    add(&counters.finalized, found);
                    *counters
                        .chain_window
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = started.elapsed();
                }
            }
        }
    }
}

/// How many of our transfers the finalized block `number` holds.
async fn count_ours(
    node: &NodeClient,
    number: BlockNumber,
    ours: &HashSet<Hash>,
) -> anyhow::Result<u64> {
    let block = node::block_at(&node.http, number)
        .await
        .at("a block", &node.url)?
        .with_context(|| format!("no block #{number}"))?;
    let mut found = 0;
    for tx in &block.block.extrinsics {
        if let Ok(bytes) = from_hex(tx) {
            if ours.contains(&Hash::digest(&bytes)) {
                found += 1;
            }
        }
    }
    Ok(found)
}

async fn fetch_nonces(node: &NodeClient, senders: &[Keypair]) -> anyhow::Result<Vec<u64>> {
    let mut nonces = Vec::with_capacity(senders.len());
    for chunk in senders.chunks(FUNDING_BATCH) {
        let accounts: Vec<_> = chunk.iter().map(Keypair::public).collect();
        let answers = node::nonces(&node.http, &accounts)
            .await
            .at("nonces", &node.url)?;
        for answer in answers {
            nonces.push(answer.map_err(|e| anyhow!("a nonce: {}", describe_refusal(&e)))?);
        }
    }
    Ok(nonces)
}

/// Sends `amount` to every sender from the funder and waits until the last
/// funding transfer is finalized.
async fn fund(
    node: &NodeClient,
    context: &SigningContext,
    funder: &Keypair,
    senders: &[Keypair],
    amount: u128,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let nonce = node.nonce(&funder.public()).await?;
    let valid_until = node.height().await? + args.valid_for;
    let txs: Vec<SignedTx> = senders
        .iter()
        .enumerate()
        .map(|(i, to)| {
            let call = Call::Transfer {
                asset: args.asset,
                to: to.public(),
                amount,
                reference: None,
            };
            SignedTx::sign(funder, context, nonce + i as u64, valid_until, call)
        })
        .collect();
    for chunk in txs.chunks(FUNDING_BATCH) {
        let hexes: Vec<String> = chunk.iter().map(|tx| to_hex(&tx.encode())).collect();
        let answers = node::submit_extrinsics(&node.http, &hexes)
            .await
            .at("funding transfers", &node.url)?;
        if let Some(Err(e)) = answers.into_iter().find(|a| a.is_err()) {
            bail!(
                "funding the senders: the node refused a transfer: {}",
                describe_refusal(&e)
            );
        }
    }
    let Some(last) = txs.last() else {
        return Ok(());
    };
    let mut progress = Progress::always();
    let ws = node.ws().await?;
    let mut heads: Subscription<Header> = ws
        .subscribe_finalized_heads()
        .await
        .at("subscribing to finalized heads", &node.url)?;
    loop {
        let status = node
            .http
            .status(last.hash())
            .await
            .at("the funding transfer's status", &node.url)?;
        match (status.status, status.outcome) {
            (TxState::Finalized, Some(outcome)) if outcome.is_success() => break,
            (TxState::Finalized, outcome) => bail!(
                "funding the senders failed on chain: {} (does --funder {} hold asset {}?)",
                serde_json::to_string(&outcome).unwrap_or_default(),
                args.funder,
                args.asset
            ),
            (TxState::Unknown, _) if expired_after(valid_until, status.finalized_number) => {
                bail!("funding the senders: the transfers expired unincluded")
            }
            _ => progress.update(&format!(
                "funding {} accounts: waiting for finality (#{})",
                senders.len(),
                status.finalized_number
            )),
        }
        heads
            .next()
            .await
            .context("the head subscription ended")?
            .map_err(|e| anyhow!("head subscription: {e}"))?;
    }
    progress.finish();
    eprintln!(
        "funded {} accounts in {:.1?}",
        senders.len(),
        started.elapsed()
    );
    Ok(())
}
