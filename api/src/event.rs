//! What an event is on the wire: the registration request and its checks,
//! the event record, transitions with their evidence, and the bridge's
//! receipt with the exact bytes it signs.

use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{crypto, AccountId, BlockNumber, Hash, Signature, SignedTx, MAX_TX_SIZE};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{Reason, State};

pub use crate::lifecycle;

/// Longest event id, in bytes.
pub const MAX_EVENT_ID: usize = 128;
/// Longest payer or payee account, in bytes.
pub const MAX_PARTY: usize = 128;
/// Longest payment reference in a receipt, in bytes.
pub const MAX_PAYMENT_REFERENCE: usize = 128;
/// Longest failure reason in a receipt, in bytes.
pub const MAX_FAILURE_REASON: usize = 256;

/// What a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReceiptOutcome {
    /// The payment was made: the event completes.
    Paid,
    /// The payment was attempted and refused by the ledger.
    Failed,
    /// Any other word on the wire: never signed, always refused by
    /// [`PaymentReceipt::verify`] with a field error (so a caller gets the
    /// same stable code as for any other malformed field).
    #[serde(other)]
    Unknown,
}

impl ReceiptOutcome {
    /// The word on the wire, and in the signed bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptOutcome::Paid => "paid",
            ReceiptOutcome::Failed => "failed",
            ReceiptOutcome::Unknown => "unknown",
        }
    }
}

/// Domain tag that starts every receipt signing payload.
pub const RECEIPT_DOMAIN: &[u8] = b"lockstep/receipt/v1";

/// Why a request field is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        reason: reason.into(),
    }
}

/// Checks an event id: 1 to [`MAX_EVENT_ID`] bytes of `A-Z a-z 0-9 . _ : -`.
/// The charset keeps ids printable and free of the store's key separator.
pub fn check_event_id(id: &str) -> Result<(), InvalidField> {
    if id.is_empty() || id.len() > MAX_EVENT_ID {
        return Err(invalid(
            "id",
            format!("must be 1 to {MAX_EVENT_ID} bytes, got {}", id.len()),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(invalid("id", "allowed characters are A-Z a-z 0-9 . _ : -"));
    }
    Ok(())
}

/// The fiat payment that settles a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentInstruction {
    /// The ledger account that pays.
    pub payer: String,
    /// The ledger account that is paid.
    pub payee: String,
    /// Integer minor units (cents), as a decimal string.
    pub amount: String,
    /// Three upper-case letters, ISO 4217-like.
    pub currency: String,
}

/// Largest payment, in minor units: what a signed 64-bit ledger column
/// holds (the account bridge's SQLite ledger).
pub const MAX_AMOUNT: u128 = i64::MAX as u128;

impl PaymentInstruction {
    /// Checks every field.
    pub fn check(&self) -> Result<(), InvalidField> {
        for (field, party) in [
            ("payment.payer", &self.payer),
            ("payment.payee", &self.payee),
        ] {
            if party.is_empty() || party.len() > MAX_PARTY {
                return Err(invalid(field, format!("must be 1 to {MAX_PARTY} bytes")));
            }
            if !party.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(field, "must be printable ASCII without spaces"));
            }
            // Ledgers keep '@' for their own system accounts.
            if party.starts_with('@') {
                return Err(invalid(field, "must not start with '@'"));
            }
        }
        if self.payer == self.payee {
            return Err(invalid("payment.payee", "payer and payee are the same"));
        }
        let amount = &self.amount;
        if amount.is_empty()
            || amount.len() > 39
            || !amount.bytes().all(|b| b.is_ascii_digit())
            || (amount.len() > 1 && amount.starts_with('0'))
        {
            return Err(invalid(
                "payment.amount",
                "must be a decimal integer of minor units without sign or leading zeros",
            ));
        }
        // Checked here, before the transfer is submitted: an instruction a
        // ledger could never pay would leave a finalized transfer owed a
        // payment for ever.
        match amount.parse::<u128>() {
            Ok(0) => return Err(invalid("payment.amount", "must be positive")),
            Ok(n) if n <= MAX_AMOUNT => {}
            _ => {
                return Err(invalid(
                    "payment.amount",
                    format!("must be at most {MAX_AMOUNT} minor units"),
                ))
            }
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "payment.currency",
                "must be three upper-case letters",
            ));
        }
        Ok(())
    }
}

