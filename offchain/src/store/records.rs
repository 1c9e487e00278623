//! The records the store writes, apart from the API's wire types.
//!
//! Each type here has the serde layout (field names, order, optional fields
//! and their defaults) that the store has written since its first version;
//! the store converts to and from `lockstep_api` types at its boundary. So a
//! change to a wire type fails to compile here (the conversions name every
//! field and variant) instead of silently changing the disk format. Base
//! primitives of `lockstep_runtime` ([`Hash`], [`Signature`], [`Outcome`])
//! are used as they are: their encodings are the chain's and fixed.
//!
//! Changing anything here changes the disk format: old records must still
//! decode (add optional fields with `#[serde(default)]`, never rename).

use lockstep_api::bus::BusMessage;
use lockstep_api::event::{
    Commitment, Event, Evidence, PaymentFailure, PaymentInstruction, PaymentReceipt,
    ReceiptOutcome, Transition,
};
use lockstep_api::lifecycle::{Reason, State};
use lockstep_runtime::{BlockNumber, Hash, Outcome, Signature};
use serde::{Deserialize, Serialize};

/// A state, as stored (its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredState {
    /// [`State::Registered`].
    Registered,
    /// [`State::PendingAccount`].
    PendingAccount,
    /// [`State::Completed`].
    Completed,
    /// [`State::Cancelled`].
    Cancelled,
}

impl From<State> for StoredState {
    fn from(state: State) -> Self {
        match state {
            State::Registered => StoredState::Registered,
            State::PendingAccount => StoredState::PendingAccount,
            State::Completed => StoredState::Completed,
            State::Cancelled => StoredState::Cancelled,
        }
    }
}

impl From<StoredState> for State {
    fn from(state: StoredState) -> Self {
        match state {
            StoredState::Registered => State::Registered,
            StoredState::PendingAccount => State::PendingAccount,
            StoredState::Completed => State::Completed,
            StoredState::Cancelled => State::Cancelled,
        }
    }
}

/// A reason, as stored (camelCase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoredReason {
    /// [`Reason::Succeeded`].
    Succeeded,
    /// [`Reason::Failed`].
    Failed,
    /// [`Reason::Expired`].
    Expired,
    /// [`Reason::Receipt`].
    Receipt,
    /// [`Reason::NotCommitted`] (`notCommitted`).
    NotCommitted,
}

impl From<Reason> for StoredReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Succeeded => StoredReason::Succeeded,
            Reason::Failed => StoredReason::Failed,
            Reason::Expired => StoredReason::Expired,
            Reason::Receipt => StoredReason::Receipt,
            Reason::NotCommitted => StoredReason::NotCommitted,
        }
    }
}

impl From<StoredReason> for Reason {
    fn from(reason: StoredReason) -> Self {
        match reason {
            StoredReason::Succeeded => Reason::Succeeded,
            StoredReason::Failed => Reason::Failed,
            StoredReason::Expired => Reason::Expired,
            StoredReason::Receipt => Reason::Receipt,
            StoredReason::NotCommitted => Reason::NotCommitted,
        }
    }
}

/// A payment instruction, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredPayment {
    /// The ledger account that pays.
    pub payer: String,
    /// The ledger account that is paid.
    pub payee: String,
    /// Integer minor units, as a decimal string.
    pub amount: String,
    /// The currency code.
    pub currency: String,
}

impl From<&PaymentInstruction> for StoredPayment {
    fn from(p: &PaymentInstruction) -> Self {
        let PaymentInstruction {
            payer,
            payee,
            amount,
            currency,
        } = p.clone();
        StoredPayment {
            payer,
            payee,
            amount,
            currency,
        }
    }
}

impl From<StoredPayment> for PaymentInstruction {
    fn from(p: StoredPayment) -> Self {
        PaymentInstruction {
            payer: p.payer,
            payee: p.payee,
            amount: p.amount,
            currency: p.currency,
        }
    }
}

/// The quorum's evidence, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvidence {
    /// The block that holds the transfer (none for an expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<Hash>,
    /// Its number, or the expiry height.
    pub block_number: BlockNumber,
    /// The agreed outcome, if included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The nodes that agreed.
    pub confirmed_by: Vec<String>,
    /// How many nodes were asked.
    pub nodes_asked: usize,
}

impl From<&Evidence> for StoredEvidence {
    fn from(e: &Evidence) -> Self {
        let Evidence {
            block_hash,
            block_number,
            outcome,
            confirmed_by,
            nodes_asked,
        } = e.clone();
        StoredEvidence {
            block_hash,
            block_number,
            outcome,
            confirmed_by,
            nodes_asked,
        }
    }
}

