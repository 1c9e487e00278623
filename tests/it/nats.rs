//! The message bus on NATS JetStream, on the whole system as real
//! processes with a `nats-server` of the test's own ([`System::start_nats`]):
//! every event settles and is paid once; killing the NATS server with
//! SIGKILL mid-run and starting it again on the same port and store loses
//! and doubles nothing; two bridges on one durable consumer and one ledger
//! share the work and pay nothing twice. The event system answers
//! `bus_pull` with its stable refusal, since bridges consume from NATS.
//! Messages published to the stream by anyone but the event system
//! (garbage, unsigned, signed by another key, a genuine one tampered with
//! or replayed) pay nothing.
//!
//! Each test needs `nats-server` (Debian's package; `scripts/test.sh`
//! installs it) and fails without it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use lockstep_api::broker;
use lockstep_api::bus::BusMessage;
use lockstep_api::event::PaymentInstruction;
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{error, BusApiClient};
use lockstep_runtime::crypto::DEV_NAMES;
use lockstep_runtime::Keypair;

use crate::attacks::{metric, paid_events, scrape};
use crate::harness::{exclusive, DEADLINE};
use crate::system::{events_client, head, ledger_json, Client, Deal, Settlement, System, CURRENCY};

/// `per_account` settlements from every dev account to the next one.
fn settlements(system: &System, tag: &str, per_account: u64, valid_until: u64) -> Vec<Settlement> {
    let mut list = Vec::new();
    for (k, from) in DEV_NAMES.iter().enumerate() {
        let to = DEV_NAMES[(k + 1) % DEV_NAMES.len()];
        for nonce in 0..per_account {
            let deal = Deal {
                from,
                nonce,
                to,
                asset: 1 + u128::from(nonce % 5),
                cents: 100 + u128::from(nonce),
                valid_until,
            };
            list.push(Settlement::new(
                &system.net,
                format!("{tag}-{from}-{nonce}"),
                deal,
            ));
        }
    }
    list
}

/// Registers and submits each settlement, one sender per dev account,
/// each pacing itself by `pace`.
async fn send_all(client: Client, list: Vec<Settlement>, pace: Duration) {
    let per_account = list.len() / DEV_NAMES.len();
    let senders = list
        .chunks(per_account.max(1))
        .map(|chunk| chunk.to_vec())
        .enumerate()
        .map(|(k, chunk)| {
            let client = client.clone();
            async move {
                let mut tick = tokio::time::interval(pace);
                for s in chunk {
                    tick.tick().await;
                    s.register(&client).await;
                    s.submit(&client, k).await;
                }
            }
        });
    futures::future::join_all(senders).await;
}

