//! `lockstep audit`: the protocol's invariants (ARCHITECTURE.md, "The
//! protocol"), checked across the three places that hold the truth: the
//! chain (through a quorum of nodes), the event store and the ledger.
//!
//! Reading order makes the audit sound on a running system, not only a
//! quiescent one. States only move forward (Registered → PendingAccount →
//! Completed, Registered → Cancelled), a payment instruction is only
//! written on the move to PendingAccount, and nothing is ever deleted.
//! The ledger is read first (each read is one SQLite read transaction),
//! then every event, then every history, then the ledger again, then the
//! chain:
//! - a payment in the first read has its event (registration precedes
//!   submission precedes payment);
//! - an event listed as Registered was Registered at the first read too,
//!   so that read holds no payment for it (the second may: it may have
//!   been confirmed and paid since);
//! - a Completed event's payment was made before its receipt, so the second
//!   read has it;
//! - a history read after its event may have moved on past the listed
//!   state, legally;
//! - finality never reverts, so what the nodes report last holds for every
//!   event read earlier;
//! - a proof is written in the same write as the move it proves and never
//!   removed, so every event decided when listed has its proof when asked
//!   (after the histories).
//!
//! What it checks, per event:
//! - Completed: a quorum of the nodes agrees the transfer is finalized and
//!   succeeded, in the block the event's evidence names (evidence
//!   required); the transfer commits to the event (its bytes, from that
//!   block, carry the reference `settlement_commitment(event id, payment)`);
//!   the event system serves the proof of that outcome (`event_getProof`)
//!   and, when the chain spec is known (`--chain-spec`, or the dev chain's
//!   own), it verifies against the spec's validators alone, trusting no
//!   node: the block justified by a quorum of them, the transfer's receipt
//!   under its receipts root, the transfer committing to the payment, the
//!   block the one the evidence names; exactly one Paid ledger payment
//!   (second read) with the event's id, whose payer, payee, amount and
//!   currency are the instruction's and whose reference is the receipt's.
//! - PendingAccount: the same on chain, proof included; its payment (second
//!   read) may exist (the receipt is on its way) and, if paid, must then
//!   match.
//! - Cancelled: no node reports the transfer finalized and successful, or
//!   (Cancelled as not committed) the finalized transfer does not commit to
//!   the event; Cancelled on an included transfer (failed, or not
//!   committed) has its proof, verified as above (one Cancelled as expired
//!   has nothing included to prove); no ledger payment row in either read
//!   (no instruction is ever sent for it).
//! - Registered: no ledger payment row in the first read.
//! - History: starts with the registration, each move is legal and starts
//!   where the previous one ended, sequence numbers increase, and it passes
//!   through the event's listed state.
//!
//! And overall: no ledger payment (first read) without its event;
//! transition sequence numbers gap-free and event counts equal to the
//! store's (when the store did not change during the audit); the ledger's
//! double entry (second read): each paid payment has exactly its two
//! postings and a failed one none, each deposit its two, no posting belongs
//! to nothing, every posting is in its account's currency, every balance
//! is the sum of its account's postings; ledger money conserved (per
//! currency the balances, system accounts included, sum to 0 or
//! `--ledger-total`); chain supply conserved (per asset, the balances of
//! every account that ever held it sum to the genesis supply plus
//! successful mints). A note (not a violation) when fewer `--nodes` were
//! asked than a quorum of the chain's validators (when the spec is known).
//!
//! ## Layout
//!
//! - [`events`]: every event and its history from the event store; legal
//!   moves; nothing lost.
//! - [`payments`]: the ledger against the events; double entry; money
//!   conserved.
//! - [`quorum`]: each transfer's outcome on a quorum of nodes against its
//!   event.
//! - [`commitment`]: each settled event's transfer commits to it.
//! - [`proofs`]: each decided event's proof, against the chain spec.
//! - [`supply`]: the chain's asset supply conserved.

mod commitment;
mod events;
mod payments;
mod proofs;
mod quorum;
mod supply;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use lockstep_api::client::ClientOptions;
use lockstep_api::lifecycle::State;
use serde::Serialize;
use serde_json::{json, Value};

use crate::args::AuditArgs;
use crate::chain::NodeClient;
use crate::event::{EventsClient, EventsEndpoint};
use crate::ledger;
use crate::output::Progress;