impl From<StoredEvidence> for Evidence {
    fn from(e: StoredEvidence) -> Self {
        Evidence {
            block_hash: e.block_hash,
            block_number: e.block_number,
            outcome: e.outcome,
            confirmed_by: e.confirmed_by,
            nodes_asked: e.nodes_asked,
        }
    }
}

/// A receipt's outcome, as stored (camelCase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoredReceiptOutcome {
    /// [`ReceiptOutcome::Paid`].
    Paid,
    /// [`ReceiptOutcome::Failed`].
    Failed,
    /// [`ReceiptOutcome::Unknown`] (never stored: such receipts are refused).
    #[serde(other)]
    Unknown,
}

impl From<ReceiptOutcome> for StoredReceiptOutcome {
    fn from(outcome: ReceiptOutcome) -> Self {
        match outcome {
            ReceiptOutcome::Paid => StoredReceiptOutcome::Paid,
            ReceiptOutcome::Failed => StoredReceiptOutcome::Failed,
            ReceiptOutcome::Unknown => StoredReceiptOutcome::Unknown,
        }
    }
}

impl From<StoredReceiptOutcome> for ReceiptOutcome {
    fn from(outcome: StoredReceiptOutcome) -> Self {
        match outcome {
            StoredReceiptOutcome::Paid => ReceiptOutcome::Paid,
            StoredReceiptOutcome::Failed => ReceiptOutcome::Failed,
            StoredReceiptOutcome::Unknown => ReceiptOutcome::Unknown,
        }
    }
}

/// The bridge's receipt, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredReceipt {
    /// The event paid.
    pub event_id: String,
    /// Paid or failed.
    pub outcome: StoredReceiptOutcome,
    /// The bridge's reference.
    pub payment_reference: String,
    /// Why the payment failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bridge's signature.
    pub signature: Signature,
}

impl From<&PaymentReceipt> for StoredReceipt {
    fn from(r: &PaymentReceipt) -> Self {
        let PaymentReceipt {
            event_id,
            outcome,
            payment_reference,
            reason,
            signature,
        } = r.clone();
        StoredReceipt {
            event_id,
            outcome: outcome.into(),
            payment_reference,
            reason,
            signature,
        }
    }
}

impl From<StoredReceipt> for PaymentReceipt {
    fn from(r: StoredReceipt) -> Self {
        PaymentReceipt {
            event_id: r.event_id,
            outcome: r.outcome.into(),
            payment_reference: r.payment_reference,
            reason: r.reason,
            signature: r.signature,
        }
    }
}

/// The last payment failure, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPaymentFailure {
    /// The bridge's reason.
    pub reason: String,
    /// The bridge's reference for the attempt.
    pub payment_reference: String,
    /// When it was recorded.
    pub at_ms: u64,
    /// Failure reports so far.
    pub reports: u32,
}

impl From<&PaymentFailure> for StoredPaymentFailure {
    fn from(f: &PaymentFailure) -> Self {
        let PaymentFailure {
            reason,
            payment_reference,
            at_ms,
            reports,
        } = f.clone();
        StoredPaymentFailure {
            reason,
            payment_reference,
            at_ms,
            reports,
        }
    }
}

impl From<StoredPaymentFailure> for PaymentFailure {
    fn from(f: StoredPaymentFailure) -> Self {
        PaymentFailure {
            reason: f.reason,
            payment_reference: f.payment_reference,
            at_ms: f.at_ms,
            reports: f.reports,
        }
    }
}

/// An event, as stored in `events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// The event id.
    pub id: String,
    /// The transfer's hash.
    pub tx_hash: Hash,
    /// The transfer's expiry.
    pub valid_until: BlockNumber,
    /// The fiat side.
    pub payment: StoredPayment,
    /// The current state.
    pub state: StoredState,
    /// When it was registered.
    pub created_at_ms: u64,
    /// When it entered its current state.
    pub state_since_ms: u64,
    /// When the reconciler next looks at it.
    #[serde(default)]
    pub due_at_ms: Option<u64>,
    /// Undecided quorum checks.
    pub checks: u32,
    /// Re-sends of the payment instruction.
    pub resends: u32,
    /// The on-chain evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<StoredEvidence>,
    /// The completing receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<StoredReceipt>,
    /// The last payment failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_failure: Option<StoredPaymentFailure>,
    /// Registered by hash alone, and the transfer's commitment to the event
    /// not checked yet ([`Commitment::Unverified`]): the confirmer checks it
    /// in the finalized block before anything is paid. Absent (false) for
    /// an event registered with its signed transfer (checked then), one
    /// whose commitment the confirmer has checked, and records written
    /// before commitments existed (under the rules they were accepted by).
    /// Absent when false, so such records keep their bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub commitment_unverified: bool,
    /// The name of the credential that registered the event: while the
    /// event is Registered it counts against that credential's bound
    /// (`--max-registered-per-credential`). Absent for an event registered
    /// without a credential (`--insecure-no-auth`, or the store's own
    /// callers) and for records written before it was recorded: such an
    /// event counts against no one. Absent when none, so such records keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
}

