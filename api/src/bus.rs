//! The message bus on the wire: the payment instruction a bus carries, a
//! leased batch, and the bounds of pulls and leases.
//!
//! The same message travels whatever the bus is (the event system's
//! embedded queue over `bus_pull`/`bus_ack`, or a broker): the message id
//! is the event id, and a consumer that dedups on it pays once.
//!
//! ## Signed instructions
//!
//! Whoever can reach a bus (a broker's publishers, a process posing as the
//! event system) could otherwise order payments, so every message carries
//! an ed25519 signature by the **event system's own key**, and the bridge
//! pays nothing that key did not sign ([`BusMessage::verify`]). The signed
//! bytes ([`BusMessage::signing_bytes`]), unambiguous by length prefixes
//! and fixed-size fields:
//!
//! ```text
//! "lockstep/instruction/v1"
//!   ‖ u32 LE len(event id) ‖ event id
//!   ‖ PaymentInstruction::canonical_bytes(payment)
//!       (u32 LE len ‖ payer ‖ u32 LE len ‖ payee ‖ u32 LE len ‖ amount ‖ u32 LE len ‖ currency)
//!   ‖ tx hash (32 bytes)
//!   ‖ block hash: 0x00 when absent, 0x01 ‖ 32 bytes when present
//!   ‖ block number (u64 LE)
//! ```
//!
//! `attempt` is not signed: it changes with every delivery, and nothing is
//! paid on its word. `messageId` is not in the bytes either, but a message
//! whose id is not its event id does not verify, so it is bound all the
//! same. A message without a signature still decodes (its `signature` is
//! none) and fails [`BusMessage::verify`]; one that does not decode at all
//! is a [`Delivery::Undecodable`]. Neither is ever paid.

use lockstep_runtime::{crypto, AccountId, BlockNumber, Hash, Keypair, Signature};
use serde::{Deserialize, Serialize};

use crate::event::{put_part, PaymentInstruction};

/// Domain tag that starts every instruction signing payload.
pub const INSTRUCTION_DOMAIN: &[u8] = b"lockstep/instruction/v1";

/// Most messages one pull leases.
pub const MAX_PULL: usize = 1000;
/// Messages one pull leases when the caller does not say.
pub const DEFAULT_PULL: usize = 100;
/// Most message ids in one ack.
pub const MAX_ACK_IDS: usize = MAX_PULL;
/// Longest lease id, in bytes.
pub const MAX_LEASE_ID: usize = 64;
/// Shortest lease, in ms.
pub const MIN_LEASE_MS: u64 = 100;
/// Longest lease, in ms.
pub const MAX_LEASE_MS: u64 = 600_000;
/// The lease when the caller does not say, in ms.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// One message of the bus: the payment instruction for one event, signed
/// by the event system (see the [module docs](self) for the bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusMessage {
    /// The message id (equal to the event id).
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
    pub payment: PaymentInstruction,
    /// Deliveries so far, this one included (not signed).
    pub attempt: u32,
    /// The event system's signature over [`BusMessage::signing_bytes`];
    /// none on a message that has not left the outbox yet (the outbox
    /// keeps instructions unsigned, the bus signs each delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// Why a message is not taken as the event system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstructionSignatureError {
    /// The message carries no signature.
    #[error("the message is not signed")]
    Unsigned,
    /// The message id is not the event id (the id is not in the signed
    /// bytes, so it must equal one that is).
    #[error("the message id is not the event id")]
    MessageIdMismatch,
    /// The signature is not the event system key's over these bytes.
    #[error("the signature does not verify against the event system's key")]
    BadSignature,
}

