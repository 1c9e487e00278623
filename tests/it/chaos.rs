//! Chaos: while a load of well over a thousand settlements runs, a
//! validator, the event system and the bridge are killed with SIGKILL and
//! restarted, one at a time, over and over; and, with the bus on NATS
//! JetStream and two bridges on one durable consumer and one PostgreSQL
//! ledger, one engine fault at a time: the NATS server is killed with
//! SIGKILL, the database stops at once (`pg_ctl stop -m immediate`), loses
//! its sessions (`pg_terminate_backend`), a bridge dies between its commit
//! and its ack, and the other is frozen past its ack wait. At the end every
//! event is final, at least a thousand are paid, and the audit finds no
//! violation: nothing lost, nothing paid twice, nothing paid for a
//! cancelled transfer, asset supply and ledger money conserved; the
//! ledger's rows agree, event by event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockstep_api::event::Event;
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{EventApiClient, ListParams};
use lockstep_runtime::crypto::DEV_NAMES;

use crate::harness::exclusive;
use lockstep_service::test_utils::{TestPostgres, TestProcess};

use crate::system::{head, ledger_json, Client, Deal, Settlement, System, NATS_ACK_WAIT};

/// The bridge's crash hook (`lockstep_bridge::CRASH_AFTER_COMMIT_ENV`; the
/// bridge is built with its `test-hooks` feature for these tests).
const CRASH_AFTER_COMMIT_ENV: &str = "LOCKSTEP_BRIDGE_CRASH_AFTER_COMMIT";

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

/// The load of a chaos test: settlements per dev account, paced, by one
/// sender per account; and what is needed to see it through.
struct Load {
    task: tokio::task::JoinHandle<()>,
    all_ids: Vec<String>,
    by_id: BTreeMap<String, Settlement>,
}

