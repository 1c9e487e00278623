//! The ledger's side: each event's payment as its state requires, no
//! payment without its event, every entry's postings as its payment or
//! deposit requires, balances that are their postings, money conserved.
//!
//! On a running system the two ledger reads bracket the event reads, and
//! each event's state is checked against the read that is sound for it.
//! States only move forward (Registered → PendingAccount → Completed,
//! Registered → Cancelled), the payment instruction is only written on
//! the move to PendingAccount, and payment rows are never deleted:
//! - Registered: it was Registered at the first read too (or did not exist
//!   yet), so that read must hold no payment row for it. The second read
//!   may: the event may have been confirmed and paid since.
//! - Cancelled: final, and never had an instruction: no row in either read.
//! - PendingAccount: a row may exist by the second read (or not yet); a
//!   paid one must match the instruction.
//! - Completed: its receipt was posted after the payment was committed, and
//!   the second read came after the event read: exactly one paid row there.
//! - Every row of the first read has its event: the event was registered
//!   before the payment, and the events were read after.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lockstep_api::event::Event;
use lockstep_api::lifecycle::State;
use lockstep_bridge::ledger::{external_account, PaymentRecord, PaymentStatus, Posting};
use serde_json::{json, Value};

use super::Findings;
use crate::args::AuditArgs;
use crate::ledger::{is_paid, LedgerSnapshot};

fn by_event(records: &[PaymentRecord]) -> HashMap<&str, Vec<&PaymentRecord>> {
    let mut out: HashMap<&str, Vec<&PaymentRecord>> = HashMap::new();
    for record in records {
        out.entry(record.event_id.as_str())
            .or_default()
            .push(record);
    }
    out
}

pub(super) fn check_ledger(
    all: &[Event],
    before: &LedgerSnapshot,
    after: &LedgerSnapshot,
    args: &AuditArgs,
    findings: &mut Findings,
) -> Value {
    let by_id: HashMap<&str, &Event> = all.iter().map(|e| (e.id.as_str(), e)).collect();
    for record in &before.payments {
        if !by_id.contains_key(record.event_id.as_str()) {
            findings.violation(
                "orphan-payment",
                Some(&record.event_id),
                format!(
                    "ledger payment {} ({:?}, {} -> {} {} {}) has no event",
                    record.reference,
                    record.status,
                    record.payer,
                    record.payee,
                    record.amount,
                    record.currency
                ),
            );
        }
    }
    let payments_before = by_event(&before.payments);
    let payments_after = by_event(&after.payments);
    for event in all {
        let id = Some(event.id.as_str());
        let rows = payments_after
            .get(event.id.as_str())
            .cloned()
            .unwrap_or_default();
        // Cannot happen while `payments.event_id` is UNIQUE; the postings
        // check below is what catches money moved twice for one event.
        if rows.len() > 1 {
            findings.violation(
                "duplicate-payment",
                id,
                format!("{} ledger payment rows", rows.len()),
            );
        }
        let paid: Vec<&PaymentRecord> = rows.iter().copied().filter(|r| is_paid(r)).collect();
        match event.state {
            State::Completed => {
                if paid.len() != 1 {
                    findings.violation(
                        "payment-missing",
                        id,
                        format!(
                            "Completed with {} paid ledger payments (want exactly 1)",
                            paid.len()
                        ),
                    );
                }
                for record in &paid {
                    check_payment_matches(event, record, findings);
                    if let Some(receipt) = &event.receipt {
                        if receipt.payment_reference != record.reference {
                            findings.violation(
                                "receipt-mismatch",
                                id,
                                format!(
                                    "receipt names payment {}, the ledger's is {}",
                                    receipt.payment_reference, record.reference
                                ),
                            );
                        }
                    }
                }
            }
            State::PendingAccount => {
                for record in &paid {
                    check_payment_matches(event, record, findings);
                }
            }
            State::Registered => {
                let rows = payments_before.get(event.id.as_str());
                for record in rows.into_iter().flatten() {
                    payment_for_unpaid(event, "payment-for-registered", record, findings);
                }
            }
            State::Cancelled => {
                // Either read, each row once.
                let mut rows: BTreeMap<&str, &PaymentRecord> = BTreeMap::new();
                for read in [&payments_before, &payments_after] {
                    for record in read.get(event.id.as_str()).into_iter().flatten() {
                        rows.entry(record.reference.as_str()).or_insert(record);
                    }
                }
                for record in rows.values() {
                    payment_for_unpaid(event, "payment-for-cancelled", record, findings);
                }
            }
        }
    }
    check_postings(after, findings);

    let expected: HashMap<&str, i128> = args
        .ledger_totals
        .iter()
        .map(|(c, a)| (c.as_str(), *a))
        .collect();
    let mut currencies: BTreeSet<&str> = expected.keys().copied().collect();
    let totals: HashMap<&str, i128> = after.totals.iter().map(|(c, a)| (c.as_str(), *a)).collect();
    currencies.extend(totals.keys().copied());
    for currency in currencies {
        let want = expected.get(currency).copied().unwrap_or(0);
        let have = totals.get(currency).copied().unwrap_or(0);
        if want != have {
            findings.violation(
                "ledger-not-conserved",
                None,
                format!("{currency}: balances sum to {have}, conservation requires {want}"),
            );
        }
    }
    let paid = after.payments.iter().filter(|r| is_paid(r)).count();
    json!({
        "payments": after.payments.len(),
        "paid": paid,
        "failed": after.payments.len() - paid,
        "totals": after.totals.iter().map(|(c, a)| (c.clone(), a.to_string())).collect::<BTreeMap<_, _>>(),
    })
}

