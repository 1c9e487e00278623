//! An event's proof checked against the chain spec alone: `lockstep event
//! verify`, and what the audit's proof check relies on.
//!
//! Only the chain spec is trusted (its chain id and validator set,
//! [`ChainTrust`]): the event and its proof may come from an event system
//! that lies, or from a file anyone could have written. [`check`] holds a
//! proof to [`EventProof::verify`] (the block is final under the spec's
//! validators, the receipt is in it and is the event's transfer's, the
//! transfer's bytes commit to the event's payment or not, and the event's
//! state is the one that gives) and adds what binds it to this event and
//! this event system's record of it: it is the event's own proof, and the
//! event's evidence names the block it proves. [`without_proof`] says what
//! an event without a proof is: not decided yet, expired (nothing was
//! included, so nothing can be shown), or decided with nothing to show for
//! it.
//!
//! Every file read here is bounded ([`MAX_CHAIN_SPEC_BYTES`],
//! [`MAX_PROOF_FILE_BYTES`]) and every check is a function of the proof's
//! own size, itself bounded by the validator set (each signer must be a
//! distinct validator) and the tree's depth.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use lockstep_api::event::Event;
use lockstep_api::lifecycle::{Reason, State};
use lockstep_api::offchain::EventApiClient;
use lockstep_api::proof::{ChainTrust, EventProof, ProofError, Proven};
use lockstep_runtime::{ChainSpec, Outcome};
use serde::Deserialize;
use serde_json::json;

use crate::event::EventsClient;
use crate::output::print;
use crate::rpc::At;
use crate::{EXIT_NOTHING_TO_PROVE, EXIT_UNPROVEN};

/// Largest chain spec read (its genesis balances make it the largest input).
pub const MAX_CHAIN_SPEC_BYTES: u64 = 64 << 20;
/// Largest `--from-file` read: an event and its proof are a few KiB (the
/// event system keeps no proof record over 1 MiB).
pub const MAX_PROOF_FILE_BYTES: u64 = 8 << 20;

/// The text of `path`, refused past `max` bytes (whatever its metadata
/// says: it is read with the bound).
pub fn read_bounded(path: &Path, max: u64, what: &str) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "the {what} {} is larger than {max} bytes: not one",
            path.display()
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("the {what} {} is not UTF-8", path.display()))
}

/// The chain spec (JSON) at `path`.
pub fn read_chain_spec(path: &Path) -> anyhow::Result<ChainSpec> {
    let text = read_bounded(path, MAX_CHAIN_SPEC_BYTES, "chain spec")?;
    ChainSpec::from_json(&text).map_err(|e| anyhow!("chain spec {}: {e}", path.display()))
}

/// What the chain spec at `path` trusts: its chain id and validators.
pub fn read_trust(path: &Path) -> anyhow::Result<ChainTrust> {
    let spec = read_chain_spec(path)?;
    ChainTrust::from_spec(&spec).ok_or_else(|| {
        anyhow!(
            "chain spec {}: its validator set is empty or names a validator twice",
            path.display()
        )
    })
}

/// A proof that verified, and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The block, and the state its outcome gives.
    pub proven: Proven,
    /// The transfer's outcome, from its receipt.
    pub outcome: Outcome,
    /// Validators whose precommits the justification holds (each a
    /// distinct validator of the spec, each signature checked).
    pub signers: usize,
    /// Validators in the spec.
    pub validators: usize,
    /// The chain the signatures are for.
    pub chain_id: String,
    /// The receipt's position in the block, and the block's receipt count.
    pub receipt_index: u32,
    /// The block's receipt count.
    pub receipts: u32,
}

/// Why a proof does not prove what the event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The proof is another event's.
    OtherEvent {
        /// The event's id.
        event: String,
        /// The proof's.
        proof: String,
    },
    /// [`EventProof::verify`] refused it.
    Proof(ProofError),
    /// The proof is sound, but the event's evidence names another block.
    EvidenceBlock {
        /// The block the proof shows final, with the transfer in it.
        proven: String,
        /// The block the event's evidence names.
        claimed: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OtherEvent { event, proof } => write!(
                f,
                "the proof is for event {}, not {}",
                shown(proof),
                shown(event)
            ),
            Refusal::Proof(e) => write!(f, "{e}"),
            Refusal::EvidenceBlock { proven, claimed } => write!(
                f,
                "the proof shows the transfer in block {proven}, but the event's evidence names block {claimed}"
            ),
        }
    }
}

