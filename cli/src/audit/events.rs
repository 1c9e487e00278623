//! The event store's side: every event and its history, legal moves only,
//! and nothing lost.

use std::collections::{BTreeSet, HashMap};

use futures::{stream, StreamExt, TryStreamExt};
use jsonrpsee::rpc_params;
use lockstep_offchain::event::{Event, Transition};
use lockstep_offchain::lifecycle::{Reason, State};
use serde_json::Value;

use super::Findings;
use crate::event::{EventsClient, MAX_PAGE};
use crate::output::Progress;
use crate::rpc::batch;

/// Calls in one JSON-RPC batch to the event system (its limit is 100).
const EVENT_BATCH: usize = 100;

pub(super) async fn read_events(
    events: &EventsClient,
    progress: &mut Progress,
) -> anyhow::Result<Vec<Event>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = events
            .list(None, false, cursor.as_deref(), MAX_PAGE)
            .await?;
        all.extend(page.events);
        progress.update(&format!("reading events: {}", all.len()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

pub(super) async fn read_histories(
    events: &EventsClient,
    all: &[Event],
    concurrency: usize,
    progress: &mut Progress,
) -> anyhow::Result<HashMap<String, Result<Vec<Transition>, String>>> {
    let chunks: Vec<&[Event]> = all.chunks(EVENT_BATCH).collect();
    let mut out = HashMap::with_capacity(all.len());
    let mut answers = stream::iter(chunks.into_iter().map(|chunk| async move {
        let answers = batch::<Vec<Transition>>(
            &events.http,
            &events.url,
            "event_history",
            chunk.iter().map(|e| rpc_params![&e.id]),
        )
        .await?;
        Ok::<_, anyhow::Error>(
            chunk
                .iter()
                .map(|e| e.id.clone())
                .zip(answers)
                .collect::<Vec<_>>(),
        )
    }))
    .buffer_unordered(concurrency);
    while let Some(pairs) = answers.try_next().await? {
        out.extend(pairs);
        progress.update(&format!("reading histories: {}/{}", out.len(), all.len()));
    }
    Ok(out)
}

fn legal(from: State, to: State, reason: Option<Reason>) -> bool {
    matches!(
        (from, to, reason),
        (
            State::Registered,
            State::PendingAccount,
            Some(Reason::Succeeded)
        ) | (
            State::PendingAccount,
            State::Completed,
            Some(Reason::Receipt)
        ) | (
            State::Registered,
            State::Cancelled,
            Some(Reason::Failed | Reason::Expired)
        )
    )
}

pub(super) fn check_histories(
    all: &[Event],
    histories: &HashMap<String, Result<Vec<Transition>, String>>,
    findings: &mut Findings,
) {
    for event in all {
        let id = Some(event.id.as_str());
        let history = match histories.get(&event.id) {
            Some(Ok(history)) => history,
            Some(Err(e)) => {
                findings.violation("illegal-history", id, format!("no history: {e}"));
                continue;
            }
            None => {
                findings.violation("illegal-history", id, "no history".into());
                continue;
            }
        };
        let Some(first) = history.first() else {
            findings.violation("illegal-history", id, "empty history".into());
            continue;
        };
        if first.from.is_some() || first.to != State::Registered || first.reason.is_some() {
            findings.violation(
                "illegal-history",
                id,
                format!(
                    "starts with {:?} -> {} instead of the registration",
                    first.from, first.to
                ),
            );
        }
        for pair in history.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.seq <= a.seq {
                findings.violation(
                    "illegal-history",
                    id,
                    format!("sequence goes back: #{} after #{}", b.seq, a.seq),
                );
            }
            if b.from != Some(a.to) {
                findings.violation(
                    "illegal-history",
                    id,
                    format!(
                        "#{} moves from {:?}, but the event was {}",
                        b.seq, b.from, a.to
                    ),
                );
            } else if !legal(a.to, b.to, b.reason) {
                findings.violation(
                    "illegal-history",
                    id,
                    format!(
                        "#{}: illegal move {} -> {} ({:?})",
                        b.seq, a.to, b.to, b.reason
                    ),
                );
            }
            if b.event_id != event.id {
                findings.violation(
                    "illegal-history",
                    id,
                    format!("#{} belongs to event {}", b.seq, b.event_id),
                );
            }
        }
        let last = history.last().map_or(State::Registered, |t| t.to);
        if last != event.state {
            findings.violation(
                "illegal-history",
                id,
                format!("history ends in {last}, but the event is {}", event.state),
            );
        }
    }
}

/// No event lost: when nothing changed during the audit, the transitions
/// of the listed events are exactly 1..=lastSeq and the counts per state
/// are the store's own.
pub(super) fn check_completeness(
    all: &[Event],
    histories: &HashMap<String, Result<Vec<Transition>, String>>,
    before: &Value,
    after: &Value,
    findings: &mut Findings,
) {
    let last_seq = before["lastSeq"].as_u64().unwrap_or(0);
    if last_seq != after["lastSeq"].as_u64().unwrap_or(0) {
        findings.notes.push(
            "the event store changed during the audit: event counts and sequence completeness not compared".into(),
        );
        return;
    }
    let mut seqs = BTreeSet::new();
    for history in histories.values().flatten() {
        for t in history {
            if !seqs.insert(t.seq) {
                findings.violation(
                    "illegal-history",
                    Some(&t.event_id),
                    format!("transition #{} appears twice", t.seq),
                );
            }
        }
    }
    let expected = last_seq as usize;
    if seqs.len() != expected || seqs.iter().next_back().is_some_and(|s| *s != last_seq) {
        let missing: Vec<u64> = (1..=last_seq)
            .filter(|s| !seqs.contains(s))
            .take(10)
            .collect();
        findings.violation(
            "event-lost",
            None,
            format!(
                "the store has {last_seq} transitions, the listed events {} (missing e.g. {missing:?})",
                seqs.len()
            ),
        );
    }
    let count = |state: State| all.iter().filter(|e| e.state == state).count() as u64;
    for (state, key) in [
        (State::Registered, "registered"),
        (State::PendingAccount, "pendingAccount"),
        (State::Completed, "completed"),
        (State::Cancelled, "cancelled"),
    ] {
        let stored = before[key].as_u64().unwrap_or(0);
        if stored != count(state) {
            findings.violation(
                "event-lost",
                None,
                format!(
                    "the store counts {stored} {state} events, the list has {}",
                    count(state)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_drawn_moves_are_legal() {
        use Reason::*;
        use State::*;
        let mut legal_moves = Vec::new();
        for from in State::ALL {
            for to in State::ALL {
                for reason in [
                    None,
                    Some(Succeeded),
                    Some(Failed),
                    Some(Expired),
                    Some(Receipt),
                ] {
                    if legal(from, to, reason) {
                        legal_moves.push((from, to, reason));
                    }
                }
            }
        }
        assert_eq!(
            legal_moves,
            vec![
                (Registered, PendingAccount, Some(Succeeded)),
                (Registered, Cancelled, Some(Failed)),
                (Registered, Cancelled, Some(Expired)),
                (PendingAccount, Completed, Some(Receipt)),
            ]
        );
    }
}