impl BusMessage {
    /// The bytes the event system signs (see the [module docs](self)).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let payment = self.payment.canonical_bytes();
        let mut out = Vec::with_capacity(
            INSTRUCTION_DOMAIN.len() + 4 + self.event_id.len() + payment.len() + 32 + 33 + 8,
        );
        out.extend_from_slice(INSTRUCTION_DOMAIN);
        put_part(&mut out, self.event_id.as_bytes());
        out.extend_from_slice(&payment);
        out.extend_from_slice(&self.tx_hash.0);
        match &self.block_hash {
            None => out.push(0),
            Some(hash) => {
                out.push(1);
                out.extend_from_slice(&hash.0);
            }
        }
        out.extend_from_slice(&self.block_number.to_le_bytes());
        out
    }

    /// Signs the message with the event system's key (replacing any
    /// signature it had).
    pub fn sign(&mut self, key: &Keypair) {
        self.signature = Some(key.sign(&self.signing_bytes()));
    }

    /// The message, signed with `key`.
    pub fn signed(mut self, key: &Keypair) -> BusMessage {
        self.sign(key);
        self
    }

    /// Checks that the event system's key `event_system` signed this
    /// message as it stands (`attempt` aside).
    pub fn verify(&self, event_system: &AccountId) -> Result<(), InstructionSignatureError> {
        let signature = self.precheck()?;
        if crypto::verify(event_system, &self.signing_bytes(), signature) {
            Ok(())
        } else {
            Err(InstructionSignatureError::BadSignature)
        }
    }

    /// [`BusMessage::verify`] for each of `messages`, in order, with one
    /// batch check when every signature is good (about twice as fast per
    /// message as one by one) and one by one only to find the bad ones.
    pub fn verify_all(
        messages: &[BusMessage],
        event_system: &AccountId,
    ) -> Vec<Result<(), InstructionSignatureError>> {
        let mut results: Vec<_> = messages.iter().map(|m| m.precheck().map(|_| ())).collect();
        let checked: Vec<(usize, Vec<u8>, Signature)> = messages
            .iter()
            .zip(&results)
            .enumerate()
            .filter_map(|(i, (m, precheck))| {
                let signature = m.signature.filter(|_| precheck.is_ok())?;
                Some((i, m.signing_bytes(), signature))
            })
            .collect();
        let signers = vec![*event_system; checked.len()];
        let bytes: Vec<&[u8]> = checked.iter().map(|(_, b, _)| b.as_slice()).collect();
        let signatures: Vec<Signature> = checked.iter().map(|(_, _, s)| *s).collect();
        let valid = crypto::verify_each(&signers, &bytes, &signatures);
        for ((i, _, _), valid) in checked.iter().zip(valid) {
            if !valid {
                results[*i] = Err(InstructionSignatureError::BadSignature);
            }
        }
        results
    }

    /// The checks before the signature itself: one is present, and the
    /// message id is the event id.
    fn precheck(&self) -> Result<&Signature, InstructionSignatureError> {
        let signature = self
            .signature
            .as_ref()
            .ok_or(InstructionSignatureError::Unsigned)?;
        if self.message_id != self.event_id {
            return Err(InstructionSignatureError::MessageIdMismatch);
        }
        Ok(signature)
    }
}

/// One delivered message as a consumer reads it: a message, or something
/// that does not decode as one (kept as JSON, so that one bad message
/// cannot hide the others of its batch: the consumer reports it and acks
/// the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
// Nearly every delivery is a `Message`: boxing it would cost an allocation
// per message to make the rare `Undecodable` one smaller.
#[allow(clippy::large_enum_variant)]
pub enum Delivery {
    /// A well-formed message.
    Message(BusMessage),
    /// Anything else.
    Undecodable(serde_json::Value),
}

/// `bus_pull`'s answer: a leased batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pulled {
    /// Pass it to `bus_ack`. Present even when no message was leased (then
    /// it cannot be acked: nothing was written).
    pub lease_id: String,
    /// Deadline, ms since the Unix epoch.
    pub deadline_ms: u64,
    /// The messages.
    pub messages: Vec<Delivery>,
}

