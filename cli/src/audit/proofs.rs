//! Each decided event's outcome proven from the chain spec alone: every
//! PendingAccount or Completed event, and every event Cancelled on an
//! included transfer (failed, or not committing to it), must come with the
//! proof the event system kept when it moved it (`event_getProof`), and,
//! when the audit knows the chain spec, the proof must verify against it
//! ([`crate::verify::check`]): the block final under the spec's
//! validators, the event's transfer's receipt in it, the transfer's
//! commitment to the payment, the event's state the one that gives, the
//! event's evidence naming that block.
//!
//! Unlike the quorum check, this trusts no node: a quorum of nodes that
//! agree on a false outcome cannot forge the validators' precommits. A
//! Registered event has nothing to prove yet and one Cancelled as expired
//! nothing included to prove, so neither is asked.
//!
//! The proofs are read after the event list: a proof is written in the
//! same write as the move it proves and never removed, so every event that
//! was decided when listed has its proof when asked. Each is one call
//! (at most [`PROOFS_PER_SLOT`] × `--concurrency` in flight), checked and
//! dropped as it arrives: the cost per event is one read and one check,
//! bounded by the validator set and the block's tree depth, and nothing is
//! kept.

use std::collections::HashMap;
use std::future::Future;

use futures::{stream, StreamExt, TryStreamExt};
use lockstep_api::client::Error as ClientError;
use lockstep_api::event::Event;
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::EventApiClient;
use lockstep_api::proof::{ChainTrust, EventProof};
use serde_json::{json, Value};

use super::Findings;
use crate::event::EventsClient;
use crate::output::Progress;
use crate::rpc::describe;
use crate::verify;

/// Proof reads in flight per `--concurrency` slot (a slot of the history
/// reads carries a batch of 100 calls; a proof read is one call).
pub(super) const PROOFS_PER_SLOT: usize = 8;

/// Where the proofs come from (the event system; a mock in the unit tests).
pub(super) trait ProofSource {
    /// Event `id`'s proof: `Ok(Ok(proof or none))` as answered, `Ok(Err)`
    /// when this call was refused or its answer is not a proof (a
    /// violation for that event), `Err` when the event system could not
    /// be asked (the audit stops, as for any read it cannot make).
    fn proof(
        &self,
        id: &str,
    ) -> impl Future<Output = anyhow::Result<Result<Option<EventProof>, String>>>;
}

impl ProofSource for EventsClient {
    async fn proof(&self, id: &str) -> anyhow::Result<Result<Option<EventProof>, String>> {
        match self.http.proof(id.to_owned()).await {
            Ok(proof) => Ok(Ok(proof)),
            // The event system answered: a refusal, or something that is
            // not a proof. That event's, not the audit's, failure.
            Err(e @ (ClientError::Call(_) | ClientError::ParseError(_))) => Ok(Err(describe(&e))),
            Err(e) => Err(anyhow::anyhow!(
                "reading proofs at {}: {}",
                self.url,
                describe(&e)
            )),
        }
    }
}

/// Whether `event` must come with a proof: PendingAccount and Completed
/// always; Cancelled when its transfer was included (its history's reason
/// failed or not committed; without a history, its evidence's outcome).
pub(super) fn needs_proof(event: &Event, cancel_reason: Option<Reason>) -> bool {
    match event.state {
        State::PendingAccount | State::Completed => true,
        State::Registered => false,
        State::Cancelled => match cancel_reason {
            Some(reason) => matches!(reason, Reason::Failed | Reason::NotCommitted),
            None => event.evidence.as_ref().is_some_and(|e| e.outcome.is_some()),
        },
    }
}