/// `event_register`'s parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// The client's idempotency key.
    pub id: String,
    /// The signed transfer, SCALE `0x`-hex; or give `txHash` and `validUntil`.
    #[serde(default)]
    pub tx: Option<String>,
    /// The transfer's hash, when `tx` is not given.
    #[serde(default)]
    pub tx_hash: Option<Hash>,
    /// The transfer's expiry, when `tx` is not given.
    #[serde(default)]
    pub valid_until: Option<BlockNumber>,
    /// The fiat side.
    pub payment: PaymentInstruction,
}

/// A registration after its checks: what is stored and compared for
/// idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The event id.
    pub id: String,
    /// The transfer's hash.
    pub tx_hash: Hash,
    /// The last block at which the transfer may be included.
    pub valid_until: BlockNumber,
    /// The fiat side.
    pub payment: PaymentInstruction,
}

impl RegisterRequest {
    /// Checks the request and derives the registration. With `tx`, the hash
    /// and expiry come from the transaction itself (and must agree with
    /// `txHash`/`validUntil` if those are given too).
    pub fn check(&self) -> Result<Registration, InvalidField> {
        check_event_id(&self.id)?;
        self.payment.check()?;
        let (tx_hash, valid_until) = match &self.tx {
            Some(hex) => {
                if hex.len() > 2 + 2 * MAX_TX_SIZE {
                    return Err(invalid("tx", format!("larger than {MAX_TX_SIZE} bytes")));
                }
                let bytes = from_hex(hex).map_err(|e| invalid("tx", e.to_string()))?;
                let tx = SignedTx::decode_bounded(&bytes)
                    .map_err(|e| invalid("tx", format!("not a signed transaction: {e}")))?;
                let hash = tx.hash();
                if self.tx_hash.is_some_and(|h| h != hash) {
                    return Err(invalid("txHash", "does not match the hash of `tx`"));
                }
                if self.valid_until.is_some_and(|v| v != tx.valid_until) {
                    return Err(invalid("validUntil", "does not match `tx`"));
                }
                (hash, tx.valid_until)
            }
            None => match (self.tx_hash, self.valid_until) {
                (Some(hash), Some(valid_until)) => (hash, valid_until),
                _ => {
                    return Err(invalid(
                        "tx",
                        "give the signed transaction, or both txHash and validUntil",
                    ))
                }
            },
        };
        Ok(Registration {
            id: self.id.clone(),
            tx_hash,
            valid_until,
            payment: self.payment.clone(),
        })
    }
}

/// Why an event moved, as proven by the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The block that holds the transfer (none for an expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<Hash>,
    /// Its number; for an expiry, the lowest finalized height the quorum
    /// reported.
    pub block_number: BlockNumber,
    /// The outcome the quorum agreed on, if included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<lockstep_runtime::Outcome>,
    /// The nodes that agreed (their configured URLs).
    pub confirmed_by: Vec<String>,
    /// How many nodes were asked.
    pub nodes_asked: usize,
}

/// The bridge's receipt for a payment.
///
/// `"paid"` completes the event. `"failed"` reports an attempt the ledger
/// refused (insufficient funds, unknown account, ...), with a `reason`: it
/// is recorded on the event as [`PaymentFailure`] and moves nothing, since a
/// finalized transfer cannot be undone and the payment stays owed; the
/// reconciler keeps re-sending the instruction, and a later `"paid"`
/// receipt completes the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentReceipt {
    /// The event paid.
    pub event_id: String,
    /// Paid or failed.
    pub outcome: ReceiptOutcome,
    /// The bridge's reference for the payment (its ledger entry).
    pub payment_reference: String,
    /// Why the payment failed: required with `"failed"`, absent with `"paid"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// ed25519 signature by the bridge key over [`PaymentReceipt::signing_bytes`]
    /// (`"paid"`) or [`PaymentReceipt::failure_signing_bytes`] (`"failed"`).
    pub signature: Signature,
}

impl PaymentReceipt {
    /// Whether this reports a refused payment rather than a payment made.
    pub fn is_failure(&self) -> bool {
        self.outcome == ReceiptOutcome::Failed
    }
}

