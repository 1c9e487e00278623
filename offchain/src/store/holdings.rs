//! How many events each credential holds in Registered: what bounds one
//! credential's open registrations (`--max-registered-per-credential`), so
//! that a flood of events that never finalize from one credential cannot
//! fill the reconciler's work for everyone.
//!
//! The counts live in the writer's memory, beside its other counters and
//! under the same mutex, and change with the batch that changes what they
//! count: a registration by a credential adds one in the batch that writes
//! the event, a move out of Registered (to PendingAccount or Cancelled)
//! takes one off in the batch that writes the move, and either is applied
//! only once its batch is written ([`HoldingChanges`]). So a count is
//! always that of the store on disk, and a check against it (in
//! [`EventStore::register_checked`], under the same mutex) cannot race
//! another registration.
//!
//! Nothing extra is written: [`EventStore::open`] rebuilds the counts from
//! the Registered events, which the `by_state` index lists under its
//! Registered prefix (read from its floor, `floors.rs`), each event's
//! record naming its registrant (`registeredBy`). That is one point read
//! per Registered event, never a walk of the history or of final events,
//! and it is bounded: by the bound
//! times the credentials, and by the chain's validity window, within which
//! every Registered event becomes final. Events without a registrant
//! (registered without credentials, or before the registrant was recorded)
//! count against no one.

use std::collections::HashMap;

use lockstep_api::lifecycle::State;

use super::floors::Range;
use super::records::StoredEvent;
use super::{decode, split_timed_key, EventStore, Pending, StoreError, StoreResult};
use super::{Writer, CF_EVENTS};

/// Changes of the per-credential counts staged in one batch: applied to the
/// writer's counts when the batch is written, dropped with it otherwise.
#[derive(Debug, Default)]
pub(super) struct HoldingChanges(HashMap<String, i64>);

impl HoldingChanges {
    /// Applies the changes to `counts`, forgetting credentials that hold
    /// nothing any more (so the map stays as small as the set of
    /// credentials with open events).
    pub(super) fn apply(self, counts: &mut HashMap<String, u64>) {
        for (name, change) in self.0 {
            let held = counts.get(&name).copied().unwrap_or(0);
            let now = held.saturating_add_signed(change);
            if now == 0 {
                counts.remove(&name);
            } else {
                counts.insert(name, now);
            }
        }
    }
}

impl Pending {
    /// How many events `name` holds in Registered with this batch's
    /// changes.
    pub(super) fn held(&self, writer: &Writer, name: &str) -> u64 {
        let held = writer.registered_by.get(name).copied().unwrap_or(0);
        held.saturating_add_signed(self.holdings.0.get(name).copied().unwrap_or(0))
    }

    /// Counts a move of an event registered by `registered_by` (none: no
    /// one's) from `from` (none: its registration) to `to`.
    pub(super) fn move_holding(
        &mut self,
        registered_by: Option<&str>,
        from: Option<State>,
        to: State,
    ) {
        let Some(name) = registered_by else {
            return;
        };
        let was = from == Some(State::Registered);
        let is = to == State::Registered;
        let change = match (was, is) {
            (false, true) => 1,
            (true, false) => -1,
            _ => return,
        };
        *self.holdings.0.entry(name.to_owned()).or_insert(0) += change;
    }
}

