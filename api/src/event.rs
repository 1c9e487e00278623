//! What an event is on the wire: the registration request and its checks,
//! the event record, transitions with their evidence, and the bridge's
//! receipt with the exact bytes it signs.

use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::{
    crypto, AccountId, BlockNumber, Call, Hash, Signature, SignedTx, MAX_TX_SIZE,
};
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

/// Domain tag of the commitment a settling transfer carries in its
/// `reference` ([`settlement_commitment`]).
pub const COMMITMENT_DOMAIN: &[u8] = b"lockstep/settles/v1";

/// Appends `part` with its length as a u32 little-endian prefix, so that a
/// sequence of parts reads back one way only.
pub fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    // Parts are bounded far below u32::MAX by the field checks.
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// The reference a transfer that settles event `event_id` with `payment`
/// carries on chain:
///
/// ```text
/// SHA-256( "lockstep/settles/v1" ‖ u32 LE len(event id) ‖ event id
///          ‖ PaymentInstruction::canonical_bytes(payment) )
/// ```
///
/// The signer of the transfer commits to exactly one event and one
/// instruction: a registration made after the fact cannot attach a payment
/// to a transfer that does not carry this hash.
pub fn settlement_commitment(event_id: &str, payment: &PaymentInstruction) -> Hash {
    let mut bytes = Vec::with_capacity(COMMITMENT_DOMAIN.len() + 4 + event_id.len() + 64);
    bytes.extend_from_slice(COMMITMENT_DOMAIN);
    put_part(&mut bytes, event_id.as_bytes());
    bytes.extend_from_slice(&payment.canonical_bytes());
    Hash::digest(&bytes)
}

impl PaymentInstruction {
    /// The instruction's canonical bytes, as committed to on chain and
    /// signed by the event system: its four fields in this order, each
    /// length-prefixed ([`put_part`]):
    ///
    /// ```text
    /// u32 LE len ‖ payer ‖ u32 LE len ‖ payee ‖ u32 LE len ‖ amount ‖ u32 LE len ‖ currency
    /// ```
    ///
    /// `amount` is the decimal string as checked (no sign, no leading
    /// zeros), so one payment has one encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let fields = [&self.payer, &self.payee, &self.amount, &self.currency];
        let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
        for field in fields {
            put_part(&mut out, field.as_bytes());
        }
        out
    }

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

/// What the event system has checked of a transfer's commitment to its
/// event ([`settlement_commitment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    /// The signed transfer was given at registration, and its reference
    /// commits to the event and its payment.
    Verified,
    /// Only the transfer's hash was given: before anything is paid, the
    /// confirmer checks the commitment in the finalized block's copy of the
    /// transfer.
    Unverified,
}

/// What a transaction carries instead of the commitment to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// Its bytes are not a signed transaction.
    NotATransaction,
    /// It is not a transfer.
    NotATransfer,
    /// A transfer without a reference.
    NoReference,
    /// A transfer whose reference commits to another event or instruction
    /// (or to nothing of ours).
    Reference(Hash),
}

/// Why a transaction does not settle an event: its `reference` is not
/// [`settlement_commitment`] of the event id and payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the transfer does not commit to this event and payment: {}; its reference must be {expected}, \
     the SHA-256 of \"lockstep/settles/v1\", the event id and the payment's canonical bytes",
    describe_carried(.found)
)]
pub struct NotCommitted {
    /// The reference that would commit to the event.
    pub expected: Hash,
    /// What the transaction carries instead.
    pub found: Carried,
}

fn describe_carried(found: &Carried) -> String {
    match found {
        Carried::NotATransaction => "it is not a signed transaction".into(),
        Carried::NotATransfer => "it is not a transfer".into(),
        Carried::NoReference => "it has no reference".into(),
        Carried::Reference(hash) => format!("its reference is {hash}"),
    }
}

