//! A payment bound to its transfer: registrations that try to attach a payment to a transfer that does not commit to it.
//!
//! The stranger holds no key of anyone's and sees what anyone sees: the
//! chain's finalized transfers, and the event system's port. A transfer
//! that settles an event carries in its `reference` the commitment to that
//! event id and payment instruction, signed by the transfer's owner, so:
//!
//! - a registration that gives the signed transfer is refused (2004) unless
//!   the transfer commits to it;
//! - one that gives only the hash is accepted, and Cancelled as
//!   `notCommitted` once the confirmer has read the finalized transfer;
//!
//! and in neither case does anything reach the bus or the ledger. Each test
//! reads the ledger's payments and balances before and after, and checks
//! that the attacked events never were PendingAccount or Completed; the
//! last one pays an honest settlement alongside, so that "nothing paid" is
//! not merely a bridge that pays nothing.

use std::collections::BTreeMap;

use jsonrpsee::core::client::Error as ClientError;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_api::event::{settlement_commitment, PaymentInstruction, RegisterRequest};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::error::{NOT_COMMITTED, NOT_FOUND};
use lockstep_api::offchain::EventApiClient;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::SignedTx;
use parity_scale_codec::Encode;

use super::paid_events;
use crate::harness::exclusive;
use crate::system::{head, ledger_json, Deal, Settlement, System, CURRENCY};

/// Every ledger account's balance, in minor units.
fn balances(ledger: &str) -> BTreeMap<String, i128> {
    let all = ledger_json(ledger, &["balance", "--json"]);
    all["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            let id = a["id"].as_str().expect("an account id").to_owned();
            let balance = a["balance"].as_str().expect("a balance");
            (id, balance.parse().expect("a balance in minor units"))
        })
        .collect()
}

/// What the stranger would like paid: bob pays eve 7.77.
fn strangers_payment() -> PaymentInstruction {
    PaymentInstruction {
        payer: "bob".into(),
        payee: "eve".into(),
        amount: "777".into(),
        currency: CURRENCY.into(),
    }
}

/// A registration of `id` for `payment` with the signed transfer itself.
fn with_tx(id: &str, tx: &SignedTx, payment: PaymentInstruction) -> RegisterRequest {
    RegisterRequest {
        id: id.into(),
        tx: Some(to_hex(&tx.encode())),
        tx_hash: None,
        valid_until: None,
        payment,
    }
}

/// The same registration with only the transfer's hash and expiry.
fn by_hash(id: &str, tx: &SignedTx, payment: PaymentInstruction) -> RegisterRequest {
    RegisterRequest {
        id: id.into(),
        tx: None,
        tx_hash: Some(tx.hash()),
        valid_until: Some(tx.valid_until),
        payment,
    }
}

