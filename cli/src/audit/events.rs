//! The event store's side: every event and its history, legal moves only,
//! and nothing lost.
//!
//! Histories are read after the event list, so on a running system an
//! event may have moved on between the two reads: its history then
//! continues (legally) past the listed state. The check accepts that, and
//! nothing weaker: every move legal and the listed state on the way.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::{stream, StreamExt, TryStreamExt};
use lockstep_api::client::describe_refusal;
use lockstep_api::event::{Event, Transition};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::{histories, Stats, MAX_CALL_BATCH, MAX_PAGE};

use super::Findings;
use crate::event::EventsClient;
use crate::output::Progress;
use crate::rpc::At;

pub(super) async fn read_events(
    events: &EventsClient,
    progress: &mut Progress,
) -> anyhow::Result<Vec<Event>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = events
            .list(None, false, cursor.as_deref(), MAX_PAGE as u64)
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
    let chunks: Vec<&[Event]> = all.chunks(MAX_CALL_BATCH).collect();
    let mut out = HashMap::with_capacity(all.len());
    let mut answers = stream::iter(chunks.into_iter().map(|chunk| async move {
        let ids: Vec<&str> = chunk.iter().map(|e| e.id.as_str()).collect();
        let answers = histories(&events.http, &ids)
            .await
            .at("reading histories", &events.url)?;
        let answers = answers
            .into_iter()
            .map(|answer| answer.map_err(|e| describe_refusal(&e)));
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
            Some(Reason::Failed | Reason::Expired | Reason::NotCommitted)
        )
    )
}

/// Why each cancelled event was cancelled, as its history says (events
/// whose history was not read, or never reaches Cancelled, are absent).
pub(super) fn cancel_reasons(
    histories: &HashMap<String, Result<Vec<Transition>, String>>,
) -> HashMap<String, Reason> {
    histories
        .iter()
        .filter_map(|(id, history)| {
            let history = history.as_ref().ok()?;
            let cancel = history.iter().find(|t| t.to == State::Cancelled)?;
            Some((id.clone(), cancel.reason?))
        })
        .collect()
}

/// The events cancelled because their transfer does not commit to them:
/// their transfer may well be finalized and successful, and the chain check
/// verifies instead that it indeed does not commit.
pub(super) fn cancelled_not_committed(reasons: &HashMap<String, Reason>) -> HashSet<String> {
    reasons
        .iter()
        .filter(|(_, reason)| **reason == Reason::NotCommitted)
        .map(|(id, _)| id.clone())
        .collect()
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
        // The history was read after the event: on a running system the
        // event may have moved on since (legally: checked above), so the
        // history must pass through the listed state, not end in it. States
        // only move forward, so one that never reaches it is wrong either
        // way (ending before it, or elsewhere).
        if !history.iter().any(|t| t.to == event.state) {
            let last = history.last().map_or(State::Registered, |t| t.to);
            findings.violation(
                "illegal-history",
                id,
                format!(
                    "history never reaches the event's state {} (it ends in {last})",
                    event.state
                ),
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
    before: &Stats,
    after: &Stats,
    findings: &mut Findings,
) {
    let last_seq = before.last_seq;
    if last_seq != after.last_seq {
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
    for state in State::ALL {
        let stored = before.count(state);
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

    fn event(id: &str, state: State) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "txHash": format!("0x{}", "11".repeat(32)),
            "validUntil": 100,
            "payment": { "payer": "alice", "payee": "bob", "amount": "30", "currency": "USD" },
            "state": state,
            "createdAtMs": 1,
            "stateSinceMs": 1,
            "checks": 0,
            "resends": 0,
        }))
        .unwrap()
    }

    /// A history from the registration through `moves`.
    fn history(id: &str, moves: &[(State, Reason)]) -> Vec<Transition> {
        let mut out = vec![Transition {
            seq: 1,
            event_id: id.into(),
            at_ms: 1,
            from: None,
            to: State::Registered,
            reason: None,
            evidence: None,
            payment_reference: None,
        }];
        for (to, reason) in moves {
            let from = out.last().map(|t| t.to);
            out.push(Transition {
                seq: out.len() as u64 + 1,
                event_id: id.into(),
                at_ms: 1,
                from,
                to: *to,
                reason: Some(*reason),
                evidence: None,
                payment_reference: None,
            });
        }
        out
    }

    fn history_findings(listed: State, moves: &[(State, Reason)]) -> Vec<String> {
        let all = [event("e1", listed)];
        let histories = HashMap::from([("e1".to_string(), Ok(history("e1", moves)))]);
        let mut findings = Findings::default();
        check_histories(&all, &histories, &mut findings);
        findings.violations.into_iter().map(|v| v.detail).collect()
    }

    #[test]
    fn a_history_may_move_on_past_the_listed_state_but_not_fall_short() {
        use Reason::*;
        use State::*;
        let paid = [(PendingAccount, Succeeded), (Completed, Receipt)];
        // Ends in the listed state.
        assert!(history_findings(Completed, &paid).is_empty());
        // Moved on (legally) after the event was listed.
        assert!(history_findings(Registered, &paid).is_empty());
        assert!(history_findings(PendingAccount, &paid).is_empty());
        assert!(history_findings(Registered, &[(Cancelled, Expired)]).is_empty());
        // Never reaches the listed state: short of it, or another branch.
        let short = history_findings(Completed, &paid[..1]);
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(short[0].contains("never reaches"), "{short:?}");
        assert_eq!(history_findings(Cancelled, &paid).len(), 1);
        assert_eq!(
            history_findings(PendingAccount, &[(Cancelled, Failed)]).len(),
            1
        );
        // An illegal move is reported even when the listed state is on the way.
        let illegal = history_findings(Registered, &[(Completed, Receipt)]);
        assert!(
            illegal.iter().any(|d| d.contains("illegal move")),
            "{illegal:?}"
        );
        let illegal = history_findings(
            PendingAccount,
            &[(PendingAccount, Succeeded), (Cancelled, Expired)],
        );
        assert!(
            illegal.iter().any(|d| d.contains("illegal move")),
            "{illegal:?}"
        );
    }

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
                    Some(NotCommitted),
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
                (Registered, Cancelled, Some(NotCommitted)),
                (PendingAccount, Completed, Some(Receipt)),
            ]
        );
    }
}