/// What the store keeps of an event beside its wire form: what its
/// registration proved of the transfer's commitment, and who registered it.
/// Every rewrite of a record carries it over unchanged (but for the
/// commitment, which the confirmer's check may verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// What is known of the transfer's commitment to the event.
    pub commitment: Commitment,
    /// The registering credential's name, if it had one.
    pub registered_by: Option<String>,
}

impl From<&(Event, Commitment)> for StoredEvent {
    /// The record of an event registered without a credential.
    fn from((event, commitment): &(Event, Commitment)) -> Self {
        StoredEvent::new(
            event,
            &Provenance {
                commitment: *commitment,
                registered_by: None,
            },
        )
    }
}

impl From<&(Event, Provenance)> for StoredEvent {
    fn from((event, provenance): &(Event, Provenance)) -> Self {
        StoredEvent::new(event, provenance)
    }
}

impl StoredEvent {
    /// The record of `e`, with its provenance.
    pub fn new(e: &Event, provenance: &Provenance) -> StoredEvent {
        let Event {
            id,
            tx_hash,
            valid_until,
            payment,
            state,
            created_at_ms,
            state_since_ms,
            due_at_ms,
            checks,
            resends,
            evidence,
            receipt,
            payment_failure,
        } = e;
        StoredEvent {
            id: id.clone(),
            tx_hash: *tx_hash,
            valid_until: *valid_until,
            payment: payment.into(),
            state: (*state).into(),
            created_at_ms: *created_at_ms,
            state_since_ms: *state_since_ms,
            due_at_ms: *due_at_ms,
            checks: *checks,
            resends: *resends,
            evidence: evidence.as_ref().map(Into::into),
            receipt: receipt.as_ref().map(Into::into),
            payment_failure: payment_failure.as_ref().map(Into::into),
            commitment_unverified: provenance.commitment == Commitment::Unverified,
            registered_by: provenance.registered_by.clone(),
        }
    }
}

impl From<StoredEvent> for (Event, Commitment) {
    fn from(e: StoredEvent) -> Self {
        let (event, provenance): (Event, Provenance) = e.into();
        (event, provenance.commitment)
    }
}

impl From<StoredEvent> for (Event, Provenance) {
    fn from(mut e: StoredEvent) -> Self {
        let commitment = if e.commitment_unverified {
            Commitment::Unverified
        } else {
            Commitment::Verified
        };
        let registered_by = e.registered_by.take();
        (
            e.into(),
            Provenance {
                commitment,
                registered_by,
            },
        )
    }
}

impl From<StoredEvent> for Event {
    fn from(e: StoredEvent) -> Self {
        Event {
            id: e.id,
            tx_hash: e.tx_hash,
            valid_until: e.valid_until,
            payment: e.payment.into(),
            state: e.state.into(),
            created_at_ms: e.created_at_ms,
            state_since_ms: e.state_since_ms,
            due_at_ms: e.due_at_ms,
            checks: e.checks,
            resends: e.resends,
            evidence: e.evidence.map(Into::into),
            receipt: e.receipt.map(Into::into),
            payment_failure: e.payment_failure.map(Into::into),
        }
    }
}

/// A transition, as stored in `transitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTransition {
    /// Global sequence number.
    pub seq: u64,
    /// The event.
    pub event_id: String,
    /// When.
    pub at_ms: u64,
    /// The state before (none for the registration).
    pub from: Option<StoredState>,
    /// The state after.
    pub to: StoredState,
    /// Why (none for the registration).
    pub reason: Option<StoredReason>,
    /// The quorum's evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<StoredEvidence>,
    /// The payment reference, for a receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_reference: Option<String>,
}