impl EventStore {
    /// The per-credential counts of the events now Registered, from the
    /// `by_state` index (see the module docs).
    pub(super) fn load_holdings(&self) -> StoreResult<HashMap<String, u64>> {
        let events = self.cf(CF_EVENTS)?;
        let mut counts = HashMap::new();
        let Some(iter) = self.read_range(Range::ByState(State::Registered), None, None)? else {
            return Ok(counts);
        };
        for item in iter {
            let (key, _) = item?;
            let Some((_, _, id)) = split_timed_key(&key) else {
                return Err(StoreError::Corrupt("by_state key".into()));
            };
            let bytes = self.db.get_cf(events, id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("by_state lists {id:?}, which does not exist"))
            })?;
            let record: StoredEvent = decode("event", &bytes)?;
            if let Some(name) = record.registered_by {
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// How many events the credential named `credential` holds in
    /// Registered.
    pub fn registered_by(&self, credential: &str) -> u64 {
        self.lock()
            .registered_by
            .get(credential)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::super::CF_BY_STATE;
    use super::*;
    use lockstep_api::event::PaymentReceipt;
    use lockstep_api::lifecycle::Reason;

    fn refused_as_too_many(result: &StoreResult<(lockstep_api::event::Event, bool)>) -> bool {
        matches!(
            result,
            Err(StoreError::TooManyRegistered {
                held: 2,
                bound: 2,
                ..
            })
        )
    }

    #[test]
    fn a_credential_at_its_bound_is_refused_and_others_are_not() {
        let (_dir, store) = open();
        let results = store
            .register_checked(
                &[
                    by(registration("a1", 1), "a", 2),
                    by(registration("a1", 1), "a", 2),
                    by(registration("a2", 2), "a", 2),
                    by(registration("a3", 3), "a", 2),
                    by(registration("b1", 4), "b", 2),
                    verified(registration("n1", 5)),
                ],
                10,
                20,
            )
            .expect("group");
        let new: Vec<Option<bool>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|(_, new)| *new))
            .collect();
        // The same event twice in one group counts once.
        assert_eq!(
            new,
            [
                Some(true),
                Some(false),
                Some(true),
                None,
                Some(true),
                Some(true)
            ]
        );
        assert!(refused_as_too_many(&results[3]), "{:?}", results[3]);
        let message = results[3].as_ref().expect_err("refused").to_string();
        assert!(
            message.contains("\"a\" holds 2") && message.contains("is 2"),
            "{message}"
        );
        assert_eq!((store.registered_by("a"), store.registered_by("b")), (2, 1));
        assert_eq!(store.get("a3").expect("get"), None);

        // At the bound, a registration already made is answered as before
        // and writes nothing; a new one is refused and writes nothing.
        let before = snapshot(&store);
        let again = store
            .register_checked(&[by(registration("a1", 1), "a", 2)], 30, 40)
            .expect("again")
            .pop()
            .expect("one result");
        assert!(!again.expect("idempotent").1);
        let refused = store
            .register_checked(&[by(registration("a3", 3), "a", 2)], 30, 40)
            .expect("refused")
            .pop()
            .expect("one result");
        assert!(refused_as_too_many(&refused), "{refused:?}");
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.registered_by("a"), 2);
    }

    #[test]
    fn leaving_registered_frees_room_and_the_counts_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EventStore::open(dir.path(), false).expect("open");
            for (i, id) in ["a1", "a2", "a3"].into_iter().enumerate() {
                let result = store
                    .register_checked(&[by(registration(id, i as u8 + 1), "a", 3)], 10, 20)
                    .expect("register")
                    .pop()
                    .expect("one result");
                assert!(result.is_ok(), "{result:?}");
            }
            // Confirmed (then completed) and cancelled: both leave.
            store
                .transition("a1", Reason::Succeeded, Some(evidence()), 11, 1000)
                .expect("succeed");
            assert_eq!(store.registered_by("a"), 2);
            let receipt =
                PaymentReceipt::sign(&lockstep_runtime::Keypair::dev("bridge"), "a1", "p1");
            store.post_receipt(&receipt, 12).expect("receipt");
            store
                .transition("a2", Reason::Expired, Some(evidence()), 13, 1000)
                .expect("expire");
            assert_eq!(store.registered_by("a"), 1);
            // An undecided check rewrites the record and keeps its registrant.
            store
                .reschedule_many(&[("a3".into(), 50)], State::Registered)
                .expect("reschedule");
            let (_, provenance) = store.get_with_provenance("a3").expect("get").expect("a3");
            assert_eq!(provenance.registered_by.as_deref(), Some("a"));
            let (_, completed) = store.get_with_provenance("a1").expect("get").expect("a1");
            assert_eq!(completed.registered_by.as_deref(), Some("a"));
            for (id, tx) in [("a4", 4), ("a5", 5)] {
                store
                    .register_checked(&[by(registration(id, tx), "a", 3)], 14, 20)
                    .expect("register")
                    .pop()
                    .expect("one result")
                    .expect("room again");
            }
            assert_eq!(store.registered_by("a"), 3);
        }
        let store = EventStore::open(dir.path(), false).expect("reopen");
        assert_eq!(store.registered_by("a"), 3);
        let refused = store
            .register_checked(&[by(registration("a6", 6), "a", 3)], 20, 30)
            .expect("refused")
            .pop()
            .expect("one result");
        assert!(
            matches!(refused, Err(StoreError::TooManyRegistered { held: 3, .. })),
            "{refused:?}"
        );
        store
            .transition("a3", Reason::Failed, Some(evidence()), 21, 1000)
            .expect("fail");
        assert_eq!(store.registered_by("a"), 2);
        store
            .register_checked(&[by(registration("a6", 6), "a", 3)], 22, 30)
            .expect("register")
            .pop()
            .expect("one result")
            .expect("room after the reopen");
    }

    #[test]
    fn events_without_a_registrant_count_against_no_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EventStore::open(dir.path(), false).expect("open");
            store
                .register(&registration("old", 1), 10, 20)
                .expect("register");
            // A record as written before registrants were recorded.
            let tx = format!("0x{}", "02".repeat(32));
            let record = format!(
                concat!(
                    r#"{{"id":"older","txHash":"{tx}","validUntil":100,"#,
                    r#""payment":{{"payer":"bob","payee":"alice","amount":"100","currency":"EUR"}},"#,
                    r#""state":"Registered","createdAtMs":10,"stateSinceMs":10,"dueAtMs":20,"#,
                    r#""checks":0,"resends":0}}"#
                ),
                tx = tx
            );
            put_raw(&store, CF_EVENTS, b"older", record.as_bytes());
            put_raw(
                &store,
                CF_BY_STATE,
                &super::super::timed_key(State::Registered, 10, "older"),
                b"",
            );
        }
        let store = EventStore::open(dir.path(), false).expect("reopen");
        assert_eq!(
            store
                .stats(30, 1000)
                .expect("stats")
                .oldest_registered_age_ms,
            Some(20)
        );
        assert!(store.lock().registered_by.is_empty());
        // Leaving Registered takes nothing off anyone.
        store
            .transition("older", Reason::Expired, Some(evidence()), 31, 1000)
            .expect("expire");
        store
            .transition("old", Reason::Expired, Some(evidence()), 31, 1000)
            .expect("expire");
        assert!(store.lock().registered_by.is_empty());
        store
            .register_checked(&[by(registration("new", 3), "a", 1)], 32, 40)
            .expect("register")
            .pop()
            .expect("one result")
            .expect("registered");
        assert_eq!(store.registered_by("a"), 1);
    }
}