/// Whether `tx` is a transfer that settles event `event_id` with `payment`:
/// its reference is [`settlement_commitment`]`(event_id, payment)`.
pub fn commits_to(
    tx: &SignedTx,
    event_id: &str,
    payment: &PaymentInstruction,
) -> Result<(), NotCommitted> {
    let expected = settlement_commitment(event_id, payment);
    let found = match &tx.call {
        Call::Transfer {
            reference: Some(reference),
            ..
        } if *reference == expected => return Ok(()),
        Call::Transfer {
            reference: Some(reference),
            ..
        } => Carried::Reference(*reference),
        Call::Transfer {
            reference: None, ..
        } => Carried::NoReference,
        _ => Carried::NotATransfer,
    };
    Err(NotCommitted { expected, found })
}

/// [`commits_to`] for a transaction's encoded bytes (as a block holds it).
/// Bytes that do not decode commit to nothing.
pub fn bytes_commit_to(
    bytes: &[u8],
    event_id: &str,
    payment: &PaymentInstruction,
) -> Result<(), NotCommitted> {
    match SignedTx::decode_bounded(bytes) {
        Ok(tx) => commits_to(&tx, event_id, payment),
        Err(_) => Err(NotCommitted {
            expected: settlement_commitment(event_id, payment),
            found: Carried::NotATransaction,
        }),
    }
}

