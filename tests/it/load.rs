//! The transaction system's side of a fault scenario: a paced load of
//! settlements that retries through every fault, and what is checked once
//! it is over (every event final, the audit clean, the ledger's rows
//! agreeing with the events' states).

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep_api::event::Event;
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{EventApiClient, ListParams};
use lockstep_runtime::crypto::DEV_NAMES;

use crate::system::{head, ledger_json, Client, Deal, Settlement, System};

/// Settlements per dev account (8 accounts) of [`Load::start`].
pub const PER_ACCOUNT: u64 = 150;

/// The load's pace per account: about 50 settlements a second in all, so
/// that a load spans the faults of a scenario.
const PACE: Duration = Duration::from_millis(160);

/// A settlement load: settlements per dev account, paced, by one sender
/// per account; and what is needed to see it through.
pub struct Load {
    task: tokio::task::JoinHandle<()>,
    all_ids: Vec<String>,
    by_id: BTreeMap<String, Settlement>,
}

impl Load {
    /// Starts [`PER_ACCOUNT`] settlements from each dev account, with ids
    /// `<prefix>-<account>-<nonce>`.
    pub async fn start(system: &System, prefix: &str) -> Load {
        Load::start_with(system, prefix, PER_ACCOUNT).await
    }

    /// [`Load::start`] with `per_account` settlements from each account.
    pub async fn start_with(system: &System, prefix: &str, per_account: u64) -> Load {
        // Far ahead, within what the chain accepts: no transfer expires
        // while the processes are killed and restarted.
        let valid_until = head(system).await + system.net.spec.max_validity_blocks / 2;
        let mut settlements: Vec<Vec<Settlement>> = Vec::new();
        for (k, from) in DEV_NAMES.iter().enumerate() {
            let to = DEV_NAMES[(k + 3) % DEV_NAMES.len()];
            settlements.push(
                (0..per_account)
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

    /// Whether every settlement has been registered and submitted.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the load to end and every event to be final, then checks
    /// that at least `min_completed` were paid, that the audit is clean,
    /// and that the ledger's rows agree, event by event
    /// ([`assert_each_event_paid_per_its_state`]). Returns the final
    /// events.
    pub async fn finish(self, system: &System, min_completed: usize) -> Vec<Event> {
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
        eprintln!("{completed} of {total} settlements paid, the rest cancelled");
        assert!(
            completed >= min_completed,
            "only {completed} of {total} settlements were paid"
        );
        let (code, report) = system.audit();
        assert_eq!(code, 0, "the audit found violations: {report:#}");
        assert_each_event_paid_per_its_state(system, &events);
        events
    }
}

/// Beyond the audit, from the ledger's own rows: at most one payment row
/// per event id, a paid one for every Completed event, none for a
/// Cancelled one.
pub fn assert_each_event_paid_per_its_state(system: &System, events: &[Event]) {
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
pub async fn await_blocks(system: &System, height: u64) {
    system
        .await_condition(&format!("the chain at #{height}"), || async {
            head(system).await >= height
        })
        .await;
}

/// The ids of every Registered event (empty if the event system is down).
pub async fn registered_ids(client: &Client) -> Vec<String> {
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