/// `proof` checked against `trust` for `event`: see the module docs.
pub fn check(event: &Event, proof: &EventProof, trust: &ChainTrust) -> Result<Verified, Refusal> {
    if proof.event_id != event.id {
        return Err(Refusal::OtherEvent {
            event: event.id.clone(),
            proof: proof.event_id.clone(),
        });
    }
    let proven = proof.verify(event, trust).map_err(Refusal::Proof)?;
    if let Some(evidence) = &event.evidence {
        if let Some(claimed) = evidence.block_hash.filter(|h| *h != proven.block_hash) {
            return Err(Refusal::EvidenceBlock {
                proven: format!("#{} {}", proven.block_number, proven.block_hash),
                claimed: format!("#{} {claimed}", evidence.block_number),
            });
        }
    }
    Ok(Verified {
        proven,
        outcome: proof.receipt.outcome,
        signers: proof.justification.signatures.len(),
        validators: trust.validators.len(),
        chain_id: trust.chain_id.clone(),
        receipt_index: proof.receipt_proof.index,
        receipts: proof.receipt_proof.leaf_count,
    })
}

/// What an event without a proof is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoProof {
    /// Registered: its transfer's outcome is not decided yet.
    Undecided,
    /// Cancelled as expired: nothing was included, so there is nothing to
    /// show (that it expired is the event system's word).
    Expired,
    /// Decided (PendingAccount, Completed, or Cancelled on an included
    /// transfer) with no proof: moved by a version that kept none, or the
    /// proof is withheld.
    Missing,
}

/// What `event`, which came without a proof, is. A Cancelled event is
/// expired when its evidence records no outcome (nothing was included).
pub fn without_proof(event: &Event) -> NoProof {
    match event.state {
        State::Registered => NoProof::Undecided,
        State::Cancelled if event.evidence.as_ref().is_some_and(|e| e.outcome.is_none()) => {
            NoProof::Expired
        }
        _ => NoProof::Missing,
    }
}

/// Text from an untrusted source, quoted when it holds control characters
/// (so that it cannot rewrite the terminal).
fn shown(text: &str) -> String {
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text.to_owned()
    }
}

/// `payer → payee amount currency`.
pub fn describe_payment(event: &Event) -> String {
    let p = &event.payment;
    format!(
        "{} → {} {} {}",
        shown(&p.payer),
        shown(&p.payee),
        shown(&p.amount),
        shown(&p.currency)
    )
}

/// What a verified proof showed, in a few lines.
pub fn describe_verified(event: &Event, v: &Verified) -> String {
    let p = &v.proven;
    let mut lines = vec![
        format!(
            "event {}: {} — proven by block #{} {}",
            shown(&event.id),
            event.state,
            p.block_number,
            p.block_hash
        ),
        format!(
            "  the block is final: signed by {} of {} validators of chain {}",
            v.signers,
            v.validators,
            shown(&v.chain_id)
        ),
        format!(
            "  transfer {} is in it (receipt {} of {}), outcome: {}",
            event.tx_hash,
            u64::from(v.receipt_index) + 1,
            v.receipts,
            match &v.outcome {
                Outcome::Success => "succeeded".to_owned(),
                Outcome::Failed(e) => format!("failed ({e})"),
            }
        ),
    ];
    match p.reason {
        Reason::NotCommitted => lines.push(format!(
            "  the transfer does not commit to this payment: {}; nothing is owed for it",
            describe_payment(event)
        )),
        Reason::Failed => lines.push(format!(
            "  the transfer failed: nothing is owed for this payment: {}",
            describe_payment(event)
        )),
        _ => lines.push(format!(
            "  the transfer commits to this payment: {}",
            describe_payment(event)
        )),
    }
    let state = match (p.state, event.state) {
        (State::PendingAccount, State::Completed) => {
            "the payment is owed: PendingAccount, and the event is Completed (its receipt is the bridge's word, not the chain's)".to_owned()
        }
        (State::PendingAccount, _) => "the payment is owed: PendingAccount".to_owned(),
        (state, _) => format!("the event is {state} ({:?})", p.reason),
    };
    lines.push(format!("  so {state}"));
    lines.join("\n")
}

