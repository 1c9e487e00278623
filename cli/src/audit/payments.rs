//! The ledger's side: each event's payment as its state requires, no
//! payment without its event, money conserved.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lockstep_bridge::ledger::PaymentRecord;
use lockstep_offchain::event::Event;
use lockstep_offchain::lifecycle::State;
use serde_json::{json, Value};

use super::Findings;
use crate::args::AuditArgs;
use crate::ledger::{is_paid, LedgerSnapshot};

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
    let mut payments: HashMap<&str, Vec<&PaymentRecord>> = HashMap::new();
    for record in &after.payments {
        payments
            .entry(record.event_id.as_str())
            .or_default()
            .push(record);
    }
    for event in all {
        let id = Some(event.id.as_str());
        let rows = payments.get(event.id.as_str()).cloned().unwrap_or_default();
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
            State::Cancelled | State::Registered => {
                for record in &rows {
                    findings.violation(
                        if event.state == State::Cancelled {
                            "payment-for-cancelled"
                        } else {
                            "payment-for-registered"
                        },
                        id,
                        format!(
                            "{} event has a ledger payment {} ({:?}, {} {})",
                            event.state,
                            record.reference,
                            record.status,
                            record.amount,
                            record.currency
                        ),
                    );
                }
            }
        }
    }

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