impl From<&Transition> for StoredTransition {
    fn from(t: &Transition) -> Self {
        let Transition {
            seq,
            event_id,
            at_ms,
            from,
            to,
            reason,
            evidence,
            payment_reference,
        } = t;
        StoredTransition {
            seq: *seq,
            event_id: event_id.clone(),
            at_ms: *at_ms,
            from: from.map(Into::into),
            to: (*to).into(),
            reason: reason.map(Into::into),
            evidence: evidence.as_ref().map(Into::into),
            payment_reference: payment_reference.clone(),
        }
    }
}

impl From<StoredTransition> for Transition {
    fn from(t: StoredTransition) -> Self {
        Transition {
            seq: t.seq,
            event_id: t.event_id,
            at_ms: t.at_ms,
            from: t.from.map(Into::into),
            to: t.to.into(),
            reason: t.reason.map(Into::into),
            evidence: t.evidence.map(Into::into),
            payment_reference: t.payment_reference,
        }
    }
}

/// A payment instruction on the bus, as stored in its outbox entry:
/// unsigned, since the bus signs each delivery with the key the event
/// system runs with (see `crate::bus`), so no signature is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// The message id (the event id).
    pub message_id: String,
    /// The event.
    pub event_id: String,
    /// The on-chain transfer.
    pub tx_hash: Hash,
    /// The block that holds it.
    pub block_hash: Option<Hash>,
    /// That block's number.
    pub block_number: BlockNumber,
    /// What to pay.
    pub payment: StoredPayment,
    /// Deliveries so far.
    pub attempt: u32,
}

impl From<&BusMessage> for StoredMessage {
    fn from(m: &BusMessage) -> Self {
        let BusMessage {
            message_id,
            event_id,
            tx_hash,
            block_hash,
            block_number,
            payment,
            attempt,
            signature: _,
        } = m;
        StoredMessage {
            message_id: message_id.clone(),
            event_id: event_id.clone(),
            tx_hash: *tx_hash,
            block_hash: *block_hash,
            block_number: *block_number,
            payment: payment.into(),
            attempt: *attempt,
        }
    }
}

impl From<StoredMessage> for BusMessage {
    fn from(m: StoredMessage) -> Self {
        BusMessage {
            message_id: m.message_id,
            event_id: m.event_id,
            tx_hash: m.tx_hash,
            block_hash: m.block_hash,
            block_number: m.block_number,
            payment: m.payment.into(),
            attempt: m.attempt,
            signature: None,
        }
    }
}

/// An instruction's entry in `outbox`: the message every bus relays, and
/// the embedded queue's bookkeeping for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The message.
    pub message: StoredMessage,
    /// When it is (or becomes again) visible to `pull`.
    pub visible_at_ms: u64,
    /// The lease holding it, if any.
    pub lease: Option<String>,
    /// Acknowledged by a consumer: out of the queue until the reconciler
    /// re-sends it (no receipt in time) or a receipt removes it.
    pub acked: bool,
}

/// A lease of the embedded queue: messages handed to one consumer until a
/// deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The lease id.
    pub lease_id: String,
    /// After this (ms since the Unix epoch), the messages come back.
    pub deadline_ms: u64,
    /// Ids of the messages not yet acked.
    pub messages: Vec<String>,
}

#[cfg(test)]
mod tests {
    //! Records exactly as the store wrote them before it had its own types:
    //! they must decode, and encode back to the same bytes.

    use super::*;

    fn hex(byte: &str, n: usize) -> String {
        format!("0x{}", byte.repeat(n))
    }

    /// Decodes `json`, checks it with `check`, and re-encodes it byte for
    /// byte.
    fn round_trip<S, T>(json: &str, check: impl FnOnce(&T))
    where
        S: Serialize + for<'de> Deserialize<'de>,
        T: Clone,
        for<'a> S: From<&'a T>,
        T: From<S>,
    {
        let stored: S = serde_json::from_str(json).expect("decodes");
        let value = T::from(stored);
        check(&value);
        let again = serde_json::to_string(&S::from(&value)).expect("encodes");
        assert_eq!(again, json);
    }