/// Reads and checks the proof of every event that needs one (against
/// `trust` when the spec is known; their presence only otherwise).
pub(super) async fn check_proofs(
    source: &impl ProofSource,
    trust: Option<&ChainTrust>,
    all: &[Event],
    cancel_reasons: &HashMap<String, Reason>,
    concurrency: usize,
    findings: &mut Findings,
    progress: &mut Progress,
) -> anyhow::Result<Value> {
    let decided: Vec<&Event> = all
        .iter()
        .filter(|e| needs_proof(e, cancel_reasons.get(&e.id).copied()))
        .collect();
    let (mut verified, mut missing, mut invalid, mut unverified) = (0u64, 0u64, 0u64, 0u64);
    let mut answers = stream::iter(decided.iter().map(|&event| async move {
        let answer = source.proof(&event.id).await?;
        // Checked here, as each answer comes, so that no proof is kept.
        let judged = match answer {
            Err(refusal) => Judged::Missing(format!(
                "{}, but its proof could not be read: {refusal}",
                event.state
            )),
            Ok(None) => Judged::Missing(format!(
                "{} without a proof of its transfer's outcome (event_getProof answers none)",
                event.state
            )),
            Ok(Some(proof)) => match trust {
                None => Judged::Unverified,
                Some(trust) => match verify::check(event, &proof, trust) {
                    Ok(_) => Judged::Verified,
                    Err(refusal) => Judged::Invalid(format!(
                        "{}, but its proof does not verify against the chain spec: {refusal}",
                        event.state
                    )),
                },
            },
        };
        Ok::<_, anyhow::Error>((event, judged))
    }))
    .buffer_unordered(concurrency.max(1) * PROOFS_PER_SLOT);
    let mut done = 0usize;
    while let Some((event, judged)) = answers.try_next().await? {
        match judged {
            Judged::Verified => verified += 1,
            Judged::Unverified => unverified += 1,
            Judged::Missing(detail) => {
                missing += 1;
                findings.violation("proof-missing", Some(&event.id), detail);
            }
            Judged::Invalid(detail) => {
                invalid += 1;
                findings.violation("proof-invalid", Some(&event.id), detail);
            }
        }
        done += 1;
        if done.is_multiple_of(500) {
            progress.update(&format!("checking proofs: {done}/{}", decided.len()));
        }
    }
    if trust.is_none() && unverified > 0 {
        findings.notes.push(format!(
            "{unverified} proofs read but not verified: the chain spec is not known (give --chain-spec)"
        ));
    }
    Ok(json!({
        "checked": decided.len(),
        "verified": verified,
        "missing": missing,
        "invalid": invalid,
        "unverified": unverified,
    }))
}

/// One event's proof, judged.
#[derive(Debug)]
enum Judged {
    Verified,
    /// Present, but no chain spec to check it against.
    Unverified,
    Missing(String),
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lockstep_runtime::Outcome;

    use super::*;
    use crate::verify::tests::saved;

    /// The event system at the module's boundary: a fixed answer per id
    /// (none for an id not listed), every id asked recorded; `down`: it
    /// cannot be reached.
    #[derive(Default)]
    struct Answers {
        answers: HashMap<String, Result<Option<EventProof>, String>>,
        asked: Mutex<Vec<String>>,
        down: bool,
    }

    impl ProofSource for Answers {
        async fn proof(&self, id: &str) -> anyhow::Result<Result<Option<EventProof>, String>> {
            self.asked.lock().unwrap().push(id.to_owned());
            if self.down {
                anyhow::bail!("cannot reach it");
            }
            Ok(self.answers.get(id).cloned().unwrap_or(Ok(None)))
        }
    }

    /// The saved Completed event as `id` in `state`.
    fn event(id: &str, state: State) -> Event {
        let (mut event, _, _) = saved();
        event.id = id.into();
        event.state = state;
        event
    }