fn check_payment_matches(event: &Event, record: &PaymentRecord, findings: &mut Findings) {
    let p = &event.payment;
    let amount_matches = p.amount.parse::<i128>().ok() == Some(record.amount);
    if record.payer != p.payer
        || record.payee != p.payee
        || !amount_matches
        || record.currency != p.currency
    {
        findings.violation(
            "payment-mismatch",
            Some(&event.id),
            format!(
                "instruction {} -> {} {} {}, ledger paid {} -> {} {} {}",
                p.payer,
                p.payee,
                p.amount,
                p.currency,
                record.payer,
                record.payee,
                record.amount,
                record.currency
            ),
        );
    }
}

/// A payment row for an event that must have none.
fn payment_for_unpaid(
    event: &Event,
    kind: &'static str,
    record: &PaymentRecord,
    findings: &mut Findings,
) {
    findings.violation(
        kind,
        Some(&event.id),
        format!(
            "{} event has a ledger payment {} ({:?}, {} {})",
            event.state, record.reference, record.status, record.amount, record.currency
        ),
    );
}

/// One leg as compared: account, signed amount, currency.
type Leg<'a> = (&'a str, i128, &'a str);

fn describe_legs(legs: &[Leg<'_>]) -> String {
    if legs.is_empty() {
        return "none".into();
    }
    legs.iter()
        .map(|(account, amount, currency)| format!("{account} {amount:+} {currency}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The postings found for an entry against the legs it must have (in any
/// order): `Some((found, wanted))`, described, when they differ.
fn compare_legs(found: Option<Vec<&Posting>>, mut want: Vec<Leg<'_>>) -> Option<(String, String)> {
    let mut have: Vec<Leg<'_>> = found
        .into_iter()
        .flatten()
        .map(|p| (p.account.as_str(), p.amount, p.currency.as_str()))
        .collect();
    have.sort_unstable();
    want.sort_unstable();
    (have != want).then(|| (describe_legs(&have), describe_legs(&want)))
}

/// Double entry, entry by entry, in one consistent read of the ledger:
/// every paid payment has exactly its two postings (−amount on the payer,
/// +amount on the payee, in its currency) and a failed one none; every
/// deposit exactly its two (−amount on its currency's external account,
/// +amount on the account); no posting belongs to anything else; every
/// posting is in its account's currency; and every account's balance is
/// the sum of its postings. Money moved twice under one payment row, or a
/// balance changed without postings, shows here even when every currency
/// still sums to zero.
pub(super) fn check_postings(ledger: &LedgerSnapshot, findings: &mut Findings) {
    let mut by_entry: HashMap<&str, Vec<&Posting>> = HashMap::new();
    for posting in &ledger.postings {
        by_entry
            .entry(posting.entry.as_str())
            .or_default()
            .push(posting);
    }
    for record in &ledger.payments {
        let currency = record.currency.as_str();
        let want = match record.status {
            PaymentStatus::Paid => vec![
                (record.payer.as_str(), -record.amount, currency),
                (record.payee.as_str(), record.amount, currency),
            ],
            PaymentStatus::Failed => Vec::new(),
        };
        if let Some((have, want)) = compare_legs(by_entry.remove(record.reference.as_str()), want) {
            findings.violation(
                "ledger-postings-mismatch",
                Some(&record.event_id),
                format!(
                    "payment {} ({:?}, {} -> {} {} {}) has postings [{have}], want [{want}]",
                    record.reference,
                    record.status,
                    record.payer,
                    record.payee,
                    record.amount,
                    record.currency
                ),
            );
        }
    }
    let currency_of: HashMap<&str, &str> = ledger
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.currency.as_str()))
        .collect();
    for deposit in &ledger.deposits {
        let found = by_entry.remove(deposit.reference.as_str());
        let Some(currency) = currency_of.get(deposit.account.as_str()).copied() else {
            findings.violation(
                "ledger-postings-mismatch",
                None,
                format!(
                    "deposit {} of {} into {}, which is no account",
                    deposit.reference, deposit.amount, deposit.account
                ),
            );
            continue;
        };
        let external = external_account(currency);
        let want = vec![
            (external.as_str(), -deposit.amount, currency),
            (deposit.account.as_str(), deposit.amount, currency),
        ];
        if let Some((have, want)) = compare_legs(found, want) {
            findings.violation(
                "ledger-postings-mismatch",
                None,
                format!(
                    "deposit {} ({} {} {currency}) has postings [{have}], want [{want}]",
                    deposit.reference, deposit.account, deposit.amount
                ),
            );
        }
    }
    let unaccounted: BTreeMap<&str, Vec<&Posting>> = by_entry.into_iter().collect();
    for (entry, postings) in unaccounted {
        let legs: Vec<Leg<'_>> = postings
            .iter()
            .map(|p| (p.account.as_str(), p.amount, p.currency.as_str()))
            .collect();
        let ids: Vec<String> = postings.iter().map(|p| format!("#{}", p.id)).collect();
        findings.violation(
            "posting-unaccounted",
            None,
            format!(
                "postings {} of entry {entry} [{}] belong to no payment or deposit",
                ids.join(", "),
                describe_legs(&legs)
            ),
        );
    }

    let mut sums: BTreeMap<&str, i128> = BTreeMap::new();
    for posting in &ledger.postings {
        let sum = sums.entry(posting.account.as_str()).or_insert(0);
        *sum = sum.saturating_add(posting.amount);
        match currency_of.get(posting.account.as_str()) {
            Some(currency) if *currency != posting.currency => findings.violation(
                "ledger-postings-mismatch",
                None,
                format!(
                    "posting #{} (entry {}) on {} is in {}, the account holds {currency}",
                    posting.id, posting.entry, posting.account, posting.currency
                ),
            ),
            _ => {}
        }
    }
    for account in &ledger.accounts {
        let sum = sums.remove(account.id.as_str()).unwrap_or(0);
        if sum != account.balance {
            findings.violation(
                "balance-not-postings",
                None,
                format!(
                    "account {} has balance {} {}, its postings sum to {sum}",
                    account.id, account.balance, account.currency
                ),
            );
        }
    }
    for (account, sum) in sums {
        findings.violation(
            "balance-not-postings",
            None,
            format!("postings on {account}, which is no account, sum to {sum}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use lockstep_bridge::ledger::{Account, Deposit, LedgerLocation};

    use super::*;

    fn event(id: &str, state: State) -> Event {
        serde_json::from_value(json!({
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

    fn account(id: &str, balance: i128, system: bool) -> Account {
        Account {
            id: id.into(),
            currency: "USD".into(),
            balance,
            overdraft: 0,
            system,
        }
    }

    fn posting(id: u64, entry: &str, account: &str, amount: i128) -> Posting {
        Posting {
            id,
            entry: entry.into(),
            account: account.into(),
            amount,
            currency: "USD".into(),
        }
    }

    fn payment(event_id: &str, reference: &str, status: PaymentStatus) -> PaymentRecord {
        PaymentRecord {
            event_id: event_id.into(),
            payer: "alice".into(),
            payee: "bob".into(),
            amount: 30,
            currency: "USD".into(),
            status,
            reference: reference.into(),
            created_ms: 1,
            updated_ms: 1,
            failure: None,
            attempts: 1,
        }
    }

    fn totals(accounts: &[Account]) -> Vec<(String, i128)> {
        vec![("USD".into(), accounts.iter().map(|a| a.balance).sum())]
    }

    /// alice and bob with 100 each; `e1` paid 30 from alice to bob, `e2`
    /// refused.
    fn consistent() -> LedgerSnapshot {
        let accounts = vec![
            account("@external/USD", -200, true),
            account("alice", 70, false),
            account("bob", 130, false),
        ];
        LedgerSnapshot {
            totals: totals(&accounts),
            accounts,
            payments: vec![
                payment("e1", "pay-1", PaymentStatus::Paid),
                payment("e2", "pay-2", PaymentStatus::Failed),
            ],
            deposits: vec![
                Deposit {
                    reference: "dep-1".into(),
                    account: "alice".into(),
                    amount: 100,
                },
                Deposit {
                    reference: "dep-2".into(),
                    account: "bob".into(),
                    amount: 100,
                },
            ],
            postings: vec![
                posting(1, "dep-1", "@external/USD", -100),
                posting(2, "dep-1", "alice", 100),
                posting(3, "dep-2", "@external/USD", -100),
                posting(4, "dep-2", "bob", 100),
                posting(5, "pay-1", "alice", -30),
                posting(6, "pay-1", "bob", 30),
            ],
        }
    }

    fn postings_findings(ledger: &LedgerSnapshot) -> Vec<(&'static str, Option<String>)> {
        let mut findings = Findings::default();
        check_postings(ledger, &mut findings);
        findings
            .violations
            .into_iter()
            .map(|v| (v.kind, v.event_id))
            .collect()
    }

    #[test]
    fn a_consistent_ledger_passes() {
        assert_eq!(postings_findings(&consistent()), []);
    }

    #[test]
    fn money_moved_twice_for_one_payment_is_found() {
        // A second pair under pay-1, balances moved with it: every
        // currency still sums to zero and every balance to its postings.
        let mut ledger = consistent();
        ledger.postings.push(posting(7, "pay-1", "alice", -30));
        ledger.postings.push(posting(8, "pay-1", "bob", 30));
        ledger.accounts[1].balance -= 30;
        ledger.accounts[2].balance += 30;
        assert_eq!(
            postings_findings(&ledger),
            [("ledger-postings-mismatch", Some("e1".into()))]
        );
    }

    #[test]
    fn broken_entries_are_found() {
        // A failed payment with postings.
        let mut ledger = consistent();
        ledger.postings.push(posting(7, "pay-2", "alice", -30));
        ledger.postings.push(posting(8, "pay-2", "bob", 30));
        ledger.accounts[1].balance -= 30;
        ledger.accounts[2].balance += 30;
        assert_eq!(
            postings_findings(&ledger),
            [("ledger-postings-mismatch", Some("e2".into()))]
        );
        // A paid payment with the legs swapped.
        let mut ledger = consistent();
        ledger.postings[4].amount = 30;
        ledger.postings[5].amount = -30;
        ledger.accounts[1].balance += 60;
        ledger.accounts[2].balance -= 60;
        assert_eq!(
            postings_findings(&ledger),
            [("ledger-postings-mismatch", Some("e1".into()))]
        );
        // A deposit that lost a leg.
        let mut ledger = consistent();
        ledger.postings.remove(0);
        ledger.accounts[0].balance += 100;
        assert_eq!(
            postings_findings(&ledger),
            [("ledger-postings-mismatch", None)]
        );
        // A pair that belongs to nothing.
        let mut ledger = consistent();
        ledger.postings.push(posting(7, "pay-9", "alice", -5));
        ledger.postings.push(posting(8, "pay-9", "bob", 5));
        ledger.accounts[1].balance -= 5;
        ledger.accounts[2].balance += 5;
        assert_eq!(postings_findings(&ledger), [("posting-unaccounted", None)]);
        // Balances moved without postings.
        let mut ledger = consistent();
        ledger.accounts[1].balance -= 5;
        ledger.accounts[2].balance += 5;
        assert_eq!(
            postings_findings(&ledger),
            [
                ("balance-not-postings", None),
                ("balance-not-postings", None)
            ]
        );
        // A posting in another currency than its account's.
        let mut ledger = consistent();
        ledger.postings[1].currency = "EUR".into();
        let found = postings_findings(&ledger);
        assert!(
            found.contains(&("ledger-postings-mismatch", None)),
            "{found:?}"
        );
    }

    fn args() -> AuditArgs {
        AuditArgs {
            ledger: LedgerLocation::Sqlite("ledger.sqlite".into()),
            quorum: "2/3".parse().unwrap(),
            require_final: false,
            chain_spec: None,
            ledger_totals: Vec::new(),
            skip_supply: false,
            concurrency: 1,
        }
    }

    fn ledger_findings(
        events: &[Event],
        before: &LedgerSnapshot,
        after: &LedgerSnapshot,
    ) -> Vec<(&'static str, Option<String>)> {
        let mut findings = Findings::default();
        check_ledger(events, before, after, &args(), &mut findings);
        findings
            .violations
            .into_iter()
            .map(|v| (v.kind, v.event_id))
            .collect()
    }

    /// A ledger before `e1` was paid.
    fn unpaid() -> LedgerSnapshot {
        let mut ledger = consistent();
        ledger.payments.retain(|p| p.event_id != "e1");
        ledger.postings.retain(|p| p.entry != "pay-1");
        ledger.accounts[1].balance = 100;
        ledger.accounts[2].balance = 100;
        ledger
    }

    #[test]
    fn each_state_is_held_to_the_read_that_is_sound_for_it() {
        let e2 = event("e2", State::PendingAccount);
        // Registered when listed, paid by the second read: a live system.
        let events = [event("e1", State::Registered), e2.clone()];
        assert_eq!(ledger_findings(&events, &unpaid(), &consistent()), []);
        // Paid already at the first read: a violation.
        assert_eq!(
            ledger_findings(&events, &consistent(), &consistent()),
            [("payment-for-registered", Some("e1".into()))]
        );
        // Completed needs its payment in the second read.
        let events = [event("e1", State::Completed), e2.clone()];
        assert_eq!(ledger_findings(&events, &unpaid(), &consistent()), []);
        assert_eq!(
            ledger_findings(&events, &unpaid(), &unpaid()),
            [("payment-missing", Some("e1".into()))]
        );
        // PendingAccount may or may not be paid yet.
        let events = [event("e1", State::PendingAccount), e2.clone()];
        assert_eq!(ledger_findings(&events, &unpaid(), &unpaid()), []);
        assert_eq!(ledger_findings(&events, &unpaid(), &consistent()), []);
        // Cancelled never has a payment, in either read.
        let events = [event("e1", State::Cancelled), e2.clone()];
        assert_eq!(
            ledger_findings(&events, &unpaid(), &consistent()),
            [("payment-for-cancelled", Some("e1".into()))]
        );
        assert_eq!(
            ledger_findings(&events, &consistent(), &consistent()),
            [("payment-for-cancelled", Some("e1".into()))]
        );
        // A payment in the first read without its event.
        assert_eq!(
            ledger_findings(&[e2], &consistent(), &consistent()),
            [("orphan-payment", Some("e1".into()))]
        );
    }
}
