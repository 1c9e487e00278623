//! The network splits (issue 16): every path between the validators, and
//! from the event system to each of them, crosses a link of the test's
//! [`FaultNet`](crate::faultnet::FaultNet) that stops moving bytes when cut.
//! Each scenario runs a settlement load through the split and ends with
//! the invariants: every event final, the audit clean (nothing lost,
//! nothing paid twice, nothing paid for a cancelled transfer, supply and
//! money conserved), the ledger's rows agreeing with the events, and
//! identical headers and state roots on every node at every height.

use std::time::Duration;

use lockstep_api::lifecycle::State;
use lockstep_api::offchain::EventApiClient;
use lockstep_runtime::crypto::DEV_NAMES;

use crate::harness::{exclusive, Testnet};
use crate::load::{await_blocks, Load};
use crate::system::{head, Deal, Settlement, System};

const ALL: [usize; 4] = [0, 1, 2, 3];

/// Settlements per dev account in these scenarios (8 accounts).
const PER_ACCOUNT: u64 = 40;

/// How long a split that must decide nothing is watched: several rounds'
/// timeouts (1 s propose, 0.5 s prevote and precommit, each 0.25 s longer
/// a round), so that every validator has been through rounds of its own.
const WATCH_SPLIT: Duration = Duration::from_secs(8);

/// The finalized height of each of `nodes` (0 for one that does not
/// answer).
async fn heights(net: &Testnet, nodes: &[usize]) -> Vec<u64> {
    let mut heights = Vec::new();
    for &i in nodes {
        heights.push(net.finalized(i).await.unwrap_or(0));
    }
    heights
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_validator_partitioned_away_during_load_catches_up_and_agrees() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_split(4).await;
    let load = Load::start_with(&system, "split-one", PER_ACCOUNT).await;
    let net = &system.net;
    net.await_height(&ALL, head(&system).await + 3).await;

    net.faults()
        .partition(&[&["node-0", "node-1", "node-2"], &["node-3"]]);
    let isolated_at = net.finalized(3).await.expect("node 3 answers");
    let majority_at = net.best(&[0, 1, 2]).await;
    // The three keep finalizing, with the load going on.
    net.await_height(&[0, 1, 2], majority_at + 10).await;
    // Alone, node 3 finalized at most the block whose precommits it
    // already held when the network split.
    let alone = net.finalized(3).await.expect("node 3 answers");
    assert!(
        alone <= isolated_at + 1,
        "node 3 finalized #{alone} alone (#{isolated_at} at the split)"
    );

    net.faults().heal_all();
    let target = net.best(&[0, 1, 2]).await;
    net.await_height(&[3], target).await;
    // And it votes again: with node 0 cut off now, three of four (node 3
    // among them) must go on.
    net.faults()
        .partition(&[&["node-1", "node-2", "node-3"], &["node-0"]]);
    let without_zero = net.best(&[1, 2, 3]).await;
    net.await_height(&[1, 2, 3], without_zero + 5).await;
    net.faults().heal_all();

    load.finish(&system, PER_ACCOUNT as usize * DEV_NAMES.len())
        .await;
    let top = net.best(&ALL).await;
    net.await_height(&ALL, top).await;
    net.assert_agreement(&ALL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_against_two_finalize_nothing_and_the_chain_resumes_after_the_heal() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_split(4).await;
    let load = Load::start_with(&system, "split-two", PER_ACCOUNT).await;
    let net = &system.net;
    net.await_height(&ALL, head(&system).await + 3).await;

    net.faults()
        .partition(&[&["node-0", "node-1"], &["node-2", "node-3"]]);
    let at_split = heights(net, &ALL).await;
    let highest_at_split = *at_split.iter().max().expect("four nodes");
    // Watched for several rounds: there is no event to await when the
    // point is that none happens.
    let mut seen = Vec::new();
    let watch = tokio::time::Instant::now();
    while watch.elapsed() < WATCH_SPLIT {
        seen.push(heights(net, &ALL).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let halted = seen.iter().flatten().copied().max().unwrap_or(0);
    assert!(
        halted <= highest_at_split + 1,
        "a half finalized past the split: {at_split:?} at the split, then {seen:?}"
    );
    // Whatever each half finalized, the halves agree on it: no height
    // was decided twice.
    net.assert_agreement(&ALL).await;

    net.faults().heal_all();
    net.await_height(&ALL, halted + 3).await;

    load.finish(&system, PER_ACCOUNT as usize * DEV_NAMES.len())
        .await;
    let top = net.best(&ALL).await;
    net.await_height(&ALL, top).await;
    net.assert_agreement(&ALL).await;
}

/// One settlement per dev account, with nonce `nonce`, ids
/// `<prefix>-<account>`.
fn one_per_account(system: &System, prefix: &str, nonce: u64, valid_until: u64) -> Vec<Settlement> {
    DEV_NAMES
        .iter()
        .enumerate()
        .map(|(k, from)| {
            let deal = Deal {
                from,
                nonce,
                to: DEV_NAMES[(k + 1) % DEV_NAMES.len()],
                asset: 3,
                cents: 250,
                valid_until,
            };
            Settlement::new(&system.net, format!("{prefix}-{from}"), deal)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_system_cut_off_from_nodes_confirms_with_a_quorum_and_waits_without_one() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_split(4).await;
    let net = &system.net;
    let client = system.client();

    // One of four unreachable (the first it follows): three still make
    // its quorum (3 of 4), so settlements go on being confirmed.
    net.faults().cut("events", "node-0");
    let load = Load::start_with(&system, "cut-one", 5).await;
    load.finish(&system, 5 * DEV_NAMES.len()).await;

    // Three of four unreachable: no quorum. Transfers finalize on the
    // chain, but the event system must decide nothing about them.
    net.faults().cut("events", "node-1");
    net.faults().cut("events", "node-2");
    let valid_until = head(&system).await + net.spec.max_validity_blocks / 2;
    let waiting = one_per_account(&system, "cut-three", 5, valid_until);
    for (k, s) in waiting.iter().enumerate() {
        s.register(&client).await;
        s.submit(&client, k).await;
    }
    let mut included = 0;
    for s in &waiting {
        included = included.max(
            net.await_tx(3, &s.tx.hash())
                .await
                .block_number
                .expect("a finalized transfer has a block"),
        );
    }
    // Well past their blocks, as seen by the one node it still reaches.
    await_blocks(&system, included + 10).await;
    for s in &waiting {
        let event = client
            .events()
            .get(s.id.clone())
            .await
            .expect("the event system answers");
        assert_eq!(
            event.state,
            State::Registered,
            "decided without a quorum of nodes: {event:?}"
        );
    }

    // Healed, it confirms them all, and nothing it did meanwhile was
    // wrong.
    net.faults().heal_all();
    let ids: Vec<String> = waiting.iter().map(|s| s.id.clone()).collect();
    let events = system.await_final(&ids).await;
    assert!(
        events.iter().all(|e| e.state == State::Completed),
        "{events:?}"
    );
    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
    crate::load::assert_each_event_paid_per_its_state(&system, &events);
    let top = net.best(&ALL).await;
    net.await_height(&ALL, top).await;
    net.assert_agreement(&ALL).await;
}
