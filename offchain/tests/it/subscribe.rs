//! `event_subscribe` with a filter: a subscriber following some events
//! receives theirs only, in seq order, live and replayed; hostile filters
//! are refused with stable codes before anything streams.

use jsonrpsee::core::client::{Error as ClientError, Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use lockstep_api::event::{PaymentReceipt, Transition};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{error, EventApiClient, TransitionFilter, MAX_FILTER_IDS};
use lockstep_runtime::Keypair;
use serde_json::{json, Value};

use crate::harness::{bridge_key, DevNode, EventSystem, PATIENCE, VALID_UNTIL};

/// The next transition of `feed`; panics if it ends or stays silent for
/// [`PATIENCE`].
async fn next(feed: &mut Subscription<Transition>) -> Transition {
    tokio::time::timeout(PATIENCE, feed.next())
        .await
        .expect("a transition in time")
        .expect("the feed is open")
        .expect("a transition that decodes")
}

/// The next `n` transitions of `feed`.
async fn take(feed: &mut Subscription<Transition>, n: usize) -> Vec<Transition> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(feed).await);
    }
    out
}

fn seqs(transitions: &[Transition]) -> Vec<u64> {
    transitions.iter().map(|t| t.seq).collect()
}

async fn post_receipt(events: &EventSystem, id: &str) {
    let receipt = PaymentReceipt::sign(&bridge_key(), id, &format!("ledger-{id}"));
    events
        .call("event_postReceipt", rpc_params![receipt])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_subscriber_gets_only_the_events_it_follows_in_seq_order() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let bob = Keypair::dev("bob").public();

    // Open before anything happens: one follows "one-a" only, the other
    // sees everything (the control).
    let mut followed = events
        .ws
        .subscribe_transitions(None, Some(TransitionFilter::event_ids(["one-a"])))
        .await
        .unwrap();
    let mut everything = events.ws.subscribe_transitions(None, None).await.unwrap();

    let ids = ["one-a", "one-b", "two-c"];
    for (i, (id, from)) in ids.iter().zip(["alice", "charlie", "dave"]).enumerate() {
        let tx = node.settling(from, 0, VALID_UNTIL, bob, 5, (id, i));
        events.register(id, &tx, i).await.unwrap();
        node.submit(&tx).await;
    }
    for id in ids {
        events.await_state(id, State::PendingAccount).await;
    }
    // The others move before "one-a"'s last transition, so anything of
    // theirs that leaked into the filtered stream would come before it.
    post_receipt(&events, "one-b").await;
    post_receipt(&events, "one-a").await;

    // Everything: 3 registrations, 3 confirmations, 2 receipts.
    let all = take(&mut everything, 8).await;
    assert_eq!(seqs(&all), (1..=8).collect::<Vec<u64>>());
    let of_a: Vec<Transition> = all
        .iter()
        .filter(|t| t.event_id == "one-a")
        .cloned()
        .collect();
    assert_eq!(of_a.len(), 3);
    let b_paid = all
        .iter()
        .find(|t| t.event_id == "one-b" && t.to == State::Completed)
        .expect("one-b completed");
    assert!(b_paid.seq < of_a[2].seq, "one-b was paid before one-a");

    // The filtered stream up to "one-a"'s final transition: exactly its
    // three transitions, with their global seqs, nothing of the others.
    let mut got = Vec::new();
    loop {
        let transition = next(&mut followed).await;
        assert_eq!(transition.event_id, "one-a", "{transition:?} leaked");
        let last = transition.to.is_final();
        got.push(transition);
        if last {
            break;
        }
    }
    assert_eq!(got, of_a);
    assert_eq!(
        got.iter().map(|t| t.to).collect::<Vec<_>>(),
        [State::Registered, State::PendingAccount, State::Completed]
    );

    // fromSeq with a filter replays the histories, merged in seq order;
    // an id given twice streams once, an unknown one nothing.
    let replay_filter = TransitionFilter::event_ids(["two-c", "one-a", "two-c", "never"]);
    let mut replay = events
        .ws
        .subscribe_transitions(Some(1), Some(replay_filter))
        .await
        .unwrap();
    let of_a_and_c: Vec<Transition> = all
        .iter()
        .filter(|t| t.event_id == "one-a" || t.event_id == "two-c")
        .cloned()
        .collect();
    assert_eq!(take(&mut replay, 5).await, of_a_and_c);
    // From the middle of "one-a"'s history: the rest of it.
    let mut rest = events
        .ws
        .subscribe_transitions(
            Some(of_a[1].seq),
            Some(TransitionFilter::event_ids(["one-a", "two-c"])),
        )
        .await
        .unwrap();
    let expected_rest: Vec<Transition> = of_a_and_c
        .iter()
        .filter(|t| t.seq >= of_a[1].seq)
        .cloned()
        .collect();
    assert_eq!(take(&mut rest, expected_rest.len()).await, expected_rest);

    // An idPrefix, replayed: "one-" events only, in seq order.
    let mut by_prefix = events
        .ws
        .subscribe_transitions(Some(1), Some(TransitionFilter::id_prefix("one-")))
        .await
        .unwrap();
    let of_one: Vec<Transition> = all
        .iter()
        .filter(|t| t.event_id.starts_with("one-"))
        .cloned()
        .collect();
    assert_eq!(of_one.len(), 6);
    assert_eq!(take(&mut by_prefix, 6).await, of_one);
    // States: only transitions into Completed.
    let completed = TransitionFilter {
        states: Some(vec![State::Completed]),
        ..TransitionFilter::default()
    };
    let mut finals = events
        .ws
        .subscribe_transitions(Some(1), Some(completed))
        .await
        .unwrap();
    let got = take(&mut finals, 2).await;
    assert_eq!(
        got.iter().map(|t| t.event_id.as_str()).collect::<Vec<_>>(),
        ["one-b", "one-a"]
    );

    // Live: a subscriber following "one-a" (final already) and "two-c"
    // gets "two-c"'s next transition, as do the others that match it.
    let mut live = events
        .ws
        .subscribe_transitions(None, Some(TransitionFilter::event_ids(["one-a", "two-c"])))
        .await
        .unwrap();
    post_receipt(&events, "two-c").await;
    let c_paid = next(&mut live).await;
    assert_eq!(
        (c_paid.event_id.as_str(), c_paid.to),
        ("two-c", State::Completed)
    );
    assert_eq!(next(&mut everything).await, c_paid);
    // The replaying subscriber following "two-c" gets it too, after the
    // replay, with nothing in between.
    assert_eq!(next(&mut replay).await, c_paid);
    assert_eq!(next(&mut finals).await, c_paid);

    events.stop().await;
    node.stop().await;
}