/// The last payment failure the bridge reported for an event still in
/// PendingAccount; cleared when the payment is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailure {
    /// The bridge's reason.
    pub reason: String,
    /// The bridge's reference for the attempt.
    pub payment_reference: String,
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: u64,
    /// Failure reports received for this event so far.
    pub reports: u32,
}

/// Why a receipt is refused before the store is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A field is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The signature is not the bridge key's over these bytes.
    #[error("receipt signature does not verify against the configured bridge key")]
    BadSignature,
}

impl PaymentReceipt {
    /// The signed bytes of a `"paid"` receipt, unambiguous by length prefixes:
    ///
    /// ```text
    /// "lockstep/receipt/v1" ‖ u32 LE len(event id) ‖ event id
    ///   ‖ u32 LE len(outcome) ‖ outcome ‖ u32 LE len(payment reference) ‖ payment reference
    /// ```
    pub fn signing_bytes(
        event_id: &str,
        outcome: ReceiptOutcome,
        payment_reference: &str,
    ) -> Vec<u8> {
        Self::parts(&[event_id, outcome.as_str(), payment_reference])
    }

    /// The signed bytes of a `"failed"` receipt: the same parts with the
    /// outcome `"failed"`, then the reason, length-prefixed too:
    ///
    /// ```text
    /// "lockstep/receipt/v1" ‖ u32 LE len ‖ event id ‖ u32 LE len ‖ "failed"
    ///   ‖ u32 LE len ‖ payment reference ‖ u32 LE len ‖ reason
    /// ```
    ///
    /// The outcome is a length-prefixed part, so no failure's bytes can equal
    /// a payment's, and `"paid"` receipts sign exactly what they always did.
    pub fn failure_signing_bytes(event_id: &str, payment_reference: &str, reason: &str) -> Vec<u8> {
        Self::parts(&[
            event_id,
            ReceiptOutcome::Failed.as_str(),
            payment_reference,
            reason,
        ])
    }

