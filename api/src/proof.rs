//! Proofs of a transfer's outcome that anyone can check from the chain spec
//! alone, trusting neither the event system nor any node.
//!
//! A block is final when a quorum of the chain spec's validators signed a
//! precommit for its hash ([`verify_justification`]); its header commits to
//! its transactions (`extrinsics_root`) and their receipts
//! (`receipts_root`, leaf `i` = `SHA-256(SCALE(receipt i))`, see
//! [`lockstep_runtime::merkle`]). An [`EventProof`] is one event's share of
//! that: the justified header, the transfer's receipt with its Merkle path
//! under `receipts_root`, and the transfer's own bytes (whose SHA-256 is
//! the receipt's `tx_hash`, and which carry the commitment to the event's
//! payment, [`crate::event::settlement_commitment`]).
//!
//! [`EventProof::verify`] checks, for an event as the event system
//! reports it:
//!
//! 1. the justification names the header's hash and is signed by more
//!    than two thirds of the spec's validators, over the consensus's
//!    precommit bytes for the header's height and the justification's
//!    round, for the spec's chain id;
//! 2. the receipt is at its index under the header's `receipts_root`;
//! 3. the receipt is for the event's transfer, and the transfer's bytes
//!    hash to it;
//! 4. the event's state follows from the outcome: a successful transfer
//!    that commits to the event's payment → PendingAccount or Completed; a
//!    failed one → Cancelled as failed; a successful one that does not
//!    commit → Cancelled as not committed.

use lockstep_consensus::Vote;
use lockstep_runtime::primitives::{from_hex, to_hex};
use lockstep_runtime::{
    merkle, BlockNumber, ChainSpec, Hash, Header, Justification, JustificationError, Receipt,
    ValidatorSet,
};
use serde::{Deserialize, Serialize};

use crate::event::{bytes_commit_to, Event, NotCommitted};
use crate::lifecycle::{Reason, State};

/// What a proof is checked against: the chain's id and validator set, from
/// its chain spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTrust {
    /// The chain id every consensus signature covers.
    pub chain_id: String,
    /// The validators whose precommits make a block final.
    pub validators: ValidatorSet,
}

impl ChainTrust {
    /// The trust a chain spec gives; `None` if its validator set is empty
    /// or repeats a validator.
    pub fn from_spec(spec: &ChainSpec) -> Option<ChainTrust> {
        Some(ChainTrust {
            chain_id: spec.chain_id.clone(),
            validators: ValidatorSet::new(spec.validators.clone())?,
        })
    }
}

/// Why a proof does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof names another event.
    #[error("the proof is for event {found:?}, not {expected:?}")]
    OtherEvent {
        /// The event checked.
        expected: String,
        /// The one the proof names.
        found: String,
    },
    /// The block has no justification.
    #[error("block #{0} comes without a justification")]
    NoJustification(BlockNumber),
    /// The justification does not make the header final.
    #[error("block #{number}: {source}")]
    Justification {
        /// The block.
        number: BlockNumber,
        /// What is wrong with it.
        source: JustificationError,
    },
    /// The transactions do not hash to the header's `extrinsics_root`.
    #[error("block #{0}: its transactions do not match the header's extrinsics root")]
    ExtrinsicsRoot(BlockNumber),
    /// The receipts do not hash to the header's `receipts_root`, or do not
    /// match the transactions one for one.
    #[error("block #{0}: the receipts do not match the header's receipts root")]
    ReceiptsRoot(BlockNumber),
    /// The receipt's Merkle path does not lead to the header's root.
    #[error("the receipt's Merkle path does not lead to the receipts root of block #{0}")]
    ReceiptPath(BlockNumber),
    /// The receipt is for another transaction.
    #[error("the receipt is for transaction {found}, the event's transfer is {expected}")]
    OtherTransaction {
        /// The event's transfer.
        expected: Hash,
        /// The receipt's.
        found: Hash,
    },
    /// The transfer's bytes are not valid hex or do not hash to it.
    #[error("the transfer's bytes do not hash to {0}")]
    TransferBytes(Hash),
    /// The event's state is not what the outcome and the commitment give.
    #[error("the event is {state}, but the proof shows {shown}")]
    StateMismatch {
        /// The event's state.
        state: State,
        /// What the proof shows.
        shown: String,
    },
}

