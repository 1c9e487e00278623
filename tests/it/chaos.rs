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

use std::time::{Duration, Instant};

use lockstep_service::test_utils::TestPostgres;

use crate::harness::exclusive;
use crate::load::{await_blocks, Load};
use crate::system::{head, System, NATS_ACK_WAIT};

/// The bridge's crash hook (`lockstep_bridge::CRASH_AFTER_COMMIT_ENV`; the
/// bridge is built with its `test-hooks` feature for these tests).
const CRASH_AFTER_COMMIT_ENV: &str = "LOCKSTEP_BRIDGE_CRASH_AFTER_COMMIT";

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
    eprintln!("{round} fault rounds");
    load.finish(&system, 1_000).await;
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
                EngineFault::StopSecondBridge => system.more_bridges[0].pause(),
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
                EngineFault::StopSecondBridge => system.more_bridges[0].resume(),
            }
            let back = head(&system).await;
            await_blocks(&system, back + DOWN_FOR_BLOCKS).await;
        }
        round += 1;
    }
    // The hook did abort a bridge between a commit and its ack.
    assert!(crashes >= 1, "no bridge crashed after a commit");
    eprintln!("{round} rounds of engine faults");
    load.finish(&system, 1_000).await;
}

/// The system's PostgreSQL server.
fn postgres(system: &mut System) -> &mut TestPostgres {
    system.postgres.as_mut().expect("a PostgreSQL ledger")
}