impl Load {
    async fn start(system: &System, prefix: &str) -> Load {
        // Far ahead, within what the chain accepts: no transfer expires
        // while the processes are killed and restarted.
        let valid_until = head(system).await + system.net.spec.max_validity_blocks / 2;
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
                        Settlement::new(&system.net, format!("{prefix}-{from}-{nonce}"), deal)
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
        let task = tokio::spawn(async move {
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
        Load {
            task,
            all_ids,
            by_id,
        }
    }

    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the load to end and every event to be final, then checks
    /// that at least a thousand were paid and that the audit is clean.
    /// Returns the final events.
    async fn finish(self, system: &System, rounds: usize) -> Vec<Event> {
        self.task.await.expect("the load ran to the end");
        // A transfer can be lost with a killed node's pool; the transaction
        // system re-submits whatever is still Registered (a node that knows
        // it says so) until every event is final.
        let client = system.client();
        let total = self.all_ids.len() as u64;
        let by_id = &self.by_id;
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
        let events = system.await_final(&self.all_ids).await;
        let completed = events
            .iter()
            .filter(|e| e.state == State::Completed)
            .count();
        eprintln!(
            "{rounds} fault rounds; {completed} of {total} settlements paid, the rest cancelled"
        );
        assert!(
            completed >= 1_000,
            "only {completed} of {total} settlements were paid"
        );
        let (code, report) = system.audit();
        assert_eq!(code, 0, "the audit found violations: {report:#}");
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_every_process_kind_during_load() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(4).await;
    let load = Load::start(&system, "chaos").await;

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
    load.finish(&system, round).await;
}

/// The faults of the chaos test on the broker and the database.
#[derive(Debug, Clone, Copy)]
enum EngineFault {
    /// The NATS server is killed with SIGKILL, and started again on the
    /// same port and store after a while.
    NatsKill,
    /// `pg_ctl stop -m immediate`, and a start after a while.
    PostgresStop,
    /// `pg_terminate_backend` of every bridge session, mid-batch or not.
    TerminateBackends,
    /// The first bridge aborts right after a commit, before its ack.
    CrashAfterCommit,
    /// The second bridge is stopped (SIGSTOP) for longer than the ack
    /// wait, then goes on (SIGCONT).
    StopSecondBridge,
}

/// Sends `signal` (STOP, CONT) to a process.
fn signal(process: &TestProcess, signal: &str) {
    let pid = process.pid().expect("the process runs");
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_nats_and_postgres_survive_every_engine_fault() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start_nats_on_postgres(4, 2).await;
    let load = Load::start(&system, "engine-chaos").await;
    let mut round = 0;
    let mut crashes = 0;
    while round < ROUNDS || !load.is_finished() {
        for fault in [
            EngineFault::NatsKill,
            EngineFault::PostgresStop,
            EngineFault::TerminateBackends,
            EngineFault::CrashAfterCommit,
            EngineFault::StopSecondBridge,
        ] {
            let before = head(&system).await;
            let started = Instant::now();
            match fault {
                EngineFault::NatsKill => system.nats.as_mut().expect("a NATS bus").kill(),
                EngineFault::PostgresStop => postgres(&mut system).stop_immediate(),
                EngineFault::TerminateBackends => {
                    postgres(&mut system).terminate_backends("ledger");
                }
                EngineFault::CrashAfterCommit => {
                    system.bridge.kill();
                    system.bridge.set_env(CRASH_AFTER_COMMIT_ENV, "1");
                    system.bridge.spawn();
                }
                EngineFault::StopSecondBridge => signal(&system.more_bridges[0], "STOP"),
            }
            match fault {
                EngineFault::CrashAfterCommit => {
                    // It dies by itself at its first commit that paid (or
                    // lives on if the other bridge took everything).
                    let deadline = Instant::now() + crate::harness::DEADLINE;
                    while system.bridge.is_running() && !load.is_finished() {
                        assert!(
                            Instant::now() < deadline,
                            "the bridge never crashed after a commit"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if !system.bridge.is_running() {
                        crashes += 1;
                    }
                }
                EngineFault::StopSecondBridge => {
                    // Past the ack wait: what it held is delivered again,
                    // to the other bridge.
                    await_blocks(&system, before + DOWN_FOR_BLOCKS).await;
                    let past_ack_wait = NATS_ACK_WAIT + Duration::from_secs(1);
                    tokio::time::sleep(past_ack_wait.saturating_sub(started.elapsed())).await;
                }
                _ => await_blocks(&system, before + DOWN_FOR_BLOCKS).await,
            }
            match fault {
                EngineFault::NatsKill => system.nats.as_mut().expect("a NATS bus").spawn(),
                EngineFault::PostgresStop => postgres(&mut system).restart(),
                EngineFault::TerminateBackends => {}
                EngineFault::CrashAfterCommit => {
                    system.bridge.kill();
                    system.bridge.remove_env(CRASH_AFTER_COMMIT_ENV);
                    system.bridge.spawn();
                }
                EngineFault::StopSecondBridge => signal(&system.more_bridges[0], "CONT"),
            }
            let back = head(&system).await;
            await_blocks(&system, back + DOWN_FOR_BLOCKS).await;
        }
        round += 1;
    }
    // The hook did abort a bridge between a commit and its ack.
    assert!(crashes >= 1, "no bridge crashed after a commit");
    let events = load.finish(&system, round).await;
    assert_each_event_paid_per_its_state(&system, &events);
}

/// The system's PostgreSQL server.
fn postgres(system: &mut System) -> &mut TestPostgres {
    system.postgres.as_mut().expect("a PostgreSQL ledger")
}

/// Beyond the audit, from the ledger's own rows: at most one payment row
/// per event id, a paid one for every Completed event, none for a
/// Cancelled one.
fn assert_each_event_paid_per_its_state(system: &System, events: &[Event]) {
    let rows = ledger_json(&system.ledger, &["payments", "--json"]);
    let mut paid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows.as_array().expect("payments as a JSON array") {
        let id = row["eventId"].as_str().expect("an event id").to_owned();
        let status = row["status"].as_str().expect("a status").to_owned();
        paid.entry(id).or_default().push(status);
    }
    let twice: Vec<_> = paid.iter().filter(|(_, rows)| rows.len() > 1).collect();
    assert!(twice.is_empty(), "more than one payment row: {twice:?}");
    for event in events {
        let rows = paid.get(&event.id).map(Vec::as_slice).unwrap_or_default();
        match event.state {
            State::Completed => assert_eq!(
                rows,
                ["Paid".to_owned()],
                "completed without one payment: {event:?}"
            ),
            State::Cancelled => assert!(rows.is_empty(), "cancelled but paid: {event:?}"),
            _ => panic!("not final: {event:?}"),
        }
    }
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