/// Checks that `justification` makes `header` final under `trust`; returns
/// the header's hash.
pub fn verify_justification(
    header: &Header,
    justification: Option<&Justification>,
    trust: &ChainTrust,
) -> Result<Hash, ProofError> {
    let justification = justification.ok_or(ProofError::NoJustification(header.number))?;
    let hash = header.hash();
    let message =
        Vote::precommit_signing_bytes(&trust.chain_id, header.number, justification.round, &hash.0);
    justification
        .verify(&hash, &trust.validators, &message)
        .map_err(|source| ProofError::Justification {
            number: header.number,
            source,
        })?;
    Ok(hash)
}

/// `event_getProof`: what proves an event's on-chain outcome. See the
/// module docs for what [`EventProof::verify`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventProof {
    /// The event.
    pub event_id: String,
    /// The header of the block holding the transfer.
    pub header: Header,
    /// Its justification: the validators' precommits.
    pub justification: Justification,
    /// The transfer's receipt.
    pub receipt: Receipt,
    /// The receipt's path under `header.receiptsRoot`.
    pub receipt_proof: merkle::MerkleProof,
    /// The transfer, SCALE-encoded, `0x`-hex: its SHA-256 is
    /// `receipt.txHash`, and its `reference` the commitment.
    pub extrinsic: String,
}

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The block's hash.
    pub block_hash: Hash,
    /// Its number.
    pub block_number: BlockNumber,
    /// The state the outcome and the commitment give, with its reason.
    pub state: State,
    /// Why.
    pub reason: Reason,
}

impl EventProof {
    /// Builds one event's proof from a verified block: `tree` over its
    /// receipts' hashes, `index` the transfer's position.
    pub fn new(
        event_id: &str,
        header: &Header,
        justification: &Justification,
        receipt: Receipt,
        tree: &merkle::Tree,
        index: usize,
        extrinsic: &[u8],
    ) -> Option<EventProof> {
        Some(EventProof {
            event_id: event_id.to_owned(),
            header: header.clone(),
            justification: justification.clone(),
            receipt,
            receipt_proof: tree.prove(index)?,
            extrinsic: to_hex(extrinsic),
        })
    }

    /// What the proof shows for `event` (its transfer and payment), checked
    /// against `trust`: the block is final, the receipt is in it, and it is
    /// the event's transfer. Does not compare with the event's state; see
    /// [`EventProof::verify`] for that.
    pub fn prove(&self, event: &Event, trust: &ChainTrust) -> Result<Proven, ProofError> {
        if self.event_id != event.id {
            return Err(ProofError::OtherEvent {
                expected: event.id.clone(),
                found: self.event_id.clone(),
            });
        }
        let block_hash = verify_justification(&self.header, Some(&self.justification), trust)?;
        let number = self.header.number;
        if !merkle::verify(
            &self.header.receipts_root,
            &self.receipt.hash(),
            &self.receipt_proof,
        ) {
            return Err(ProofError::ReceiptPath(number));
        }
        if self.receipt.tx_hash != event.tx_hash {
            return Err(ProofError::OtherTransaction {
                expected: event.tx_hash,
                found: self.receipt.tx_hash,
            });
        }
        let bytes = from_hex(&self.extrinsic)
            .ok()
            .filter(|bytes| Hash::digest(bytes) == event.tx_hash)
            .ok_or(ProofError::TransferBytes(event.tx_hash))?;
        let (state, reason) = outcome_move(&self.receipt, &bytes, event);
        Ok(Proven {
            block_hash,
            block_number: number,
            state,
            reason,
        })
    }

    /// [`EventProof::prove`], and that `event`'s state is the one the proof
    /// gives (PendingAccount or Completed for a settled transfer).
    pub fn verify(&self, event: &Event, trust: &ChainTrust) -> Result<Proven, ProofError> {
        let proven = self.prove(event, trust)?;
        let consistent = match proven.state {
            State::PendingAccount => {
                matches!(event.state, State::PendingAccount | State::Completed)
            }
            state => event.state == state,
        };
        if !consistent {
            return Err(ProofError::StateMismatch {
                state: event.state,
                shown: format!("{} ({:?})", proven.state, proven.reason),
            });
        }
        Ok(proven)
    }
}