    /// Saved event `ok` with its genuine proof; `doctored`, Completed, with
    /// that proof's signatures removed; `none` PendingAccount and `failed`
    /// Cancelled as failed, both without one; `refused`, whose read is
    /// refused; `registered` and `expired`, which have nothing to prove.
    fn system() -> (Vec<Event>, HashMap<String, Reason>, Answers) {
        let (ok, proof, _) = saved();
        let mut doctored = proof.clone();
        doctored.justification.signatures.clear();
        let mut expired = event("expired", State::Cancelled);
        if let Some(evidence) = expired.evidence.as_mut() {
            evidence.outcome = None;
        }
        let mut failed = event("failed", State::Cancelled);
        if let Some(evidence) = failed.evidence.as_mut() {
            evidence.outcome = Some(Outcome::Failed(
                lockstep_runtime::DispatchError::InsufficientBalance,
            ));
        }
        let mut events = vec![
            ok.clone(),
            // The genuine event under another id, with the doctored proof.
            ok.clone(),
            event("none", State::PendingAccount),
            event("refused", State::Completed),
            event("registered", State::Registered),
            expired,
            failed,
        ];
        events[1].id = "doctored".into();
        doctored.event_id = "doctored".into();
        let reasons = HashMap::from([
            ("expired".to_owned(), Reason::Expired),
            ("failed".to_owned(), Reason::Failed),
        ]);
        let answers = Answers {
            answers: HashMap::from([
                (ok.id.clone(), Ok(Some(proof))),
                ("doctored".to_owned(), Ok(Some(doctored))),
                ("refused".to_owned(), Err("no (code 2051)".to_owned())),
            ]),
            ..Answers::default()
        };
        (events, reasons, answers)
    }

    fn violations(findings: &Findings) -> Vec<(&'static str, String)> {
        let mut found: Vec<(&'static str, String)> = findings
            .violations
            .iter()
            .map(|v| (v.kind, v.event_id.clone().unwrap_or_default()))
            .collect();
        found.sort();
        found
    }

    #[tokio::test]
    async fn a_decided_event_without_a_proof_or_with_one_that_does_not_verify_is_a_violation() {
        let (events, reasons, answers) = system();
        let (_, _, trust) = saved();
        let mut findings = Findings::default();
        let summary = check_proofs(
            &answers,
            Some(&trust),
            &events,
            &reasons,
            1,
            &mut findings,
            &mut Progress::on_terminal(),
        )
        .await
        .unwrap();
        let ok = events[0].id.clone();
        assert_eq!(
            violations(&findings),
            [
                ("proof-invalid", "doctored".to_owned()),
                ("proof-missing", "failed".to_owned()),
                ("proof-missing", "none".to_owned()),
                ("proof-missing", "refused".to_owned()),
            ]
        );
        let invalid = &findings
            .violations
            .iter()
            .find(|v| v.kind == "proof-invalid")
            .unwrap()
            .detail;
        assert!(invalid.contains("0 signatures, 1 needed"), "{invalid}");
        let refused = &findings
            .violations
            .iter()
            .find(|v| v.event_id.as_deref() == Some("refused"))
            .unwrap()
            .detail;
        assert!(refused.contains("no (code 2051)"), "{refused}");
        assert_eq!(
            summary,
            json!({ "checked": 5, "verified": 1, "missing": 3, "invalid": 1, "unverified": 0 })
        );
        // Nothing to prove: never asked.
        let mut asked = answers.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            ["doctored", "failed", "none", ok.as_str(), "refused"]
        );
    }

    #[tokio::test]
    async fn without_the_chain_spec_only_presence_is_checked() {
        let (events, reasons, answers) = system();
        let mut findings = Findings::default();
        let summary = check_proofs(
            &answers,
            None,
            &events,
            &reasons,
            2,
            &mut findings,
            &mut Progress::on_terminal(),
        )
        .await
        .unwrap();
        assert_eq!(
            violations(&findings),
            [
                ("proof-missing", "failed".to_owned()),
                ("proof-missing", "none".to_owned()),
                ("proof-missing", "refused".to_owned()),
            ]
        );
        assert_eq!(summary["unverified"], 2, "{summary}");
        assert!(
            findings
                .notes
                .iter()
                .any(|n| n.contains("give --chain-spec")),
            "{:?}",
            findings.notes
        );
    }

    #[tokio::test]
    async fn an_event_system_that_cannot_be_asked_stops_the_audit() {
        let (events, reasons, mut answers) = system();
        answers.down = true;
        let mut findings = Findings::default();
        let result = check_proofs(
            &answers,
            None,
            &events,
            &reasons,
            1,
            &mut findings,
            &mut Progress::on_terminal(),
        )
        .await;
        assert!(result.is_err());
    }
}