/// The refusal of a call that must be refused.
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorObjectOwned {
    match result {
        Err(ClientError::Call(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A chain-only transfer (no reference) from alice to bob, finalized.
async fn finalized_chain_only_transfer(system: &System) -> SignedTx {
    let tx = system.net.transfer("alice", 0, "bob", 1);
    system.net.submit(0, &tx).await;
    system.net.await_tx(0, &tx.hash()).await;
    tx
}

/// Asserts that `id` went Registered → Cancelled as not committed, and so
/// never was PendingAccount (no instruction ever left for it).
async fn assert_cancelled_not_committed(system: &System, id: &str) {
    let history = system
        .events_rpc()
        .history(id.to_owned())
        .await
        .expect("event_history");
    let states: Vec<State> = history.iter().map(|t| t.to).collect();
    assert_eq!(
        states,
        [State::Registered, State::Cancelled],
        "{id}: {history:?}"
    );
    assert_eq!(
        history[1].reason,
        Some(Reason::NotCommitted),
        "{id}: {history:?}"
    );
    assert!(
        history[1]
            .evidence
            .as_ref()
            .is_some_and(|e| e.block_hash.is_some()),
        "{id}: cancelled without the block that holds its transfer: {history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_registration_with_a_chain_only_transfer_is_refused() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(1).await;
    let before = balances(&system.ledger);
    let tx = finalized_chain_only_transfer(&system).await;

    let expected = settlement_commitment("stranger-tx", &strangers_payment());
    let refused = refusal(
        system
            .events_rpc()
            .register(with_tx("stranger-tx", &tx, strangers_payment()))
            .await,
    );
    assert_eq!(refused.code(), NOT_COMMITTED, "{refused:?}");
    assert!(
        refused.message().contains(&expected.to_string()),
        "the refusal names the reference the transfer would need: {refused:?}"
    );
    // The same in a batch: refused item by item.
    let items = system
        .events_rpc()
        .register_batch(vec![with_tx("stranger-tx", &tx, strangers_payment())])
        .await
        .expect("event_registerBatch");
    assert_eq!(
        items[0].error.as_ref().map(|e| e.code),
        Some(NOT_COMMITTED),
        "{items:?}"
    );

    // Nothing was registered, nothing reached the bus or the ledger.
    let unknown = refusal(system.events_rpc().get("stranger-tx".into()).await);
    assert_eq!(unknown.code(), NOT_FOUND, "{unknown:?}");
    let stats = system.stats().await.expect("event_stats");
    assert_eq!(
        (stats.registered, stats.pending_account, stats.completed),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.bus_depth, 0, "{stats:?}");
    assert!(paid_events(&system.ledger).is_empty());
    assert_eq!(balances(&system.ledger), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_registration_by_hash_is_cancelled_and_never_paid() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(1).await;
    let before = balances(&system.ledger);
    let tx = finalized_chain_only_transfer(&system).await;

    // Accepted: a hash alone proves nothing either way, until the
    // confirmer reads the finalized transfer.
    let registered = system
        .events_rpc()
        .register(by_hash("stranger-hash", &tx, strangers_payment()))
        .await
        .expect("a registration by hash is accepted");
    assert_eq!(registered.state, State::Registered);

    let event = system
        .await_final(&["stranger-hash".into()])
        .await
        .remove(0);
    assert_eq!(event.state, State::Cancelled, "{event:?}");
    assert!(event.receipt.is_none(), "{event:?}");
    assert_cancelled_not_committed(&system, "stranger-hash").await;
    let stats = system.stats().await.expect("event_stats");
    assert_eq!((stats.cancelled, stats.bus_depth), (1, 0), "{stats:?}");
    assert!(paid_events(&system.ledger).is_empty());
    assert_eq!(balances(&system.ledger), before);

    // The audit agrees: a Cancelled event whose transfer succeeded but does
    // not commit to it is owed nothing.
    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
    assert_eq!(
        report["summary"]["commitments"]["notCommitted"], 1,
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_committing_to_another_event_or_payment_pays_nothing_for_this_one() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(1).await;
    let before = balances(&system.ledger);
    let client = system.client();
    let valid_until = head(&system).await + 1_000;
    let deal = |nonce: u64, cents: u128| Deal {
        from: "alice",
        nonce,
        to: "bob",
        asset: 1,
        cents,
        valid_until,
    };

    // The control: an honest settlement, registered by hash as the bench
    // registers, is paid.
    let honest = Settlement::new(&system.net, "commit-honest".into(), deal(0, 100));
    system
        .events_rpc()
        .register(by_hash(&honest.id, &honest.tx, honest.payment()))
        .await
        .expect("register the honest settlement");
    honest.submit(&client, 0).await;

    // Another event's transfer: it commits to `commit-a`; the stranger
    // registers it as `commit-b` (the same instruction).
    let other_event = Settlement::new(&system.net, "commit-a".into(), deal(1, 200));
    let refused = refusal(
        system
            .events_rpc()
            .register(with_tx("commit-b", &other_event.tx, other_event.payment()))
            .await,
    );
    assert_eq!(refused.code(), NOT_COMMITTED, "{refused:?}");
    system
        .events_rpc()
        .register(by_hash("commit-b", &other_event.tx, other_event.payment()))
        .await
        .expect("a registration by hash is accepted");
    other_event.submit(&client, 0).await;

    // Another instruction under the committed id: the signer committed to
    // bob paying alice; the stranger registers bob paying eve.
    let other_payee = Settlement::new(&system.net, "commit-c".into(), deal(2, 300));
    let to_eve = PaymentInstruction {
        payee: "eve".into(),
        ..other_payee.payment()
    };
    let refused = refusal(
        system
            .events_rpc()
            .register(with_tx("commit-c", &other_payee.tx, to_eve.clone()))
            .await,
    );
    assert_eq!(refused.code(), NOT_COMMITTED, "{refused:?}");
    system
        .events_rpc()
        .register(by_hash("commit-c", &other_payee.tx, to_eve))
        .await
        .expect("a registration by hash is accepted");
    other_payee.submit(&client, 0).await;

    let ids = ["commit-honest", "commit-b", "commit-c"].map(String::from);
    let events = system.await_final(&ids).await;
    assert_eq!(events[0].state, State::Completed, "{:?}", events[0]);
    for event in &events[1..] {
        assert_eq!(event.state, State::Cancelled, "{event:?}");
        assert!(event.receipt.is_none(), "{event:?}");
        assert_cancelled_not_committed(&system, &event.id).await;
    }

    // Exactly the honest payment: bob paid alice 1.00, and nobody else's
    // balance moved (eve's least of all).
    assert_eq!(paid_events(&system.ledger), ["commit-honest"]);
    let mut expected = before;
    *expected.get_mut("bob").expect("bob's account") -= 100;
    *expected.get_mut("alice").expect("alice's account") += 100;
    assert_eq!(balances(&system.ledger), expected);

    let (code, report) = system.audit();
    assert_eq!(code, 0, "the audit found violations: {report:#}");
}