    fn parts(parts: &[&str]) -> Vec<u8> {
        let size = parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut out = Vec::with_capacity(RECEIPT_DOMAIN.len() + size);
        out.extend_from_slice(RECEIPT_DOMAIN);
        for part in parts {
            // Parts are bounded far below u32::MAX by the checks.
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// The bytes this receipt's signature must cover.
    pub fn signed_bytes(&self) -> Vec<u8> {
        match &self.reason {
            Some(reason) if self.is_failure() => {
                Self::failure_signing_bytes(&self.event_id, &self.payment_reference, reason)
            }
            _ => Self::signing_bytes(&self.event_id, self.outcome, &self.payment_reference),
        }
    }

    /// Signs a `"paid"` receipt (the bridge's side; also used by tests).
    pub fn sign(
        key: &lockstep_runtime::Keypair,
        event_id: &str,
        payment_reference: &str,
    ) -> PaymentReceipt {
        let signature = key.sign(&Self::signing_bytes(
            event_id,
            ReceiptOutcome::Paid,
            payment_reference,
        ));
        PaymentReceipt {
            event_id: event_id.to_owned(),
            outcome: ReceiptOutcome::Paid,
            payment_reference: payment_reference.to_owned(),
            reason: None,
            signature,
        }
    }

    /// Signs a `"failed"` receipt: the payment was attempted and refused.
    pub fn sign_failure(
        key: &lockstep_runtime::Keypair,
        event_id: &str,
        payment_reference: &str,
        reason: &str,
    ) -> PaymentReceipt {
        let signature = key.sign(&Self::failure_signing_bytes(
            event_id,
            payment_reference,
            reason,
        ));
        PaymentReceipt {
            event_id: event_id.to_owned(),
            outcome: ReceiptOutcome::Failed,
            payment_reference: payment_reference.to_owned(),
            reason: Some(reason.to_owned()),
            signature,
        }
    }

    /// Checks the fields and the signature.
    pub fn verify(&self, bridge_key: &AccountId) -> Result<(), ReceiptError> {
        check_event_id(&self.event_id).map_err(|mut e| {
            e.field = "eventId";
            e
        })?;
        match (self.outcome, &self.reason) {
            (ReceiptOutcome::Paid, None) => {}
            (ReceiptOutcome::Paid, Some(_)) => {
                return Err(invalid("reason", "only a \"failed\" receipt has a reason").into())
            }
            (ReceiptOutcome::Failed, Some(reason)) => {
                if reason.is_empty()
                    || reason.len() > MAX_FAILURE_REASON
                    || !reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                {
                    return Err(invalid(
                        "reason",
                        format!("must be 1 to {MAX_FAILURE_REASON} printable ASCII bytes"),
                    )
                    .into());
                }
            }
            (ReceiptOutcome::Failed, None) => {
                return Err(invalid("reason", "a \"failed\" receipt needs a reason").into())
            }
            (ReceiptOutcome::Unknown, _) => {
                return Err(
                    invalid("outcome", "receipt outcomes are \"paid\" and \"failed\"").into(),
                )
            }
        }
        let reference = &self.payment_reference;
        if reference.is_empty()
            || reference.len() > MAX_PAYMENT_REFERENCE
            || !reference.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "paymentReference",
                format!("must be 1 to {MAX_PAYMENT_REFERENCE} printable ASCII bytes"),
            )
            .into());
        }
        if !crypto::verify(bridge_key, &self.signed_bytes(), &self.signature) {
            return Err(ReceiptError::BadSignature);
        }
        Ok(())
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The event id (the client's idempotency key).
    pub id: String,
    /// The transfer's hash.
    pub tx_hash: Hash,
    /// The transfer's expiry.
    pub valid_until: BlockNumber,
    /// The fiat side.
    pub payment: PaymentInstruction,
    /// The current state.
    pub state: State,
    /// When it was registered (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it entered its current state.
    pub state_since_ms: u64,
    /// When the reconciler next looks at it (none once final).
    #[serde(default)]
    pub due_at_ms: Option<u64>,
    /// Quorum checks that decided nothing (drives the re-check backoff).
    pub checks: u32,
    /// Times the payment instruction was re-sent (drives the resend backoff).
    pub resends: u32,
    /// The evidence of the on-chain outcome, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The bridge's receipt, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<PaymentReceipt>,
    /// The last payment failure the bridge reported, while PendingAccount
    /// (cleared by the receipt that completes the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_failure: Option<PaymentFailure>,
}

impl Event {
    /// The registration this event was created from.
    pub fn registration(&self) -> Registration {
        Registration {
            id: self.id.clone(),
            tx_hash: self.tx_hash,
            valid_until: self.valid_until,
            payment: self.payment.clone(),
        }
    }
}

/// One entry of the append-only history (and of the global feed
/// `event_subscribe` streams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Global, gap-free sequence number (from 1).
    pub seq: u64,
    /// The event.
    pub event_id: String,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// The state before; none for the registration itself.
    pub from: Option<State>,
    /// The state after.
    pub to: State,
    /// Why; none for the registration.
    pub reason: Option<Reason>,
    /// The quorum's evidence, for on-chain outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The payment reference, for a receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_reference: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_runtime::Keypair;

