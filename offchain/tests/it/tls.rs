//! TLS on both sides of the event system: it follows and asks a node that
//! serves https:// and wss:// through the CA it is given
//! (`Config::node_cas`, `--ca-file`), and serves its own interface over
//! TLS (`Config::tls`, `--tls-cert`/`--tls-key`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use lockstep_api::client::{self, ClientOptions};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::EventApiClient;
use lockstep_offchain::test_utils::{DevCredential, EventSystem};
use lockstep_runtime::Keypair;
use lockstep_service::test_utils::TestCa;

use crate::harness::{bridge_key, register_request, DevNode, VALID_UNTIL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_system_confirms_through_a_tls_node_and_serves_tls_itself() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = TestCa::new(&dir.path().join("node"));
    let own_ca = TestCa::new(&dir.path().join("events"));
    let node = DevNode::start_tls(&node_ca).await;
    assert!(node.url().starts_with("https://"), "{}", node.url());
    let events = EventSystem::start_tls(
        vec![node.url()],
        bridge_key().public(),
        own_ca.server_tls(),
        own_ca.trusted_cas(),
        |config| config.node_cas = Some(node_ca.trusted_cas()),
    )
    .await;
    assert!(events.url().starts_with("https://"), "{}", events.url());

    // The watcher follows the node's heads over wss://, and the quorum
    // asks it over https://: the transfer's event moves.
    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 500, ("tls-1", 1));
    let registered = events
        .http
        .register(register_request("tls-1", &tx, 1))
        .await
        .unwrap();
    assert_eq!(registered.state, State::Registered);
    node.submit(&tx).await;
    let pending = events.await_state("tls-1", "PendingAccount").await;
    assert_eq!(pending.state, State::PendingAccount);
    let metrics = events.service().metrics.clone();
    events
        .await_metrics(|m| m.watcher_height.load(Ordering::Relaxed) >= 1)
        .await;
    assert_eq!(metrics.watcher_failovers.load(Ordering::Relaxed), 0);

    // Its own port: a caller with a token but without its CA is refused
    // before any call; plain HTTP gets no answer.
    let token = Some(DevCredential::Reader.token());
    let timeout = Duration::from_secs(10);
    let no_ca = ClientOptions::new(timeout).with_token(token.clone());
    let refused = client::http_with(&events.url(), &no_ca)
        .unwrap()
        .stats()
        .await
        .unwrap_err();
    let described = client::describe(&refused);
    assert!(described.contains("certificate"), "{described}");
    let plain_url = format!("http://{}", events.addr);
    let plain = client::http_with(&plain_url, &no_ca)
        .unwrap()
        .stats()
        .await
        .unwrap_err();
    assert_eq!(client::refusal_code(&plain), None, "{plain}");
    // With its CA, the reader reads.
    let reader = events.http_as(token);
    assert_eq!(reader.stats().await.unwrap().pending_account, 1);
    events.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_system_without_the_nodes_ca_does_not_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = TestCa::new(&dir.path().join("node"));
    let other_ca = TestCa::new(&dir.path().join("other"));
    let node = DevNode::start_tls(&node_ca).await;
    for node_cas in [None, Some(other_ca.trusted_cas())] {
        let events = EventSystem::start_with(vec![node.url()], bridge_key().public(), |config| {
            config.node_cas = node_cas;
        })
        .await;
        events
            .await_metrics(|m| m.watcher_failovers.load(Ordering::Relaxed) >= 2)
            .await;
        let metrics = &events.service().metrics;
        assert_eq!(metrics.watcher_height.load(Ordering::Relaxed), 0);
        events.stop().await;
    }
    node.stop().await;
}
