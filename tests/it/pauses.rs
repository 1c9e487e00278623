//! Processes that stall (issue 16): frozen with SIGSTOP, as by a
//! garbage-collecting neighbour or a paused VM, for longer than the
//! timeouts that concern them, then let go on with SIGCONT. A frozen
//! process keeps its sockets, its locks and its leases' owners believing
//! it alive: unlike a killed one, it wakes up with stale beliefs. Each
//! scenario runs a settlement load through the stall and ends with every
//! event final, the audit clean, the ledger's rows agreeing with the
//! events, and identical headers on every node.

use std::time::Duration;

use lockstep_runtime::crypto::DEV_NAMES;

use crate::harness::exclusive;
use crate::load::{await_blocks, Load};
use crate::system::{head, System, BRIDGE_LEASE};

const ALL: [usize; 4] = [0, 1, 2, 3];

/// Settlements per dev account in these scenarios (8 accounts).
const PER_ACCOUNT: u64 = 40;

/// Every settlement of a load of [`PER_ACCOUNT`] is paid: nothing expires
/// in these scenarios.
const EVERY_ONE: usize = PER_ACCOUNT as usize * DEV_NAMES.len();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_paused_past_several_rounds_resumes_and_agrees() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(4).await;
    let load = Load::start_with(&system, "pause-validator", PER_ACCOUNT).await;

    let before = head(&system).await;
    system.net.pause(2);
    // Twelve blocks: three of them are node 2's to propose in round 0,
    // and those rounds time out before another proposer takes over.
    await_blocks(&system, before + 12).await;
    let rounds = system.net.decided_rounds(0, before + 1, before + 12).await;
    assert!(
        rounds.iter().any(|&round| round > 0),
        "every block was decided in round 0 while a proposer was frozen: {rounds:?}"
    );
    system.net.resume(2);
    let target = head(&system).await;
    system.net.await_height(&[2], target).await;

    load.finish(&system, EVERY_ONE).await;
    let top = system.net.best(&ALL).await;
    system.net.await_height(&ALL, top).await;
    system.net.assert_agreement(&ALL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_system_paused_past_the_bridge_lease_pays_each_event_once() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(4).await;
    let load = Load::start_with(&system, "pause-events", PER_ACCOUNT).await;
    system
        .await_condition("the bridge paying", || async {
            system.stats().await.is_some_and(|s| s.completed >= 20)
        })
        .await;

    system.events.pause();
    let paused = tokio::time::Instant::now();
    // Frozen with the bridge's batch on lease: the chain goes on, the
    // lease runs out while nobody can tell, the senders' calls time out.
    let before = head(&system).await;
    await_blocks(&system, before + 8).await;
    let past_lease = BRIDGE_LEASE + Duration::from_secs(2);
    tokio::time::sleep(past_lease.saturating_sub(paused.elapsed())).await;
    system.events.resume();

    load.finish(&system, EVERY_ONE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_paused_past_its_lease_pays_each_event_once() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(4).await;
    let load = Load::start_with(&system, "pause-bridge", PER_ACCOUNT).await;
    system
        .await_condition("the bridge paying", || async {
            system.stats().await.is_some_and(|s| s.completed >= 20)
        })
        .await;

    // Frozen, most likely mid-batch: its lease runs out, the event system
    // offers the batch again, and when the bridge wakes it still holds
    // the old one.
    system.bridge.pause();
    let paused = tokio::time::Instant::now();
    let before = head(&system).await;
    await_blocks(&system, before + 8).await;
    let past_lease = BRIDGE_LEASE + Duration::from_secs(2);
    tokio::time::sleep(past_lease.saturating_sub(paused.elapsed())).await;
    system.bridge.resume();

    load.finish(&system, EVERY_ONE).await;
}
