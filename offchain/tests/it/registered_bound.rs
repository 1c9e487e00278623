//! The bound on the events one credential holds in Registered
//! (`--max-registered-per-credential`): a credential at its bound is
//! refused with 2054 while another still registers; an event that leaves
//! Registered (confirmed, or cancelled as expired) makes room again; a
//! registration made already is answered as before and counted once; and
//! after a restart on the same store the count is what it was.

use std::path::Path;

use jsonrpsee::http_client::HttpClient;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_api::event::{Event, RegisterRequest};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::error::{TooManyPending, TOO_MANY_PENDING};
use lockstep_api::offchain::EventApiClient;
use lockstep_offchain::store::EventStore;
use lockstep_offchain::test_utils::{DevCredential, EventSystem};
use lockstep_runtime::{Keypair, SignedTx};
use lockstep_service::auth::Refusal;

use crate::harness::{answer, bridge_key, register_request, DevNode, VALID_UNTIL};

/// The bound these tests run with.
const BOUND: u64 = 3;

/// An event system on `node` keeping its store in `base` (so that a second
/// one can take it over), with [`BOUND`].
async fn start(node: &DevNode, base: &Path) -> EventSystem {
    let base = base.to_path_buf();
    EventSystem::start_with(vec![node.url()], bridge_key().public(), move |config| {
        config.base_path = base;
        config.quorum = "1/1".parse().unwrap();
        config.max_registered_per_credential = BOUND;
    })
    .await
}

/// Stops `events`, whose store is in `base`, and checks that the store is
/// closed once `stop` returns (the registration writer's thread has let go
/// of it): RocksDB refuses to open a store another instance holds.
async fn stop(events: EventSystem, base: &Path) {
    events.stop().await;
    let path = base.join("events");
    if let Err(e) = EventStore::open(&path, false) {
        panic!("the event store is still open after stop: {e}");
    }
}

/// Event `<from>-<nonce>`: `from`'s transfer to bob with that nonce,
/// valid until `valid_until`, settling it with `payment(i)`.
fn settlement(
    node: &DevNode,
    from: &str,
    nonce: u64,
    valid_until: u64,
    i: usize,
) -> (RegisterRequest, SignedTx) {
    let id = format!("{from}-{nonce}");
    let bob = Keypair::dev("bob").public();
    let tx = node.settling(from, nonce, valid_until, bob, 10, (&id, i));
    (register_request(&id, &tx, i), tx)
}

/// alice's transfer with `nonce`, as event `alice-<nonce>`.
fn alice(node: &DevNode, nonce: u64) -> (RegisterRequest, SignedTx) {
    settlement(node, "alice", nonce, VALID_UNTIL, nonce as usize)
}

/// What a registration fixes of an event (the reconciler's schedule may
/// change meanwhile).
fn identity(event: &Event) -> (String, lockstep_runtime::Hash, u64) {
    (event.id.clone(), event.tx_hash, event.created_at_ms)
}

async fn register(
    client: &HttpClient,
    request: RegisterRequest,
) -> Result<Event, ErrorObjectOwned> {
    answer(client.register(request).await)
}

/// Checks that `refused` is the bound's refusal of a credential holding
/// `BOUND` events, and that it names no secret.
fn assert_at_bound(refused: &ErrorObjectOwned) {
    assert_eq!(refused.code(), TOO_MANY_PENDING, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("\"dev-submitter\" holds 3") && message.contains("is 3"),
        "the message names the credential, its count and the bound: {message}"
    );
    assert!(!message.contains(DevCredential::Submitter.token().expose_secret()));
    let data: TooManyPending =
        serde_json::from_str(refused.data().expect("data").get()).expect("{bound, registered}");
    assert_eq!(
        data,
        TooManyPending {
            bound: BOUND,
            registered: BOUND
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_holds_at_most_its_bound_of_registered_events() {
    let node = DevNode::start().await;
    let base = tempfile::tempdir().unwrap();
    let events = start(&node, base.path()).await;
    let submitter = events.http_as(Some(DevCredential::Submitter.token()));
    let other = events.http_as(Some(DevCredential::Operator.token()));
    let store = events.service().store.clone();

    // Three Registered: the bound. The fourth is refused, and nothing of
    // it is stored.
    let mut first = Vec::new();
    for nonce in 0..3 {
        first.push(register(&submitter, alice(&node, nonce).0).await.unwrap());
    }
    assert!(first.iter().all(|e| e.state == State::Registered));
    assert_at_bound(&register(&submitter, alice(&node, 3).0).await.unwrap_err());
    assert!(store.get("alice-3").unwrap().is_none());
    // A registration made already is answered as before (the same event,
    // registered when it was), and not counted again; in a batch, item by
    // item.
    let again = register(&submitter, alice(&node, 0).0).await.unwrap();
    assert_eq!(identity(&again), identity(&first[0]));
    let items = submitter
        .register_batch(vec![alice(&node, 1).0, alice(&node, 3).0])
        .await
        .unwrap();
    assert_eq!(
        items[0].result.as_ref().map(identity),
        Some(identity(&first[1]))
    );
    assert_eq!(
        items[1].error.as_ref().map(|e| e.code),
        Some(TOO_MANY_PENDING)
    );
    assert_eq!(store.registered_by("dev-submitter"), 3);
    // Another credential is not held back.
    register(&other, settlement(&node, "charlie", 0, VALID_UNTIL, 100).0)
        .await
        .unwrap();
    assert_eq!(store.registered_by("dev-operator"), 1);
    assert_eq!(events.service().refusals.get(Refusal::TooManyPending), 2);

    // Confirmed: alice-0 leaves Registered, and makes room for one.
    node.submit(&alice(&node, 0).1).await;
    events.await_transition("alice-0", "PendingAccount").await;
    assert_eq!(store.registered_by("dev-submitter"), 2);
    // Cancelled: a transfer never submitted expires, and makes room too.
    let valid_until = node.head().await + 3;
    let (expiring, _) = settlement(&node, "dave", 0, valid_until, 101);
    register(&submitter, expiring).await.unwrap();
    events.await_transition("dave-0", "Cancelled").await;
    assert_eq!(store.registered_by("dev-submitter"), 2);
    register(&submitter, alice(&node, 3).0).await.unwrap();
    assert_at_bound(&register(&submitter, alice(&node, 4).0).await.unwrap_err());

    // Restarted on the same store: the count is what it was.
    drop(store);
    stop(events, base.path()).await;
    let events = start(&node, base.path()).await;
    let submitter = events.http_as(Some(DevCredential::Submitter.token()));
    let other = events.http_as(Some(DevCredential::Operator.token()));
    let store = events.service().store.clone();
    assert_eq!(
        (
            store.registered_by("dev-submitter"),
            store.registered_by("dev-operator")
        ),
        (3, 1)
    );
    assert_at_bound(&register(&submitter, alice(&node, 4).0).await.unwrap_err());
    register(&other, settlement(&node, "charlie", 1, VALID_UNTIL, 102).0)
        .await
        .unwrap();
    // And it goes down as before: alice-1 confirmed makes room.
    node.submit(&alice(&node, 1).1).await;
    events.await_transition("alice-1", "PendingAccount").await;
    let registered = register(&submitter, alice(&node, 4).0).await.unwrap();
    assert_eq!(registered.state, State::Registered);
    assert_eq!(store.registered_by("dev-submitter"), 3);
    assert_eq!(events.service().refusals.get(Refusal::TooManyPending), 1);

    drop(store);
    stop(events, base.path()).await;
    node.stop().await;
}