    fn payment() -> PaymentInstruction {
        PaymentInstruction {
            payer: "acct:bob".into(),
            payee: "acct:alice".into(),
            amount: "1250".into(),
            currency: "EUR".into(),
        }
    }

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(check_event_id("order-42:a_b.c").is_ok());
        assert!(check_event_id("").is_err());
        assert!(check_event_id(&"x".repeat(MAX_EVENT_ID)).is_ok());
        assert!(check_event_id(&"x".repeat(MAX_EVENT_ID + 1)).is_err());
        assert!(check_event_id("a b").is_err());
        assert!(check_event_id("a\0b").is_err());
        assert!(check_event_id("é").is_err());
    }

    #[test]
    fn payment_checks() {
        assert!(payment().check().is_ok());
        for (amount, ok) in [
            ("0", false),
            ("01", false),
            ("-1", false),
            ("1.5", false),
            ("", false),
            ("1", true),
        ] {
            let p = PaymentInstruction {
                amount: amount.into(),
                ..payment()
            };
            assert_eq!(p.check().is_ok(), ok, "{amount}");
        }
        let huge = PaymentInstruction {
            amount: "9".repeat(39),
            ..payment()
        };
        assert!(huge.check().is_err());
        for currency in ["eur", "EURO", "E1R", ""] {
            let p = PaymentInstruction {
                currency: currency.into(),
                ..payment()
            };
            assert!(p.check().is_err(), "{currency}");
        }
        let same = PaymentInstruction {
            payee: "acct:bob".into(),
            ..payment()
        };
        assert!(same.check().is_err());
    }

    #[test]
    fn receipt_signature_binds_every_part() {
        let key = Keypair::dev("bridge");
        let receipt = PaymentReceipt::sign(&key, "e1", "pay-1");
        assert!(receipt.verify(&key.public()).is_ok());
        let other = Keypair::dev("mallory");
        assert_eq!(
            receipt.verify(&other.public()),
            Err(ReceiptError::BadSignature)
        );
        let moved = PaymentReceipt {
            event_id: "e2".into(),
            ..receipt.clone()
        };
        assert_eq!(moved.verify(&key.public()), Err(ReceiptError::BadSignature));
        let changed = PaymentReceipt {
            payment_reference: "pay-2".into(),
            ..receipt.clone()
        };
        assert_eq!(
            changed.verify(&key.public()),
            Err(ReceiptError::BadSignature)
        );
        // Length prefixes: moving a byte between parts changes the bytes.
        assert_ne!(
            PaymentReceipt::signing_bytes("ab", ReceiptOutcome::Paid, "c"),
            PaymentReceipt::signing_bytes("a", ReceiptOutcome::Paid, "bc")
        );
    }

    #[test]
    fn failure_receipts_sign_their_reason_and_keep_paid_bytes() {
        // "paid" bytes are what they were before failures existed.
        let mut expected = b"lockstep/receipt/v1".to_vec();
        for part in ["e1", "paid", "pay-1"] {
            expected.extend_from_slice(&(part.len() as u32).to_le_bytes());
            expected.extend_from_slice(part.as_bytes());
        }
        assert_eq!(
            PaymentReceipt::signing_bytes("e1", ReceiptOutcome::Paid, "pay-1"),
            expected
        );

        let key = Keypair::dev("bridge");
        let failure = PaymentReceipt::sign_failure(&key, "e1", "pay-1", "insufficient funds");
        assert!(failure.is_failure());
        assert!(failure.verify(&key.public()).is_ok());
        let reworded = PaymentReceipt {
            reason: Some("unknown account".into()),
            ..failure.clone()
        };
        assert_eq!(
            reworded.verify(&key.public()),
            Err(ReceiptError::BadSignature)
        );
        // A failure's signature does not make a payment.
        let as_paid = PaymentReceipt {
            outcome: ReceiptOutcome::Paid,
            reason: None,
            ..failure.clone()
        };
        assert_eq!(
            as_paid.verify(&key.public()),
            Err(ReceiptError::BadSignature)
        );
        // Shape: a reason only with "failed", and a printable one.
        let no_reason = PaymentReceipt {
            reason: None,
            ..failure.clone()
        };
        assert!(matches!(
            no_reason.verify(&key.public()),
            Err(ReceiptError::Invalid(_))
        ));
        let paid_with_reason = PaymentReceipt {
            reason: Some("x".into()),
            ..PaymentReceipt::sign(&key, "e1", "pay-1")
        };
        assert!(matches!(
            paid_with_reason.verify(&key.public()),
            Err(ReceiptError::Invalid(_))
        ));
        for reason in ["", "line\nbreak", &"x".repeat(MAX_FAILURE_REASON + 1)] {
            let bad = PaymentReceipt::sign_failure(&key, "e1", "pay-1", reason);
            assert!(
                matches!(bad.verify(&key.public()), Err(ReceiptError::Invalid(_))),
                "{reason:?}"
            );
        }
    }
}

#[cfg(test)]
mod outcome_tests {
    use super::*;
    use lockstep_runtime::Keypair;

    #[test]
    fn an_unknown_outcome_decodes_and_is_refused_as_a_field_error() {
        let key = Keypair::dev("bridge");
        let mut receipt = serde_json::to_value(PaymentReceipt::sign(&key, "e1", "pay-1")).unwrap();
        assert_eq!(receipt["outcome"], "paid");
        receipt["outcome"] = "refunded".into();
        let receipt: PaymentReceipt = serde_json::from_value(receipt).unwrap();
        assert_eq!(receipt.outcome, ReceiptOutcome::Unknown);
        assert!(matches!(
            receipt.verify(&key.public()),
            Err(ReceiptError::Invalid(InvalidField {
                field: "outcome",
                ..
            }))
        ));
    }
}