/// Where a finalized transfer moves its event: failed → Cancelled
/// (Failed); succeeded and committing to the event → PendingAccount
/// (Succeeded); succeeded without committing → Cancelled (NotCommitted).
pub fn outcome_move(receipt: &Receipt, bytes: &[u8], event: &Event) -> (State, Reason) {
    if !receipt.outcome.is_success() {
        return (State::Cancelled, Reason::Failed);
    }
    match bytes_commit_to(bytes, &event.id, &event.payment) {
        Ok(()) => (State::PendingAccount, Reason::Succeeded),
        Err(NotCommitted { .. }) => (State::Cancelled, Reason::NotCommitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{settlement_commitment, PaymentInstruction};
    use lockstep_runtime::genesis::DEV_ASSET;
    use lockstep_runtime::transaction::SigningContext;
    use lockstep_runtime::{AccountId, Call, DispatchError, Keypair, Outcome, SignedTx};
    use parity_scale_codec::Encode;

    const CHAIN: &str = "proof-test";

    fn payment() -> PaymentInstruction {
        PaymentInstruction {
            payer: "bob".into(),
            payee: "alice".into(),
            amount: "100".into(),
            currency: "EUR".into(),
        }
    }

    fn transfer(reference: Option<Hash>, nonce: u64) -> SignedTx {
        let context = SigningContext {
            genesis_hash: Hash([9; 32]),
            spec_version: 1,
        };
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to: Keypair::dev("bob").public(),
            amount: 5,
            reference,
        };
        SignedTx::sign(&Keypair::dev("alice"), &context, nonce, 100, call)
    }

    fn event(id: &str, tx: &SignedTx, state: State) -> Event {
        Event {
            id: id.into(),
            tx_hash: tx.hash(),
            valid_until: 100,
            payment: payment(),
            state,
            created_at_ms: 1,
            state_since_ms: 2,
            due_at_ms: None,
            checks: 0,
            resends: 0,
            evidence: None,
            receipt: None,
            payment_failure: None,
        }
    }

    /// Four validators, a block of `txs` with `outcomes`, signed by the
    /// first `signers` of them; the trust and each transaction's proof.
    fn block(
        txs: &[SignedTx],
        outcomes: &[Outcome],
        signers: usize,
    ) -> (ChainTrust, Vec<EventProof>) {
        let keys: Vec<Keypair> = ["v0", "v1", "v2", "v3"].map(Keypair::dev).to_vec();
        let validators: Vec<AccountId> = keys.iter().map(Keypair::public).collect();
        let trust = ChainTrust {
            chain_id: CHAIN.into(),
            validators: ValidatorSet::new(validators).unwrap(),
        };
        let tx_hashes: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
        let receipts: Vec<Receipt> = tx_hashes
            .iter()
            .zip(outcomes)
            .map(|(tx_hash, outcome)| Receipt {
                tx_hash: *tx_hash,
                outcome: *outcome,
            })
            .collect();
        let tree = merkle::Tree::new(&receipts.iter().map(Receipt::hash).collect::<Vec<_>>());
        let header = Header {
            parent_hash: Hash([1; 32]),
            number: 7,
            timestamp: 1,
            proposer: keys[0].public(),
            extrinsics_root: merkle::root(&tx_hashes),
            receipts_root: tree.root(),
            state_root: Hash([2; 32]),
        };
        let hash = header.hash();
        let message = Vote::precommit_signing_bytes(CHAIN, 7, 0, &hash.0);
        let justification = Justification {
            round: 0,
            block_hash: hash,
            signatures: keys[..signers]
                .iter()
                .map(|k| (k.public(), k.sign(&message)))
                .collect(),
        };
        let proofs = txs
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                EventProof::new(
                    &format!("e{i}"),
                    &header,
                    &justification,
                    receipts[i],
                    &tree,
                    i,
                    &tx.encode(),
                )
                .unwrap()
            })
            .collect();
        (trust, proofs)
    }

    fn committed(id: &str, nonce: u64) -> SignedTx {
        transfer(Some(settlement_commitment(id, &payment())), nonce)
    }

    #[test]
    fn a_real_proof_shows_the_outcome_and_the_commitment() {
        let txs = [committed("e0", 0), committed("e1", 1), transfer(None, 2)];
        let failed = Outcome::Failed(DispatchError::InsufficientBalance);
        let (trust, proofs) = block(&txs, &[Outcome::Success, failed, Outcome::Success], 3);
        let paid = event("e0", &txs[0], State::Completed);
        let proven = proofs[0].verify(&paid, &trust).unwrap();
        assert_eq!(
            (proven.state, proven.reason, proven.block_number),
            (State::PendingAccount, Reason::Succeeded, 7)
        );
        let cancelled = event("e1", &txs[1], State::Cancelled);
        assert_eq!(
            proofs[1].verify(&cancelled, &trust).unwrap().reason,
            Reason::Failed
        );
        // A successful transfer that commits to nothing settles nothing.
        let uncommitted = event("e2", &txs[2], State::Cancelled);
        assert_eq!(
            proofs[2].verify(&uncommitted, &trust).unwrap().reason,
            Reason::NotCommitted
        );
        // ... and an event claiming it was paid is refused.
        let claimed = event("e2", &txs[2], State::Completed);
        assert!(matches!(
            proofs[2].verify(&claimed, &trust),
            Err(ProofError::StateMismatch { .. })
        ));
        // Round trip through JSON, as event_getProof serves it.
        let json = serde_json::to_string(&proofs[0]).unwrap();
        let back: EventProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify(&paid, &trust).unwrap(), proven);
    }

    #[test]
    fn doctored_proofs_are_refused() {
        let txs = [committed("e0", 0), committed("e1", 1)];
        let (trust, proofs) = block(&txs, &[Outcome::Success, Outcome::Success], 3);
        let paid = event("e0", &txs[0], State::Completed);
        assert!(proofs[0].verify(&paid, &trust).is_ok());

        // A flipped outcome no longer hashes to the root.
        let mut flipped = proofs[0].clone();
        flipped.receipt.outcome = Outcome::Failed(DispatchError::InsufficientBalance);
        assert_eq!(
            flipped.verify(&paid, &trust),
            Err(ProofError::ReceiptPath(7))
        );
        // Another position in the same tree.
        let mut moved = proofs[0].clone();
        moved.receipt_proof.index = 1;
        assert_eq!(moved.verify(&paid, &trust), Err(ProofError::ReceiptPath(7)));
        // A header changed after signing.
        let mut rewritten = proofs[0].clone();
        rewritten.header.timestamp += 1;
        assert!(matches!(
            rewritten.verify(&paid, &trust),
            Err(ProofError::Justification { .. })
        ));
        // Too few signatures, a stranger's, another chain's.
        let (_, short) = block(&txs, &[Outcome::Success, Outcome::Success], 2);
        assert!(matches!(
            short[0].verify(&paid, &trust),
            Err(ProofError::Justification {
                source: JustificationError::NoQuorum { .. },
                ..
            })
        ));
        let mut stranger = proofs[0].clone();
        let mallory = Keypair::dev("mallory");
        stranger.justification.signatures[0] = (mallory.public(), mallory.sign(b"x"));
        assert!(matches!(
            stranger.verify(&paid, &trust),
            Err(ProofError::Justification {
                source: JustificationError::UnknownSigner(_),
                ..
            })
        ));
        let other_chain = ChainTrust {
            chain_id: "another-chain".into(),
            ..trust.clone()
        };
        assert!(matches!(
            proofs[0].verify(&paid, &other_chain),
            Err(ProofError::Justification { .. })
        ));
        // The proof of another event, and the same relabelled as this
        // event's: its receipt is still another transfer's.
        assert_eq!(
            proofs[1].verify(&paid, &trust),
            Err(ProofError::OtherEvent {
                expected: "e0".into(),
                found: "e1".into()
            })
        );
        let mut relabelled = proofs[1].clone();
        relabelled.event_id = "e0".into();
        assert!(matches!(
            relabelled.verify(&paid, &trust),
            Err(ProofError::OtherTransaction { .. })
        ));
        // Other bytes.
        let mut bytes = proofs[0].clone();
        bytes.extrinsic = to_hex(&committed("e0", 5).encode());
        assert_eq!(
            bytes.verify(&paid, &trust),
            Err(ProofError::TransferBytes(txs[0].hash()))
        );
        // An event whose payment was changed: the transfer commits to
        // another one.
        let mut changed = paid.clone();
        changed.payment.amount = "999".into();
        assert!(matches!(
            proofs[0].verify(&changed, &trust),
            Err(ProofError::StateMismatch { .. })
        ));
    }
}
