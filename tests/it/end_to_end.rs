//! The method end to end, on the whole system as real processes: hundreds
//! of transfers with their fiat payments all complete; a transfer that
//! fails on chain and one registered but never submitted are cancelled and
//! pay nothing; the audit finds no violation.

use crate::harness::exclusive;
use crate::system::{head, Deal, Settlement, System};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::EventApiClient;
use lockstep_runtime::crypto::DEV_NAMES;

/// Transfers per dev account.
const PER_ACCOUNT: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_settle_and_the_audit_is_clean() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(4).await;
    let valid_until = head(&system).await + 2_000;

    // Every dev account sends PER_ACCOUNT transfers to the next one, which
    // pays for each in the ledger.
    let mut paid = Vec::new();
    for (k, from) in DEV_NAMES.iter().enumerate() {
        let to = DEV_NAMES[(k + 1) % DEV_NAMES.len()];
        for nonce in 0..PER_ACCOUNT {
            let deal = Deal {
                from,
                nonce,
                to,
                asset: 10,
                cents: 100 + u128::from(nonce),
                valid_until,
            };
            paid.push(Settlement::new(
                &system.net,
                format!("e2e-{from}-{nonce}"),
                deal,
            ));
        }
    }
    // Accounts with no asset: included, failed, so cancelled.
    let failing: Vec<Settlement> = (0..10)
        .map(|i| {
            let from = format!("broke-{i}");
            let deal = Deal {
                from: &from,
                nonce: 0,
                to: "alice",
                asset: 1,
                cents: 500,
                valid_until,
            };
            Settlement::new(&system.net, format!("e2e-broke-{i}"), deal)
        })
        .collect();
    // Registered, never submitted, expiring soon: cancelled after expiry.
    let soon = head(&system).await + 5;
    let unsubmitted: Vec<Settlement> = (0..5)
        .map(|i| {
            let deal = Deal {
                from: "alice",
                nonce: 10_000 + i,
                to: "bob",
                asset: 1,
                cents: 700,
                valid_until: soon,
            };
            Settlement::new(&system.net, format!("e2e-unsent-{i}"), deal)
        })
        .collect();

    let client = system.client();
    for s in &unsubmitted {
        s.register(&client).await;
    }
    for (i, s) in paid.iter().chain(&failing).enumerate() {
        s.register(&client).await;
        s.submit(&client, i).await;
    }

    let ids = |list: &[Settlement]| list.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    for event in system.await_final(&ids(&paid)).await {
        assert_eq!(event.state, State::Completed, "{event:?}");
        assert!(
            event.receipt.is_some(),
            "completed without receipt: {event:?}"
        );
    }
    for event in system.await_final(&ids(&failing)).await {
        assert_eq!(event.state, State::Cancelled, "{event:?}");
        assert!(
            event.receipt.is_none(),
            "a cancelled event was paid: {event:?}"
        );
    }
    for event in system.await_final(&ids(&unsubmitted)).await {
        assert_eq!(event.state, State::Cancelled, "{event:?}");
    }

    let history = system
        .events_rpc()
        .history(paid[0].id.clone())
        .await
        .expect("history");
    let states: Vec<State> = history.iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [State::Registered, State::PendingAccount, State::Completed],
        "{history:?}"
    );

    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
}