/// Waits until every one of `ids` is final; checks each is Completed, that
/// the ledger holds exactly one payment for each and nothing else, and
/// that the audit is clean.
async fn assert_paid_once(system: &System, ids: &[String]) {
    for event in system.await_final(ids).await {
        assert_eq!(event.state, State::Completed, "{event:?}");
        assert!(
            event.receipt.is_some(),
            "completed without receipt: {event:?}"
        );
    }
    let paid = paid_events(&system.ledger);
    let distinct: BTreeSet<&String> = paid.iter().collect();
    assert_eq!(distinct.len(), paid.len(), "an event was paid twice");
    let expected: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct, expected,
        "the ledger's payments are not the events'"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_on_nats_complete_and_are_paid_once() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_nats(4, 1).await;
    let valid_until = head(&system).await + 2_000;
    let list = settlements(&system, "nats", 25, valid_until);
    let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
    send_all(system.client(), list, Duration::from_millis(20)).await;
    assert_paid_once(&system, &ids).await;

    // The bridges consume from NATS: the event system does not serve its
    // embedded bus, and says so with a stable code.
    let bridge = events_client(&system.events_url, Some(&system.tokens.bridge));
    let refused = BusApiClient::pull(&bridge, Some(10), None)
        .await
        .expect_err("bus_pull on an event system whose bus is NATS");
    match refused {
        jsonrpsee::core::client::Error::Call(e) => {
            assert_eq!(e.code(), error::BUS_NOT_SERVED, "{e:?}")
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    let stats = system.stats().await.expect("stats");
    assert_eq!(stats.pending_account, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_run_loses_and_doubles_nothing() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start_nats(4, 1).await;
    let valid_until = head(&system).await + system.net.spec.max_validity_blocks / 2;
    let list = settlements(&system, "natskill", 40, valid_until);
    let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
    let total = ids.len() as u64;

    let load = tokio::spawn(send_all(system.client(), list, Duration::from_millis(150)));

    // Kill -9 the broker twice while settlements flow, each time once
    // some more were paid, and start it again on the same port and store.
    for round in 1..=2u64 {
        system
            .await_condition("settlements paid before the fault", || async {
                system
                    .stats()
                    .await
                    .is_some_and(|s| s.completed >= round * 40 || s.completed == total)
            })
            .await;
        let nats = system.nats.as_mut().expect("the NATS server");
        nats.kill();
        let down = head(&system).await;
        await_blocks(&system, down + 8).await;
        system.nats.as_mut().expect("the NATS server").spawn();
    }
    load.await.expect("the load ran to the end");
    assert_paid_once(&system, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_one_consumer_share_the_work_and_pay_once() {
    let _one_at_a_time = exclusive().await;
    let system = System::start_nats(4, 2).await;
    let valid_until = head(&system).await + 2_000;
    let list = settlements(&system, "natstwo", 40, valid_until);
    let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
    send_all(system.client(), list, Duration::from_millis(30)).await;
    assert_paid_once(&system, &ids).await;

    // Each bridge paid a share; together, each event once.
    let mut shares = Vec::new();
    for port in &system.bridge_metrics_ports {
        let text = scrape(*port).expect("the bridge's metrics");
        shares.push(metric(&text, "lockstep_bridge_payments_total").expect("payments"));
    }
    eprintln!("payments per bridge: {shares:?}");
    assert_eq!(shares.len(), 2);
    assert_eq!(shares.iter().sum::<u64>(), ids.len() as u64, "{shares:?}");
    assert!(
        shares.iter().all(|&n| n > 0),
        "a bridge paid nothing: {shares:?}"
    );
}

/// Registers and submits `id`: the first transfer (nonce 0) of one asset
/// unit from `from` to `to`, for which `to` pays `from` `cents`.
async fn send_first(
    system: &System,
    client: &Client,
    id: &str,
    (from, to, cents): (&str, &str, u128),
    valid_until: u64,
) -> Settlement {
    let deal = Deal {
        from,
        nonce: 0,
        to,
        asset: 1,
        cents,
        valid_until,
    };
    let settlement = Settlement::new(&system.net, id.into(), deal);
    settlement.register(client).await;
    settlement.submit(client, 0).await;
    settlement
}

/// Publishes `payload` to the bus's stream, as anyone who reaches the NATS
/// server can (Lockstep's bus needs the server's own access control for
/// that: the bridge's defence is the event system's signature), with
/// `msg_id` as its `Nats-Msg-Id`; waits for JetStream's acknowledgement.
async fn publish_raw(jetstream: &async_nats::jetstream::Context, msg_id: &str, payload: Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(broker::MSG_ID_HEADER, msg_id);
    jetstream
        .publish_with_headers(broker::DEFAULT_SUBJECT, headers, payload.into())
        .await
        .expect("publish to the stream")
        .await
        .expect("the stream's acknowledgement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructions_published_to_the_stream_by_a_stranger_are_not_paid() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start_nats(4, 1).await;
    let metrics_port = system.bridge_metrics_ports[0];
    let valid_until = head(&system).await + 2_000;
    let nats = async_nats::connect(system.nats.as_ref().expect("NATS").url())
        .await
        .expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(nats.clone());

    // A genuine instruction, seen on its way to the bridge by anyone who
    // may subscribe to the subject, and paid.
    let mut seen = nats
        .subscribe(broker::DEFAULT_SUBJECT)
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush the subscription");
    let client = system.client();
    let genuine = send_first(
        &system,
        &client,
        "genuine-1",
        ("alice", "bob", 555),
        valid_until,
    )
    .await;
    let copied: BusMessage = loop {
        let message = tokio::time::timeout(DEADLINE, seen.next())
            .await
            .expect("the genuine instruction on the subject")
            .expect("the subscription");
        let decoded: BusMessage = serde_json::from_slice(&message.payload).expect("a bus message");
        if decoded.event_id == genuine.id {
            break decoded;
        }
    };
    let settled = system.await_final(std::slice::from_ref(&genuine.id)).await;
    assert_eq!(settled[0].state, State::Completed);

    // The stranger's messages: garbage; an instruction with no signature;
    // one signed by a key of the stranger's own; the genuine one with the
    // payee changed to the stranger's friend; and the genuine one again.
    let strangers_payment = PaymentInstruction {
        payer: "bob".into(),
        payee: "eve".into(),
        amount: "777".into(),
        currency: CURRENCY.into(),
    };
    let forged = |id: &str| BusMessage {
        message_id: id.into(),
        event_id: id.into(),
        payment: strangers_payment.clone(),
        signature: None,
        ..copied.clone()
    };
    let unsigned = forged("stranger-unsigned");
    let self_signed = forged("stranger-self-signed").signed(&Keypair::generate());
    let mut tampered = copied.clone();
    tampered.payment.payee = "eve".into();
    let stranger_ids = [
        "stranger-garbage",
        "stranger-unsigned",
        "stranger-self-signed",
    ];
    publish_raw(&jetstream, "stranger-garbage", b"{\"eventId\":".to_vec()).await;
    for (msg_id, message) in [
        ("stranger-unsigned", &unsigned),
        ("stranger-self-signed", &self_signed),
        ("stranger-tampered", &tampered),
        ("stranger-replayed", &copied),
    ] {
        let payload = serde_json::to_vec(message).expect("encode");
        publish_raw(&jetstream, msg_id, payload).await;
    }

    // Each is taken from the stream and set aside (or, the replay,
    // absorbed): counted, and the bridge goes on.
    system
        .await_condition("the bridge to refuse the stranger's messages", || async {
            scrape(metrics_port).is_some_and(|text| {
                metric(&text, "lockstep_bridge_unsigned_instructions_total") >= Some(3)
                    && metric(&text, "lockstep_bridge_invalid_total") >= Some(1)
                    && metric(&text, "lockstep_bridge_duplicates_total") >= Some(1)
            })
        })
        .await;
    assert!(system.bridge.is_running(), "the bridge stopped");

    // And the system still settles: a later event is paid; the ledger holds
    // exactly the two genuine payments, nothing for the stranger, and the
    // genuine one once, to bob.
    let later = send_first(
        &system,
        &client,
        "genuine-2",
        ("charlie", "dave", 444),
        valid_until,
    )
    .await;
    assert_paid_once(&system, &[genuine.id.clone(), later.id.clone()]).await;
    let rows = ledger_json(&system.ledger, &["payments", "--json"]);
    for row in rows.as_array().expect("payments") {
        assert_ne!(row["payee"], "eve", "the stranger's payee was paid: {row}");
        let id = row["eventId"].as_str().expect("an event id");
        assert!(
            !stranger_ids.contains(&id),
            "a stranger's event paid: {row}"
        );
    }
    let text = scrape(metrics_port).expect("the bridge's metrics");
    assert_eq!(metric(&text, "lockstep_bridge_payments_total"), Some(2));
}