/// The bytes of the transaction with hash `tx_hash` among a block's
/// extrinsics (`0x`-hex, as `chain_getBlock` serves them), found by
/// hashing each: bytes whose SHA-256 is the hash are the transaction's own,
/// so any node may serve them, even one that lies about everything else.
pub fn find_transaction(extrinsics: &[String], tx_hash: &Hash) -> Option<Vec<u8>> {
    extrinsics
        .iter()
        .filter_map(|hex| from_hex(hex).ok())
        .find(|bytes| Hash::digest(bytes) == *tx_hash)
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

/// Why a registration is refused before the store is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A field is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The signed transfer given does not commit to the event.
    #[error("tx: {0}")]
    NotCommitted(#[from] NotCommitted),
}

impl RegisterRequest {
    /// Checks the request and derives the registration. With `tx`, the hash
    /// and expiry come from the transaction itself (and must agree with
    /// `txHash`/`validUntil` if those are given too), and the transaction
    /// must be a transfer that commits to this event and payment
    /// ([`commits_to`]): the commitment is then [`Commitment::Verified`].
    /// With only `txHash` and `validUntil` it is [`Commitment::Unverified`],
    /// for the confirmer to check in the finalized block.
    pub fn check(&self) -> Result<(Registration, Commitment), RegisterError> {
        check_event_id(&self.id)?;
        self.payment.check()?;
        let (tx_hash, valid_until, commitment) = match &self.tx {
            Some(hex) => {
                if hex.len() > 2 + 2 * MAX_TX_SIZE {
                    return Err(invalid("tx", format!("larger than {MAX_TX_SIZE} bytes")).into());
                }
                let bytes = from_hex(hex).map_err(|e| invalid("tx", e.to_string()))?;
                let tx = SignedTx::decode_bounded(&bytes)
                    .map_err(|e| invalid("tx", format!("not a signed transaction: {e}")))?;
                let hash = tx.hash();
                if self.tx_hash.is_some_and(|h| h != hash) {
                    return Err(invalid("txHash", "does not match the hash of `tx`").into());
                }
                if self.valid_until.is_some_and(|v| v != tx.valid_until) {
                    return Err(invalid("validUntil", "does not match `tx`").into());
                }
                commits_to(&tx, &self.id, &self.payment)?;
                (hash, tx.valid_until, Commitment::Verified)
            }
            None => match (self.tx_hash, self.valid_until) {
                (Some(hash), Some(valid_until)) => (hash, valid_until, Commitment::Unverified),
                _ => {
                    return Err(invalid(
                        "tx",
                        "give the signed transaction, or both txHash and validUntil",
                    )
                    .into())
                }
            },
        };
        let registration = Registration {
            id: self.id.clone(),
            tx_hash,
            valid_until,
            payment: self.payment.clone(),
        };
        Ok((registration, commitment))
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
            put_part(&mut out, part.as_bytes());
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
        self.check_fields()?;
        if !crypto::verify(bridge_key, &self.signed_bytes(), &self.signature) {
            return Err(ReceiptError::BadSignature);
        }
        Ok(())
    }

    /// [`PaymentReceipt::verify`] for each of `receipts`, in order, with one
    /// batch check of the signatures when all are good (about twice as fast
    /// per receipt as one by one) and one by one only to find the bad ones.
    pub fn verify_all(
        receipts: &[PaymentReceipt],
        bridge_key: &AccountId,
    ) -> Vec<Result<(), ReceiptError>> {
        let mut results: Vec<Result<(), ReceiptError>> =
            receipts.iter().map(PaymentReceipt::check_fields).collect();
        let checked: Vec<(usize, Vec<u8>)> = receipts
            .iter()
            .zip(&results)
            .enumerate()
            .filter(|(_, (_, fields))| fields.is_ok())
            .map(|(i, (receipt, _))| (i, receipt.signed_bytes()))
            .collect();
        let signers = vec![*bridge_key; checked.len()];
        let bytes: Vec<&[u8]> = checked.iter().map(|(_, b)| b.as_slice()).collect();
        let signatures: Vec<Signature> = checked
            .iter()
            .map(|(i, _)| receipts[*i].signature)
            .collect();
        let valid = crypto::verify_each(&signers, &bytes, &signatures);
        for ((i, _), valid) in checked.iter().zip(valid) {
            if !valid {
                results[*i] = Err(ReceiptError::BadSignature);
            }
        }
        results
    }

    /// Every check of [`PaymentReceipt::verify`] but the signature's.
    fn check_fields(&self) -> Result<(), ReceiptError> {
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
    fn a_batch_of_receipts_is_checked_at_once_and_the_bad_ones_are_named() {
        let key = Keypair::dev("bridge");
        let good: Vec<PaymentReceipt> = (0..5)
            .map(|i| PaymentReceipt::sign(&key, &format!("e{i}"), &format!("pay-{i}")))
            .collect();
        assert!(PaymentReceipt::verify_all(&good, &key.public())
            .iter()
            .all(Result::is_ok));
        let mut mixed = good.clone();
        // Another's signature, a changed reference, a malformed field.
        mixed[1] = PaymentReceipt::sign(&Keypair::dev("mallory"), "e1", "pay-1");
        mixed[3].payment_reference = "pay-x".into();
        mixed[4].event_id = "bad id".into();
        let results = PaymentReceipt::verify_all(&mixed, &key.public());
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Err(ReceiptError::BadSignature));
        assert_eq!(results[2], Ok(()));
        assert_eq!(results[3], Err(ReceiptError::BadSignature));
        assert!(matches!(results[4], Err(ReceiptError::Invalid(_))));
        // The same as one by one.
        for (receipt, result) in mixed.iter().zip(&results) {
            assert_eq!(&receipt.verify(&key.public()), result);
        }
        assert!(PaymentReceipt::verify_all(&[], &key.public()).is_empty());
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
mod commitment_tests {
    use super::*;
    use lockstep_runtime::primitives::to_hex;
    use lockstep_runtime::{Keypair, SigningContext};
    use parity_scale_codec::Encode;

    fn payment() -> PaymentInstruction {
        PaymentInstruction {
            payer: "bob".into(),
            payee: "alice".into(),
            amount: "2500".into(),
            currency: "USD".into(),
        }
    }

    fn transfer(reference: Option<Hash>) -> SignedTx {
        let call = Call::Transfer {
            asset: 1,
            to: Keypair::dev("bob").public(),
            amount: 100,
            reference,
        };
        let context = SigningContext::new(Hash::digest(b"genesis"));
        SignedTx::sign(&Keypair::dev("alice"), &context, 0, 100, call)
    }

    fn request(id: &str, tx: &SignedTx, payment: PaymentInstruction) -> RegisterRequest {
        RegisterRequest {
            id: id.into(),
            tx: Some(to_hex(&tx.encode())),
            tx_hash: None,
            valid_until: None,
            payment,
        }
    }

    #[test]
    fn the_commitment_is_the_documented_bytes() {
        let mut bytes = b"lockstep/settles/v1".to_vec();
        for part in ["order-1", "bob", "alice", "2500", "USD"] {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
        assert_eq!(
            settlement_commitment("order-1", &payment()),
            Hash::digest(&bytes)
        );
        // Every part is bound, and moving a byte between parts changes it.
        let base = settlement_commitment("order-1", &payment());
        assert_ne!(settlement_commitment("order-2", &payment()), base);
        let moved = PaymentInstruction {
            payer: "bo".into(),
            payee: "balice".into(),
            ..payment()
        };
        assert_ne!(settlement_commitment("order-1", &moved), base);
    }

    #[test]
    fn a_signed_transfer_must_commit_to_its_event_and_payment() {
        let committed = transfer(Some(settlement_commitment("order-1", &payment())));
        let (registration, commitment) = request("order-1", &committed, payment())
            .check()
            .expect("a committing transfer is accepted");
        assert_eq!(commitment, Commitment::Verified);
        assert_eq!(registration.tx_hash, committed.hash());

        let expected = settlement_commitment("order-1", &payment());
        let refused =
            |id: &str, tx: &SignedTx, payment: PaymentInstruction| match request(id, tx, payment)
                .check()
            {
                Err(RegisterError::NotCommitted(e)) => e,
                other => panic!("{id}: expected a refusal, got {other:?}"),
            };
        // A chain-only transfer, registered after the fact.
        let plain = refused("order-1", &transfer(None), payment());
        assert_eq!(
            plain,
            NotCommitted {
                expected,
                found: Carried::NoReference
            }
        );
        let message = RegisterError::NotCommitted(plain).to_string();
        assert!(
            message.starts_with("tx: the transfer does not commit"),
            "{message}"
        );
        assert!(message.contains(&expected.to_string()), "{message}");
        // The right transfer under another id, or with another payee.
        let other_id = refused("order-2", &committed, payment());
        assert_eq!(other_id.found, Carried::Reference(expected));
        let eve = PaymentInstruction {
            payee: "eve".into(),
            ..payment()
        };
        assert_eq!(
            refused("order-1", &committed, eve.clone()).expected,
            settlement_commitment("order-1", &eve)
        );
        // Not a transfer at all.
        let context = SigningContext::new(Hash::digest(b"genesis"));
        let mint = SignedTx::sign(
            &Keypair::dev("alice"),
            &context,
            0,
            100,
            Call::Mint {
                asset: 1,
                to: Keypair::dev("alice").public(),
                amount: 1,
            },
        );
        assert_eq!(
            refused("order-1", &mint, payment()).found,
            Carried::NotATransfer
        );
        // A malformed field is still a field error, checked first.
        let mut bad = request("order-1", &transfer(None), payment());
        bad.payment.currency = "usd".into();
        assert!(matches!(bad.check(), Err(RegisterError::Invalid(_))));
    }

    #[test]
    fn a_registration_by_hash_is_unverified() {
        let tx = transfer(None);
        let by_hash = RegisterRequest {
            id: "order-1".into(),
            tx: None,
            tx_hash: Some(tx.hash()),
            valid_until: Some(100),
            payment: payment(),
        };
        let (registration, commitment) = by_hash.check().expect("accepted");
        assert_eq!(commitment, Commitment::Unverified);
        assert_eq!(registration.tx_hash, tx.hash());
    }

    #[test]
    fn block_bytes_are_found_by_hash_and_checked() {
        let committed = transfer(Some(settlement_commitment("order-1", &payment())));
        let plain = transfer(None);
        let extrinsics = vec![
            "0xzz".to_owned(),
            to_hex(&plain.encode()),
            to_hex(&committed.encode()),
        ];
        let bytes = find_transaction(&extrinsics, &committed.hash()).expect("found");
        assert_eq!(bytes, committed.encode());
        assert_eq!(bytes_commit_to(&bytes, "order-1", &payment()), Ok(()));
        let plain_bytes = find_transaction(&extrinsics, &plain.hash()).expect("found");
        assert_eq!(
            bytes_commit_to(&plain_bytes, "order-1", &payment()).map_err(|e| e.found),
            Err(Carried::NoReference)
        );
        assert_eq!(find_transaction(&extrinsics, &Hash([0; 32])), None);
        assert_eq!(
            bytes_commit_to(b"garbage", "order-1", &payment()).map_err(|e| e.found),
            Err(Carried::NotATransaction)
        );
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