    #[test]
    fn a_pending_event_record_decodes_and_encodes_unchanged() {
        let json = format!(
            concat!(
                r#"{{"id":"e1","txHash":"{tx}","validUntil":100,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"100","currency":"EUR"}},"#,
                r#""state":"PendingAccount","createdAtMs":10,"stateSinceMs":12,"dueAtMs":1000,"#,
                r#""checks":1,"resends":2,"#,
                r#""evidence":{{"blockHash":"{block}","blockNumber":5,"outcome":{{"status":"success"}},"#,
                r#""confirmedBy":["a","b"],"nodesAsked":3}},"#,
                r#""paymentFailure":{{"reason":"insufficient funds","paymentReference":"p1","atMs":20,"reports":1}}}}"#
            ),
            tx = hex("01", 32),
            block = hex("07", 32),
        );
        round_trip::<StoredEvent, (Event, Commitment)>(&json, |(event, commitment)| {
            assert_eq!(*commitment, Commitment::Verified);
            assert_eq!(event.id, "e1");
            assert_eq!(event.tx_hash, Hash([1; 32]));
            assert_eq!(event.payment.amount, "100");
            assert_eq!(event.state, State::PendingAccount);
            assert_eq!(
                (event.created_at_ms, event.state_since_ms, event.due_at_ms),
                (10, 12, Some(1000))
            );
            assert_eq!((event.checks, event.resends), (1, 2));
            let evidence = event.evidence.as_ref().expect("evidence");
            assert_eq!(evidence.block_hash, Some(Hash([7; 32])));
            assert_eq!(evidence.outcome, Some(Outcome::Success));
            assert_eq!(evidence.nodes_asked, 3);
            assert_eq!(event.receipt, None);
            let failure = event.payment_failure.as_ref().expect("failure");
            assert_eq!((failure.at_ms, failure.reports), (20, 1));
        });
    }

    #[test]
    fn a_completed_event_record_decodes_and_encodes_unchanged() {
        let json = format!(
            concat!(
                r#"{{"id":"e2","txHash":"{tx}","validUntil":7,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"5","currency":"USD"}},"#,
                r#""state":"Completed","createdAtMs":1,"stateSinceMs":3,"dueAtMs":null,"#,
                r#""checks":0,"resends":0,"#,
                r#""evidence":{{"blockHash":"{block}","blockNumber":4,"#,
                r#""outcome":{{"status":"failed","error":"insufficientBalance"}},"#,
                r#""confirmedBy":["n1"],"nodesAsked":1}},"#,
                r#""receipt":{{"eventId":"e2","outcome":"paid","paymentReference":"pay-9","signature":"{sig}"}}}}"#
            ),
            tx = hex("02", 32),
            block = hex("0a", 32),
            sig = hex("09", 64),
        );
        round_trip::<StoredEvent, (Event, Commitment)>(&json, |(event, _)| {
            assert_eq!(event.state, State::Completed);
            assert_eq!(event.due_at_ms, None);
            let receipt = event.receipt.as_ref().expect("receipt");
            assert_eq!(receipt.outcome, ReceiptOutcome::Paid);
            assert_eq!(receipt.payment_reference, "pay-9");
            assert_eq!(receipt.reason, None);
            assert_eq!(receipt.signature, Signature([9; 64]));
            assert_eq!(event.payment_failure, None);
        });
        // Optional fields may be absent altogether.
        let old = format!(
            concat!(
                r#"{{"id":"e3","txHash":"{tx}","validUntil":7,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"5","currency":"USD"}},"#,
                r#""state":"Registered","createdAtMs":1,"stateSinceMs":1,"checks":0,"resends":0}}"#
            ),
            tx = hex("03", 32),
        );
        let event = Event::from(serde_json::from_str::<StoredEvent>(&old).expect("decodes"));
        assert_eq!((event.state, event.due_at_ms), (State::Registered, None));
    }