/// What `lockstep --json event verify` prints and `--from-file` reads back
/// (anything else in the file, such as an earlier verdict, is ignored: it
/// is recomputed).
#[derive(Debug, Deserialize)]
struct Saved {
    event: Event,
    #[serde(default)]
    proof: Option<EventProof>,
}

/// `lockstep event verify`: the event and its proof from `from_file`, or
/// else from the event system (`events`), checked against `chain_spec`.
pub async fn run(
    events: &EventsClient,
    json_mode: bool,
    id: Option<String>,
    chain_spec: &Path,
    from_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // The spec first: a bad one fails before anything is asked.
    let trust = read_trust(chain_spec)?;
    let (event, proof) = match from_file {
        Some(path) => {
            let text = read_bounded(&path, MAX_PROOF_FILE_BYTES, "proof file")?;
            let saved: Saved = serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "{}: not an event with its proof (as `lockstep --json event verify` prints): {e}",
                    path.display()
                )
            })?;
            if let Some(id) = id.as_ref().filter(|id| **id != saved.event.id) {
                bail!(
                    "{} holds event {}, not {id}",
                    path.display(),
                    shown(&saved.event.id)
                );
            }
            (saved.event, saved.proof)
        }
        None => {
            // clap requires the id without --from-file.
            let id = id.context("an event id, or --from-file")?;
            fetch(events, &id).await?
        }
    };
    let answer = match &proof {
        Some(proof) => match check(&event, proof, &trust) {
            Ok(verified) => {
                let value = json!({
                    "ok": true,
                    "verdict": "proven",
                    "event": event,
                    "proof": proof,
                    "proven": {
                        "blockNumber": verified.proven.block_number,
                        "blockHash": verified.proven.block_hash,
                        "state": verified.proven.state,
                        "reason": verified.proven.reason,
                        "signers": verified.signers,
                        "validators": verified.validators,
                        "chainId": verified.chain_id,
                    },
                });
                print(json_mode, &value, describe_verified(&event, &verified));
                return Ok(ExitCode::SUCCESS);
            }
            Err(refusal) => (
                "refused",
                EXIT_UNPROVEN,
                format!("the proof does not verify: {refusal}"),
            ),
        },
        None => match without_proof(&event) {
            NoProof::Undecided => (
                "undecided",
                EXIT_NOTHING_TO_PROVE,
                "not decided yet, nothing to prove".to_owned(),
            ),
            NoProof::Expired => (
                "expired",
                EXIT_NOTHING_TO_PROVE,
                "expired: nothing was included, nothing to prove".to_owned(),
            ),
            NoProof::Missing => (
                "unproven",
                EXIT_UNPROVEN,
                "decided, but there is no proof of its transfer's outcome (moved by a version that kept none, or withheld)".to_owned(),
            ),
        },
    };
    let (verdict, code, message) = answer;
    let value = json!({
        "ok": false,
        "verdict": verdict,
        "event": event,
        "proof": proof,
        "error": message,
    });
    print(
        json_mode,
        &value,
        format!(
            "event {}: {}: {message}\n  transfer {}, payment {}",
            shown(&event.id),
            event.state,
            event.tx_hash,
            describe_payment(&event)
        ),
    );
    Ok(ExitCode::from(code))
}

/// The event `id` and its proof from the event system. The event is read
/// first: a proof is written in the same write as the move it proves and
/// never removed, so an event that is decided when read has its proof by
/// the second read. One that was Registered may have moved on meanwhile:
/// if a proof came, the event is read again.
async fn fetch(events: &EventsClient, id: &str) -> anyhow::Result<(Event, Option<EventProof>)> {
    let mut event = events.get(id).await?;
    let proof = events
        .http
        .proof(id.to_owned())
        .await
        .at("reading the event's proof", &events.url)?;
    if event.state == State::Registered && proof.is_some() {
        event = events.get(id).await?;
    }
    if event.id != id {
        bail!(
            "asked for event {id}, the event system answered with event {}",
            shown(&event.id)
        );
    }
    Ok((event, proof))
}

