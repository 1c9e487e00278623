//! The message bus on the wire: the payment instruction a bus carries, a
//! leased batch, and the bounds of pulls and leases.
//!
//! The same message travels whatever the bus is (the event system's
//! embedded queue over `bus_pull`/`bus_ack`, or a broker): the message id
//! is the event id, and a consumer that dedups on it pays once.

use lockstep_runtime::{BlockNumber, Hash};
use serde::{Deserialize, Serialize};

use crate::event::PaymentInstruction;

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

/// One message of the bus: the payment instruction for one event.
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
    /// Deliveries so far, this one included.
    pub attempt: u32,
}

/// One delivered message as a consumer reads it: a message, or something
/// that does not decode as one (kept as JSON, so that one bad message
/// cannot hide the others of its batch: the consumer reports it and acks
/// the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
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

    #[test]
    fn an_undecodable_message_is_kept_beside_the_good_ones() {
        let good = serde_json::json!({
            "messageId": "e1", "eventId": "e1", "txHash": lockstep_runtime::Hash([1; 32]),
            "blockHash": null, "blockNumber": 3,
            "payment": { "payer": "bob", "payee": "alice", "amount": "1", "currency": "USD" },
            "attempt": 1,
        });
        let pulled: Pulled = serde_json::from_value(serde_json::json!({
            "leaseId": "l1", "deadlineMs": 5,
            "messages": [good, { "eventId": "e2", "payment": "nonsense" }],
        }))
        .unwrap();
        assert!(matches!(&pulled.messages[0], Delivery::Message(m) if m.event_id == "e1"));
        assert!(matches!(&pulled.messages[1], Delivery::Undecodable(v) if v["eventId"] == "e2"));
    }
}