    #[test]
    fn an_unverified_commitment_is_kept_and_old_records_are_verified() {
        let json = format!(
            concat!(
                r#"{{"id":"e4","txHash":"{tx}","validUntil":7,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"5","currency":"USD"}},"#,
                r#""state":"Registered","createdAtMs":1,"stateSinceMs":1,"dueAtMs":3,"#,
                r#""checks":0,"resends":0,"commitmentUnverified":true}}"#
            ),
            tx = hex("04", 32),
        );
        round_trip::<StoredEvent, (Event, Commitment)>(&json, |(event, commitment)| {
            assert_eq!(*commitment, Commitment::Unverified);
            assert_eq!(event.state, State::Registered);
        });
        // Written before the field existed: the rules it was accepted by.
        let old = json.replace(r#","commitmentUnverified":true"#, "");
        let (_, commitment) = <(Event, Commitment)>::from(
            serde_json::from_str::<StoredEvent>(&old).expect("decodes"),
        );
        assert_eq!(commitment, Commitment::Verified);
    }

    #[test]
    fn the_registering_credential_is_kept_and_old_records_have_none() {
        let json = format!(
            concat!(
                r#"{{"id":"e6","txHash":"{tx}","validUntil":7,"#,
                r#""payment":{{"payer":"bob","payee":"alice","amount":"5","currency":"USD"}},"#,
                r#""state":"Registered","createdAtMs":1,"stateSinceMs":1,"dueAtMs":3,"#,
                r#""checks":0,"resends":0,"commitmentUnverified":true,"registeredBy":"bank-a"}}"#
            ),
            tx = hex("06", 32),
        );
        round_trip::<StoredEvent, (Event, Provenance)>(&json, |(event, provenance)| {
            assert_eq!(event.id, "e6");
            assert_eq!(provenance.commitment, Commitment::Unverified);
            assert_eq!(provenance.registered_by.as_deref(), Some("bank-a"));
        });
        // Written before the field existed: registered by no one, and
        // written back byte for byte.
        let old = json.replace(r#","registeredBy":"bank-a""#, "");
        round_trip::<StoredEvent, (Event, Provenance)>(&old, |(_, provenance)| {
            assert_eq!(provenance.registered_by, None);
        });
    }

    #[test]
    fn transition_records_decode_and_encode_unchanged() {
        let registered =
            r#"{"seq":1,"eventId":"e1","atMs":10,"from":null,"to":"Registered","reason":null}"#;
        round_trip::<StoredTransition, Transition>(registered, |t| {
            assert_eq!(
                (t.seq, t.from, t.to, t.reason),
                (1, None, State::Registered, None)
            );
        });
        let expired = concat!(
            r#"{"seq":2,"eventId":"e1","atMs":12,"from":"Registered","to":"Cancelled","#,
            r#""reason":"expired","evidence":{"blockNumber":101,"confirmedBy":["a"],"nodesAsked":1}}"#
        );
        round_trip::<StoredTransition, Transition>(expired, |t| {
            assert_eq!(t.reason, Some(Reason::Expired));
            let evidence = t.evidence.as_ref().expect("evidence");
            assert_eq!((evidence.block_hash, evidence.outcome), (None, None));
        });
        let not_committed = concat!(
            r#"{"seq":4,"eventId":"e5","atMs":12,"from":"Registered","to":"Cancelled","#,
            r#""reason":"notCommitted","evidence":{"blockNumber":9,"confirmedBy":["a"],"nodesAsked":1}}"#
        );
        round_trip::<StoredTransition, Transition>(not_committed, |t| {
            assert_eq!(t.reason, Some(Reason::NotCommitted));
            assert_eq!(t.to, State::Cancelled);
        });
        let receipted = r#"{"seq":3,"eventId":"e1","atMs":14,"from":"PendingAccount","to":"Completed","reason":"receipt","paymentReference":"p1"}"#;
        round_trip::<StoredTransition, Transition>(receipted, |t| {
            assert_eq!(t.reason, Some(Reason::Receipt));
            assert_eq!(t.payment_reference.as_deref(), Some("p1"));
        });
    }

    #[test]
    fn outbox_and_lease_records_decode_and_encode_unchanged() {
        let json = format!(
            concat!(
                r#"{{"message":{{"messageId":"e1","eventId":"e1","txHash":"{tx}","blockHash":"{block}","#,
                r#""blockNumber":5,"payment":{{"payer":"bob","payee":"alice","amount":"100","currency":"EUR"}},"#,
                r#""attempt":2}},"visibleAtMs":114,"lease":"lease-2","acked":false}}"#
            ),
            tx = hex("01", 32),
            block = hex("07", 32),
        );
        let entry: OutboxEntry = serde_json::from_str(&json).expect("decodes");
        assert_eq!(entry.lease.as_deref(), Some("lease-2"));
        let message = BusMessage::from(entry.message.clone());
        assert_eq!((message.attempt, message.block_number), (2, 5));
        assert_eq!(StoredMessage::from(&message), entry.message);
        assert_eq!(serde_json::to_string(&entry).expect("encodes"), json);

        let lease = r#"{"leaseId":"lease-2","deadlineMs":214,"messages":["e1","e2"]}"#;
        let decoded: Lease = serde_json::from_str(lease).expect("decodes");
        assert_eq!(decoded.messages, ["e1", "e2"]);
        assert_eq!(serde_json::to_string(&decoded).expect("encodes"), lease);
    }
}