/// Calls in one JSON-RPC batch to a node (its limit is 256).
const NODE_BATCH: usize = 64;
/// Timeout of each node call.
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// One broken invariant.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// A stable name for the kind, for scripts.
    pub kind: &'static str,
    /// The event concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What is wrong, with the facts.
    pub detail: String,
}

/// What the audit found: violations, and notes on what it could not check.
#[derive(Debug, Default)]
struct Findings {
    violations: Vec<Violation>,
    notes: Vec<String>,
}

impl Findings {
    fn violation(&mut self, kind: &'static str, event_id: Option<&str>, detail: String) {
        self.violations.push(Violation {
            kind,
            event_id: event_id.map(str::to_owned),
            detail,
        });
    }
}

/// `lockstep audit`.
pub async fn run(
    nodes: &[String],
    node_options: &ClientOptions,
    endpoint: &EventsEndpoint,
    json_mode: bool,
    args: AuditArgs,
) -> anyhow::Result<ExitCode> {
    let events = EventsClient::new(endpoint)?;
    let quorum_options = ClientOptions {
        timeout: NODE_TIMEOUT,
        ..node_options.clone()
    };
    let chain_nodes = nodes
        .iter()
        .map(|url| NodeClient::new(url, &quorum_options))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threshold = args.quorum.threshold(chain_nodes.len()).max(1);
    let concurrency = args.concurrency as usize;
    let mut progress = Progress::on_terminal();
    let mut findings = Findings::default();

    progress.update("reading the ledger");
    let ledger_before = ledger::read(&args.ledger).await?;
    progress.update("reading the event store");
    let stats_before = events.stats().await?;
    let all_events = events::read_events(&events, &mut progress).await?;
    let histories =
        events::read_histories(&events, &all_events, concurrency, &mut progress).await?;
    let stats_after = events.stats().await?;
    let ledger_after = ledger::read(&args.ledger).await?;

    let mut per_state: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
    for event in &all_events {
        *per_state.entry(event.state).or_default() += 1;
    }
    events::check_histories(&all_events, &histories, &mut findings);
    events::check_completeness(
        &all_events,
        &histories,
        &stats_before,
        &stats_after,
        &mut findings,
    );
    let ledger_summary = payments::check_ledger(
        &all_events,
        &ledger_before,
        &ledger_after,
        &args,
        &mut findings,
    );
    if args.require_final {
        for event in all_events.iter().filter(|e| !e.state.is_final()) {
            findings.violation(
                "not-final",
                Some(&event.id),
                format!("still {} (--require-final)", event.state),
            );
        }
    }

    progress.update("asking the nodes");
    let chain = supply::chain_info(nodes, node_options, &args).await?;
    if let Some(spec) = chain.as_ref().and_then(|c| c.spec()) {
        let (validators, quorum) = (spec.validators, spec.validator_quorum);
        if let Some(note) = quorum_note(chain_nodes.len(), threshold, validators, quorum) {
            findings.notes.push(note);
        }
    }
    let cancel_reasons = events::cancel_reasons(&histories);
    let not_committed = events::cancelled_not_committed(&cancel_reasons);
    let mut claims = Vec::new();
    let chain_summary = quorum::check_chain(
        &chain_nodes,
        threshold,
        concurrency,
        &all_events,
        &not_committed,
        &mut claims,
        &mut findings,
    )
    .await?;
    progress.update("checking each transfer's commitment to its event");
    let commitment_summary =
        commitment::check_commitments(&chain_nodes, concurrency, &claims, &mut findings).await;
    progress.update("checking each decided event's proof against the chain spec");
    let trust = chain
        .as_ref()
        .and_then(|c| c.spec())
        .and_then(|s| s.trust.as_ref());
    let proof_summary = proofs::check_proofs(
        &events,
        trust,
        &all_events,
        &cancel_reasons,
        concurrency,
        &mut findings,
        &mut progress,
    )
    .await?;
    let supply_summary = if args.skip_supply {
        findings
            .notes
            .push("chain supply not checked (--skip-supply)".into());
        Value::Null
    } else {
        progress.update("checking the chain's supply");
        supply::check_supply(chain.as_ref(), concurrency, &mut findings, &mut progress).await?
    };
    progress.finish();

    let summary = json!({
        "events": all_events.len(),
        "perState": per_state.iter().map(|(s, n)| (s.name(), *n)).collect::<BTreeMap<_, _>>(),
        "chain": chain_summary,
        "commitments": commitment_summary,
        "proofs": proof_summary,
        "ledger": ledger_summary,
        "supply": supply_summary,
    });
    let ok = findings.violations.is_empty();
    if json_mode {
        out!(
            "{}",
            json!({
                "ok": ok,
                "violations": findings.violations,
                "summary": summary,
                "notes": findings.notes,
            })
        );
    } else {
        print_report(&findings, &summary, &per_state);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A note when fewer nodes were asked than a quorum of the chain's
/// validators: each transfer's outcome then rests on fewer nodes than
/// finality itself does (e.g. one node: a quorum of 1 of 1).
fn quorum_note(
    asked: usize,
    threshold: usize,
    validators: usize,
    validator_quorum: usize,
) -> Option<String> {
    (asked < validator_quorum).then(|| {
        format!(
            "{asked} node{} asked (--nodes), quorum {threshold}: fewer than a quorum of the chain's {} validators ({}); \
             each transfer's outcome rests on fewer nodes than finality does",
            if asked == 1 { "" } else { "s" },
            validators,
            validator_quorum
        )
    })
}

/// A JSON scalar as text, strings without their quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_report(findings: &Findings, summary: &Value, per_state: &BTreeMap<State, u64>) {
    for v in &findings.violations {
        match &v.event_id {
            Some(id) => out!("VIOLATION {}: event {id}: {}", v.kind, v.detail),
            None => out!("VIOLATION {}: {}", v.kind, v.detail),
        }
    }
    let states: Vec<String> = per_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
    out!("events: {} ({})", summary["events"], states.join(", "));
    let c = &summary["chain"];
    out!(
        "chain: {} transfers checked on {} nodes (quorum {}): {} succeeded, {} failed, {} expired unincluded, {} undecided",
        c["checked"], c["nodes"], c["threshold"], c["succeeded"], c["failed"], c["expired"], c["undecided"]
    );
    let k = &summary["commitments"];
    out!(
        "commitments: {} transfers checked: {} commit to their event, {} do not; {} not served by any node",
        k["checked"], k["committed"], k["notCommitted"], k["unchecked"]
    );
    let p = &summary["proofs"];
    out!(
        "proofs: {} decided events: {} verify against the chain spec, {} without a proof, {} that do not verify{}",
        p["checked"],
        p["verified"],
        p["missing"],
        p["invalid"],
        match p["unverified"].as_u64() {
            Some(n) if n > 0 => format!(", {n} not verified (no chain spec)"),
            _ => String::new(),
        }
    );
    let l = &summary["ledger"];
    let totals: Vec<String> = l["totals"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k} {}", plain(v))).collect())
        .unwrap_or_default();
    out!(
        "ledger: {} payments ({} paid, {} failed); totals {}",
        l["payments"],
        l["paid"],
        l["failed"],
        if totals.is_empty() {
            "none".into()
        } else {
            totals.join(", ")
        }
    );
    let s = &summary["supply"];
    if let Some(assets) = s["assets"].as_object() {
        for (asset, a) in assets {
            out!(
                "supply: asset {asset}: expected {}, found {} over {} accounts at #{}",
                plain(&a["expected"]),
                plain(&a["found"]),
                s["accounts"],
                s["height"]
            );
        }
    }
    for note in &findings.notes {
        out!("note: {note}");
    }
    if findings.violations.is_empty() {
        out!("audit: clean");
    } else {
        out!("audit: {} violations", findings.violations.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_nodes_for_the_validator_set_are_noted() {
        // One validator: one node is a quorum of it.
        assert_eq!(quorum_note(1, 1, 1, 1), None);
        // Four validators (quorum 3): one node, or two, are too few.
        let note = quorum_note(1, 1, 4, 3).unwrap();
        assert!(note.contains("1 node asked"), "{note}");
        assert!(note.contains("4 validators (3)"), "{note}");
        assert!(quorum_note(2, 2, 4, 3).is_some());
        assert_eq!(quorum_note(3, 2, 4, 3), None);
        assert_eq!(quorum_note(4, 3, 4, 3), None);
    }
}