#[cfg(test)]
pub(crate) mod tests {
    use lockstep_runtime::{Hash, Keypair};

    use super::*;

    /// A Completed event and its proof as `lockstep --json event verify`
    /// saved them from the system test's chain (`lockstep-cli-system`,
    /// validated by `alice`): a proof saved by an earlier build must keep
    /// verifying.
    const SAVED: &str = include_str!("testdata/completed-proof.json");

    /// The saved event, its proof, and the trust of its chain spec.
    pub(crate) fn saved() -> (Event, EventProof, ChainTrust) {
        let saved: Saved = serde_json::from_str(SAVED).unwrap();
        let trust = ChainTrust::from_spec(&ChainSpec::dev(
            "lockstep-cli-system",
            &[Keypair::dev("alice").public()],
        ))
        .unwrap();
        (saved.event, saved.proof.unwrap(), trust)
    }

    #[test]
    fn a_saved_proof_verifies_and_binds_its_event() {
        let (event, proof, trust) = saved();
        assert_eq!(event.state, State::Completed);
        let verified = check(&event, &proof, &trust).unwrap();
        assert_eq!(verified.proven.state, State::PendingAccount);
        assert_eq!(verified.proven.reason, Reason::Succeeded);
        assert_eq!(verified.proven.block_hash, proof.header.hash());
        assert_eq!((verified.signers, verified.validators), (1, 1));
        assert_eq!(verified.outcome, Outcome::Success);

        // Another event's proof.
        let mut other = proof.clone();
        other.event_id = "someone-else".into();
        assert!(matches!(
            check(&event, &other, &trust),
            Err(Refusal::OtherEvent { .. })
        ));
        // An event whose evidence names another block than the proof's.
        let mut elsewhere = event.clone();
        if let Some(evidence) = elsewhere.evidence.as_mut() {
            evidence.block_hash = Some(Hash::digest(b"another block"));
        }
        let refusal = check(&elsewhere, &proof, &trust).unwrap_err();
        assert!(
            matches!(refusal, Refusal::EvidenceBlock { .. }),
            "{refusal}"
        );
        // An event still Registered that the proof shows decided.
        let mut registered = event.clone();
        registered.state = State::Registered;
        assert!(matches!(
            check(&registered, &proof, &trust),
            Err(Refusal::Proof(ProofError::StateMismatch { .. }))
        ));
    }

    #[test]
    fn an_event_without_a_proof_is_undecided_expired_or_missing() {
        let (event, _, _) = saved();
        let with = |state: State, outcome: Option<Option<Outcome>>| {
            let mut e = event.clone();
            e.state = state;
            match outcome {
                None => e.evidence = None,
                Some(outcome) => {
                    if let Some(evidence) = e.evidence.as_mut() {
                        evidence.outcome = outcome;
                    }
                }
            }
            e
        };
        assert_eq!(
            without_proof(&with(State::Registered, None)),
            NoProof::Undecided
        );
        assert_eq!(
            without_proof(&with(State::Cancelled, Some(None))),
            NoProof::Expired
        );
        assert_eq!(
            without_proof(&with(State::Cancelled, Some(Some(Outcome::Success)))),
            NoProof::Missing
        );
        assert_eq!(
            without_proof(&with(State::Cancelled, None)),
            NoProof::Missing
        );
        assert_eq!(without_proof(&event), NoProof::Missing);
    }

    #[test]
    fn files_are_read_with_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("five");
        std::fs::write(&path, "12345").unwrap();
        assert_eq!(read_bounded(&path, 5, "file").unwrap(), "12345");
        let too_big = read_bounded(&path, 4, "file").unwrap_err().to_string();
        assert!(too_big.contains("larger than 4 bytes"), "{too_big}");
        let bad_spec = dir.path().join("spec.json");
        std::fs::write(&bad_spec, "{}").unwrap();
        assert!(read_trust(&bad_spec).is_err());
    }

    #[test]
    fn untrusted_text_cannot_rewrite_the_terminal() {
        assert_eq!(shown("bob"), "bob");
        assert_eq!(shown("bob\u{1b}[2K"), "\"bob\\u{1b}[2K\"");
    }
}