/// `bus_ack`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResult {
    /// Messages taken out of the queue.
    pub acked: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> BusMessage {
        BusMessage {
            message_id: "e1".into(),
            event_id: "e1".into(),
            tx_hash: Hash([1; 32]),
            block_hash: Some(Hash([2; 32])),
            block_number: 3,
            payment: PaymentInstruction {
                payer: "bob".into(),
                payee: "alice".into(),
                amount: "100".into(),
                currency: "EUR".into(),
            },
            attempt: 1,
            signature: None,
        }
    }

    fn event_system() -> Keypair {
        Keypair::dev("event-system")
    }

    #[test]
    fn an_undecodable_message_is_kept_beside_the_good_ones() {
        let good = serde_json::json!({
            "messageId": "e1", "eventId": "e1", "txHash": lockstep_runtime::Hash([1; 32]),
            "blockHash": null, "blockNumber": 3,
            "payment": { "payer": "bob", "payee": "alice", "amount": "1", "currency": "USD" },
            "attempt": 1,
        });
        let mut badly_signed = good.clone();
        badly_signed["eventId"] = "e3".into();
        badly_signed["signature"] = "0x1234".into();
        let pulled: Pulled = serde_json::from_value(serde_json::json!({
            "leaseId": "l1", "deadlineMs": 5,
            "messages": [good, { "eventId": "e2", "payment": "nonsense" }, badly_signed],
        }))
        .unwrap();
        // Unsigned, but a message: it decodes and fails verification.
        match &pulled.messages[0] {
            Delivery::Message(m) => {
                assert_eq!((m.event_id.as_str(), m.signature), ("e1", None));
                assert_eq!(
                    m.verify(&event_system().public()),
                    Err(InstructionSignatureError::Unsigned)
                );
            }
            other => panic!("expected a message, got {other:?}"),
        }
        assert!(matches!(&pulled.messages[1], Delivery::Undecodable(v) if v["eventId"] == "e2"));
        assert!(matches!(&pulled.messages[2], Delivery::Undecodable(v) if v["eventId"] == "e3"));
    }

    #[test]
    fn the_signed_bytes_are_the_documented_ones() {
        let mut expected = b"lockstep/instruction/v1".to_vec();
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(b"e1");
        for part in ["bob", "alice", "100", "EUR"] {
            expected.extend_from_slice(&(part.len() as u32).to_le_bytes());
            expected.extend_from_slice(part.as_bytes());
        }
        expected.extend_from_slice(&[1; 32]);
        expected.push(1);
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&3u64.to_le_bytes());
        assert_eq!(message().signing_bytes(), expected);

        // No block hash: one zero byte, so no hash can be mistaken for none.
        let mut without = message();
        without.block_hash = None;
        let bytes = without.signing_bytes();
        assert_eq!(bytes.len(), expected.len() - 32);
        assert_eq!(bytes[bytes.len() - 9], 0);
    }

    #[test]
    fn a_signed_message_verifies_and_any_changed_field_fails() {
        let key = event_system();
        let public = key.public();
        let signed = message().signed(&key);
        assert_eq!(signed.verify(&public), Ok(()));
        assert_eq!(
            signed.verify(&Keypair::dev("forger").public()),
            Err(InstructionSignatureError::BadSignature)
        );
        // Through JSON and back, as it travels.
        let json = serde_json::to_value(&signed).unwrap();
        assert!(json["signature"].as_str().is_some_and(|s| s.len() == 130));
        let back: BusMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back.verify(&public), Ok(()));

        // `attempt` changes with every delivery and is not signed.
        let mut redelivered = signed.clone();
        redelivered.attempt = 9;
        assert_eq!(redelivered.verify(&public), Ok(()));

        type Change = (&'static str, fn(&mut BusMessage));
        let changes: [Change; 9] = [
            ("event id", |m| {
                m.event_id = "e2".into();
                m.message_id = "e2".into();
            }),
            ("payer", |m| m.payment.payer = "eve".into()),
            ("payee", |m| m.payment.payee = "eve".into()),
            ("amount", |m| m.payment.amount = "1000".into()),
            ("currency", |m| m.payment.currency = "USD".into()),
            ("tx hash", |m| m.tx_hash = Hash([9; 32])),
            ("block hash", |m| m.block_hash = Some(Hash([9; 32]))),
            ("no block hash", |m| m.block_hash = None),
            ("block number", |m| m.block_number = 4),
        ];
        for (what, change) in changes {
            let mut changed = signed.clone();
            change(&mut changed);
            assert_eq!(
                changed.verify(&public),
                Err(InstructionSignatureError::BadSignature),
                "{what} changed"
            );
        }
        // Shifting bytes between parts changes the length prefixes.
        let mut shifted = signed.clone();
        shifted.payment.payer = "bo".into();
        shifted.payment.payee = "balice".into();
        assert_eq!(
            shifted.verify(&public),
            Err(InstructionSignatureError::BadSignature)
        );

        let mut renamed = signed.clone();
        renamed.message_id = "other".into();
        assert_eq!(
            renamed.verify(&public),
            Err(InstructionSignatureError::MessageIdMismatch)
        );
        let mut unsigned = signed;
        unsigned.signature = None;
        assert_eq!(
            unsigned.verify(&public),
            Err(InstructionSignatureError::Unsigned)
        );
    }

    #[test]
    fn verify_all_agrees_with_verify_message_by_message() {
        let key = event_system();
        let public = key.public();
        let good = |id: &str| {
            let mut m = message();
            m.event_id = id.into();
            m.message_id = id.into();
            m.signed(&key)
        };
        let all_good: Vec<BusMessage> = (0..5).map(|i| good(&format!("e{i}"))).collect();
        assert!(BusMessage::verify_all(&all_good, &public)
            .iter()
            .all(Result::is_ok));
        assert!(BusMessage::verify_all(&[], &public).is_empty());

        let mut tampered = good("t");
        tampered.payment.amount = "999".into();
        let mut renamed = good("r");
        renamed.message_id = "x".into();
        let mixed = vec![
            good("a"),
            tampered,
            message(),
            good("b"),
            message().signed(&Keypair::dev("forger")),
            renamed,
        ];
        let results = BusMessage::verify_all(&mixed, &public);
        let one_by_one: Vec<_> = mixed.iter().map(|m| m.verify(&public)).collect();
        assert_eq!(results, one_by_one);
        assert_eq!(
            results,
            [
                Ok(()),
                Err(InstructionSignatureError::BadSignature),
                Err(InstructionSignatureError::Unsigned),
                Ok(()),
                Err(InstructionSignatureError::BadSignature),
                Err(InstructionSignatureError::MessageIdMismatch),
            ]
        );
    }
}