/// `event_subscribe` called raw, as a hostile client would.
async fn raw_subscribe(
    events: &EventSystem,
    params: jsonrpsee::core::params::ArrayParams,
) -> Result<Subscription<Value>, jsonrpsee::types::ErrorObjectOwned> {
    match events
        .ws
        .subscribe::<Value, _>("event_subscribe", params, "event_unsubscribe")
        .await
    {
        Ok(subscription) => Ok(subscription),
        Err(ClientError::Call(e)) => Err(e),
        Err(e) => panic!("transport error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_filters_are_refused_with_stable_codes() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let bob = Keypair::dev("bob").public();
    let tx = node.settling("alice", 0, VALID_UNTIL, bob, 5, ("only", 1));
    events.register("only", &tx, 1).await.unwrap();

    let too_many: Vec<String> = (0..=MAX_FILTER_IDS).map(|i| format!("e{i}")).collect();
    for (filter, code, names) in [
        (
            json!({"eventIds": too_many}),
            error::INVALID_FIELD,
            "eventIds",
        ),
        (json!({"eventIds": []}), error::INVALID_FIELD, "eventIds"),
        (
            json!({"eventIds": ["ok", "a\u{0}b"]}),
            error::INVALID_FIELD,
            "eventIds",
        ),
        (
            json!({"eventIds": ["x".repeat(129)]}),
            error::INVALID_FIELD,
            "eventIds",
        ),
        (
            json!({"idPrefix": "x".repeat(129)}),
            error::INVALID_FIELD,
            "idPrefix",
        ),
        (
            json!({"idPrefix": "a\u{0}"}),
            error::INVALID_FIELD,
            "idPrefix",
        ),
        (json!({"idPrefix": ""}), error::INVALID_FIELD, "idPrefix"),
        (json!({"states": []}), error::INVALID_FIELD, "states"),
        (json!({"eventId": ["only"]}), -32602, "unknown field"),
        (json!({"states": ["Paid"]}), -32602, "Paid"),
        (json!({"eventIds": "only"}), -32602, ""),
        (json!("only"), -32602, ""),
    ] {
        let refused = raw_subscribe(&events, rpc_params![Value::Null, filter.clone()])
            .await
            .err()
            .unwrap_or_else(|| panic!("{filter} must be refused"));
        // JSON-RPC's invalid params carry serde's words in `data`.
        let text = format!(
            "{} {}",
            refused.message(),
            refused.data().map(|d| d.get()).unwrap_or_default()
        );
        assert_eq!(refused.code(), code, "{filter}: {text}");
        assert!(text.contains(names), "{filter}: {text}");
    }

    // The same connection still serves: the old one-parameter form and a
    // good filter replay the one transition there is.
    let mut old_form = raw_subscribe(&events, rpc_params![1]).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, old_form.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("decodes");
    assert_eq!(
        (&first["seq"], &first["eventId"]),
        (&json!(1), &json!("only"))
    );
    let mut filtered = events
        .ws
        .subscribe_transitions(Some(1), Some(TransitionFilter::id_prefix("on")))
        .await
        .unwrap();
    assert_eq!(next(&mut filtered).await.event_id, "only");
    // Nothing was written by any of it.
    assert_eq!(events.event_stats().await.last_seq, 1);

    events.stop().await;
    node.stop().await;
}
