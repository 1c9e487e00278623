//! Chaos: while a load of well over a thousand settlements runs, a
//! validator, the event system and the bridge are killed with SIGKILL and
//! restarted, one at a time, over and over. At the end every event is
//! final, at least a thousand are paid, and the audit finds no violation:
//! nothing lost, nothing paid twice, nothing paid for a cancelled transfer,
//! asset supply and ledger money conserved.

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{EventApiClient, ListParams};
use lockstep_runtime::crypto::DEV_NAMES;

use crate::harness::exclusive;
use crate::system::{head, Client, Deal, Settlement, System};

/// Settlements per dev account (8 accounts).
const PER_ACCOUNT: u64 = 150;

/// The load's pace per account: about 50 settlements a second in all, so
/// that the load spans every fault below.
const PACE: Duration = Duration::from_millis(160);

/// Fewest fault rounds; each kills a validator, the event system and the
/// bridge. Rounds go on while the load runs.
const ROUNDS: usize = 3;

/// Blocks the chain must finalize while a victim is down (and again after
/// it is back, before the next fault).
const DOWN_FOR_BLOCKS: u64 = 8;

#[derive(Debug, Clone, Copy)]
enum Victim {
    Validator(usize),
    Events,
    Bridge,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_every_process_kind_during_load() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(4).await;
    // Far ahead, within what the chain accepts: no transfer expires while the
    // processes are killed and restarted.
    let valid_until = head(&system).await + system.net.spec.max_validity_blocks / 2;

    let mut settlements: Vec<Vec<Settlement>> = Vec::new();
    for (k, from) in DEV_NAMES.iter().enumerate() {
        let to = DEV_NAMES[(k + 3) % DEV_NAMES.len()];
        settlements.push(
            (0..PER_ACCOUNT)
                .map(|nonce| {
                    let deal = Deal {
                        from,
                        nonce,
                        to,
                        asset: 1 + u128::from(nonce % 7),
                        cents: 1 + u128::from(nonce % 500),
                        valid_until,
                    };
                    Settlement::new(&system.net, format!("chaos-{from}-{nonce}"), deal)
                })
                .collect(),
        );
    }
    let all_ids: Vec<String> = settlements.iter().flatten().map(|s| s.id.clone()).collect();
    let by_id: BTreeMap<String, Settlement> = settlements
        .iter()
        .flatten()
        .map(|s| (s.id.clone(), s.clone()))
        .collect();

    // The transaction system: one paced sender per account.
    let client = system.client();
    let load = tokio::spawn(async move {
        let senders = settlements.into_iter().enumerate().map(|(k, list)| {
            let client = client.clone();
            async move {
                let mut pace = tokio::time::interval(PACE);
                for s in list {
                    pace.tick().await;
                    s.register(&client).await;
                    s.submit(&client, k).await;
                }
            }
        });
        futures::future::join_all(senders).await;
    });

    // The faults, one process at a time, for as long as the load runs (and
    // at least ROUNDS rounds).
    let mut round = 0;
    while round < ROUNDS || !load.is_finished() {
        for victim in [
            Victim::Validator(1 + round % 3),
            Victim::Events,
            Victim::Bridge,
        ] {
            let before = head(&system).await;
            match victim {
                Victim::Validator(i) => system.net.kill(i),
                Victim::Events => system.events.kill(),
                Victim::Bridge => system.bridge.kill(),
            }
            await_blocks(&system, before + DOWN_FOR_BLOCKS).await;
            match victim {
                Victim::Validator(i) => {
                    system.net.spawn(i);
                    let target = head(&system).await;
                    system.net.await_height(&[i], target).await;
                }
                Victim::Events => {
                    system.events.spawn();
                    system.await_events_following().await;
                }
                Victim::Bridge => system.bridge.spawn(),
            }
            let back = head(&system).await;
            await_blocks(&system, back + DOWN_FOR_BLOCKS).await;
        }
        round += 1;
    }
    load.await.expect("the load ran to the end");

    // A transfer can be lost with a killed node's pool; the transaction
    // system re-submits whatever is still Registered (a node that knows it
    // says so) until every event is final.
    let client = system.client();
    let total = all_ids.len() as u64;
    system
        .await_condition("every event final", || async {
            let Some(stats) = system.stats().await else {
                return false;
            };
            let finished = stats.completed + stats.cancelled;
            if finished == total {
                return true;
            }
            for id in registered_ids(&client).await {
                if let Some(s) = by_id.get(&id) {
                    s.submit(&client, 0).await;
                }
            }
            false
        })
        .await;

    let events = system.await_final(&all_ids).await;
    let completed = events
        .iter()
        .filter(|e| e.state == State::Completed)
        .count();
    eprintln!("{round} fault rounds; {completed} of {total} settlements paid, the rest cancelled");
    assert!(
        completed >= 1_000,
        "only {completed} of {total} settlements were paid"
    );

    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
}

/// Waits until the chain (any node) has finalized `height`.
async fn await_blocks(system: &System, height: u64) {
    system
        .await_condition(&format!("the chain at #{height}"), || async {
            head(system).await >= height
        })
        .await;
}

/// The ids of every Registered event (empty if the event system is down).
async fn registered_ids(client: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = ListParams {
            state: Some(State::Registered),
            limit: Some(500),
            cursor,
            ..ListParams::default()
        };
        let Ok(page) = client.events().list(Some(params)).await else {
            return ids;
        };
        ids.extend(page.events.into_iter().map(|e| e.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}
